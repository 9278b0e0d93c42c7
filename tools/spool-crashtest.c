/* spool-crashtest.c - standalone driver for tests/integration/test_spool_crash.py when the
 * agent binary does not dispatch `spool` yet: the same code as `edgetrace-agent spool ...`.
 *   spool-crashtest torture --dir DIR [...]   |   spool-crashtest check --dir DIR
 * Build: gcc -std=c11 -D_GNU_SOURCE -Ifirmware/src tools/spool-crashtest.c firmware/src/spool.c \
 *        firmware/src/spool_cmd.c firmware/src/base.c -lz -o build/host/spool-crashtest */
#include "spool.h"

int main(int argc, char **argv) { return spool_cmd_main(argc, argv); }
