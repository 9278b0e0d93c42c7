/* settings.h - central settings: the document a collector hands a device (inside the command
 * document, command.h key 2) that sets some of the agent's config keys without a restart.
 *
 *   CBOR: map { 0: version (1), 1: fleet version (uint), 2: device version (uint),
 *               3: [ [name tstr, value tstr], ... ] }        at most ET_SET_MAX entries
 *
 * A name is the config key it sets, as "SECTION.KEY" (README "Central settings"):
 *   agent.interval  agent.deep_interval  agent.leak_interval  agent.trace_seconds
 *   agent.allow (repeatable: the list replaces the local one)  uplink.budget_bytes_per_day
 *   target.NAME.interval  target.NAME.profiles     (NAME: a [target "NAME"] or a discovered
 *                                                   service of that name)
 * The value is the config file's text ("30s", "16M", "goroutine,heap"): the agent judges it
 * with its config parser (firmware/src/config.c), so a set is valid exactly when the same
 * lines in agent.conf would be. Keys outside this list (device_id, the spool, credentials,
 * the collector) are never settable from afar.
 *
 * The fleet and device versions each only ever rise (one counter per scope at the
 * collector); the pair names what the agent applied or refused, reported in snapshot key 18
 * (schema 3). The decoder is strict like command.c's: unknown keys, duplicates, wrong types,
 * overlong strings, names outside the list, a key twice (allow excepted), trailing bytes. */
#ifndef ET_WIRE_SETTINGS_H
#define ET_WIRE_SETTINGS_H

#include <stddef.h>
#include <stdint.h>

#define ET_SET_VERSION 1
#define ET_SET_MAX 24
#define ET_SET_NAME_MAX 96     /* "target." + 63-byte service + ".profiles" fits */
#define ET_SET_VALUE_MAX 128   /* the config's longest settable value (an allow prefix) */
#define ET_SET_DOC_MAX 512     /* one answer is one CoAP message: keep room for commands */
#define ET_SET_REASON_MAX 128  /* a refusal's reason, as reported in snapshots */

typedef struct et_setting {
    char name[ET_SET_NAME_MAX];
    char value[ET_SET_VALUE_MAX];
} et_setting;

typedef struct et_settings {
    uint64_t fleet_version, device_version;
    unsigned n;
    et_setting e[ET_SET_MAX];
} et_settings;

/* "SECTION.KEY" into the config's section ("agent", "uplink", `target "NAME"`) and key.
 * 0, or -1 with a reason when the name is not a settable key. */
int et_settings_split(const char *name, char *section, size_t seclen, char *key, size_t keylen, char *err,
                      size_t errlen);
/* Names, repeats and lengths (not the values: that is the agent's config parser). */
int et_settings_check(const et_settings *s, char *err, size_t errlen);

int et_settings_encode(const et_settings *s, uint8_t *out, size_t cap, size_t *n, char *err, size_t errlen);
/* Strict decode; 0 or -1 with a reason in err (s is then empty). */
int et_settings_decode(const uint8_t *buf, size_t len, et_settings *s, char *err, size_t errlen);

#endif
