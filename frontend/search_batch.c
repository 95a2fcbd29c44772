/*
 * search_batch: SEARCH's per-message phase (cmd_search.c has the overview). Candidates (the
 * UIDs the index phase could not decide) are taken in batches; each stage runs only for the
 * messages still undecided by the three-valued evaluation:
 *
 *  C. with the column caches (colcache.h), a batch is the candidates of up to BATCH_CHUNKS_F
 *     chunks (BATCH_CHUNKS_M when records or parses are read: 'm' chunks are the larger values).
 *     One MULTI/EXEC reads HGET highestmodseq and, per chunk, GET of the 'f' chunk when a key
 *     needs flags and of the 'm' chunk when a key needs the record or the stored parse; a chunk is
 *     used only when well formed and plausible (search_cache_plausible). A message the chunk
 *     holds is evaluated from it (flags, record, then parse, then set up for raw
 *     scanning); one it says is absent is gone; one it cannot tell about (no chunk, a damaged
 *     chunk, a UID at or above its upto) goes on to O. A chunk holding few candidates (under 1 in
 *     DENSE_CHUNK of its messages) is not read: a whole chunk would cost more than their fields.
 *  O. the old way: HMGET /msg and /flags of those messages (one round trip).
 *  P. HGET .../content/<sha> parse of each message still undecided (one round trip).
 *  R. raw bytes (search_raw.c).
 * Without caches a batch is BATCH candidates and starts at O.
 *
 * Rebuilding. When a needed chunk is unusable and the highestmodseq read in C equals the view's
 * (the view is exact), O reads every view UID of the chunk, not only the candidates, together
 * with HGET highestmodseq and the chunk's guard (ZCOUNT uids from the chunk's first UID to its
 * highest view UID); if highestmodseq is still the view's, the read is a snapshot of the whole
 * chunk and the chunk is built from it when it holds as many records as the guard counted (a view
 * exact by modseq can still lack a message: colcache.h): 'f' right away (flags "" where HMGET
 * gave nil), 'm' once P has read the parse of every message with a record (colcache.h "who
 * builds"). colcache_put_shard is fire and forget; cache_put.lua refuses a snapshot the mailbox
 * has moved past.
 *
 * Memory: everything per batch comes from st->batch, reset per batch; nothing in the per-message
 * loops calls malloc or printf (UIDs are formatted by hand), except mail_view_open's one block.
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/log.h"
#include "frontend/search_private.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define BATCH 1000        /* candidates per batch without caches */
#define BATCH_CHUNKS_F 16 /* chunks per batch when only flags are read (~10 KiB per chunk) */
#define BATCH_CHUNKS_M 2  /* chunks per batch when 'm' chunks are read (~400 KiB per chunk) */
#define MAX_CHUNKS 64     /* chunks per batch in all */
#define DENSE_CHUNK 8     /* a chunk is read whole when 1 in DENSE_CHUNK of its messages is a
                           * candidate */

static const struct view *cur_view(struct cmd_ctx *ctx)
{
    return conn_selected(ctx->conn)->view;
}

static bool reply_modseq(const redisReply *e, uint64_t *v_r)
{
    return e->type == REDIS_REPLY_STRING && search_parse_u64(e->str, e->len, v_r);
}

/* ---- the candidate cursor ---- */

static bool cur_uid(const struct search_state *st, uint32_t *uid_r)
{
    if (st->cand_range >= st->cand.count)
        return false;
    const struct seqset_range *rg = &st->cand.ranges[st->cand_range];
    *uid_r = st->cand_next > rg->first ? st->cand_next : rg->first;
    return true;
}

/* Moves the cursor past every candidate <= limit. */
static void cur_skip_past(struct search_state *st, uint32_t limit)
{
    while (st->cand_range < st->cand.count) {
        const struct seqset_range *rg = &st->cand.ranges[st->cand_range];
        if (rg->last <= limit) {
            st->cand_range++;
            st->cand_next = 0;
            continue;
        }
        uint32_t at = st->cand_next > rg->first ? st->cand_next : rg->first;
        if (at <= limit)
            st->cand_next = limit + 1;
        return;
    }
}

static void init_cand(struct search_state *st, size_t i, uint32_t uid)
{
    struct search_msg *m = &st->msgs[i];
    struct search_bmsg *b = &st->bm[i];
    m->uid = uid;
    b->cand = true;
    b->need_f = st->want_f;
    b->need_m = st->want_m;
    b->pslot = -1;
    m->leaf = arena_alloc(st->batch, st->q.n_leaves + 1);
    memset(m->leaf, SEARCH_UNKNOWN, st->q.n_leaves + 1);
}

/* Without caches: the next BATCH candidates. Returns how many. */
static size_t take_plain(struct search_state *st)
{
    st->msgs = arena_calloc(st->batch, BATCH, sizeof(*st->msgs));
    st->bm = arena_calloc(st->batch, BATCH, sizeof(*st->bm));
    size_t n = 0;
    uint32_t uid;
    while (n < BATCH && cur_uid(st, &uid)) {
        init_cand(st, n++, uid);
        cur_skip_past(st, uid);
    }
    return n;
}

/* Moves the cursor past every candidate <= limit; returns how many it passed. */
static uint64_t cur_count_past(struct search_state *st, uint32_t limit)
{
    uint64_t n = 0;
    uint32_t uid;
    while (cur_uid(st, &uid) && uid <= limit) {
        const struct seqset_range *rg = &st->cand.ranges[st->cand_range];
        uint32_t end = rg->last < limit ? rg->last : limit;
        n += (uint64_t)end - uid + 1;
        cur_skip_past(st, end);
    }
    return n;
}

/*
 * With caches: the chunks of the next candidates. A chunk holding enough of them is read from
 * its cache chunks (cached) and every UID the view holds in it is listed (a rebuild needs them
 * all), the candidates among them marked; a chunk with few candidates lists only those and
 * reads them the old way (a whole chunk would cost more than the few fields). A batch ends at
 * the kind's chunk count, at BATCH candidates read the old way, or at MAX_CHUNKS.
 */
static size_t take_chunks(struct search_state *st, const struct view *v)
{
    size_t max_cached = st->want_m ? BATCH_CHUNKS_M : BATCH_CHUNKS_F;
    st->chunks = arena_calloc(st->batch, MAX_CHUNKS, sizeof(*st->chunks));
    size_t saved_range = st->cand_range;
    uint32_t saved_next = st->cand_next, uid;
    size_t total = 0, n_cached = 0, n_old = 0;
    st->n_chunks = 0;
    while (st->n_chunks < MAX_CHUNKS && n_cached < max_cached && n_old < BATCH &&
           cur_uid(st, &uid)) {
        struct search_bchunk *ch = &st->chunks[st->n_chunks++];
        search_cache_vpart(v, colcache_chunk(uid), &ch->vp);
        uint64_t cands = cur_count_past(st, colcache_last(ch->vp.chunk));
        ch->cached = cands * DENSE_CHUNK >= ch->vp.count;
        if (ch->cached) {
            n_cached++;
            total += ch->vp.count;
        } else {
            n_old += cands;
            total += cands;
        }
    }
    st->cand_range = saved_range;
    st->cand_next = saved_next;
    st->msgs = arena_calloc(st->batch, total + 1, sizeof(*st->msgs));
    st->bm = arena_calloc(st->batch, total + 1, sizeof(*st->bm));
    size_t n = 0;
    for (size_t c = 0; c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        uint32_t last = colcache_last(ch->vp.chunk);
        ch->b = n;
        if (!ch->cached) {
            while (cur_uid(st, &uid) && uid <= last) {
                init_cand(st, n++, uid);
                cur_skip_past(st, uid);
            }
            ch->e = n;
            continue;
        }
        for (uint32_t s = ch->vp.first_seq; s != 0 && s <= ch->vp.last_seq; s++) {
            uint32_t u = view_uid(v, s);
            if (cur_uid(st, &uid) && uid == u) {
                init_cand(st, n, u);
                cur_skip_past(st, u);
            } else {
                st->msgs[n].uid = u;
                st->bm[n].pslot = -1;
            }
            n++;
        }
        ch->e = n;
        cur_skip_past(st, last); /* candidates are view UIDs: a no-op */
    }
    return n;
}

/* ---- conclusion ---- */

enum cmd_status search_batch_conclude(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    for (size_t i = 0; i < st->n_msgs; i++) {
        if (st->bm[i].cand && search_eval(&st->q, &st->msgs[i]) == SEARCH_YES)
            (void)search_set_add(&st->matched, st->msgs[i].uid, st->msgs[i].uid);
    }
    return search_batch_next(ctx);
}

/*
 * Evaluates candidate i with its parse in hand (parse may be NULL when the query has no parse
 * keys), sets it up for raw scanning when still undecided. False when the parse is unreadable.
 */
static bool eval_with_parse(struct search_state *st, size_t i, const char *parse, size_t len)
{
    struct search_msg *m = &st->msgs[i];
    st->bm[i].parsed = true;
    if (search_eval(&st->q, m) != SEARCH_UNKNOWN || st->q.root->level < SEARCH_LEVEL_PARSE)
        return true;
    struct mail_view *view = NULL;
    const char *error = NULL;
    if (parse == NULL || mail_view_open((const uint8_t *)parse, len, &view, &error) != 0)
        return false;
    search_eval_parse(&st->q, m, view, &st->scratch);
    mail_view_free(&view);
    if (st->n_raw == 0 || search_eval(&st->q, m) != SEARCH_UNKNOWN)
        return true;
    if (!search_raw_add(st, i, parse, len))
        m->gone = true; /* as the old way treats an unreadable parse */
    return true;
}

/* ---- P: the stored parses ---- */

static void build_msgs(struct cmd_ctx *ctx, const redisReply *r)
{
    struct search_state *st = ctx->state;
    struct selected *sel = conn_selected(ctx->conn);
    for (size_t c = 0; c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        if (!ch->build_m_ok)
            continue;
        struct colcache_builder b;
        colcache_build_begin(&b, COLCACHE_MSG, ch->vp.chunk, st->view_modseq, ch->vp.max_uid + 1);
        for (size_t i = ch->b; i < ch->e && !b.failed; i++) {
            const struct search_bmsg *bm = &st->bm[i];
            if (!bm->has_rec)
                continue; /* no /msg record: not a message (exact snapshot) */
            const redisReply *e = bm->pslot >= 0 ? r->element[bm->pslot] : NULL;
            if (e == NULL || e->type != REDIS_REPLY_STRING)
                b.failed = true; /* content gone: the mailbox moved on */
            else
                colcache_build_add(&b, st->msgs[i].uid, bm->rec, bm->rec_len, e->str, e->len);
        }
        colcache_put_shard(conn_frontend(ctx->conn), conn_id(ctx->conn), conn_nsid(ctx->conn),
                           sel->mbxid, &b);
        colcache_builder_free(&b);
    }
}

static enum cmd_status batch_got_parse(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    enum cmd_status out;
    if (!search_tx_ok(ctx, st->n_pread, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    for (size_t k = 0; k < st->n_pread; k++) {
        size_t i = st->pread[k];
        struct search_msg *m = &st->msgs[i];
        if (!st->bm[i].cand || st->bm[i].parsed || m->gone)
            continue;
        const redisReply *e = r->element[k];
        if (e->type != REDIS_REPLY_STRING) {
            m->gone = true; /* content released: the message went away */
            continue;
        }
        if (!eval_with_parse(st, i, e->str, e->len)) {
            log_write(LOG_ERROR, "search.bad_parse", "sha=%s", m->sha);
            m->gone = true;
        }
    }
    build_msgs(ctx, r);
    return search_raw_run(ctx);
}

/* After O (or C when O had nothing to read): the parse round, or straight on. */
static enum cmd_status records_done(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    bool parse_level = st->q.root->level >= SEARCH_LEVEL_PARSE;
    st->pread = arena_calloc(st->batch, st->n_msgs + 1, sizeof(*st->pread));
    st->n_pread = 0;
    bool any_build = false;
    for (size_t c = 0; c < st->n_chunks; c++)
        any_build |= st->chunks[c].build_m_ok;
    size_t c = 0;
    for (size_t i = 0; i < st->n_msgs; i++) {
        struct search_bmsg *bm = &st->bm[i];
        struct search_msg *m = &st->msgs[i];
        bool want = false;
        if (bm->cand && !bm->parsed && !m->gone) {
            search_eval_record(&st->q, m);
            if (parse_level && search_eval(&st->q, m) == SEARCH_UNKNOWN)
                want = true;
            else
                bm->parsed = true;
        }
        if (any_build && bm->has_rec) {
            while (c < st->n_chunks && st->chunks[c].e <= i)
                c++;
            want |= c < st->n_chunks && st->chunks[c].build_m_ok;
        }
        if (want && !m->have_record)
            return search_bad_data(ctx, "no record for parse"); /* cannot happen */
        if (want) {
            bm->pslot = (int32_t)st->n_pread;
            st->pread[st->n_pread++] = (uint32_t)i;
        }
    }
    if (st->n_pread == 0)
        return search_raw_run(ctx);
    const char *nsid = conn_nsid(ctx->conn);
    size_t u = st->n_pread;
    int *argc = arena_calloc(st->batch, u, sizeof(*argc));
    const char *const **argv = arena_calloc(st->batch, u, sizeof(*argv));
    const size_t **argvlen = arena_calloc(st->batch, u, sizeof(*argvlen));
    size_t t = 0;
    for (size_t k = 0; k < u; k++) {
        struct key key;
        keys_content(&key, nsid, st->msgs[st->pread[k]].sha);
        search_tx_hget(st->batch, argc, argv, argvlen, &t, &key, "parse");
    }
    return conn_redis_tx(ctx, batch_got_parse, u, argc, argv, argvlen);
}

/* ---- O: the old way ---- */

static bool any_build(const struct search_state *st)
{
    for (size_t c = 0; c < st->n_chunks; c++) {
        if (st->chunks[c].build_f || st->chunks[c].build_m)
            return true;
    }
    return false;
}

/*
 * The guard of a chunk's rebuild, read in its snapshot: ZCOUNT uids <chunk first> <max view
 * UID>, how many UIDs the mailbox has where the chunk will answer.
 */
static size_t guard_cmd(struct search_state *st, const char *uids, size_t uids_len,
                        const struct search_bchunk *ch, int *argc, const char *const **argv,
                        const size_t **argvlen)
{
    const char **av = arena_alloc(st->batch, 4 * sizeof(*av));
    size_t *al = arena_alloc(st->batch, 4 * sizeof(*al));
    char *digits = arena_alloc(st->batch, 2 * 20);
    av[0] = "ZCOUNT";
    al[0] = 6;
    av[1] = uids;
    al[1] = uids_len;
    av[2] = digits;
    al[2] = search_fmt_u64(digits, colcache_first(ch->vp.chunk));
    av[3] = digits + 20;
    al[3] = search_fmt_u64(digits + 20, ch->vp.max_uid);
    *argc = 4;
    *argv = av;
    *argvlen = al;
    return 1;
}

/* True when a chunk about to be built holds as many records as the guard counted UIDs. */
static bool guard_holds(struct cmd_ctx *ctx, const struct search_bchunk *ch, char kind,
                        size_t records)
{
    if (ch->guard_ok && ch->guard == records)
        return true;
    log_write(LOG_DEBUG, "search.cache_guard", "conn=%llu chunk=%u kind=%c uids=%llu records=%zu",
              (unsigned long long)conn_id(ctx->conn), (unsigned)ch->vp.chunk, kind,
              (unsigned long long)ch->guard, records);
    return false;
}

static void build_flags(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    struct selected *sel = conn_selected(ctx->conn);
    for (size_t c = 0; c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        if (!ch->build_f)
            continue;
        struct colcache_builder b;
        colcache_build_begin(&b, COLCACHE_FLAGS, ch->vp.chunk, st->view_modseq,
                             ch->vp.max_uid + 1);
        for (size_t i = ch->b; i < ch->e; i++)
            colcache_build_add(&b, st->msgs[i].uid, st->msgs[i].flags, st->msgs[i].flags_len,
                               NULL, 0);
        colcache_put_shard(conn_frontend(ctx->conn), conn_id(ctx->conn), conn_nsid(ctx->conn),
                           sel->mbxid, &b);
        colcache_builder_free(&b);
    }
}

static enum cmd_status batch_got_records(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    bool build = any_build(st);
    size_t n_m = 0, n_f = 0;
    for (size_t i = 0; i < st->n_msgs; i++) {
        n_m += st->bm[i].read_m;
        n_f += st->bm[i].read_f;
    }
    size_t guards = 0;
    for (size_t c = 0; build && c < st->n_chunks; c++)
        guards += st->chunks[c].build_f || st->chunks[c].build_m;
    size_t n = (build ? 1u : 0u) + guards + (n_m > 0) + (n_f > 0);
    enum cmd_status out;
    if (!search_tx_ok(ctx, n, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t slot = 0;
    uint64_t hms = 0;
    bool exact = build && reply_modseq(r->element[slot++], &hms) && hms == st->view_modseq;
    for (size_t c = 0; build && c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        if (!ch->build_f && !ch->build_m)
            continue;
        const redisReply *e = r->element[slot++];
        ch->guard_ok = e->type == REDIS_REPLY_INTEGER && e->integer >= 0;
        ch->guard = ch->guard_ok ? (uint64_t)e->integer : 0;
    }
    if (n_m > 0) {
        const redisReply *recs = r->element[slot++];
        if (recs->type != REDIS_REPLY_ARRAY || recs->elements != n_m)
            return search_bad_data(ctx, "hmget msg");
        size_t k = 0, c = 0;
        for (size_t i = 0; i < st->n_msgs; i++) {
            struct search_bmsg *bm = &st->bm[i];
            if (!bm->read_m)
                continue;
            const redisReply *e = recs->element[k++];
            struct search_msg *m = &st->msgs[i];
            bool str = e->type == REDIS_REPLY_STRING;
            if (bm->cand && bm->need_m && !m->gone) {
                if (!str)
                    m->gone = true;
                else if (search_msg_record(st->batch, m, e->str, e->len) != 0)
                    return search_bad_data(ctx, "msg record");
                bm->need_m = false;
            }
            while (c < st->n_chunks && st->chunks[c].e <= i)
                c++;
            struct search_bchunk *ch = c < st->n_chunks ? &st->chunks[c] : NULL;
            if (!exact || ch == NULL || !ch->build_m || !str)
                continue;
            if (!m->have_record && search_msg_record(st->batch, m, e->str, e->len) != 0) {
                ch->build_m = false; /* a record we cannot read is not cached */
                continue;
            }
            char *copy = arena_alloc(st->batch, e->len + 1);
            memcpy(copy, e->str, e->len);
            bm->rec = copy;
            bm->rec_len = e->len;
            bm->has_rec = true;
        }
    }
    if (n_f > 0) {
        const redisReply *fl = r->element[slot++];
        if (fl->type != REDIS_REPLY_ARRAY || fl->elements != n_f)
            return search_bad_data(ctx, "hmget flags");
        size_t k = 0;
        for (size_t i = 0; i < st->n_msgs; i++) {
            struct search_bmsg *bm = &st->bm[i];
            if (!bm->read_f)
                continue;
            const redisReply *e = fl->element[k++];
            struct search_msg *m = &st->msgs[i];
            if (e->type == REDIS_REPLY_STRING) {
                m->flags = arena_strndup(st->batch, e->str, e->len);
                m->flags_len = e->len;
            } else if (e->type != REDIS_REPLY_NIL) {
                return search_bad_data(ctx, "flags");
            } else {
                m->flags = "";
                m->flags_len = 0;
            }
            if (bm->need_f) {
                m->have_flags = true;
                bm->need_f = false;
            }
        }
    }
    for (size_t c = 0; c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        size_t recs = 0;
        for (size_t i = ch->b; i < ch->e; i++)
            recs += st->bm[i].has_rec;
        /* 'f': every view UID of the chunk is a record; 'm': those with a /msg record. */
        ch->build_f = ch->build_f && exact &&
                      guard_holds(ctx, ch, COLCACHE_FLAGS, ch->e - ch->b);
        ch->build_m_ok = ch->build_m && exact && guard_holds(ctx, ch, COLCACHE_MSG, recs);
    }
    build_flags(ctx);
    return records_done(ctx);
}

/* Sends O for the messages marked read_f / read_m (HGET highestmodseq first when rebuilding). */
static enum cmd_status read_old(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    size_t n_m = 0, n_f = 0;
    for (size_t i = 0; i < st->n_msgs; i++) {
        n_m += st->bm[i].read_m;
        n_f += st->bm[i].read_f;
    }
    if (n_m == 0 && n_f == 0)
        return records_done(ctx);
    const char *nsid = conn_nsid(ctx->conn);
    const char *mbxid = conn_selected(ctx->conn)->mbxid;
    size_t max = 3 + st->n_chunks;
    int *argc = arena_alloc(st->batch, max * sizeof(*argc));
    const char *const **argv = arena_alloc(st->batch, max * sizeof(*argv));
    const size_t **argvlen = arena_alloc(st->batch, max * sizeof(*argvlen));
    size_t t = 0;
    if (any_build(st)) {
        struct key k;
        keys_mbx(&k, nsid, mbxid, KEYS_MBX);
        search_tx_hget(st->batch, argc, argv, argvlen, &t, &k, "highestmodseq");
        keys_mbx(&k, nsid, mbxid, KEYS_MBX_UIDS);
        const char *uids = arena_strndup(st->batch, k.s, k.len);
        for (size_t c = 0; c < st->n_chunks; c++) {
            const struct search_bchunk *ch = &st->chunks[c];
            if (ch->build_f || ch->build_m)
                t += guard_cmd(st, uids, k.len, ch, &argc[t], &argv[t], &argvlen[t]);
        }
    }
    /* One buffer of UIDs in decimal, shared by both HMGETs. */
    char *digits = arena_alloc(st->batch, st->n_msgs * 10 + 1);
    const char **num = arena_alloc(st->batch, (st->n_msgs + 1) * sizeof(*num));
    size_t *num_len = arena_alloc(st->batch, (st->n_msgs + 1) * sizeof(*num_len));
    size_t used = 0;
    for (size_t i = 0; i < st->n_msgs; i++) {
        num[i] = digits + used;
        num_len[i] = search_fmt_u64(digits + used, st->msgs[i].uid);
        used += num_len[i];
    }
    for (int which = 0; which < 2; which++) {
        size_t cnt = which == 0 ? n_m : n_f;
        if (cnt == 0)
            continue;
        struct key k;
        keys_mbx(&k, nsid, mbxid, which == 0 ? KEYS_MBX_MSG : KEYS_MBX_FLAGS);
        const char **av = arena_alloc(st->batch, (cnt + 2) * sizeof(*av));
        size_t *al = arena_alloc(st->batch, (cnt + 2) * sizeof(*al));
        av[0] = "HMGET";
        al[0] = 5;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        size_t a = 2;
        for (size_t i = 0; i < st->n_msgs; i++) {
            if (which == 0 ? !st->bm[i].read_m : !st->bm[i].read_f)
                continue;
            av[a] = num[i];
            al[a] = num_len[i];
            a++;
        }
        argc[t] = (int)(cnt + 2);
        argv[t] = av;
        argvlen[t] = al;
        t++;
    }
    return conn_redis_tx(ctx, batch_got_records, t, argc, argv, argvlen);
}

/* ---- C: the column caches ---- */

/*
 * Candidate i from its 'm' record: the record is parsed when a key or a later stage needs it
 * (a /msg key, raw scanning, or the parse round because the flags are still unknown).
 */
static bool use_record(struct search_state *st, size_t i, const struct colcache_rec *r)
{
    struct search_msg *m = &st->msgs[i];
    bool need = st->q.uses_msg || st->n_raw > 0 || st->bm[i].need_f;
    if (need && search_msg_record(st->batch, m, r->field[0], r->len[0]) != 0)
        return false;
    return true;
}

static size_t cached_chunks(const struct search_state *st)
{
    size_t n = 0;
    for (size_t c = 0; c < st->n_chunks; c++)
        n += st->chunks[c].cached;
    return n;
}

static enum cmd_status batch_got_cache(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    size_t per = (st->want_f ? 1u : 0u) + (st->want_m ? 1u : 0u);
    enum cmd_status out;
    if (!search_tx_ok(ctx, 1 + per * cached_chunks(st), &out))
        return out;
    const redisReply *r = ctx->store->reply;
    uint64_t hms = 0;
    bool known = reply_modseq(r->element[0], &hms);
    bool exact = known && hms == st->view_modseq;
    const struct view *v = cur_view(ctx);
    size_t slot = 1;
    struct search_chunk fc = {.recs = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*fc.recs))};
    struct search_chunk mc = {.recs = arena_alloc(st->batch, COLCACHE_CHUNK * sizeof(*mc.recs))};
    for (size_t c = 0; c < st->n_chunks; c++) {
        struct search_bchunk *ch = &st->chunks[c];
        bool fv = false, mv = false;
        if (!ch->cached) {
            for (size_t i = ch->b; i < ch->e; i++) {
                st->bm[i].read_f = st->bm[i].need_f;
                st->bm[i].read_m = st->bm[i].need_m;
            }
            continue;
        }
        if (st->want_f) {
            const redisReply *e = r->element[slot++];
            fv = e->type == REDIS_REPLY_STRING &&
                 search_chunk_load(&fc, e->str, e->len, COLCACHE_FLAGS, ch->vp.chunk) &&
                 search_cache_plausible(v, st->view_modseq, known, hms, fc.chunk, fc.modseq,
                                        fc.upto, fc.recs, fc.n);
        }
        if (st->want_m) {
            const redisReply *e = r->element[slot++];
            mv = e->type == REDIS_REPLY_STRING &&
                 search_chunk_load(&mc, e->str, e->len, COLCACHE_MSG, ch->vp.chunk) &&
                 search_cache_plausible(v, st->view_modseq, known, hms, mc.chunk, mc.modseq,
                                        mc.upto, mc.recs, mc.n);
        }
        for (size_t i = ch->b; i < ch->e; i++) {
            struct search_bmsg *bm = &st->bm[i];
            struct search_msg *m = &st->msgs[i];
            if (!bm->cand)
                continue;
            const struct colcache_rec *rec;
            if (fv) {
                switch (search_chunk_find(&fc, m->uid, &rec)) {
                case COLCACHE_HIT:
                    m->flags = arena_strndup(st->batch, rec->field[0], rec->len[0]);
                    m->flags_len = rec->len[0];
                    m->have_flags = true;
                    bm->need_f = false;
                    break;
                case COLCACHE_ABSENT:
                    m->gone = true;
                    break;
                case COLCACHE_UNKNOWN:
                    break;
                }
            }
            const char *parse = NULL;
            size_t parse_len = 0;
            if (mv && !m->gone) {
                switch (search_chunk_find(&mc, m->uid, &rec)) {
                case COLCACHE_HIT:
                    if (use_record(st, i, rec)) {
                        bm->need_m = false;
                        parse = rec->field[1];
                        parse_len = rec->len[1];
                    }
                    break;
                case COLCACHE_ABSENT:
                    m->gone = true;
                    break;
                case COLCACHE_UNKNOWN:
                    break;
                }
            }
            if (m->gone) {
                bm->need_f = bm->need_m = false;
                continue;
            }
            if (bm->need_f || bm->need_m)
                continue;
            search_eval_record(&st->q, m);
            if (!eval_with_parse(st, i, parse, parse_len)) {
                bm->parsed = false; /* a damaged parse in the chunk: the old way decides */
                bm->need_m = true;
                m->have_record = false;
            }
        }
        if (exact) {
            ch->build_f = st->want_f && (!fv || fc.upto <= ch->vp.max_uid);
            ch->build_m = st->want_m && (!mv || mc.upto <= ch->vp.max_uid);
        }
        for (size_t i = ch->b; i < ch->e; i++) {
            struct search_bmsg *bm = &st->bm[i];
            bm->read_f = bm->need_f || ch->build_f;
            bm->read_m = bm->need_m || ch->build_m;
        }
    }
    return read_old(ctx);
}

static enum cmd_status read_cache(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    const char *nsid = conn_nsid(ctx->conn);
    const char *mbxid = conn_selected(ctx->conn)->mbxid;
    size_t per = (st->want_f ? 1u : 0u) + (st->want_m ? 1u : 0u);
    size_t n = 1 + per * cached_chunks(st);
    int *argc = arena_alloc(st->batch, n * sizeof(*argc));
    const char *const **argv = arena_alloc(st->batch, n * sizeof(*argv));
    const size_t **argvlen = arena_alloc(st->batch, n * sizeof(*argvlen));
    struct key k;
    keys_mbx(&k, nsid, mbxid, KEYS_MBX);
    size_t t = 0;
    search_tx_hget(st->batch, argc, argv, argvlen, &t, &k, "highestmodseq");
    for (size_t c = 0; c < st->n_chunks; c++) {
        for (int which = 0; which < 2 && st->chunks[c].cached; which++) {
            if (which == 0 ? !st->want_f : !st->want_m)
                continue;
            keys_mbx_cache(&k, nsid, mbxid, which == 0 ? 'f' : 'm', st->chunks[c].vp.chunk);
            const char **gv = arena_alloc(st->batch, 2 * sizeof(*gv));
            size_t *gl = arena_alloc(st->batch, 2 * sizeof(*gl));
            gv[0] = "GET";
            gl[0] = 3;
            gv[1] = arena_strndup(st->batch, k.s, k.len);
            gl[1] = k.len;
            argc[t] = 2;
            argv[t] = gv;
            argvlen[t] = gl;
            t++;
        }
    }
    return conn_redis_tx(ctx, batch_got_cache, n, argc, argv, argvlen);
}

/* ---- batches ---- */

enum cmd_status search_batch_next(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    search_raw_free(st);
    arena_reset(st->batch);
    st->n_chunks = 0;
    st->chunks = NULL;
    st->n_msgs = st->cache ? take_chunks(st, cur_view(ctx)) : take_plain(st);
    if (st->n_msgs == 0)
        return search_finish(ctx);
    if (!st->want_f && !st->want_m) {
        /* Only index keys and per-message keys that need nothing read: cannot happen (the
         * bounds would agree), but evaluate what is known rather than loop. */
        return search_batch_conclude(ctx);
    }
    if (cached_chunks(st) > 0)
        return read_cache(ctx);
    for (size_t i = 0; i < st->n_msgs; i++) {
        st->bm[i].read_f = st->bm[i].need_f;
        st->bm[i].read_m = st->bm[i].need_m;
    }
    return read_old(ctx);
}
