/*
 * fetch_columns: step 1 of a FETCH batch (cmd_fetch.c): the columns of its messages (the msg
 * record, the flags) and whether each still exists, read through the column caches (colcache.h).
 *
 * Round 1, when the caches are on and the batch holds at least 1/FETCH_CACHE_SHARE of the view's
 * messages in some chunk: one MULTI/EXEC with HGET highestmodseq and one GET per such chunk and
 * kind the plan needs ('f' for FLAGS and \Seen, 'm' for the msg record: INTERNALDATE, RFC822.SIZE,
 * object ids, the content id, and the parse for ENVELOPE, BODYSTRUCTURE, BODY and sections). A
 * value is trusted only once every record of it reads well and it is plausible
 * (search_cache_plausible: not newer than the mailbox, and, when the view is exact, holding every
 * view UID of the chunk below its upto); anything else is treated as absent. A hit answers the
 * message; ABSENT means it does not exist any more (vanished, as a nil msg
 * record does); UNKNOWN leaves it to round 2.
 *
 * Round 2, the old way, for what round 1 left (everything when round 1 was skipped): one
 * MULTI/EXEC with HGET highestmodseq, HMGET msg and/or HMGET flags for those UIDs. When
 * highestmodseq moved between the two rounds, the two answers are not one snapshot: the batch is
 * read again, the old way alone. Without the msg column existence comes from highestmodseq: equal
 * to the view's, nothing was expunged since and the view is exact; otherwise one ZMSCORE tells.
 *
 * Building. A chunk the batch holds whole (every view UID in it) whose value of a kind is absent,
 * or leaves at least FETCH_REBUILD_MIN of the batch above its upto, is read whole the old way in
 * round 2 for that kind, when round 1 saw the view's highestmodseq. If round 2 sees it too (the
 * view is then exact), the 'f' value is built at once and the 'm' value once the content step has
 * read every message's parse (fetch_chunk_add_parse); both go to colcache_put_shard, fire and
 * forget, with modseq = that highestmodseq and upto = the chunk's highest view UID + 1.
 *
 * The guard. A view exact by modseq can still lack a message (a SELECT paged wrongly, a repair
 * that changed the UIDs without a modseq), and a chunk built from it would call that message
 * absent for every session. So round 2 also reads, per chunk being built, ZCOUNT uids over
 * [chunk first, upto): a chunk is built only when it holds exactly that many records (O(log n)
 * per build; a mismatch is logged at debug and builds nothing). An 'm' build is given up as soon
 * as it cannot be stored (too large, a parse missing, the modseq moved: this FETCH's own \Seen,
 * or a probe read with the parses), so no parse is read only for a value that will be refused.
 *
 * Not here: the chunk codec and the put (colcache.c), invalidation (the Lua scripts).
 */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/cmd_common.h"
#include "frontend/fetch_state.h"
#include "frontend/log.h"
#include "frontend/search_cache.h"
#include "frontend/selected.h"
#include "keys/keys.h"

static enum cmd_status read_old(struct cmd_ctx *ctx);

/* The batch's columns are known: messages found gone make FETCH end with EXPUNGEISSUED. */
static enum cmd_status columns_finished(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    for (size_t k = 0; k < st->n; k++) {
        if (!st->msgs[k].exists)
            st->vanished = true;
    }
    return fetch_columns_done(ctx);
}

/* ------------------------------------------------------------------ helpers */

/* uid in decimal, in a. */
static const char *uid_text(struct arena *a, uint32_t uid, size_t *len_r)
{
    char tmp[10];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + uid % 10);
        uid /= 10;
    } while (uid != 0);
    *len_r = n;
    return arena_strndup(a, tmp + sizeof(tmp) - n, n);
}

/* Parses a decimal of 1..20 digits (with a leading '-' when sign) from s[0..len). */
static bool parse_num(const char *s, size_t len, bool sign, int64_t *i_r, uint64_t *u_r)
{
    bool neg = sign && len > 0 && s[0] == '-';
    size_t k = neg ? 1 : 0;
    if (len <= k || len - k > 20)
        return false;
    uint64_t v = 0;
    for (; k < len; k++) {
        if (s[k] < '0' || s[k] > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[k] - '0');
    }
    if (i_r != NULL) {
        if (v > (uint64_t)INT64_MAX)
            return false;
        *i_r = neg ? -(int64_t)v : (int64_t)v;
    }
    if (u_r != NULL)
        *u_r = v;
    return true;
}

/* True when s[0..len) is a content id: KEYS_SHA256_LEN lower-case hex digits (no branch per
 * digit: random digits defeat branch prediction, and this runs for every message). */
static bool sha_valid(const char *s, size_t len)
{
    static const uint8_t hex[256] = {
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
        ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
    };
    if (len != KEYS_SHA256_LEN)
        return false;
    unsigned ok = 1;
    for (size_t k = 0; k < len; k++)
        ok &= hex[(uint8_t)s[k]];
    return ok != 0;
}

bool fetch_parse_record(struct arena *a, const char *s, size_t len, struct fetch_msg *m)
{
    const char *f[5] = {0};
    size_t flen[5] = {0};
    size_t nf = 0;
    const char *p = s, *end = s + len;
    while (nf < 5) {
        const char *space = memchr(p, ' ', (size_t)(end - p));
        f[nf] = p;
        flen[nf++] = (size_t)((space != NULL ? space : end) - p);
        if (space == NULL)
            break;
        p = space + 1;
    }
    int64_t date = 0;
    uint64_t size = 0;
    if (nf < 3 || !sha_valid(f[0], flen[0]) ||
        !parse_num(f[1], flen[1], true, &date, NULL) || !parse_num(f[2], flen[2], false, NULL, &size))
        return false;
    m->sha = arena_strndup(a, f[0], flen[0]);
    m->internaldate = date;
    m->size = size;
    m->emailid = nf > 3 ? arena_strndup(a, f[3], flen[3]) : "";
    m->threadid = nf > 4 ? arena_strndup(a, f[4], flen[4]) : "";
    return true;
}

/* ------------------------------------------------------------------ chunks */

/* Groups the batch by chunk and says which chunks are read from the caches and could be built. */
static void plan_chunks(struct fetch_state *st)
{
    size_t count = 0;
    for (size_t k = 0; k < st->n; k++) {
        if (k == 0 || colcache_chunk(st->msgs[k].uid) != colcache_chunk(st->msgs[k - 1].uid))
            count++;
    }
    st->chunks = arena_calloc(st->batch, count, sizeof(*st->chunks));
    st->nchunks = 0;
    const struct view *v = st->sel->view;
    for (size_t k = 0; k < st->n; k++) {
        uint32_t chunk = colcache_chunk(st->msgs[k].uid);
        if (k == 0 || chunk != st->chunks[st->nchunks - 1].chunk) {
            struct fetch_chunk *c = &st->chunks[st->nchunks++];
            c->chunk = chunk;
            c->first = k;
        }
        struct fetch_chunk *c = &st->chunks[st->nchunks - 1];
        c->end = k + 1;
        st->msgs[k].chunk_ix = (uint32_t)(st->nchunks - 1);
    }
    bool kinds = st->plan.need_msg || st->plan.need_flags;
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        uint32_t lo = view_seq_ceil(v, colcache_first(c->chunk));
        uint32_t hi = view_seq_floor(v, colcache_last(c->chunk));
        size_t in_view = hi >= lo ? (size_t)(hi - lo) + 1 : 0;
        size_t held = c->end - c->first;
        uint32_t highest = hi >= lo ? view_uid(v, hi) : 0;
        c->whole = held == in_view && highest != 0 && highest != UINT32_MAX;
        c->upto = c->whole ? highest + 1 : 0;
        c->use = st->caches && kinds && held * FETCH_CACHE_SHARE >= in_view;
    }
}

void fetch_chunks_free(struct fetch_state *st)
{
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        if (c->building)
            colcache_builder_free(&c->mb);
        c->building = false;
    }
    st->building = false;
}

/* ------------------------------------------------------------------ round 1: the caches */

static enum cmd_status got_caches(struct cmd_ctx *ctx);

static size_t cache_kinds(const struct fetch_state *st, enum colcache_kind kinds[2])
{
    size_t n = 0;
    if (st->plan.need_flags)
        kinds[n++] = COLCACHE_FLAGS;
    if (st->plan.need_msg)
        kinds[n++] = COLCACHE_MSG;
    return n;
}

static enum cmd_status read_caches(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct arena *a = st->batch;
    enum colcache_kind kinds[2];
    size_t nk = cache_kinds(st, kinds);
    size_t used = 0;
    for (size_t ci = 0; ci < st->nchunks; ci++)
        used += st->chunks[ci].use ? 1 : 0;
    size_t ncmd = 1 + used * nk;
    int *argc = arena_calloc(a, ncmd, sizeof(*argc));
    const char ***argv = arena_calloc(a, ncmd, sizeof(*argv));
    size_t **argvlen = arena_calloc(a, ncmd, sizeof(*argvlen));
    struct key *keys = arena_calloc(a, ncmd, sizeof(*keys));
    keys_mbx(&keys[0], st->nsid, st->sel->mbxid, KEYS_MBX);
    static const char *const probe[] = {"HGET", NULL, "highestmodseq"};
    static const size_t probe_len[] = {4, 0, 13};
    argc[0] = 3;
    argv[0] = arena_calloc(a, 3, sizeof(char *));
    argvlen[0] = arena_calloc(a, 3, sizeof(size_t));
    for (size_t k = 0; k < 3; k++) {
        argv[0][k] = k == 1 ? keys[0].s : probe[k];
        argvlen[0][k] = k == 1 ? keys[0].len : probe_len[k];
    }
    size_t c = 1;
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        if (!st->chunks[ci].use)
            continue;
        for (size_t k = 0; k < nk; k++, c++) {
            keys_mbx_cache(&keys[c], st->nsid, st->sel->mbxid, (char)kinds[k], st->chunks[ci].chunk);
            argc[c] = 2;
            argv[c] = arena_calloc(a, 2, sizeof(char *));
            argvlen[c] = arena_calloc(a, 2, sizeof(size_t));
            argv[c][0] = "GET";
            argvlen[c][0] = 3;
            argv[c][1] = keys[c].s;
            argvlen[c][1] = keys[c].len;
        }
    }
    return conn_redis_tx(ctx, got_caches, ncmd, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

/* A reply that may be a chunk value. */
static bool value_reply(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && r->len > 0 && r->len <= COLCACHE_MAX_VALUE;
}

/*
 * Copies the values of round 1's reply r (elements from 1) into st->values, one buffer reused
 * from batch to batch (the reply is borrowed; a fresh allocation per batch costs page faults).
 */
static void keep_values(struct fetch_state *st, const redisReply *r)
{
    size_t total = 0;
    for (size_t e = 1; e < r->elements; e++)
        total += value_reply(r->element[e]) ? r->element[e]->len : 0;
    if (total > st->values_cap) {
        free(st->values);
        st->values = malloc(total);
        if (st->values == NULL)
            abort();
        st->values_cap = total;
    }
}

/*
 * Opens a value of (kind, chunk) copied to *at in st->values, checked whole (every record reads
 * well, inside the chunk and below upto) and plausible next to the mailbox's highestmodseq and
 * the view (search_cache_plausible). False when it is absent, not such a value, or not to be
 * believed.
 */
static bool open_value(struct fetch_state *st, const redisReply *r, enum colcache_kind kind,
                       uint32_t chunk, size_t *at, struct colcache *c)
{
    if (!value_reply(r))
        return false;
    char *copy = st->values + *at;
    memcpy(copy, r->str, r->len);
    *at += r->len;
    if (!colcache_open(c, copy, r->len, kind, chunk))
        return false;
    size_t n = 0;
    while (n < COLCACHE_CHUNK && colcache_next(c, &st->recs[n])) {
        if (st->recs[n].uid < colcache_first(chunk) || st->recs[n].uid >= c->upto)
            c->bad = true;
        n++;
    }
    /* Records ascend inside the chunk (colcache_next checks): bytes after COLCACHE_CHUNK of
     * them are malformed. */
    if (c->bad || c->pos < c->len)
        return false;
    if (!search_cache_plausible(st->sel->view, st->sel->highestmodseq, true, st->cache_modseq,
                                chunk, c->modseq, c->upto, st->recs, n))
        return false;
    return colcache_open(c, copy, r->len, kind, chunk);
}

/* Messages of the chunk above a value's upto: what it cannot answer. */
static size_t above(const struct fetch_state *st, const struct fetch_chunk *c, uint32_t upto)
{
    size_t n = 0;
    for (size_t k = c->first; k < c->end; k++)
        n += st->msgs[k].uid >= upto ? 1 : 0;
    return n;
}

/* Answers the chunk's messages from its values; what they cannot answer is left to round 2. */
static void apply_chunk(struct fetch_state *st, struct fetch_chunk *c)
{
    for (size_t k = c->first; k < c->end; k++) {
        struct fetch_msg *m = &st->msgs[k];
        struct colcache_rec rec;
        if (c->have_f) {
            enum colcache_found found = colcache_find(&c->f, m->uid, &rec);
            if (found == COLCACHE_HIT) {
                m->miss_flags = false;
                m->flags = rec.len[0] > 0 ? rec.field[0] : NULL;
                m->flags_len = rec.len[0];
            } else if (found == COLCACHE_ABSENT) {
                m->miss_flags = m->miss_msg = false;
                m->exists = false;
            }
        }
        if (c->have_m && m->exists) {
            enum colcache_found found = colcache_find(&c->m, m->uid, &rec);
            if (found == COLCACHE_HIT &&
                fetch_parse_record(st->batch, rec.field[0], rec.len[0], m)) {
                m->miss_msg = false;
                m->rec = rec.field[0];
                m->rec_len = rec.len[0];
                m->parse = (const uint8_t *)rec.field[1];
                m->parse_len = rec.len[1];
            } else if (found == COLCACHE_ABSENT) {
                m->miss_flags = m->miss_msg = false;
                m->exists = false;
            }
        }
    }
}

/* Marks every message to be read the old way (round 1 skipped, or not one snapshot with it). */
static void all_missing(struct fetch_state *st)
{
    for (size_t k = 0; k < st->n; k++) {
        struct fetch_msg *m = &st->msgs[k];
        struct fetch_msg keep = {.seq = m->seq, .uid = m->uid, .chunk_ix = m->chunk_ix};
        *m = keep;
        m->exists = true;
        m->miss_msg = st->plan.need_msg;
        m->miss_flags = st->plan.need_flags || !st->plan.need_msg;
    }
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        c->have_f = c->have_m = false;
    }
}

static enum cmd_status got_caches(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY)
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    const redisReply *r = res->reply;
    enum colcache_kind kinds[2];
    size_t nk = cache_kinds(st, kinds);
    if (r->elements < 1 || !cmd_reply_u64(r->element[0], &st->cache_modseq))
        return read_old(ctx); /* no mailbox hash: the old way tells what is gone */
    st->cache_read = true;
    bool exact = st->cache_modseq == st->sel->highestmodseq;
    keep_values(st, r);
    st->recs = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*st->recs));
    size_t e = 1, at = 0;
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        if (!c->use)
            continue;
        for (size_t k = 0; k < nk; k++, e++) {
            if (e >= r->elements)
                break;
            struct colcache *v = kinds[k] == COLCACHE_FLAGS ? &c->f : &c->m;
            bool have = open_value(st, r->element[e], kinds[k], c->chunk, &at, v);
            /* Rebuilt when absent, or when much of the batch is new mail above its upto. */
            bool build = c->whole && exact &&
                         (!have || above(st, c, v->upto) >= FETCH_REBUILD_MIN);
            if (kinds[k] == COLCACHE_FLAGS) {
                c->have_f = have && !build;
                c->build_f = build;
            } else {
                c->have_m = have && !build;
                c->build_m = build;
            }
        }
        apply_chunk(st, c);
    }
    return read_old(ctx);
}

/* ------------------------------------------------------------------ round 2: the old way */

static enum cmd_status got_old(struct cmd_ctx *ctx);
static enum cmd_status got_exists(struct cmd_ctx *ctx);

/* Collects the messages round 2 reads. */
static void collect_misses(struct fetch_state *st)
{
    st->miss_m = arena_calloc(st->batch, st->n, sizeof(*st->miss_m));
    st->miss_f = arena_calloc(st->batch, st->n, sizeof(*st->miss_f));
    st->nmiss_m = st->nmiss_f = 0;
    for (size_t k = 0; k < st->n; k++) {
        if (st->msgs[k].miss_msg)
            st->miss_m[st->nmiss_m++] = k;
        if (st->msgs[k].miss_flags)
            st->miss_f[st->nmiss_f++] = k;
    }
}

/* Fills one command: verb key uid... for msgs[idx[0..n)]. */
static void uid_command(struct fetch_state *st, const char *verb, const struct key *key,
                        const size_t *idx, size_t n, int *argc, const char ***argv,
                        size_t **argvlen)
{
    struct arena *a = st->batch;
    *argc = (int)n + 2;
    *argv = arena_calloc(a, n + 2, sizeof(char *));
    *argvlen = arena_calloc(a, n + 2, sizeof(size_t));
    (*argv)[0] = verb;
    (*argvlen)[0] = strlen(verb);
    (*argv)[1] = key->s;
    (*argvlen)[1] = key->len;
    for (size_t k = 0; k < n; k++)
        (*argv)[2 + k] = uid_text(a, st->msgs[idx[k]].uid, &(*argvlen)[2 + k]);
}

static enum cmd_status read_old(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct arena *a = st->batch;
    collect_misses(st);
    bool read_flags = st->plan.need_flags && st->nmiss_f > 0;
    if (st->nmiss_m == 0 && st->nmiss_f == 0)
        return columns_finished(ctx);
    size_t max = 3 + st->nchunks;
    int *argc = arena_calloc(a, max, sizeof(*argc));
    const char ***argv = arena_calloc(a, max, sizeof(*argv));
    size_t **argvlen = arena_calloc(a, max, sizeof(*argvlen));
    struct key *keys = arena_calloc(a, 3, sizeof(*keys));
    size_t ncmd = 0;
    keys_mbx(&keys[0], st->nsid, st->sel->mbxid, KEYS_MBX);
    static const char *const probe[] = {"HGET", NULL, "highestmodseq"};
    argc[0] = 3;
    argv[0] = arena_calloc(a, 3, sizeof(char *));
    argvlen[0] = arena_calloc(a, 3, sizeof(size_t));
    argv[0][0] = probe[0];
    argvlen[0][0] = 4;
    argv[0][1] = keys[0].s;
    argvlen[0][1] = keys[0].len;
    argv[0][2] = probe[2];
    argvlen[0][2] = strlen(probe[2]);
    ncmd++;
    if (st->nmiss_m > 0) {
        keys_mbx(&keys[ncmd], st->nsid, st->sel->mbxid, KEYS_MBX_MSG);
        uid_command(st, "HMGET", &keys[ncmd], st->miss_m, st->nmiss_m, &argc[ncmd], &argv[ncmd],
                    &argvlen[ncmd]);
        ncmd++;
    }
    if (read_flags) {
        keys_mbx(&keys[ncmd], st->nsid, st->sel->mbxid, KEYS_MBX_FLAGS);
        uid_command(st, "HMGET", &keys[ncmd], st->miss_f, st->nmiss_f, &argc[ncmd], &argv[ncmd],
                    &argvlen[ncmd]);
        ncmd++;
    }
    struct key uids;
    keys_mbx(&uids, st->nsid, st->sel->mbxid, KEYS_MBX_UIDS);
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        const struct fetch_chunk *c = &st->chunks[ci];
        if (!c->build_f && !c->build_m)
            continue;
        /* The guard of the build: how many UIDs the mailbox has where the chunk will answer. */
        argc[ncmd] = 4;
        argv[ncmd] = arena_calloc(a, 4, sizeof(char *));
        argvlen[ncmd] = arena_calloc(a, 4, sizeof(size_t));
        argv[ncmd][0] = "ZCOUNT";
        argvlen[ncmd][0] = 6;
        argv[ncmd][1] = uids.s;
        argvlen[ncmd][1] = uids.len;
        argv[ncmd][2] = uid_text(a, colcache_first(c->chunk), &argvlen[ncmd][2]);
        argv[ncmd][3] = uid_text(a, c->upto - 1, &argvlen[ncmd][3]);
        ncmd++;
    }
    return conn_redis_tx(ctx, got_old, ncmd, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

/* Chunks round 2 reads a ZCOUNT for (one per chunk being built, after the HMGETs). */
static size_t guarded_chunks(const struct fetch_state *st)
{
    size_t n = 0;
    for (size_t ci = 0; ci < st->nchunks; ci++)
        n += st->chunks[ci].build_f || st->chunks[ci].build_m ? 1 : 0;
    return n;
}

/*
 * True when a chunk about to be built holds as many records as the mailbox has UIDs where it
 * answers (the guard's ZCOUNT, read with the snapshot): a view can be exact by modseq and still
 * lack a message (colcache.h), and a chunk built from it would call that message absent.
 */
static bool guard_holds(struct cmd_ctx *ctx, const struct fetch_chunk *c, char kind, size_t records)
{
    if (c->guard_ok && c->guard == records)
        return true;
    log_write(LOG_DEBUG, "fetch.cache_guard", "conn=%llu chunk=%" PRIu32 " kind=%c uids=%" PRIu64
              " records=%zu", (unsigned long long)conn_id(ctx->conn), c->chunk, kind, c->guard,
              records);
    return false;
}

/*
 * Builds and stores the 'f' values, and opens the 'm' builders, of the chunks read whole whose
 * guard holds.
 */
static void start_builds(struct cmd_ctx *ctx, uint64_t modseq)
{
    struct fetch_state *st = ctx->state;
    struct frontend *fe = conn_frontend(ctx->conn);
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        size_t exist = 0, recs = 0;
        for (size_t k = c->first; k < c->end; k++) {
            exist += st->msgs[k].exists ? 1 : 0;
            recs += st->msgs[k].exists && st->msgs[k].rec != NULL ? 1 : 0;
        }
        if (c->build_f && guard_holds(ctx, c, COLCACHE_FLAGS, exist)) {
            struct colcache_builder b;
            colcache_build_begin(&b, COLCACHE_FLAGS, c->chunk, modseq, c->upto);
            for (size_t k = c->first; k < c->end; k++) {
                const struct fetch_msg *m = &st->msgs[k];
                if (m->exists)
                    colcache_build_add(&b, m->uid, m->flags != NULL ? m->flags : "",
                                       m->flags != NULL ? m->flags_len : 0, NULL, 0);
            }
            colcache_put_shard(fe, conn_id(ctx->conn), st->nsid, st->sel->mbxid, &b);
            colcache_builder_free(&b);
        }
        if (c->build_m && guard_holds(ctx, c, COLCACHE_MSG, recs)) {
            colcache_build_begin(&c->mb, COLCACHE_MSG, c->chunk, modseq, c->upto);
            if (c->mb.failed) {
                colcache_builder_free(&c->mb);
                continue;
            }
            c->building = true;
            c->mb_want = recs;
            c->mb_added = 0;
            for (size_t k = c->first; k < c->end; k++) {
                struct fetch_msg *m = &st->msgs[k];
                m->build = m->exists && m->rec != NULL;
            }
            st->building = true;
        }
    }
}

static enum cmd_status got_old(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    bool read_flags = st->plan.need_flags && st->nmiss_f > 0;
    size_t nread = 1 + (st->nmiss_m > 0 ? 1 : 0) + (read_flags ? 1 : 0);
    size_t ncmd = nread + guarded_chunks(st);
    if (res->status != STORE_OK || !cmd_reply_is_array(res, ncmd))
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    const redisReply *recs = st->nmiss_m > 0 ? res->reply->element[1] : NULL;
    const redisReply *flags = read_flags ? res->reply->element[nread - 1] : NULL;
    for (size_t ci = 0, e = nread; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        if (c->build_f || c->build_m)
            c->guard_ok = cmd_reply_u64(res->reply->element[e++], &c->guard);
    }
    if ((recs != NULL && (recs->type != REDIS_REPLY_ARRAY || recs->elements != st->nmiss_m)) ||
        (flags != NULL && (flags->type != REDIS_REPLY_ARRAY || flags->elements != st->nmiss_f)))
        return cmd_store_failed(ctx, &(struct store_result){STORE_OK, NULL, NULL}, fetch_name(ctx));
    uint64_t highest = 0;
    bool known = cmd_reply_u64(res->reply->element[0], &highest);
    if (st->cache_read && (!known || highest != st->cache_modseq)) {
        /* Something changed between the rounds: read the batch again, the old way alone. */
        st->cache_read = false;
        all_missing(st);
        for (size_t ci = 0; ci < st->nchunks; ci++)
            st->chunks[ci].build_f = st->chunks[ci].build_m = false;
        return read_old(ctx);
    }
    bool exact = known && highest == st->sel->highestmodseq;
    for (size_t j = 0; recs != NULL && j < st->nmiss_m; j++) {
        struct fetch_msg *m = &st->msgs[st->miss_m[j]];
        const redisReply *e = recs->element[j];
        m->exists = e->type == REDIS_REPLY_STRING &&
                    fetch_parse_record(st->batch, e->str, e->len, m);
        if (m->exists) {
            m->rec = arena_strndup(st->batch, e->str, e->len);
            m->rec_len = e->len;
        } else if (e->type != REDIS_REPLY_NIL) {
            log_write(LOG_ERROR, "fetch.bad_record", "conn=%llu uid=%" PRIu32,
                      (unsigned long long)conn_id(ctx->conn), m->uid);
        }
    }
    for (size_t j = 0; j < st->nmiss_f; j++) {
        struct fetch_msg *m = &st->msgs[st->miss_f[j]];
        if (flags != NULL && flags->element[j]->type == REDIS_REPLY_STRING) {
            const redisReply *f = flags->element[j];
            m->flags = arena_strndup(st->batch, f->str, f->len);
            m->flags_len = f->len;
        }
        if (!st->plan.need_msg)
            m->exists = exact;
    }
    if (exact && st->caches)
        start_builds(ctx, highest);
    if (st->plan.need_msg || exact || st->nmiss_f == 0)
        return columns_finished(ctx);
    struct key key;
    keys_mbx(&key, st->nsid, st->sel->mbxid, KEYS_MBX_UIDS);
    int argc;
    const char **argv;
    size_t *argvlen;
    uid_command(st, "ZMSCORE", &key, st->miss_f, st->nmiss_f, &argc, &argv, &argvlen);
    return conn_redis(ctx, got_exists, argc, argv, argvlen);
}

static enum cmd_status got_exists(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, st->nmiss_f))
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    for (size_t j = 0; j < st->nmiss_f; j++) {
        struct fetch_msg *m = &st->msgs[st->miss_f[j]];
        m->exists = res->reply->element[j]->type != REDIS_REPLY_NIL;
    }
    return columns_finished(ctx);
}

enum cmd_status fetch_read_columns_of_batch(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    plan_chunks(st);
    for (size_t k = 0; k < st->n; k++) { /* fresh from next_batch: all_missing, cheaper */
        struct fetch_msg *m = &st->msgs[k];
        m->exists = true;
        m->miss_msg = st->plan.need_msg;
        m->miss_flags = st->plan.need_flags || !st->plan.need_msg;
    }
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        if (st->chunks[ci].use)
            return read_caches(ctx);
    }
    return read_old(ctx);
}

/* ------------------------------------------------------------------ building 'm' */

/* Gives up c's 'm' build: none of its messages reads a parse for it any more. */
static void cancel_build(struct fetch_state *st, struct fetch_chunk *c)
{
    for (size_t k = c->first; k < c->end; k++)
        st->msgs[k].build = false;
    colcache_builder_free(&c->mb);
    c->building = false;
    st->building = false;
    for (size_t ci = 0; ci < st->nchunks; ci++)
        st->building |= st->chunks[ci].building;
}

void fetch_chunk_add_parse(struct cmd_ctx *ctx, size_t k, const uint8_t *parse, size_t len)
{
    struct fetch_state *st = ctx->state;
    struct fetch_msg *m = &st->msgs[k];
    struct fetch_chunk *c = &st->chunks[m->chunk_ix];
    bool was = m->build;
    m->build = false;
    if (!was || !c->building)
        return;
    if (parse != NULL) {
        colcache_build_add(&c->mb, m->uid, m->rec, m->rec_len, (const char *)parse, len);
        c->mb_added++;
    }
    if (parse == NULL || c->mb.failed)
        cancel_build(st, c); /* too large, or a parse missing: no put, no more parse reads */
}

void fetch_builds_check(struct cmd_ctx *ctx, bool known, uint64_t highest)
{
    struct fetch_state *st = ctx->state;
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        if (!c->building || (known && highest == c->mb.modseq))
            continue;
        log_write(LOG_DEBUG, "fetch.cache_build_moved", "conn=%llu chunk=%" PRIu32,
                  (unsigned long long)conn_id(ctx->conn), c->chunk);
        cancel_build(st, c);
    }
}

void fetch_chunks_finish(struct cmd_ctx *ctx, size_t upto)
{
    struct fetch_state *st = ctx->state;
    bool any = false;
    for (size_t ci = 0; ci < st->nchunks; ci++) {
        struct fetch_chunk *c = &st->chunks[ci];
        if (!c->building)
            continue;
        if (c->end <= upto) {
            if (c->mb_added == c->mb_want)
                colcache_put_shard(conn_frontend(ctx->conn), conn_id(ctx->conn), st->nsid,
                                   st->sel->mbxid, &c->mb);
            colcache_builder_free(&c->mb);
            c->building = false;
        } else {
            any = true;
        }
    }
    st->building = any;
}
