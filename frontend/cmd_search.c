/*
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4, §6.4.8), with ESEARCH answers (RFC 4731 RETURN) and
 * RFC 8474 EMAILID/THREADID. The cost model is DESIGN.md rule 5: the answer is the only thing that
 * may grow with the mailbox.
 *
 *  1. Index phase (this file). The mailbox's current /runs (O(runs): which UIDs still exist) is
 *     read within the view's UID range in slices of IDX_BATCH members (ZRANGEBYSCORE ... LIMIT).
 *     When the keys need \Seen or \Deleted (SEEN, UNSEEN, DELETED, NEW, ...) they come from one of
 *     two places, decided per query:
 *       - the 'f' column-cache chunks (colcache.h) of the view, IDX_CHUNKS GETs per round: 100
 *         GETs of ~10 KB for 100,000 messages cost Redis far less than a ZRANGEBYSCORE over a
 *         33,000-member skiplist, and hiredis one allocation per chunk instead of per member.
 *         Chunks found unusable (absent, damaged, implausible: search_cache_plausible, or not
 *         covering the view: new messages) have their view UIDs' /flags read instead (HMGET,
 *         IDX_HMGET_CHUNKS per round, which also rebuilds them when the view is exact and the
 *         chunk's guard, ZCOUNT uids read with it, counts as many UIDs as the view has there) — unless they are many and cannot be rebuilt,
 *         where the indexes below are cheaper;
 *       - /unseen and /deleted (ZRANGEBYSCORE, as /runs): caches off (--cache-ttl 0), a view too
 *         sparse for chunks to pay, or too many chunks missing.
 *     The key tree is then evaluated over whole UID sets (search_eval_sets): flag, sequence-set,
 *     UID-set and \Recent keys need nothing more, so SEARCH UNSEEN reads nothing per message. The
 *     tree's bounds leave the candidates: messages that may match but are not certain to.
 *  2. Per-message phase (search_batch.c): the candidates in batches, from the column caches
 *     where they are present, else /msg + /flags (HMGET) and the stored parse (HGET), then raw
 *     bytes (search_raw.c) for HEADER, BODY and TEXT.
 *
 * Messages of the view that no longer exist (expunged by another session) never match: the
 * universe is the view intersected with the current runs, and a candidate whose record is gone
 * (or that a chunk says is absent) is dropped. Deliberately not here: SEARCHRES ($, SAVE),
 * CONDSTORE MODSEQ, fuzzy search.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/log.h"
#include "frontend/msgset.h"
#include "frontend/reply.h"
#include "frontend/search_private.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define IDX_BATCH 32768      /* index members per slice (replies of ~300 KB) */
#define IDX_CHUNKS 32        /* 'f' chunk GETs per index round (~10 KiB each) */
#define IDX_HMGET_CHUNKS 8   /* chunks whose /flags one fallback round reads */
#define MIN_CHUNK_FILL 32    /* chunks pay only when they hold this many view messages on average */

static void search_cleanup(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    if (st == NULL)
        return;
    search_raw_free(st);
    search_scratch_free(&st->scratch);
    arena_free(&st->batch);
}

static const struct view *cur_view(struct cmd_ctx *ctx)
{
    return conn_selected(ctx->conn)->view;
}

enum cmd_status search_bad_data(struct cmd_ctx *ctx, const char *what)
{
    log_write(LOG_ERROR, "search.bad_data", "conn=%llu what=%s",
              (unsigned long long)conn_id(ctx->conn), what);
    reply_tagged(ctx, "NO", "SERVERBUG", "SEARCH failed: inconsistent mailbox data");
    return CMD_DONE;
}

bool search_tx_ok(struct cmd_ctx *ctx, size_t n, enum cmd_status *out)
{
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK) {
        *out = cmd_store_failed(ctx, res, "SEARCH");
        return false;
    }
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != n) {
        struct store_result un = {STORE_UNAVAILABLE, NULL, "read transaction aborted"};
        *out = cmd_store_failed(ctx, &un, "SEARCH");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        if (r->element[i]->type == REDIS_REPLY_ERROR) {
            struct store_result er = {STORE_ERROR, NULL, r->element[i]->str};
            *out = cmd_store_failed(ctx, &er, "SEARCH");
            return false;
        }
    }
    return true;
}

static bool parse_u32(const char *s, size_t len, uint32_t *v_r)
{
    uint64_t v = 0;
    if (len > 10 || !search_parse_u64(s, len, &v) || v == 0 || v > UINT32_MAX)
        return false;
    *v_r = (uint32_t)v;
    return true;
}

/* ---- answer ---- */

/* UID ranges (all inside the view) to normalised sequence-number ranges. */
static struct seqset to_seqs(struct arena *a, const struct view *v, const struct seqset *uids)
{
    struct seqset out = {arena_alloc(a, (uids->count + 1) * sizeof(*out.ranges)), 0};
    for (size_t i = 0; i < uids->count; i++) {
        uint32_t s = view_seq(v, uids->ranges[i].first);
        if (s == 0)
            continue; /* cannot happen: results lie within the view */
        uint32_t e = s + (uids->ranges[i].last - uids->ranges[i].first);
        if (out.count > 0 && out.ranges[out.count - 1].last + 1 >= s) {
            out.ranges[out.count - 1].last = e; /* UIDs apart, sequence numbers adjacent */
            continue;
        }
        out.ranges[out.count].first = s;
        out.ranges[out.count].last = e;
        out.count++;
    }
    return out;
}

/* " n1 n2 ..." for every number of set, formatted by hand straight into the output buffer in
 * slices of up to 64 KiB (answers of 100,000 numbers are common; printf per number costs more
 * than the search). */
static void add_numbers(struct evbuffer *b, const struct seqset *set)
{
    enum { SLICE = 65536, NUM_MAX = 11 };
    struct evbuffer_iovec v;
    size_t used = 0;
    bool open = false;
    for (size_t i = 0; i < set->count; i++) {
        for (uint64_t n = set->ranges[i].first; n <= set->ranges[i].last; n++) {
            if (!open || used > v.iov_len - NUM_MAX) {
                if (open) {
                    v.iov_len = used;
                    evbuffer_commit_space(b, &v, 1);
                }
                if (evbuffer_reserve_space(b, SLICE, &v, 1) < 1)
                    return;
                open = true;
                used = 0;
            }
            char *out = (char *)v.iov_base + used;
            out[0] = ' ';
            used += 1 + search_fmt_u64(out + 1, n);
        }
    }
    if (open) {
        v.iov_len = used;
        evbuffer_commit_space(b, &v, 1);
    }
}

enum cmd_status search_finish(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    struct seqset matched = search_set_done(&st->matched), result;
    search_set_or(ctx->arena, &st->must, &matched, &result);
    struct seqset nums = ctx->uid ? result : to_seqs(ctx->arena, cur_view(ctx), &result);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return CMD_ERR;
    if (!st->q.esearch) {
        evbuffer_add(b, "* SEARCH", 8);
        add_numbers(b, &nums);
    } else {
        evbuffer_add_printf(b, "* ESEARCH (TAG ");
        reply_string(b, ctx->tag, strlen(ctx->tag));
        evbuffer_add(b, ")", 1);
        if (ctx->uid)
            evbuffer_add(b, " UID", 4);
        if (nums.count > 0) {
            if (st->q.ret & SEARCH_RET_MIN)
                evbuffer_add_printf(b, " MIN %" PRIu32, nums.ranges[0].first);
            if (st->q.ret & SEARCH_RET_MAX)
                evbuffer_add_printf(b, " MAX %" PRIu32, nums.ranges[nums.count - 1].last);
            if (st->q.ret & SEARCH_RET_ALL)
                evbuffer_add_printf(b, " ALL %s", seqset_format_arena(ctx->arena, &nums));
        }
        if (st->q.ret & SEARCH_RET_COUNT)
            evbuffer_add_printf(b, " COUNT %" PRIu64, seqset_count(&nums));
    }
    reply_line(ctx->conn, b);
    evbuffer_free(b);
    reply_tagged(ctx, "OK", NULL, "%sSEARCH completed", ctx->uid ? "UID " : "");
    return CMD_DONE;
}

/* ---- index phase ---- */

static enum cmd_status idx_round(struct cmd_ctx *ctx);

static enum cmd_status plan(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    const struct selected *sel = conn_selected(ctx->conn);
    struct search_set_builder vb;
    search_set_builder_init(&vb, ctx->arena);
    for (size_t i = 0; i < view_run_count(sel->view); i++) {
        uint32_t f = 0, l = 0;
        view_run(sel->view, i, &f, &l);
        f = f > st->lo ? f : st->lo;
        l = l < st->hi ? l : st->hi;
        if (f <= l)
            (void)search_set_add(&vb, f, l);
    }
    struct seqset vset = search_set_done(&vb);
    struct seqset runs = search_set_done(&st->idx[IDX_RUNS].b);
    search_set_and(ctx->arena, &vset, &runs, &st->universe);
    struct seqset unseen, deleted;
    if (st->fsrc == FLAG_SRC_CHUNKS) {
        struct seqset x = search_set_done(&st->cu), y = search_set_done(&st->hu);
        search_set_or(ctx->arena, &x, &y, &unseen);
        x = search_set_done(&st->cd);
        y = search_set_done(&st->hd);
        search_set_or(ctx->arena, &x, &y, &deleted);
    } else {
        unseen = search_set_done(&st->idx[IDX_UNSEEN].b);
        deleted = search_set_done(&st->idx[IDX_DELETED].b);
    }
    struct search_index ix = {&st->universe, &unseen, &deleted, sel->recent_first};
    struct seqset may;
    search_eval_sets(ctx->arena, &st->q, &ix, &st->must, &may);
    if (search_set_same(&may, &st->must))
        st->cand = (struct seqset){NULL, 0}; /* decided by the indexes alone */
    else
        search_set_minus(ctx->arena, &may, &st->must, &st->cand);
    search_set_builder_init(&st->matched, ctx->arena);
    st->n_raw = search_raw_keys(&st->q, NULL, 0);
    st->raw_keys = arena_calloc(ctx->arena, st->n_raw + 1, sizeof(const struct search_key *));
    (void)search_raw_keys(&st->q, st->raw_keys, st->n_raw);
    return search_batch_next(ctx);
}

static bool add_member(struct idx_read *ir, int which, const redisReply *e)
{
    if (e->type != REDIS_REPLY_STRING)
        return false;
    uint32_t first = 0, last = 0;
    if (which == IDX_RUNS) {
        const char *colon = memchr(e->str, ':', e->len);
        if (colon == NULL || !parse_u32(e->str, (size_t)(colon - e->str), &first) ||
            !parse_u32(colon + 1, e->len - (size_t)(colon - e->str) - 1, &last) || first > last)
            return false;
    } else {
        if (!parse_u32(e->str, e->len, &first))
            return false;
        last = first;
    }
    /* Scores ascend, so members do too; a run may overlap what a sorted read already holds. */
    if (search_set_add(&ir->b, first, last) != 0)
        return false;
    ir->next = first == UINT32_MAX ? UINT32_MAX : first + 1;
    return true;
}

static void add_uids(struct search_set_builder *b, const uint32_t *uids, size_t n)
{
    for (size_t i = 0; i < n; i++)
        (void)search_set_add(b, uids[i], uids[i]);
}

/*
 * True when the round's /flags reads may rebuild their chunks, so each gets its guard: the
 * chunk GETs saw the view's highestmodseq (it never comes back once it moved).
 */
static bool guarded(const struct search_state *st)
{
    return st->fl_hmget && st->first_exact;
}

/*
 * The GETs of 'f' chunks came back (with highestmodseq hms, known when it was a number): their
 * \Seen / \Deleted members, or the chunk is missing (absent, damaged, not plausible, or not
 * covering the view).
 */
static void got_chunks(struct cmd_ctx *ctx, const redisReply *const *e, bool known, uint64_t hms)
{
    struct search_state *st = ctx->state;
    bool exact = known && hms == st->view_modseq;
    const struct view *v = cur_view(ctx);
    if (!st->first_seen) {
        st->first_seen = true;
        st->first_exact = exact;
    }
    uint32_t *unseen = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*unseen));
    uint32_t *deleted = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*deleted));
    struct search_chunk sc = {.recs = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*sc.recs))};
    for (size_t i = 0; i < st->n_fl_group; i++) {
        const struct search_vpart *vp = &st->fl_group[i];
        size_t nu = 0, nd = 0;
        if (e[i]->type == REDIS_REPLY_STRING &&
            search_chunk_load(&sc, e[i]->str, e[i]->len, COLCACHE_FLAGS, vp->chunk) &&
            search_cache_plausible(v, st->view_modseq, known, hms, sc.chunk, sc.modseq, sc.upto,
                                   sc.recs, sc.n) &&
            search_chunk_flag_members(&sc, vp, unseen, &nu, deleted, &nd)) {
            add_uids(&st->cu, unseen, nu);
            add_uids(&st->cd, deleted, nd);
            continue;
        }
        if (st->n_missing == st->cap_missing) {
            size_t cap = st->cap_missing == 0 ? 16 : st->cap_missing * 2;
            uint32_t *m = arena_alloc(ctx->arena, cap * sizeof(*m));
            if (st->n_missing > 0)
                memcpy(m, st->missing, st->n_missing * sizeof(*m));
            st->missing = m;
            st->cap_missing = cap;
        }
        st->missing[st->n_missing++] = vp->chunk;
        st->missing_msgs += vp->count;
    }
}

/*
 * True when the guard read with a rebuild's snapshot (ZCOUNT uids over the chunk up to its
 * highest view UID) counts as many UIDs as the chunk will hold records: a view can be exact by
 * modseq and still lack a message (colcache.h), and a chunk built from it would call it absent.
 */
static bool guard_holds(struct cmd_ctx *ctx, const struct search_vpart *vp, const redisReply *g)
{
    if (g != NULL && g->type == REDIS_REPLY_INTEGER && g->integer == (long long)vp->count)
        return true;
    log_write(LOG_DEBUG, "search.cache_guard", "conn=%llu chunk=%u kind=f uids=%lld records=%u",
              (unsigned long long)conn_id(ctx->conn), (unsigned)vp->chunk,
              g != NULL && g->type == REDIS_REPLY_INTEGER ? g->integer : -1LL, (unsigned)vp->count);
    return false;
}

/*
 * HMGET /flags of whole chunks came back: their members, and the chunks rebuilt when exact and
 * their guard (guards[i], NULL when none was read) holds.
 */
static int got_flags(struct cmd_ctx *ctx, const redisReply *const *e,
                     const redisReply *const *guards, bool exact, uint64_t hms)
{
    struct search_state *st = ctx->state;
    const struct view *v = cur_view(ctx);
    for (size_t i = 0; i < st->n_fl_group; i++) {
        const struct search_vpart *vp = &st->fl_group[i];
        if (e[i]->type != REDIS_REPLY_ARRAY || e[i]->elements != vp->count)
            return -1;
        struct colcache_builder b = {0};
        bool build = exact && guard_holds(ctx, vp, guards != NULL ? guards[i] : NULL);
        if (build)
            colcache_build_begin(&b, COLCACHE_FLAGS, vp->chunk, hms, vp->max_uid + 1);
        for (uint32_t k = 0; k < vp->count; k++) {
            uint32_t uid = view_uid(v, vp->first_seq + k);
            const redisReply *f = e[i]->element[k];
            if (f->type != REDIS_REPLY_STRING && f->type != REDIS_REPLY_NIL) {
                colcache_builder_free(&b);
                return -1;
            }
            const char *s = f->type == REDIS_REPLY_STRING ? f->str : "";
            size_t len = f->type == REDIS_REPLY_STRING ? f->len : 0;
            bool seen = false, del = false;
            search_flags_seen_deleted(s, len, &seen, &del);
            if (!seen)
                (void)search_set_add(&st->hu, uid, uid);
            if (del)
                (void)search_set_add(&st->hd, uid, uid);
            if (build)
                colcache_build_add(&b, uid, s, len, NULL, 0);
        }
        if (build)
            colcache_put_shard(conn_frontend(ctx->conn), conn_id(ctx->conn), conn_nsid(ctx->conn),
                               conn_selected(ctx->conn)->mbxid, &b);
        colcache_builder_free(&b);
    }
    return 0;
}

static enum cmd_status idx_got(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    size_t n = 0;
    for (int i = 0; i < IDX_COUNT; i++)
        n += st->idx[i].want && !st->idx[i].done;
    size_t n_idx = n;
    if (st->n_fl_group > 0)
        n += 1 + st->n_fl_group + (guarded(st) ? st->n_fl_group : 0);
    enum cmd_status out;
    if (!search_tx_ok(ctx, n, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t slot = 0;
    for (int i = 0; i < IDX_COUNT; i++) {
        struct idx_read *ir = &st->idx[i];
        if (!ir->want || ir->done)
            continue;
        const redisReply *e = r->element[slot++];
        if (e->type != REDIS_REPLY_ARRAY)
            return search_bad_data(ctx, "index");
        for (size_t j = 0; j < e->elements; j++) {
            if (!add_member(ir, i, e->element[j]))
                return search_bad_data(ctx, "index member");
        }
        if (e->elements < IDX_BATCH || ir->next > st->hi || ir->next == UINT32_MAX)
            ir->done = true;
    }
    if (st->n_fl_group > 0 && st->fsrc == FLAG_SRC_CHUNKS) {
        const redisReply *h = r->element[n_idx];
        uint64_t hms = 0;
        bool known = h->type == REDIS_REPLY_STRING && search_parse_u64(h->str, h->len, &hms);
        const redisReply *const *e = (const redisReply *const *)r->element + n_idx + 1;
        const redisReply *const *g = guarded(st) ? e + st->n_fl_group : NULL;
        if (!st->fl_hmget)
            got_chunks(ctx, e, known, hms);
        else if (got_flags(ctx, e, g, known && hms == st->view_modseq, hms) != 0)
            return search_bad_data(ctx, "hmget flags");
    }
    return idx_round(ctx);
}

void search_tx_add(struct arena *a, int *argc, const char *const **argv, const size_t **argvlen,
                   size_t *n, const char **av, size_t ac)
{
    size_t *al = arena_alloc(a, ac * sizeof(*al));
    for (size_t i = 0; i < ac; i++)
        al[i] = strlen(av[i]);
    argc[*n] = (int)ac;
    argv[*n] = av;
    argvlen[*n] = al;
    (*n)++;
}

void search_tx_hget(struct arena *a, int *argc, const char *const **argv, const size_t **argvlen,
                    size_t *n, const struct key *k, const char *field)
{
    const char **av = arena_alloc(a, 3 * sizeof(*av));
    av[0] = "HGET";
    av[1] = arena_strndup(a, k->s, k->len);
    av[2] = field;
    search_tx_add(a, argc, argv, argvlen, n, av, 3);
}

/* The next chunks of the round: 'f' GETs, else the /flags of chunks found missing. */
static void next_group(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    const struct view *v = cur_view(ctx);
    st->n_fl_group = 0;
    if (st->fsrc != FLAG_SRC_CHUNKS)
        return;
    st->fl_group = arena_alloc(st->batch, IDX_CHUNKS * sizeof(*st->fl_group));
    if (!st->fl_gets_done) {
        st->fl_hmget = false;
        uint32_t chunk;
        while (st->n_fl_group < IDX_CHUNKS && search_cache_next_chunk(v, st->fl_cursor, &chunk) &&
               chunk <= colcache_chunk(st->hi)) {
            search_cache_vpart(v, chunk, &st->fl_group[st->n_fl_group++]);
            st->fl_cursor = (uint64_t)chunk + 1;
        }
        if (st->n_fl_group < IDX_CHUNKS)
            st->fl_gets_done = true;
        if (st->n_fl_group > 0)
            return;
    }
    if (st->n_missing > 0 && st->missing_next == 0 && !st->first_exact &&
        st->missing_msgs * 8 > st->span_msgs) {
        /* Many chunks missing and none can be rebuilt now: the indexes are cheaper. */
        st->fsrc = FLAG_SRC_INDEX;
        st->idx[IDX_UNSEEN].want = st->q.uses_seen;
        st->idx[IDX_DELETED].want = st->q.uses_deleted;
        return;
    }
    st->fl_hmget = true;
    while (st->n_fl_group < IDX_HMGET_CHUNKS && st->missing_next < st->n_missing)
        search_cache_vpart(v, st->missing[st->missing_next++], &st->fl_group[st->n_fl_group++]);
}

static enum cmd_status idx_round(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    arena_reset(st->batch);
    const char *nsid = conn_nsid(ctx->conn);
    const char *mbxid = conn_selected(ctx->conn)->mbxid;
    const struct view *v = cur_view(ctx);
    static const enum keys_mbx_part parts[IDX_COUNT] = {KEYS_MBX_RUNS, KEYS_MBX_UNSEEN,
                                                        KEYS_MBX_DELETED};
    next_group(ctx);
    size_t max = IDX_COUNT + 1 + 2 * st->n_fl_group;
    int *argc = arena_alloc(st->batch, max * sizeof(*argc));
    const char *const **argv = arena_alloc(st->batch, max * sizeof(*argv));
    const size_t **argvlen = arena_alloc(st->batch, max * sizeof(*argvlen));
    size_t n = 0;
    struct key k;
    for (int i = 0; i < IDX_COUNT; i++) {
        struct idx_read *ir = &st->idx[i];
        if (!ir->want || ir->done)
            continue;
        keys_mbx(&k, nsid, mbxid, parts[i]);
        const char **av = arena_alloc(st->batch, 7 * sizeof(*av));
        av[0] = "ZRANGEBYSCORE";
        av[1] = arena_strndup(st->batch, k.s, k.len);
        av[2] = arena_printf(st->batch, "%" PRIu32, ir->next);
        av[3] = arena_printf(st->batch, "%" PRIu32, st->hi);
        av[4] = "LIMIT";
        av[5] = "0";
        av[6] = arena_printf(st->batch, "%d", IDX_BATCH);
        search_tx_add(st->batch, argc, argv, argvlen, &n, av, 7);
    }
    if (st->n_fl_group > 0) {
        keys_mbx(&k, nsid, mbxid, KEYS_MBX);
        search_tx_hget(st->batch, argc, argv, argvlen, &n, &k, "highestmodseq");
    }
    for (size_t g = 0; g < st->n_fl_group; g++) {
        const struct search_vpart *vp = &st->fl_group[g];
        if (!st->fl_hmget) {
            keys_mbx_cache(&k, nsid, mbxid, 'f', vp->chunk);
            const char **av = arena_alloc(st->batch, 2 * sizeof(*av));
            av[0] = "GET";
            av[1] = arena_strndup(st->batch, k.s, k.len);
            search_tx_add(st->batch, argc, argv, argvlen, &n, av, 2);
            continue;
        }
        keys_mbx(&k, nsid, mbxid, KEYS_MBX_FLAGS);
        const char **av = arena_alloc(st->batch, (vp->count + 2) * sizeof(*av));
        size_t *al = arena_alloc(st->batch, (vp->count + 2) * sizeof(*al));
        char *digits = arena_alloc(st->batch, (size_t)vp->count * 10 + 1);
        av[0] = "HMGET";
        al[0] = 5;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        size_t used = 0;
        for (uint32_t i = 0; i < vp->count; i++) {
            av[2 + i] = digits + used;
            al[2 + i] = search_fmt_u64(digits + used, view_uid(v, vp->first_seq + i));
            used += al[2 + i];
        }
        argc[n] = (int)(vp->count + 2);
        argv[n] = av;
        argvlen[n] = al;
        n++;
    }
    for (size_t g = 0; guarded(st) && g < st->n_fl_group; g++) {
        const struct search_vpart *vp = &st->fl_group[g];
        keys_mbx(&k, nsid, mbxid, KEYS_MBX_UIDS);
        const char **av = arena_alloc(st->batch, 4 * sizeof(*av));
        av[0] = "ZCOUNT";
        av[1] = arena_strndup(st->batch, k.s, k.len);
        av[2] = arena_printf(st->batch, "%" PRIu32, colcache_first(vp->chunk));
        av[3] = arena_printf(st->batch, "%" PRIu32, vp->max_uid);
        search_tx_add(st->batch, argc, argv, argvlen, &n, av, 4);
    }
    if (n == 0)
        return plan(ctx);
    return conn_redis_tx(ctx, idx_got, n, argc, argv, argvlen);
}

/* Resolves every SEQSET / UIDSET key against the view into UIDs (key->set). */
static int resolve_sets(struct cmd_ctx *ctx, struct search_key *k, const char **error_r)
{
    for (size_t i = 0; i < k->n_kids; i++) {
        if (resolve_sets(ctx, k->kids[i], error_r) != 0)
            return -1;
    }
    if (k->op != SEARCH_SEQSET && k->op != SEARCH_UIDSET)
        return 0;
    const struct view *v = cur_view(ctx);
    struct seqset seqs;
    if (msgset_resolve(ctx->arena, v, k->str, k->len, k->op == SEARCH_UIDSET, &seqs, error_r) != 0)
        return -1;
    struct search_set_builder b;
    search_set_builder_init(&b, ctx->arena);
    for (size_t i = 0; i < seqs.count; i++) {
        uint32_t f = view_uid(v, seqs.ranges[i].first), l = view_uid(v, seqs.ranges[i].last);
        if (f != 0 && l != 0)
            (void)search_set_add(&b, f, l);
    }
    k->set = search_set_done(&b);
    return 0;
}

/*
 * Narrows [*lo, *hi] to the UIDs a key can match at all: a sequence or UID set, or an AND holding
 * some (UID SEARCH UID 1001:* UNSEEN reads the indexes and chunks of the new messages only).
 */
static void narrow(const struct search_key *k, uint32_t *lo, uint32_t *hi)
{
    if (k->op == SEARCH_AND) {
        for (size_t i = 0; i < k->n_kids; i++)
            narrow(k->kids[i], lo, hi);
        return;
    }
    if (k->op != SEARCH_SEQSET && k->op != SEARCH_UIDSET)
        return;
    if (k->set.count == 0) {
        *lo = 1;
        *hi = 0;
        return;
    }
    if (k->set.ranges[0].first > *lo)
        *lo = k->set.ranges[0].first;
    if (k->set.ranges[k->set.count - 1].last < *hi)
        *hi = k->set.ranges[k->set.count - 1].last;
}

/* True when the view holds enough messages per chunk it touches for chunk reads to pay. */
static bool chunks_pay(uint32_t lo, uint32_t hi, uint64_t msgs)
{
    uint64_t span = (uint64_t)colcache_chunk(hi) - colcache_chunk(lo) + 1;
    return span <= 4 || span * MIN_CHUNK_FILL <= msgs;
}

enum cmd_status cmd_search(struct cmd_ctx *ctx)
{
    struct search_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    ctx->state = st;
    ctx->cleanup = search_cleanup;
    const char *code = NULL, *error = NULL;
    if (search_parse(ctx->arena, ctx->args, ctx->argc, &st->q, &code, &error) != 0) {
        reply_tagged(ctx, code != NULL ? "NO" : "BAD", code, "%s", error);
        return CMD_DONE;
    }
    if (resolve_sets(ctx, st->q.root, &error) != 0) {
        reply_tagged(ctx, "BAD", NULL, "%s", error);
        return CMD_DONE;
    }
    const struct selected *sel = conn_selected(ctx->conn);
    const struct view *v = sel->view;
    st->batch = arena_new(64 * 1024);
    if (view_count(v) == 0)
        return search_finish(ctx);
    st->lo = view_uid(v, 1);
    st->hi = view_max_uid(v);
    narrow(st->q.root, &st->lo, &st->hi);
    if (st->lo > st->hi)
        return search_finish(ctx); /* the sets leave nothing to match */
    st->view_modseq = sel->highestmodseq;
    st->want_f = st->q.uses_flags;
    st->want_m = st->q.uses_msg || st->q.root->level >= SEARCH_LEVEL_PARSE;
    st->span_msgs = (uint64_t)view_seq_floor(v, st->hi) + 1 - view_seq_ceil(v, st->lo);
    bool caches = colcache_enabled(conn_frontend(ctx->conn)) &&
                  chunks_pay(st->lo, st->hi, st->span_msgs);
    st->cache = caches;
    bool flags_at_index = st->q.uses_seen || st->q.uses_deleted;
    st->fsrc = caches && flags_at_index ? FLAG_SRC_CHUNKS : FLAG_SRC_INDEX;
    st->fl_cursor = colcache_chunk(st->lo);
    st->idx[IDX_RUNS].want = true;
    st->idx[IDX_UNSEEN].want = st->fsrc == FLAG_SRC_INDEX && st->q.uses_seen;
    st->idx[IDX_DELETED].want = st->fsrc == FLAG_SRC_INDEX && st->q.uses_deleted;
    for (int i = 0; i < IDX_COUNT; i++) {
        search_set_builder_init(&st->idx[i].b, ctx->arena);
        st->idx[i].next = i == IDX_RUNS ? 0 : st->lo;
    }
    search_set_builder_init(&st->cu, ctx->arena);
    search_set_builder_init(&st->cd, ctx->arena);
    search_set_builder_init(&st->hu, ctx->arena);
    search_set_builder_init(&st->hd, ctx->arena);
    return idx_round(ctx);
}
