/*
 * SEARCH and UID SEARCH (RFC 3501 §6.4.4, §6.4.8), with ESEARCH answers (RFC 4731 RETURN) and
 * RFC 8474 EMAILID/THREADID. The cost model is DESIGN.md rule 5: the answer is the only thing that
 * may grow with the mailbox.
 *
 *  1. Index phase. The mailbox's current /runs (O(runs): which UIDs still exist) and, only when the
 *     keys need them, /unseen and /deleted are read within the view's UID range, in slices of
 *     IDX_BATCH members (ZRANGEBYSCORE ... LIMIT), all slices of one round in one MULTI/EXEC.
 *     The key tree is then evaluated over whole UID sets (search_eval_sets): flag, sequence-set,
 *     UID-set and \Recent keys need nothing more, so SEARCH UNSEEN reads the unseen index and
 *     nothing else. The tree's bounds leave the candidates: messages that may match but are not
 *     certain to.
 *  2. Per-message phase, in batches of BATCH candidates, each stage only for the messages still
 *     undecided by the three-valued evaluation: the /msg record and /flags (HMGET, one round
 *     trip), the stored parse (HGET .../content/<sha> parse: envelope keys), then raw bytes
 *     (GETRANGE, rounds of at most ROUND_BYTES, a large message in several) scanned on the worker
 *     pool (search_scan.h) so the event loop keeps serving other clients; when the pool is full a
 *     round is scanned inline (bounded by ROUND_BYTES).
 *
 * Messages of the view that no longer exist (expunged by another session) never match: the
 * universe is the view intersected with the current runs, and a candidate whose record is gone is
 * dropped. Deliberately not here: SEARCHRES ($, SAVE), CONDSTORE MODSEQ, fuzzy search.
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
#include "frontend/search_eval.h"
#include "frontend/search_parse.h"
#include "frontend/search_scan.h"
#include "frontend/search_set.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define BATCH 1000                     /* candidates per per-message batch */
#define IDX_BATCH 32768                /* index members per slice (replies of ~300 KB) */
#define ROUND_BYTES (4u * 1024 * 1024) /* raw bytes per GETRANGE round */

enum { IDX_RUNS, IDX_UNSEEN, IDX_DELETED, IDX_COUNT };

struct idx_read {
    bool want, done;
    uint32_t next; /* lowest score still to read */
    struct search_set_builder b;
};

/* Raw-level scanning of one batch. Owned by the command state, or by the worker job while one is
 * in flight (so a connection that goes away mid-scan never frees what a worker is using). */
struct raw_item {
    size_t msg;     /* index into the batch's messages */
    struct search_scan scan;
    uint64_t need;  /* bytes to read from offset 0 */
    uint64_t fed;   /* bytes scheduled so far */
    bool ended;
};

struct raw_piece {
    size_t item;
    uint64_t offset;
    size_t len;
    size_t buf_off; /* where its bytes are in buf */
};

struct raw_batch {
    struct search_needle *needles;
    size_t n_needles;
    bool body;
    struct raw_item *items;
    size_t n_items;
    size_t cursor;          /* first item with bytes still to schedule */
    struct raw_piece *pieces;
    size_t n_pieces;
    uint8_t *buf;
    size_t buf_len, buf_cap;
    bool *found;            /* n_items x n_needles */
    bool submitting;        /* inside conn_work: a synchronous free_job must not free */
};

struct search_state {
    struct search_query q;
    uint32_t lo, hi;        /* the view's UID range */
    struct idx_read idx[IDX_COUNT];
    struct seqset universe, must, cand;
    size_t cand_range;      /* cursor over cand */
    uint32_t cand_next;
    struct search_set_builder matched;
    struct arena *batch;    /* per-batch memory, reset between batches */
    struct search_msg *msgs;
    size_t n_msgs;
    const struct search_key **raw_keys;
    size_t n_raw;
    struct raw_batch *raw;
    uint32_t *undecided;    /* indexes into msgs */
    size_t n_undecided;
};

static void raw_batch_free(struct raw_batch *rb)
{
    if (rb == NULL)
        return;
    for (size_t i = 0; i < rb->n_items; i++)
        search_scan_free(&rb->items[i].scan);
    for (size_t i = 0; i < rb->n_needles; i++) {
        free(rb->needles[i].name);
        free(rb->needles[i].value);
    }
    free(rb->needles);
    free(rb->items);
    free(rb->pieces);
    free(rb->buf);
    free(rb->found);
    free(rb);
}

static void raw_job_free(void *job)
{
    struct raw_batch *rb = job;
    if (rb->submitting)
        return; /* conn_work refused it: the caller still owns it */
    raw_batch_free(rb);
}

static void search_cleanup(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    if (st == NULL)
        return;
    raw_batch_free(st->raw);
    st->raw = NULL;
    arena_free(&st->batch);
}

static const struct view *cur_view(struct cmd_ctx *ctx)
{
    return conn_selected(ctx->conn)->view;
}

static enum cmd_status bad_data(struct cmd_ctx *ctx, const char *what)
{
    log_write(LOG_ERROR, "search.bad_data", "conn=%llu what=%s",
              (unsigned long long)conn_id(ctx->conn), what);
    reply_tagged(ctx, "NO", "SERVERBUG", "SEARCH failed: inconsistent mailbox data");
    return CMD_DONE;
}

/* A failed read, or an EXEC reply that is not an array of n non-error replies. */
static bool tx_ok(struct cmd_ctx *ctx, size_t n, enum cmd_status *out)
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
    if (len == 0 || len > 10)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v == 0 || v > UINT32_MAX)
        return false;
    *v_r = (uint32_t)v;
    return true;
}

/* ---- answer ---- */

/* UID ranges (all inside the view) to normalised sequence-number ranges. */
static struct seqset to_seqs(struct arena *a, const struct view *v, const struct seqset *uids)
{
    struct search_set_builder b;
    search_set_builder_init(&b, a);
    for (size_t i = 0; i < uids->count; i++) {
        uint32_t s = view_seq(v, uids->ranges[i].first);
        if (s == 0)
            continue; /* cannot happen: results lie within the view */
        (void)search_set_add(&b, s, s + (uids->ranges[i].last - uids->ranges[i].first));
    }
    return search_set_done(&b);
}

/* " n1 n2 ..." for every number of set, formatted by hand in 64 KiB slices (answers of 100,000
 * numbers are common; printf per number costs more than the search). */
static void add_numbers(struct evbuffer *b, const struct seqset *set)
{
    char buf[65536];
    size_t used = 0;
    for (size_t i = 0; i < set->count; i++) {
        for (uint64_t n = set->ranges[i].first; n <= set->ranges[i].last; n++) {
            if (used > sizeof(buf) - 16) {
                evbuffer_add(b, buf, used);
                used = 0;
            }
            char digits[12];
            size_t k = 0;
            uint64_t v = n;
            do {
                digits[k++] = (char)('0' + v % 10);
                v /= 10;
            } while (v > 0);
            buf[used++] = ' ';
            while (k > 0)
                buf[used++] = digits[--k];
        }
    }
    evbuffer_add(b, buf, used);
}

static enum cmd_status finish(struct cmd_ctx *ctx)
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

/* ---- per-message phase ---- */

static enum cmd_status batch_next(struct cmd_ctx *ctx);

/* Adds the batch's matches (in UID order) and goes on with the next batch. */
static enum cmd_status batch_conclude(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    for (size_t i = 0; i < st->n_msgs; i++) {
        if (search_eval(&st->q, &st->msgs[i]) == SEARCH_YES)
            (void)search_set_add(&st->matched, st->msgs[i].uid, st->msgs[i].uid);
    }
    return batch_next(ctx);
}

static void collect_undecided(struct search_state *st)
{
    st->n_undecided = 0;
    for (size_t i = 0; i < st->n_msgs; i++) {
        if (search_eval(&st->q, &st->msgs[i]) == SEARCH_UNKNOWN)
            st->undecided[st->n_undecided++] = (uint32_t)i;
    }
}

static enum cmd_status raw_round(struct cmd_ctx *ctx);

static void raw_work(void *job)
{
    struct raw_batch *rb = job;
    for (size_t i = 0; i < rb->n_pieces; i++) {
        const struct raw_piece *p = &rb->pieces[i];
        struct raw_item *it = &rb->items[p->item];
        search_scan_feed(&it->scan, p->offset, rb->buf + p->buf_off, p->len);
        if (p->offset + p->len >= it->need && !it->ended) {
            search_scan_end(&it->scan, &rb->found[p->item * rb->n_needles]);
            search_scan_free(&it->scan);
            it->ended = true;
        }
    }
    rb->n_pieces = 0;
    rb->buf_len = 0;
}

static enum cmd_status raw_apply(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    struct raw_batch *rb = st->raw;
    for (size_t i = 0; i < rb->n_items; i++) {
        struct raw_item *it = &rb->items[i];
        if (!it->ended) {
            search_scan_end(&it->scan, &rb->found[i * rb->n_needles]);
            search_scan_free(&it->scan);
            it->ended = true;
        }
        struct search_msg *m = &st->msgs[it->msg];
        for (size_t k = 0; k < rb->n_needles; k++) {
            m->leaf[st->raw_keys[k]->leaf] =
                rb->found[i * rb->n_needles + k] ? SEARCH_YES : SEARCH_NO;
        }
    }
    raw_batch_free(rb);
    st->raw = NULL;
    return batch_conclude(ctx);
}

static enum cmd_status raw_worked(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    st->raw = ctx->job;
    ctx->job = NULL;
    if (st->raw->cursor < st->raw->n_items)
        return raw_round(ctx);
    return raw_apply(ctx);
}

static enum cmd_status raw_got(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    struct raw_batch *rb = st->raw;
    enum cmd_status out;
    if (!tx_ok(ctx, rb->n_pieces, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t total = 0;
    for (size_t i = 0; i < rb->n_pieces; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            return bad_data(ctx, "getrange");
        total += e->len;
    }
    if (total > rb->buf_cap) {
        free(rb->buf);
        rb->buf = malloc(total);
        if (rb->buf == NULL)
            abort();
        rb->buf_cap = total;
    }
    rb->buf_len = 0;
    for (size_t i = 0; i < rb->n_pieces; i++) {
        const redisReply *e = r->element[i];
        struct raw_piece *p = &rb->pieces[i];
        /* Content is immutable; a shorter answer means it went away: scan what there is. */
        if (e->len < p->len)
            p->len = e->len;
        p->buf_off = rb->buf_len;
        if (e->len > 0)
            memcpy(rb->buf + rb->buf_len, e->str, p->len);
        rb->buf_len += p->len;
    }
    rb->submitting = true;
    bool full = false;
    enum cmd_status s = conn_work(ctx, raw_worked, raw_work, raw_job_free, rb, &full);
    rb->submitting = false;
    if (full) {
        raw_work(rb); /* pool saturated: one bounded round inline */
        if (rb->cursor < rb->n_items)
            return raw_round(ctx);
        return raw_apply(ctx);
    }
    st->raw = NULL; /* the job owns it until raw_worked */
    return s;
}

static enum cmd_status raw_round(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    struct raw_batch *rb = st->raw;
    /* Schedule pieces from the cursor until the round's byte budget is used. */
    uint64_t budget = ROUND_BYTES;
    rb->n_pieces = 0;
    while (rb->cursor < rb->n_items && budget > 0) {
        struct raw_item *it = &rb->items[rb->cursor];
        if (it->fed >= it->need) {
            rb->cursor++;
            continue;
        }
        uint64_t len = it->need - it->fed;
        if (len > budget)
            len = budget;
        struct raw_piece *p = &rb->pieces[rb->n_pieces++];
        p->item = rb->cursor;
        p->offset = it->fed;
        p->len = (size_t)len;
        it->fed += len;
        budget -= len;
        if (it->fed >= it->need)
            rb->cursor++;
    }
    if (rb->n_pieces == 0)
        return raw_apply(ctx);
    const char *nsid = conn_nsid(ctx->conn);
    size_t n = rb->n_pieces;
    int *argc = arena_calloc(st->batch, n, sizeof(*argc));
    const char *const **argv = arena_calloc(st->batch, n, sizeof(*argv));
    const size_t **argvlen = arena_calloc(st->batch, n, sizeof(*argvlen));
    for (size_t i = 0; i < n; i++) {
        const struct raw_piece *p = &rb->pieces[i];
        struct key k;
        keys_content_raw(&k, nsid, st->msgs[rb->items[p->item].msg].sha);
        const char **av = arena_calloc(st->batch, 4, sizeof(*av));
        size_t *al = arena_calloc(st->batch, 4, sizeof(*al));
        av[0] = "GETRANGE";
        al[0] = 8;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        av[2] = arena_printf(st->batch, "%" PRIu64, p->offset);
        al[2] = strlen(av[2]);
        av[3] = arena_printf(st->batch, "%" PRIu64, p->offset + p->len - 1);
        al[3] = strlen(av[3]);
        argc[i] = 4;
        argv[i] = av;
        argvlen[i] = al;
    }
    return conn_redis_tx(ctx, raw_got, n, argc, argv, argvlen);
}

/* Sets up raw scanning for the messages still undecided after the parse stage. */
static void raw_setup(struct search_state *st, size_t n_items)
{
    struct raw_batch *rb = calloc(1, sizeof(*rb));
    if (rb == NULL)
        abort();
    rb->n_needles = st->n_raw;
    rb->needles = calloc(st->n_raw, sizeof(*rb->needles));
    rb->items = calloc(n_items == 0 ? 1 : n_items, sizeof(*rb->items));
    /* A round holds at most one piece per item, plus nothing else. */
    rb->pieces = calloc(n_items == 0 ? 1 : n_items, sizeof(*rb->pieces));
    rb->found = calloc(n_items * st->n_raw + 1, sizeof(*rb->found));
    if (rb->needles == NULL || rb->items == NULL || rb->pieces == NULL || rb->found == NULL)
        abort();
    for (size_t i = 0; i < st->n_raw; i++) {
        const struct search_key *k = st->raw_keys[i];
        struct search_needle *nd = &rb->needles[i];
        const char *v = k->op == SEARCH_HEADER ? k->value : k->str;
        size_t vl = k->op == SEARCH_HEADER ? k->value_len : k->len;
        nd->kind = k->op == SEARCH_HEADER ? SEARCH_NEEDLE_HEADER
                   : k->op == SEARCH_BODY ? SEARCH_NEEDLE_BODY
                                          : SEARCH_NEEDLE_TEXT;
        nd->value = malloc(vl + 1);
        if (nd->value == NULL)
            abort();
        memcpy(nd->value, v, vl);
        nd->value_len = vl;
        if (k->op == SEARCH_HEADER) {
            nd->name = strndup(k->str, k->len);
            if (nd->name == NULL)
                abort();
            nd->name_len = k->len;
        }
    }
    rb->body = st->q.raw_body;
    st->raw = rb;
}

static enum cmd_status batch_got_parse(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    enum cmd_status out;
    if (!tx_ok(ctx, st->n_undecided, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    bool raw = (st->q.levels & (1u << SEARCH_LEVEL_RAW)) != 0;
    if (raw)
        raw_setup(st, st->n_undecided);
    struct mail_buf scratch = {0};
    for (size_t i = 0; i < st->n_undecided; i++) {
        struct search_msg *m = &st->msgs[st->undecided[i]];
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING) {
            m->gone = true; /* content released: the message went away */
            continue;
        }
        struct mail_view *view = NULL;
        const char *error = NULL;
        if (mail_view_open((const uint8_t *)e->str, e->len, &view, &error) != 0) {
            log_write(LOG_ERROR, "search.bad_parse", "sha=%s error=%s", m->sha, error);
            m->gone = true;
            continue;
        }
        search_eval_parse(&st->q, m, view, &scratch);
        mail_view_free(&view);
        if (!raw || search_eval(&st->q, m) != SEARCH_UNKNOWN)
            continue;
        struct raw_batch *rb = st->raw;
        struct raw_item *it = &rb->items[rb->n_items];
        it->msg = st->undecided[i];
        if (search_scan_begin(&it->scan, rb->needles, rb->n_needles, (const uint8_t *)e->str,
                              e->len, &error) != 0) {
            m->gone = true;
            continue;
        }
        it->need = search_scan_need(&it->scan, rb->body);
        rb->n_items++;
    }
    mail_buf_free(&scratch);
    if (raw && st->raw->n_items > 0)
        return raw_round(ctx);
    if (raw) {
        raw_batch_free(st->raw);
        st->raw = NULL;
    }
    return batch_conclude(ctx);
}

static enum cmd_status batch_got_records(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    bool want_msg = st->q.uses_msg || st->q.root->level >= SEARCH_LEVEL_PARSE;
    size_t n = (want_msg ? 1u : 0u) + (st->q.uses_flags ? 1u : 0u);
    enum cmd_status out;
    if (!tx_ok(ctx, n, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t slot = 0;
    if (want_msg) {
        const redisReply *recs = r->element[slot++];
        if (recs->type != REDIS_REPLY_ARRAY || recs->elements != st->n_msgs)
            return bad_data(ctx, "hmget msg");
        for (size_t i = 0; i < st->n_msgs; i++) {
            const redisReply *e = recs->element[i];
            struct search_msg *m = &st->msgs[i];
            if (e->type != REDIS_REPLY_STRING) {
                m->gone = true;
                continue;
            }
            if (search_msg_record(st->batch, m, e->str, e->len) != 0)
                return bad_data(ctx, "msg record");
        }
    }
    if (st->q.uses_flags) {
        const redisReply *fl = r->element[slot++];
        if (fl->type != REDIS_REPLY_ARRAY || fl->elements != st->n_msgs)
            return bad_data(ctx, "hmget flags");
        for (size_t i = 0; i < st->n_msgs; i++) {
            const redisReply *e = fl->element[i];
            struct search_msg *m = &st->msgs[i];
            m->have_flags = true;
            m->flags = e->type == REDIS_REPLY_STRING ? arena_strndup(st->batch, e->str, e->len) : "";
        }
    }
    for (size_t i = 0; i < st->n_msgs; i++)
        search_eval_record(&st->q, &st->msgs[i]);
    collect_undecided(st);
    if (st->n_undecided == 0 || st->q.root->level < SEARCH_LEVEL_PARSE)
        return batch_conclude(ctx);
    /* The stored parse of each undecided message, one HGET each, one transaction. */
    const char *nsid = conn_nsid(ctx->conn);
    size_t u = st->n_undecided;
    int *argc = arena_calloc(st->batch, u, sizeof(*argc));
    const char *const **argv = arena_calloc(st->batch, u, sizeof(*argv));
    const size_t **argvlen = arena_calloc(st->batch, u, sizeof(*argvlen));
    for (size_t i = 0; i < u; i++) {
        struct key k;
        keys_content(&k, nsid, st->msgs[st->undecided[i]].sha);
        const char **av = arena_calloc(st->batch, 3, sizeof(*av));
        size_t *al = arena_calloc(st->batch, 3, sizeof(*al));
        av[0] = "HGET";
        al[0] = 4;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        av[2] = "parse";
        al[2] = 5;
        argc[i] = 3;
        argv[i] = av;
        argvlen[i] = al;
    }
    return conn_redis_tx(ctx, batch_got_parse, u, argc, argv, argvlen);
}

static enum cmd_status batch_next(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    arena_reset(st->batch);
    /* Next up to BATCH candidate UIDs. */
    uint32_t *uids = arena_calloc(st->batch, BATCH, sizeof(*uids));
    size_t n = 0;
    while (n < BATCH && st->cand_range < st->cand.count) {
        const struct seqset_range *rg = &st->cand.ranges[st->cand_range];
        if (st->cand_next < rg->first)
            st->cand_next = rg->first;
        uids[n++] = st->cand_next;
        if (st->cand_next == rg->last) {
            st->cand_range++;
            st->cand_next = 0;
        } else {
            st->cand_next++;
        }
    }
    if (n == 0)
        return finish(ctx);
    st->n_msgs = n;
    st->msgs = arena_calloc(st->batch, n, sizeof(*st->msgs));
    st->undecided = arena_calloc(st->batch, n, sizeof(*st->undecided));
    const char **nums = arena_calloc(st->batch, n, sizeof(*nums));
    size_t *num_lens = arena_calloc(st->batch, n, sizeof(*num_lens));
    for (size_t i = 0; i < n; i++) {
        st->msgs[i].uid = uids[i];
        st->msgs[i].leaf = arena_alloc(st->batch, st->q.n_leaves + 1);
        memset(st->msgs[i].leaf, SEARCH_UNKNOWN, st->q.n_leaves + 1);
        nums[i] = arena_printf(st->batch, "%" PRIu32, uids[i]);
        num_lens[i] = strlen(nums[i]);
    }
    bool want_msg = st->q.uses_msg || st->q.root->level >= SEARCH_LEVEL_PARSE;
    const char *nsid = conn_nsid(ctx->conn);
    const char *mbxid = conn_selected(ctx->conn)->mbxid;
    int argc[2];
    const char *const *argv[2];
    const size_t *argvlen[2];
    size_t t = 0;
    for (int which = 0; which < 2; which++) {
        if (which == 0 ? !want_msg : !st->q.uses_flags)
            continue;
        struct key k;
        keys_mbx(&k, nsid, mbxid, which == 0 ? KEYS_MBX_MSG : KEYS_MBX_FLAGS);
        const char **av = arena_calloc(st->batch, n + 2, sizeof(*av));
        size_t *al = arena_calloc(st->batch, n + 2, sizeof(*al));
        av[0] = "HMGET";
        al[0] = 5;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        memcpy(av + 2, nums, n * sizeof(*nums));
        memcpy(al + 2, num_lens, n * sizeof(*num_lens));
        argc[t] = (int)(n + 2);
        argv[t] = av;
        argvlen[t] = al;
        t++;
    }
    if (t == 0) {
        /* Only index keys and per-message keys that need nothing read: cannot happen (the
         * bounds would agree), but evaluate what is known rather than loop. */
        return batch_conclude(ctx);
    }
    return conn_redis_tx(ctx, batch_got_records, t, argc, argv, argvlen);
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
        (void)search_set_add(&vb, f, l);
    }
    struct seqset vset = search_set_done(&vb);
    struct seqset runs = search_set_done(&st->idx[IDX_RUNS].b);
    search_set_and(ctx->arena, &vset, &runs, &st->universe);
    struct seqset unseen = search_set_done(&st->idx[IDX_UNSEEN].b);
    struct seqset deleted = search_set_done(&st->idx[IDX_DELETED].b);
    struct search_index ix = {&st->universe, &unseen, &deleted, sel->recent_first};
    struct seqset may;
    search_eval_sets(ctx->arena, &st->q, &ix, &st->must, &may);
    search_set_minus(ctx->arena, &may, &st->must, &st->cand);
    search_set_builder_init(&st->matched, ctx->arena);
    st->n_raw = search_raw_keys(&st->q, NULL, 0);
    st->raw_keys = arena_calloc(ctx->arena, st->n_raw + 1, sizeof(const struct search_key *));
    (void)search_raw_keys(&st->q, st->raw_keys, st->n_raw);
    return batch_next(ctx);
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

static enum cmd_status idx_got(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    size_t n = 0;
    for (int i = 0; i < IDX_COUNT; i++)
        n += st->idx[i].want && !st->idx[i].done;
    enum cmd_status out;
    if (!tx_ok(ctx, n, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t slot = 0;
    for (int i = 0; i < IDX_COUNT; i++) {
        struct idx_read *ir = &st->idx[i];
        if (!ir->want || ir->done)
            continue;
        const redisReply *e = r->element[slot++];
        if (e->type != REDIS_REPLY_ARRAY)
            return bad_data(ctx, "index");
        for (size_t j = 0; j < e->elements; j++) {
            if (!add_member(ir, i, e->element[j]))
                return bad_data(ctx, "index member");
        }
        if (e->elements < IDX_BATCH || ir->next > st->hi || ir->next == UINT32_MAX)
            ir->done = true;
    }
    return idx_round(ctx);
}

static enum cmd_status idx_round(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    const char *nsid = conn_nsid(ctx->conn);
    const char *mbxid = conn_selected(ctx->conn)->mbxid;
    static const enum keys_mbx_part parts[IDX_COUNT] = {KEYS_MBX_RUNS, KEYS_MBX_UNSEEN,
                                                        KEYS_MBX_DELETED};
    int argc[IDX_COUNT];
    const char *const *argv[IDX_COUNT];
    const size_t *argvlen[IDX_COUNT];
    size_t n = 0;
    for (int i = 0; i < IDX_COUNT; i++) {
        struct idx_read *ir = &st->idx[i];
        if (!ir->want || ir->done)
            continue;
        struct key k;
        keys_mbx(&k, nsid, mbxid, parts[i]);
        const char **av = arena_calloc(ctx->arena, 7, sizeof(*av));
        size_t *al = arena_calloc(ctx->arena, 7, sizeof(*al));
        av[0] = "ZRANGEBYSCORE";
        av[1] = arena_strndup(ctx->arena, k.s, k.len);
        av[2] = arena_printf(ctx->arena, "%" PRIu32, ir->next);
        av[3] = arena_printf(ctx->arena, "%" PRIu32, st->hi);
        av[4] = "LIMIT";
        av[5] = "0";
        av[6] = arena_printf(ctx->arena, "%d", IDX_BATCH);
        for (int j = 0; j < 7; j++)
            al[j] = strlen(av[j]);
        argc[n] = 7;
        argv[n] = av;
        argvlen[n] = al;
        n++;
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
    const struct view *v = cur_view(ctx);
    st->batch = arena_new(64 * 1024);
    if (view_count(v) == 0)
        return finish(ctx);
    st->lo = view_uid(v, 1);
    st->hi = view_max_uid(v);
    st->idx[IDX_RUNS].want = true;
    st->idx[IDX_UNSEEN].want = st->q.uses_seen;
    st->idx[IDX_DELETED].want = st->q.uses_deleted;
    for (int i = 0; i < IDX_COUNT; i++) {
        search_set_builder_init(&st->idx[i].b, ctx->arena);
        st->idx[i].next = i == IDX_RUNS ? 0 : st->lo;
    }
    return idx_round(ctx);
}
