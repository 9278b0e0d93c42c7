/* collector.h - subcommand entry points of edgetrace-collector (main.c dispatches). */
#ifndef COLL_COLLECTOR_H
#define COLL_COLLECTOR_H

#define COLL_DEFAULT_DB "collector.db"

/* provision.c: device keys */
int provision_main(int argc, char **argv);
/* provision.c: 1 if s is a device id (1-63 of [A-Za-z0-9._:-]) */
int provision_valid_id(const char *s);
/* provision_fleet.c: `provision --from FILE` (provision_main hands over when --from is given) */
int provision_fleet_wanted(int argc, char **argv);
int provision_fleet_main(int argc, char **argv);
int rotate_main(int argc, char **argv);
int revoke_main(int argc, char **argv);
int command_main(int argc, char **argv); /* command_cli.c */
int settings_main(int argc, char **argv); /* settings_cli.c */
int keys_main(int argc, char **argv);
/* what: "devices" | "snapshots" | "findings" */
int query_main(const char *what, int argc, char **argv);

#endif
