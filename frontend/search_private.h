/*
 * search_private: the state SEARCH's files share (cmd_search.c: the command, the index phase and
 * the answer; search_batch.c: the per-message phase; search_raw.c: raw-byte scanning). Private to
 * those three files; nothing else includes it. The state lives in the command's arena and is
 * owned by the command (ctx->state); per-batch memory comes from st->batch, reset per batch.
 */
#ifndef CIMAP_SEARCH_PRIVATE_H
#define CIMAP_SEARCH_PRIVATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/colcache.h"
#include "frontend/conn.h"
#include "frontend/search_cache.h"
#include "frontend/search_eval.h"
#include "frontend/search_parse.h"
#include "frontend/search_scan.h"
#include "frontend/search_set.h"
#include "keys/keys.h"

enum { IDX_RUNS, IDX_UNSEEN, IDX_DELETED, IDX_COUNT };

struct idx_read {
    bool want, done;
    uint32_t next; /* lowest score still to read */
    struct search_set_builder b;
};

/* Where the index phase takes \Seen and \Deleted from (cmd_search.c). */
enum search_flag_src {
    FLAG_SRC_INDEX,  /* /unseen and /deleted (ZRANGEBYSCORE): caches off, or too many missing */
    FLAG_SRC_CHUNKS, /* the 'f' chunks, then HMGET /flags for the chunks that were missing */
};

/* One chunk's part of a per-message batch (search_batch.c). */
struct search_bchunk {
    struct search_vpart vp;
    bool cached;             /* read from the caches (else its candidates the old way) */
    size_t b, e;             /* its messages: msgs[b..e) */
    bool build_f, build_m;   /* every view UID of the chunk is read the old way to rebuild it */
    bool build_m_ok;         /* the /msg read was an exact snapshot: build 'm' once parses are in */
    bool guard_ok;           /* guard holds the ZCOUNT read with the rebuild's snapshot */
    uint64_t guard;          /* UIDs of the mailbox in [chunk first, vp.max_uid] */
};

/* Per-message bookkeeping beside struct search_msg (search_batch.c). */
struct search_bmsg {
    bool cand;               /* a candidate (else read only to rebuild a chunk) */
    bool need_f, need_m;     /* the flags / record are still to be read the old way */
    bool read_f, read_m;     /* in the old-way HMGETs (need_* or a rebuild) */
    bool parsed;             /* parse leaves done and, when still undecided, raw scan set up */
    bool has_rec;            /* rec holds the /msg record (for an 'm' rebuild) */
    const char *rec;         /* in the batch arena */
    size_t rec_len;
    int32_t pslot;           /* its HGET parse in the parse round, or -1 */
};

struct raw_batch;

struct search_state {
    struct search_query q;
    uint32_t lo, hi;        /* UIDs the search can match: the view's, narrowed by its sets */
    uint64_t span_msgs;     /* view messages in [lo, hi] */
    bool cache;             /* the column caches are used (colcache_enabled) */
    bool want_f, want_m;    /* the per-message phase needs flags / the record or parse */
    uint64_t view_modseq;   /* the modseq the view reflects: a snapshot at it is exact */

    /* index phase */
    struct idx_read idx[IDX_COUNT];
    enum search_flag_src fsrc;
    uint64_t fl_cursor;     /* next chunk to GET ('f', index phase) */
    bool fl_gets_done;
    struct search_vpart *fl_group; /* the chunks of the round in flight (st->batch) */
    size_t n_fl_group;
    bool fl_hmget;          /* the round reads /flags of fl_group (else GETs their 'f' chunks) */
    uint32_t *missing;      /* chunks whose 'f' value was unusable (ctx->arena) */
    size_t n_missing, cap_missing, missing_next;
    uint64_t missing_msgs;  /* view messages in them */
    bool first_exact;       /* the first chunk GETs saw the view's highestmodseq */
    bool first_seen;
    struct search_set_builder cu, cd;  /* unseen / deleted from chunks, ascending */
    struct search_set_builder hu, hd;  /* unseen / deleted from HMGET /flags, ascending */

    struct seqset universe, must, cand;
    size_t cand_range;      /* cursor over cand */
    uint32_t cand_next;
    struct search_set_builder matched;

    /* per-message phase (st->batch, reset per batch) */
    struct arena *batch;
    struct search_msg *msgs;
    struct search_bmsg *bm;
    size_t n_msgs;
    struct search_bchunk *chunks;
    size_t n_chunks;
    uint32_t *undecided;    /* indexes into msgs */
    size_t n_undecided;
    uint32_t *pread;        /* indexes into msgs whose parse the parse round reads */
    size_t n_pread;
    const struct search_key **raw_keys;
    size_t n_raw;
    struct raw_batch *raw;
    struct search_scratch scratch; /* reused by search_eval_parse */
};

/* cmd_search.c */
/* Answers the search (every batch done) and ends the command. */
enum cmd_status search_finish(struct cmd_ctx *ctx);
/* True when the EXEC reply holds n non-error replies; else answers the failure into *out. */
bool search_tx_ok(struct cmd_ctx *ctx, size_t n, enum cmd_status *out);
/* Appends command av[0..ac) (NUL-terminated strings that live in a) as the (*n)++-th of a
 * MULTI/EXEC being built in argc/argv/argvlen. */
void search_tx_add(struct arena *a, int *argc, const char *const **argv, const size_t **argvlen,
                   size_t *n, const char **av, size_t ac);
/* Appends HGET <k> <field> (field a static string) the same way. */
void search_tx_hget(struct arena *a, int *argc, const char *const **argv, const size_t **argvlen,
                    size_t *n, const struct key *k, const char *field);
/* Logs and answers NO [SERVERBUG] for inconsistent mailbox data. */
enum cmd_status search_bad_data(struct cmd_ctx *ctx, const char *what);
/* search_batch.c */
/* Plans and reads the next batch of candidates; search_finish when none are left. */
enum cmd_status search_batch_next(struct cmd_ctx *ctx);
/* Adds the batch's matches (in UID order) and goes on with the next batch. */
enum cmd_status search_batch_conclude(struct cmd_ctx *ctx);

/* search_raw.c */
/* Sets m (msgs[msg]) up for raw scanning from its stored parse; false when unreadable. */
bool search_raw_add(struct search_state *st, size_t msg, const char *parse, size_t len);
/* Scans every message set up so far, then search_batch_conclude. */
enum cmd_status search_raw_run(struct cmd_ctx *ctx);
/* Frees the batch's raw state (NULL-safe); st->raw becomes NULL. */
void search_raw_free(struct search_state *st);

#endif
