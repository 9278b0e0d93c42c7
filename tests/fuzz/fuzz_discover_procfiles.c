/* fuzz_discover_procfiles.c - the discovery parsers on hostile bytes: /proc/net/tcp{,6}
 * lines, /proc/PID/cgroup, /proc/PID/stat, ELF images (Go build info), OCI config.json
 * annotations and target URLs. Byte 0 selects the parser. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "discover.h"
#include "httpc.h"

static void annot(void *ud, const char *k, const char *v)
{
    size_t *n = ud;
    *n += strlen(k) + strlen(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t sel = data[0] % 7;
    data++;
    size--;
    /* NUL-terminated private copy: exactly `size` bytes plus the terminator, so ASan sees
     * any read past the input. */
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = 0;
    switch (sel) {
    case 0:
    case 1: {
        char *line = s;
        while (line) {
            char *nl = strchr(line, '\n');
            if (nl)
                *nl = 0;
            et_tcp_sock t;
            int rc = et_parse_tcp_line(line, sel, &t);
            if (rc < -1 || rc > 1)
                abort();
            line = nl ? nl + 1 : NULL;
        }
        break;
    }
    case 2: {
        et_cgroup_info c;
        int rc = et_parse_cgroup(s, size, &c);
        if (rc == 1 && !c.pod_uid[0] && !c.container_id[0])
            abort();
        if (c.container_id[0] && strlen(c.container_id) != 64)
            abort();
        break;
    }
    case 3: {
        uint64_t st;
        et_parse_stat_starttime(s, size, &st);
        break;
    }
    case 4: {
        char ver[ET_GOVER_MAX];
        int rc = et_elf_go_version_mem(data, size, ver, sizeof(ver));
        if (rc < -1 || rc > 1 || strlen(ver) >= sizeof(ver))
            abort();
        break;
    }
    case 5: {
        size_t total = 0;
        et_oci_annotations(s, size, annot, &total);
        break;
    }
    case 6: {
        et_url u;
        if (et_url_parse(s, &u) == 0 && (u.path[0] != '/' || u.port == 0))
            abort();
        break;
    }
    }
    free(s);
    return 0;
}
