/* config.h - the agent's configuration: /etc/edgetrace/agent.conf (INI, parsed with inih).
 *
 *   [agent]
 *   device_id = gw-0042            ; default: /etc/machine-id's first 12 hex digits
 *   interval = 30s                 ; cheap sampling period (board default)
 *   deep_interval = 10m            ; debug=2 / heap proto / trace when nothing is suspicious
 *   leak_interval = 5m             ; goroutineleak minimum period (it triggers a GC)
 *   trace_seconds = 2              ; execution-trace window
 *   discover = yes                 ; scan /proc for Go services
 *   proc_root = /proc
 *   allow = main.(*pool).worker    ; extra benign wait sites (function prefix), repeatable
 *   pin = agent.interval, agent.allow  ; keys central settings may not change here (settings.h)
 *   log_level = warn
 *
 *   [spool]
 *   dir = /var/lib/edgetrace/spool
 *   max_bytes = 16M
 *   fsync = batch                  ; always | batch | never
 *
 *   [uplink]
 *   collector = coaps://collector.example:5684
 *   credentials = /etc/edgetrace/credentials   ; written by `edgetrace-collector provision`
 *   credentials_dir = /etc/edgetrace/creds     ; instead: DIR/<device_id> (a Kubernetes Secret
 *                                              ; mounted whole, one key per node)
 *   budget_bytes_per_day = 0       ; 0 = unlimited
 *   ack_timeout = 4s  max_retransmit = 6        ; tuned for high-RTT cellular links
 *   pki_cert = / pki_key = / pki_ca =           ; optional: certificates instead of the PSK
 *   insecure_skip_verify = no      ; pki_cert without pki_ca is refused unless yes (then warned)
 *   hold_max = 1h                  ; longest wait before a held snapshot is tried again
 *   dict = /etc/edgetrace/snap.dict ; optional zstd dictionary (the collector must have it too)
 *
 *   [target "billing"]             ; zero or more explicit targets
 *   url = http://127.0.0.1:6060
 *   interval = 15s
 *   profiles = goroutine,heap,goroutineleak,trace
 */
#ifndef ET_CONFIG_H
#define ET_CONFIG_H

#include <stdint.h>

#define ET_MAX_CONF_TARGETS 32
#define ET_MAX_ALLOW 32
#define ET_NAME_MAX 64
#define ET_URL_MAX 160
#define ET_PATH_MAX 200
#define ET_MAX_PIN 16
#define ET_PIN_MAX 96                /* a settings name, wire/settings.h ET_SET_NAME_MAX */

/* Profile bits a target may be sampled for. */
enum et_profile_bits {
    ET_P_GOROUTINE = 1u << 0,
    ET_P_HEAP = 1u << 1,
    ET_P_GOROUTINELEAK = 1u << 2,
    ET_P_TRACE = 1u << 3,
    ET_P_ALL = 0xf,
};

typedef struct et_conf_target {
    char name[ET_NAME_MAX];
    char url[ET_URL_MAX];        /* base URL, e.g. http://127.0.0.1:6060 */
    uint32_t interval_ms;        /* 0 = agent default */
    uint32_t profiles;           /* et_profile_bits; 0 = all */
} et_conf_target;

enum et_fsync_policy { ET_FSYNC_ALWAYS = 0, ET_FSYNC_BATCH = 1, ET_FSYNC_NEVER = 2 };

typedef struct et_config {
    /* [agent] */
    char device_id[ET_NAME_MAX];
    uint32_t interval_ms, deep_interval_ms, leak_interval_ms;
    uint32_t trace_seconds;
    int discover;
    char proc_root[ET_PATH_MAX];
    char allow[ET_MAX_ALLOW][ET_NAME_MAX * 2];
    uint32_t nallow;
    char pin[ET_MAX_PIN][ET_PIN_MAX]; /* settings names the operator pinned to this file */
    uint32_t npin;
    int log_level;
    /* [spool] */
    char spool_dir[ET_PATH_MAX];
    uint64_t spool_max_bytes;
    int fsync_policy;
    /* [uplink] */
    char collector[ET_URL_MAX];  /* coaps://host:port or coap://host:port (tests only) */
    char credentials[ET_PATH_MAX];
    char credentials_dir[ET_PATH_MAX]; /* "" = use credentials; else DIR/<device_id> */
    uint64_t budget_bytes_per_day;
    uint32_t ack_timeout_ms;
    uint32_t max_retransmit;
    char pki_cert[ET_PATH_MAX], pki_key[ET_PATH_MAX], pki_ca[ET_PATH_MAX]; /* optional: DTLS certificates instead of PSK */
    int insecure_skip_verify;    /* pki_cert without pki_ca: refused unless set */
    uint32_t hold_max_ms;        /* held snapshots ("not now" answers): longest retry period */
    char dict[ET_PATH_MAX];      /* zstd dictionary file for the snapshots ("" = none) */
    /* [target "..."] */
    et_conf_target targets[ET_MAX_CONF_TARGETS];
    uint32_t ntargets;
} et_config;

/* Fills board defaults (ET_DEFAULT_* from boards/<board>.mk). */
void et_config_defaults(et_config *c);
/* Parses PATH on top of what *c holds. On error returns -1 and writes "file:line: why"
 * into err; a missing file is an error only if `required`. */
int et_config_load(et_config *c, const char *path, int required, char *err, int errlen);
/* One `KEY = VALUE` line of [SECTION], judged and applied exactly as agent.conf's parser
 * does (central settings reuse it: the same rules as the file). ORIGIN names the source in
 * err. 0, or -1 with the reason. */
int et_config_set(et_config *c, const char *section, const char *key, const char *value, const char *origin,
                  char *err, int errlen);
/* 1 if `pin` names this settings name ("agent.interval", "target.billing.profiles"). */
int et_config_pinned(const et_config *c, const char *name);
/* "30s", "10m", "1500ms", "2h", bare number = seconds; -1 on garbage. */
int64_t et_parse_duration_ms(const char *s);
/* "16M", "512K", "1G", bare number = bytes; -1 on garbage. */
int64_t et_parse_size(const char *s);

#endif
