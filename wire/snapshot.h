/* snapshot.h - the one place the snapshot schema lives, shared by agent and collector.
 *
 * A snapshot is what the agent says about one target in one sampling cycle. In memory it is
 * the fixed-size struct et_snapshot below (no pointers, bounded, memcpy-able). On the wire:
 *
 *     envelope (4 bytes: 'E' 'T' version flags) + zstd frame (or raw CBOR if flags say so)
 *                                                  of a CBOR map with small integer keys
 *
 * wire/FORMAT.md documents every key, type and unit. Summary of the API:
 *
 *   Agent (encode; wire/snapshot.c, no zstd decompression needed):
 *     et_snapshot_init(&s)                 zero + schema version
 *     et_snapshot_new_id(s.id, ...)        16 random bytes (getrandom, fallback hash)
 *     et_read_boot_id(path, s.boot_id)     /proc/sys/kernel/random/boot_id -> 16 bytes
 *     et_wall_clock_untrusted(wall_ms)     adjtimex STA_UNSYNC / before 2024-01-01
 *     et_snapshot_set_sites / _set_memstats / _set_proc / _add_finding / _add_attachment
 *                                          fill from the parser/analyzer structs
 *     et_wire_enc_create(&params)          once at start: zstd context, no per-snapshot malloc
 *     et_wire_encode(enc, &s, out, cap, &n, err, errlen)   envelope + zstd(CBOR)
 *     et_snapshot_encode_cbor(...)         CBOR only (tests, tools)
 *
 *   Collector (decode; wire/snapshot_decode.c, needs zstd decompression, i.e. host builds):
 *     et_wire_dec_create()                 once; et_wire_dec_add_dict() for each known dictionary
 *     et_wire_decode(dec, in, len, &s, err, errlen)  -> ET_WIRE_OK or a negative et_wire_status
 *                                          (the collector maps the status to a CoAP answer class:
 *                                          collector/src/decode.c; README "Answer codes")
 *     et_snapshot_decode_cbor(...)         CBOR only: validates types, lengths, ranges, nesting
 *
 * Device builds link a libzstd without decompression (tools/deps.sh: ZSTD_LIB_DECOMPRESSION=0).
 * snapshot_decode.c therefore compiles its zstd calls only when ET_WIRE_HAVE_ZSTD_DECOMPRESS is
 * 1 (default: glibc builds = host, collector, tests, fuzz); on musl (device) builds
 * et_wire_decode still decodes raw-CBOR envelopes and answers ET_WIRE_EUNSUPPORTED to zstd.
 */
#ifndef ET_WIRE_SNAPSHOT_H
#define ET_WIRE_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "profile.h"
#include "finding.h"

/* ---- versions and envelope ------------------------------------------------------------ */
/* CBOR key 0; bumped on any schema change (the decoder rejects unknown keys). A build reads
 * every version from ET_SNAP_SCHEMA_MIN to ET_SNAP_SCHEMA_VERSION. The agent writes
 * ET_SNAP_SCHEMA_MIN unless the collector said it reads more and the snapshot needs it (so
 * agents may be updated before their collector); see README "Snapshot format". */
#define ET_SNAP_SCHEMA_VERSION 3   /* 2: counters 6-8 (the uplink's held/rejected records);
                                      finding keys 16-19 and evidence bit 9 (survivors);
                                      3: key 18, the central settings applied or refused */
#define ET_EVIDENCE_COUNT_V1 9     /* evidence bits schema 1 knows */
#define ET_SNAP_SCHEMA_MIN 1
#define ET_WIRE_MAGIC0 0x45        /* 'E' */
#define ET_WIRE_MAGIC1 0x54        /* 'T' */
#define ET_WIRE_VERSION 1          /* envelope version (byte 2) */
#define ET_WIRE_HDR_LEN 4
/* Envelope flags (byte 3). Unknown bits are rejected. */
#define ET_WIRE_F_ZSTD 0x01        /* payload is one zstd frame; else raw CBOR */
#define ET_WIRE_F_DICT 0x02        /* frame was compressed with a dictionary (its id is in the frame) */
#define ET_WIRE_F_KNOWN (ET_WIRE_F_ZSTD | ET_WIRE_F_DICT)

/* ---- bounds ---------------------------------------------------------------------------- */
#define ET_SNAP_ID_LEN 16
#define ET_SNAP_STR_SHORT 64       /* device id, board, version, service, namespace, pod, container */
#define ET_SNAP_GOVER_MAX 24       /* == et_gprofile.go_version */
#define ET_SNAP_URL_MAX 160
#define ET_SNAP_MAX_SITES 32       /* top-N goroutine sites carried (by count) */
#define ET_SNAP_DEFAULT_TOP_N 16   /* what et_snapshot_set_sites takes when asked for 0 */
#define ET_SNAP_MAX_FINDINGS ET_MAX_FINDINGS
#define ET_SNAP_MAX_ATTACH 2
#define ET_SNAP_ATTACH_MAX 4096    /* bytes per attachment */
/* Upper bound of the CBOR encoding of any et_snapshot (tests/unit/test_snapshot.c checks a
 * snapshot with every field at its maximum fits) and of the wire bytes. */
#define ET_SNAP_CBOR_MAX (80u * 1024u)
#define ET_WIRE_MAX (ET_WIRE_HDR_LEN + ET_SNAP_CBOR_MAX + ET_SNAP_CBOR_MAX / 128u + 512u)

/* Snapshot flags (CBOR key 7). */
#define ET_SNAP_F_WALL_UNTRUSTED 0x01  /* no RTC / clock not synced: wall_ms is not to be believed */
#define ET_SNAP_F_DEEP 0x02            /* debug=2 / heap proto / trace were fetched this cycle */
#define ET_SNAP_F_TARGET_DOWN 0x04     /* target did not answer; only identity and counters valid */
#define ET_SNAP_F_KNOWN 0x07

/* Attachment kinds (CBOR key 15). */
enum et_attach_kind {
    ET_ATT_GOROUTINE_DEBUG2 = 0, /* text excerpt of /debug/pprof/goroutine?debug=2 */
    ET_ATT_GOROUTINE_DEBUG1 = 1,
    ET_ATT_HEAP_DEBUG1 = 2,
    ET_ATT_TRACE = 3,            /* excerpt of an execution trace (binary) */
    ET_ATT_KIND_COUNT
};

/* One goroutine site, top-N by count. file is shortened to its last two path elements
 * ("ingest/worker.go") by et_snapshot_set_sites: func is fully qualified, so the tail is
 * enough to find the line, and the full build path costs bytes on every snapshot. */
typedef struct et_snap_site {
    uint32_t key;                /* et_snap_site_key(): set by set_sites and by the decoder */
    uint8_t ref;                 /* 1: sent as a reference [key, count, max_wait_min] without names
                                    (the collector already has them from an earlier full entry) */
    uint8_t state;               /* enum et_gstate */
    uint32_t count;
    uint32_t line;
    uint32_t max_wait_min;       /* debug=2 wait minutes; 0 if none printed */
    char func[ET_FUNC_MAX];
    char file[ET_FILE_MAX];
    char created_by[ET_FUNC_MAX];
} et_snap_site;

typedef struct et_snap_mem {     /* runtime.MemStats subset, bytes unless noted */
    uint8_t present;
    uint64_t heap_alloc, heap_inuse, heap_idle, heap_released, heap_sys;
    uint64_t stack_inuse, sys, next_gc;
    uint32_t num_gc;             /* count */
} et_snap_mem;

typedef struct et_snap_proc {    /* /proc/PID figures */
    uint8_t present;
    uint64_t rss_kb;             /* VmRSS, KiB */
    uint64_t cpu_ticks;          /* utime + stime, clock ticks */
    uint32_t threads;
    uint32_t fds;
} et_snap_proc;

typedef struct et_snap_attach {
    uint8_t kind;                /* enum et_attach_kind */
    uint8_t finding;             /* index into findings[] this excerpt supports */
    uint32_t len;
    uint8_t data[ET_SNAP_ATTACH_MAX];
} et_snap_attach;

typedef struct et_snapshot {
    uint32_t schema;                       /* ET_SNAP_SCHEMA_MIN..ET_SNAP_SCHEMA_VERSION; fields
                                              of a later version are not encoded */
    uint8_t id[ET_SNAP_ID_LEN];            /* random, unique per snapshot: collector dedup key */
    /* device */
    char device_id[ET_SNAP_STR_SHORT];
    char board[ET_SNAP_STR_SHORT];
    char agent_version[ET_SNAP_STR_SHORT];
    uint64_t seq;                          /* per device, +1 per snapshot, survives restarts if the
                                              agent persists it (else restarts at 0 with a new boot) */
    uint8_t boot_id[16];                   /* /proc/sys/kernel/random/boot_id as bytes */
    uint64_t mono_ms;                      /* CLOCK_BOOTTIME ms at sampling */
    int64_t wall_ms;                       /* CLOCK_REALTIME ms; see ET_SNAP_F_WALL_UNTRUSTED */
    uint32_t flags;                        /* ET_SNAP_F_* */
    /* target identity */
    char service[ET_SNAP_STR_SHORT];
    char pod_namespace[ET_SNAP_STR_SHORT];
    char pod_name[ET_SNAP_STR_SHORT];
    char container[ET_SNAP_STR_SHORT];
    uint32_t pid;
    uint64_t start_ticks;                  /* /proc/PID/stat field 22: with pid, the incarnation */
    char go_version[ET_SNAP_GOVER_MAX];
    char url[ET_SNAP_URL_MAX];
    /* goroutines */
    uint64_t goroutines;                   /* total in the profile */
    uint32_t nsites_total;                 /* distinct sites in the profile (>= nsites) */
    uint64_t goroutines_other;             /* goroutines in sites not listed below */
    uint32_t by_state[ET_G_STATE_COUNT];   /* goroutines per enum et_gstate */
    uint32_t nsites;
    et_snap_site sites[ET_SNAP_MAX_SITES]; /* by count, descending */
    /* memory, /proc */
    et_snap_mem mem;
    et_snap_proc proc;
    /* findings */
    uint32_t nfindings;
    et_finding findings[ET_SNAP_MAX_FINDINGS];
    /* counters: spool drops reach the collector here */
    uint64_t spool_routine_dropped;        /* routine snapshots evicted from a full spool, ever */
    uint64_t spool_findings_dropped;       /* finding snapshots evicted, ever */
    uint64_t spool_corrupt_dropped;        /* records lost to flash corruption / torn writes */
    uint64_t spool_bytes_today;            /* bytes written to flash today (UTC day, or since boot) */
    uint32_t findings_dropped;             /* analyzer: findings beyond ET_MAX_FINDINGS */
    uint32_t sites_truncated;              /* parser: goroutines folded into the overflow site */
    /* schema 2: the uplink's records the collector could not take (README "Answer codes") */
    uint64_t uplink_held;                  /* "not now" answers that kept a record, ever */
    uint64_t uplink_rejected;              /* records dropped on 4.00/4.22, ever */
    uint32_t uplink_held_now;              /* records held at sampling time */
    /* schema 3: central settings (wire/settings.h) applied, and the last set refused */
    uint64_t set_fleet, set_device;        /* versions applied (0: none) */
    uint64_t set_rej_fleet, set_rej_device;/* versions of the last set refused (0: none) */
    char set_reason[128];                  /* why it was refused (ET_SET_REASON_MAX) */
    /* sampling cost */
    uint64_t cost_bytes;                   /* HTTP body bytes fetched this cycle */
    uint32_t cost_ms;                      /* wall time spent sampling + parsing this cycle */
    /* attachments (only when a finding needs them) */
    uint32_t nattach;
    et_snap_attach attach[ET_SNAP_MAX_ATTACH];
} et_snapshot;

/* ---- building (agent) ----------------------------------------------------------------- */
void et_snapshot_init(et_snapshot *s);
/* 16 random bytes from getrandom(); if the kernel has no entropy yet, a hash of boot id,
 * seq and the monotonic clock (unique per boot, which is all dedup needs). 0 = random. */
int et_snapshot_new_id(uint8_t id[ET_SNAP_ID_LEN], const uint8_t boot_id[16], uint64_t seq);
/* Parses the UUID text in PATH (NULL = /proc/sys/kernel/random/boot_id). 0 or -1. */
int et_read_boot_id(const char *path, uint8_t out[16]);
/* 1 if wall_ms should not be trusted: kernel says unsynchronised (adjtimex STA_UNSYNC or
 * TIME_ERROR) or the value is before 2024-01-01 (a board without RTC boots in 1970). */
int et_wall_clock_untrusted(int64_t wall_ms);
#define ET_WALL_SANE_FLOOR_MS 1704067200000LL /* 2024-01-01T00:00:00Z */

/* Top-N sites of gp by count (top_n 0 = ET_SNAP_DEFAULT_TOP_N, capped at ET_SNAP_MAX_SITES);
 * also sets goroutines, nsites_total, goroutines_other, by_state, go_version (if empty),
 * sites_truncated. */
void et_snapshot_set_sites(et_snapshot *s, const et_gprofile *gp, unsigned top_n);
void et_snapshot_set_memstats(et_snapshot *s, const et_memstats *ms);
void et_snapshot_set_proc(et_snapshot *s, const et_procstat *ps);
/* Site references: a steady-state snapshot sends the names of a site once, then only
 * [key, count, max_wait_min]. The memo (one per target, kept by the agent) remembers which
 * keys went out in full since the last refresh; every refresh_every snapshots (0 = 10)
 * everything goes out in full again, so a collector that never got the full entry (evicted
 * from a full spool, or delivered out of order) learns the names within that many cycles.
 * The collector stores sites by (target, key) and joins names when it has them. */
#define ET_SITE_MEMO_MAX 64
typedef struct et_site_memo {
    uint32_t keys[ET_SITE_MEMO_MAX];
    uint32_t n;
    uint32_t since_refresh;
} et_site_memo;
void et_snapshot_apply_memo(et_snapshot *s, et_site_memo *m, unsigned refresh_every);
/* 32-bit FNV-1a over state, func, file, line and created_by, as the site is carried (file
 * already shortened). Defined by the wire format: both ends compute the same value. */
uint32_t et_snap_site_key(const et_snap_site *st);

/* Copy of f; -1 when ET_SNAP_MAX_FINDINGS are already there (counted in findings_dropped). */
int et_snapshot_add_finding(et_snapshot *s, const et_finding *f);
/* Copies at most ET_SNAP_ATTACH_MAX bytes (cut, returns 1 if cut); -1 if no slot left. */
int et_snapshot_add_attachment(et_snapshot *s, unsigned kind, unsigned finding_idx, const void *data,
                               size_t len);

/* ---- encoding ------------------------------------------------------------------------- */
/* CBOR only. 0 on success (*out_len set), -1 with a message in err. */
int et_snapshot_encode_cbor(const et_snapshot *s, uint8_t *buf, size_t cap, size_t *out_len, char *err,
                            size_t errlen);

typedef struct et_wire_params {
    int level;                 /* zstd level; 0 = 3. Device boards: 3..6 */
    int window_log;            /* 0 = 15 (32 KiB); capped at 17 (the decoder refuses larger) */
    const void *dict;          /* optional zstd dictionary (kept by reference, must outlive enc) */
    size_t dict_len;
    int raw;                   /* 1: no compression (ET_WIRE_F_ZSTD clear), for debugging */
} et_wire_params;

typedef struct et_wire_enc et_wire_enc; /* opaque: zstd context in one once-allocated block */

/* Allocates once (zstd workspace sized for the parameters, CBOR scratch of ET_SNAP_CBOR_MAX);
 * encoding never allocates after this. NULL on failure with a message in err. */
et_wire_enc *et_wire_enc_create(const et_wire_params *p, char *err, size_t errlen);
void et_wire_enc_free(et_wire_enc *e);
/* Envelope + zstd(CBOR(s)) into out (cap >= ET_WIRE_MAX is always enough). 0 or -1. */
int et_wire_encode(et_wire_enc *e, const et_snapshot *s, uint8_t *out, size_t cap, size_t *out_len, char *err,
                   size_t errlen);
/* Dictionary id of the encoder's dictionary (0 = none). */
uint32_t et_wire_enc_dict_id(const et_wire_enc *e);
/* The encoder's one allocation (zstd workspace + CBOR scratch), for RSS accounting. */
size_t et_wire_enc_memory(const et_wire_enc *e);

/* ---- decoding (collector) ------------------------------------------------------------- */
enum et_wire_status {
    ET_WIRE_OK = 0,
    /* Two kinds of failure (README "Answer codes"): the bytes are broken and no build will
     * ever read them (EENVELOPE, EZSTD, ECBOR, ESCHEMA), or this build cannot read them but
     * a newer or differently configured one could (EVERSION, EDICT, ETOOBIG, EUNSUPPORTED).
     * The agent deletes a record only for the first kind, so the split must stay exact. */
    ET_WIRE_EENVELOPE = -1,    /* no "ET" magic, dictionary flag without zstd: corrupt (4.00) */
    ET_WIRE_ETOOBIG = -2,      /* input or decompressed size over this build's bounds (4.13) */
    ET_WIRE_EZSTD = -3,        /* corrupt zstd frame, trailing bytes, window too large (4.00) */
    ET_WIRE_EDICT = -4,        /* frame needs a dictionary id the decoder does not have (5.01) */
    ET_WIRE_ECBOR = -5,        /* not well-formed CBOR (4.00) */
    ET_WIRE_ESCHEMA = -6,      /* a schema version this build reads, but wrong types, keys,
                                  lengths or ranges (4.22) */
    ET_WIRE_EUNSUPPORTED = -7, /* zstd payload but this build has no decompressor (device) (5.01) */
    ET_WIRE_ENOMEM = -8,
    ET_WIRE_EVERSION = -9,     /* envelope version or flags, or schema version, that this build
                                  does not know (5.01) */
};
const char *et_wire_status_name(int status);
/* 1 if the finding carries schema 2 evidence (survivors, oldest id, wait histogram, evidence
 * bit 9): the agent then writes schema 2 to a collector that reads it. */
int et_finding_needs_v2(const et_finding *f);

/* CBOR only: returns ET_WIRE_OK, ET_WIRE_ECBOR, ET_WIRE_ESCHEMA, ET_WIRE_EVERSION or
 * ET_WIRE_ETOOBIG (message in err).
 * out is fully written (zeroed first) even on error. */
int et_snapshot_decode_cbor(const uint8_t *buf, size_t len, et_snapshot *out, char *err, size_t errlen);

#define ET_WIRE_MAX_DICTS 4
typedef struct et_wire_dec et_wire_dec; /* opaque: zstd DCtx + dictionaries + scratch */
et_wire_dec *et_wire_dec_create(char *err, size_t errlen);
/* Registers a dictionary (copied); its id is read from the dictionary header. 0 or -1. */
int et_wire_dec_add_dict(et_wire_dec *d, const void *dict, size_t len, char *err, size_t errlen);
void et_wire_dec_free(et_wire_dec *d);
/* Envelope check, decompression (bounded by ET_SNAP_CBOR_MAX), CBOR decode + validation. */
int et_wire_decode(et_wire_dec *d, const uint8_t *in, size_t len, et_snapshot *out, char *err, size_t errlen);
/* 1 if this build can decompress zstd envelopes. */
int et_wire_can_decompress(void);

/* Text forms shared by the collector's output and FORMAT.md. */
const char *et_snap_state_name(unsigned state); /* enum et_gstate -> "chan receive", ... ("?" if bad) */
void et_snap_id_hex(const uint8_t id[ET_SNAP_ID_LEN], char out[2 * ET_SNAP_ID_LEN + 1]);
/* Boot id bytes back to UUID text (36 chars + NUL). */
void et_snap_uuid_text(const uint8_t b[16], char out[37]);

#endif
