/*
 * search_raw: the last stage of SEARCH's per-message phase (see cmd_search.c): raw bytes
 * (GETRANGE, rounds of at most ROUND_BYTES, a large message in several) scanned on the worker
 * pool (search_scan.h) so the event loop keeps serving other clients; when the pool is full a
 * round is scanned inline (bounded by ROUND_BYTES). Only messages still undecided after their
 * stored parse come here, each set up with search_raw_add while its parse is in hand.
 *
 * Ownership: the raw batch is owned by the command state, or by the worker job while one is in
 * flight (so a connection that goes away mid-scan never frees what a worker is using).
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/search_private.h"
#include "keys/keys.h"

#define ROUND_BYTES (4u * 1024 * 1024) /* raw bytes per GETRANGE round */

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
    size_t n_items, cap_items;
    size_t cursor;          /* first item with bytes still to schedule */
    struct raw_piece *pieces;
    size_t n_pieces;
    uint8_t *buf;
    size_t buf_len, buf_cap;
    bool *found;            /* cap_items x n_needles */
    bool submitting;        /* inside conn_work: a synchronous free_job must not free */
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

void search_raw_free(struct search_state *st)
{
    raw_batch_free(st->raw);
    st->raw = NULL;
}

static void raw_job_free(void *job)
{
    struct raw_batch *rb = job;
    if (rb->submitting)
        return; /* conn_work refused it: the caller still owns it */
    raw_batch_free(rb);
}

/* The batch's raw state, room for every message of the batch. */
static struct raw_batch *raw_setup(struct search_state *st)
{
    size_t cap = st->n_msgs == 0 ? 1 : st->n_msgs;
    struct raw_batch *rb = calloc(1, sizeof(*rb));
    if (rb == NULL)
        abort();
    rb->n_needles = st->n_raw;
    rb->cap_items = cap;
    rb->needles = calloc(st->n_raw == 0 ? 1 : st->n_raw, sizeof(*rb->needles));
    rb->items = calloc(cap, sizeof(*rb->items));
    /* A round holds at most one piece per item, plus nothing else. */
    rb->pieces = calloc(cap, sizeof(*rb->pieces));
    rb->found = calloc(cap * st->n_raw + 1, sizeof(*rb->found));
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
    return rb;
}

bool search_raw_add(struct search_state *st, size_t msg, const char *parse, size_t len)
{
    if (st->raw == NULL)
        st->raw = raw_setup(st);
    struct raw_batch *rb = st->raw;
    if (rb->n_items >= rb->cap_items)
        return false; /* cannot happen: one item per message of the batch */
    struct raw_item *it = &rb->items[rb->n_items];
    memset(it, 0, sizeof(*it));
    it->msg = msg;
    const char *error = NULL;
    if (search_scan_begin(&it->scan, rb->needles, rb->n_needles, (const uint8_t *)parse, len,
                          &error) != 0) {
        search_scan_free(&it->scan);
        return false;
    }
    it->need = search_scan_need(&it->scan, rb->body);
    rb->n_items++;
    return true;
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
    search_raw_free(st);
    return search_batch_conclude(ctx);
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
    if (!search_tx_ok(ctx, rb->n_pieces, &out))
        return out;
    const redisReply *r = ctx->store->reply;
    size_t total = 0;
    for (size_t i = 0; i < rb->n_pieces; i++) {
        const redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_STRING)
            return search_bad_data(ctx, "getrange");
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
        char *nums = arena_alloc(st->batch, 40);
        av[0] = "GETRANGE";
        al[0] = 8;
        av[1] = arena_strndup(st->batch, k.s, k.len);
        al[1] = k.len;
        av[2] = nums;
        al[2] = search_fmt_u64(nums, p->offset);
        av[3] = nums + 20;
        al[3] = search_fmt_u64(nums + 20, p->offset + p->len - 1);
        argc[i] = 4;
        argv[i] = av;
        argvlen[i] = al;
    }
    return conn_redis_tx(ctx, raw_got, n, argc, argv, argvlen);
}

enum cmd_status search_raw_run(struct cmd_ctx *ctx)
{
    struct search_state *st = ctx->state;
    if (st->raw == NULL)
        return search_batch_conclude(ctx);
    if (st->raw->n_items == 0) {
        search_raw_free(st);
        return search_batch_conclude(ctx);
    }
    return raw_round(ctx);
}
