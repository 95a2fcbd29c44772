/*
 * fetch_content: steps 3 and 4 of a FETCH batch (cmd_fetch.c): what a message's answer needs
 * beyond its columns.
 *
 * Content windows. Messages are taken in windows of at most FETCH_WINDOW_FIELDS; a message whose
 * parse came with the 'm' column cache gets its view opened at once (no Redis read); the others
 * read, in one MULTI/EXEC per window, either the plan's content fields (env, bs, parse: at most
 * FETCH_WINDOW_PARSE parses a window) or, when their 'm' chunk is being built, the parse alone
 * (at most FETCH_WINDOW_BUILD a window), which goes into the chunk (fetch_chunk_add_parse) and
 * answers ENVELOPE and BODYSTRUCTURE through the renderers APPEND used; such a read starts with
 * HGET highestmodseq, and a build whose modseq the mailbox has left is given up there
 * (fetch_builds_check), so later windows do not read parses for it. A cached parse that does not
 * open is read from the content instead, so a damaged chunk never costs an answer.
 *
 * Small reads. Body items are resolved to byte ranges from the parse; consecutive messages whose
 * ranges are small are read together, one GETRANGE per range in one MULTI/EXEC of at most
 * FETCH_DATA_BUDGET bytes and FETCH_DATA_MSGS messages; a message reading more than FETCH_SMALL
 * is handed to fetch_stream.c.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/cmd_common.h"
#include "frontend/fetch_state.h"
#include "frontend/log.h"
#include "frontend/selected.h"
#include "keys/keys.h"

/* ------------------------------------------------------------------ 3. content */

static bool plan_needs_content(const struct fetch_plan *plan)
{
    return plan->need_env || plan->need_bs || plan->need_parse;
}

bool fetch_needs_content(const struct fetch_state *st, const struct fetch_msg *m)
{
    return m->build || plan_needs_content(&st->plan);
}

/* How a message of a content window gets its content. */
enum content_way {
    CONTENT_NONE,   /* nothing needed, or the view over its cached parse is open */
    CONTENT_FIELDS, /* HMGET content env/bs/parse as the plan needs */
    CONTENT_PARSE,  /* HGET content parse: its 'm' chunk is being built */
};

static enum content_way content_way(const struct fetch_state *st, const struct fetch_msg *m)
{
    if (!m->exists || m->gone)
        return CONTENT_NONE;
    if (m->build)
        return CONTENT_PARSE;
    if (m->parse != NULL || !plan_needs_content(&st->plan))
        return CONTENT_NONE;
    return CONTENT_FIELDS;
}

static size_t content_fields(const struct fetch_plan *plan, const char **fields)
{
    size_t n = 0;
    if (plan->need_env)
        fields[n++] = "env";
    if (plan->need_bs)
        fields[n++] = "bs";
    if (plan->need_parse)
        fields[n++] = "parse";
    return n;
}

void fetch_close_views(struct fetch_state *st)
{
    for (size_t k = st->cw_start; k < st->cw_end && k < st->n; k++)
        mail_view_free(&st->msgs[k].view);
    st->cw_start = st->cw_end = 0;
}

bool fetch_open_window(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    fetch_close_views(st);
    arena_reset(st->window);
    st->cw_start = st->cw_end = st->i;
    st->cw_ways = arena_alloc(st->window, FETCH_WINDOW_FIELDS);
    size_t parses = 0, builds = 0, reads = 0;
    for (size_t k = st->i; k < st->n && k - st->i < FETCH_WINDOW_FIELDS; k++) {
        struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !m->gone && !m->build && m->parse != NULL && plan_needs_content(&st->plan)) {
            const char *error = NULL;
            if (mail_view_open(m->parse, m->parse_len, &m->view, &error) != 0) {
                log_write(LOG_WARN, "fetch.cached_parse_bad", "conn=%llu uid=%" PRIu32 " reason=%s",
                          (unsigned long long)conn_id(ctx->conn), m->uid, error);
                m->parse = NULL; /* read from the content instead */
            } else {
                m->content = true;
            }
        }
        enum content_way way = content_way(st, m);
        if (way == CONTENT_PARSE && builds == FETCH_WINDOW_BUILD)
            break;
        if (way == CONTENT_FIELDS && st->plan.need_parse && parses == FETCH_WINDOW_PARSE)
            break;
        builds += way == CONTENT_PARSE ? 1 : 0;
        parses += way == CONTENT_FIELDS && st->plan.need_parse ? 1 : 0;
        reads += way != CONTENT_NONE ? 1 : 0;
        st->cw_ways[k - st->i] = (uint8_t)way;
        st->cw_end = k + 1;
    }
    st->cw_probe = builds > 0;
    return reads > 0;
}

/* How msgs[k] of the open window gets its content (decided when the window was opened). */
static enum content_way window_way(const struct fetch_state *st, size_t k)
{
    return (enum content_way)st->cw_ways[k - st->cw_start];
}

static enum cmd_status fetch_got_content(struct cmd_ctx *ctx);

enum cmd_status fetch_read_content(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const char *fields[3];
    size_t nf = content_fields(&st->plan, fields);
    static const char *const parse_only[] = {"parse"};
    size_t want = st->cw_probe ? 1 : 0;
    for (size_t k = st->cw_start; k < st->cw_end; k++)
        want += window_way(st, k) != CONTENT_NONE ? 1 : 0;
    int *argc = arena_calloc(st->window, want, sizeof(*argc));
    const char ***argv = arena_calloc(st->window, want, sizeof(*argv));
    size_t **argvlen = arena_calloc(st->window, want, sizeof(*argvlen));
    size_t c = 0;
    if (st->cw_probe) {
        /* Parses read for an 'm' build: is the build still worth them (fetch_builds_check)? */
        struct key *key = arena_alloc(st->window, sizeof(*key));
        keys_mbx(key, st->nsid, st->sel->mbxid, KEYS_MBX);
        static const char *const probe[] = {"HGET", NULL, "highestmodseq"};
        static const size_t probe_len[] = {4, 0, 13};
        argc[c] = 3;
        argv[c] = arena_calloc(st->window, 3, sizeof(char *));
        argvlen[c] = arena_calloc(st->window, 3, sizeof(size_t));
        for (size_t j = 0; j < 3; j++) {
            argv[c][j] = j == 1 ? key->s : probe[j];
            argvlen[c][j] = j == 1 ? key->len : probe_len[j];
        }
        c++;
    }
    for (size_t k = st->cw_start; k < st->cw_end; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        enum content_way way = window_way(st, k);
        if (way == CONTENT_NONE)
            continue;
        const char *const *f = way == CONTENT_PARSE ? parse_only : fields;
        size_t n = way == CONTENT_PARSE ? 1 : nf;
        struct key *key = arena_alloc(st->window, sizeof(*key));
        keys_content(key, st->nsid, m->sha);
        argc[c] = (int)(n + 2);
        argv[c] = arena_calloc(st->window, n + 2, sizeof(char *));
        argvlen[c] = arena_calloc(st->window, n + 2, sizeof(size_t));
        argv[c][0] = "HMGET";
        argvlen[c][0] = 5;
        argv[c][1] = key->s;
        argvlen[c][1] = key->len;
        for (size_t j = 0; j < n; j++) {
            argv[c][2 + j] = f[j];
            argvlen[c][2 + j] = strlen(f[j]);
        }
        c++;
    }
    return conn_redis_tx(ctx, fetch_got_content, c, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

/* Opens m's view over a parse just read (copied into the window arena). */
static bool open_read_parse(struct cmd_ctx *ctx, struct fetch_msg *m, const redisReply *v)
{
    struct fetch_state *st = ctx->state;
    uint8_t *blob = arena_alloc(st->window, v->len > 0 ? v->len : 1);
    memcpy(blob, v->str, v->len);
    const char *error = NULL;
    if (mail_view_open(blob, v->len, &m->view, &error) != 0) {
        fetch_content_broken(ctx, m, error);
        return false;
    }
    return true;
}

/* A message whose parse alone was read for the chunk being built. */
static void got_parse(struct cmd_ctx *ctx, size_t k, const redisReply *e)
{
    struct fetch_state *st = ctx->state;
    struct fetch_msg *m = &st->msgs[k];
    const redisReply *v = e->type == REDIS_REPLY_ARRAY && e->elements == 1 ? e->element[0] : NULL;
    if (v == NULL || v->type != REDIS_REPLY_STRING) {
        fetch_chunk_add_parse(ctx, k, NULL, 0);
        fetch_content_broken(ctx, m, "content fields missing");
        return;
    }
    if (plan_needs_content(&st->plan) && !open_read_parse(ctx, m, v)) {
        fetch_chunk_add_parse(ctx, k, NULL, 0);
        return;
    }
    fetch_chunk_add_parse(ctx, k, (const uint8_t *)v->str, v->len);
    m->content = true;
}

/* A message whose plan fields were read. */
static void got_fields(struct cmd_ctx *ctx, struct fetch_msg *m, const redisReply *e, size_t nf)
{
    struct fetch_state *st = ctx->state;
    if (e->type != REDIS_REPLY_ARRAY || e->elements != nf) {
        fetch_content_broken(ctx, m, "content read failed");
        return;
    }
    size_t f = 0;
    bool ok = true;
    if (st->plan.need_env) {
        const redisReply *v = e->element[f++];
        ok = ok && v->type == REDIS_REPLY_STRING;
        if (ok) {
            m->env = arena_strndup(st->window, v->str, v->len);
            m->env_len = v->len;
        }
    }
    if (st->plan.need_bs) {
        const redisReply *v = e->element[f++];
        ok = ok && v->type == REDIS_REPLY_STRING;
        if (ok) {
            m->bs = arena_strndup(st->window, v->str, v->len);
            m->bs_len = v->len;
        }
    }
    if (st->plan.need_parse) {
        const redisReply *v = e->element[f++];
        ok = ok && v->type == REDIS_REPLY_STRING;
        if (ok && !open_read_parse(ctx, m, v))
            return;
    }
    if (!ok) {
        fetch_content_broken(ctx, m, "content fields missing");
        return;
    }
    m->content = true;
}

static enum cmd_status fetch_got_content(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY)
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    const char *fields[3];
    size_t nf = content_fields(&st->plan, fields);
    size_t c = 0;
    if (st->cw_probe) {
        uint64_t highest = 0;
        bool known = res->reply->elements > 0 && cmd_reply_u64(res->reply->element[0], &highest);
        fetch_builds_check(ctx, known, highest);
        c++;
    }
    for (size_t k = st->cw_start; k < st->cw_end; k++) {
        struct fetch_msg *m = &st->msgs[k];
        enum content_way way = window_way(st, k);
        if (way == CONTENT_NONE)
            continue;
        if (c >= res->reply->elements) {
            fetch_chunk_add_parse(ctx, k, NULL, 0);
            fetch_content_broken(ctx, m, "short transaction reply");
            continue;
        }
        const redisReply *e = res->reply->element[c++];
        if (way == CONTENT_PARSE)
            got_parse(ctx, k, e);
        else
            got_fields(ctx, m, e, nf);
    }
    fetch_chunks_finish(ctx, st->cw_end);
    return fetch_run(ctx);
}

/* ------------------------------------------------------------------ 4. body items */

/* Resolves every body item of m into srcs (data arena). Returns false for UNKNOWN-CTE. */
static bool resolve_sources(struct fetch_state *st, const struct fetch_msg *m,
                            struct fetch_source *srcs, uint64_t *read_r, size_t *nreads_r,
                            bool *big_r)
{
    *read_r = 0;
    *nreads_r = 0;
    *big_r = false;
    for (size_t a = 0; a < st->plan.n; a++) {
        const struct fetch_att *att = &st->plan.atts[a];
        if (att->kind != FETCH_ATT_SECTION)
            continue;
        struct fetch_source *src = &srcs[a];
        fetch_source_resolve(st->data, &st->pieces, att, m, src);
        if (src->kind == FETCH_SOURCE_UNKNOWN_CTE)
            return false;
        if (src->kind == FETCH_SOURCE_FILTER && src->read_size > FETCH_FILTER_MAX) {
            src->kind = FETCH_SOURCE_NIL; /* a pathological header: not filtered by hand */
            src->count = 0;
            src->read_size = 0;
        }
        *read_r += src->read_size;
        *nreads_r += fetch_source_reads(src);
        if (src->kind != FETCH_SOURCE_FILTER && src->read_size > FETCH_SMALL)
            *big_r = true;
    }
    if (*read_r > FETCH_SMALL)
        *big_r = true;
    return true;
}

/* Adds one GETRANGE per raw piece of srcs to the transaction arrays. */
static void add_reads(struct fetch_state *st, const struct fetch_msg *m,
                      const struct fetch_source *srcs, int *argc, const char ***argv,
                      size_t **argvlen, size_t *c)
{
    struct key *key = arena_alloc(st->data, sizeof(*key));
    keys_content_raw(key, st->nsid, m->sha);
    for (size_t a = 0; a < st->plan.n; a++) {
        if (st->plan.atts[a].kind != FETCH_ATT_SECTION)
            continue;
        const struct fetch_source *src = &srcs[a];
        for (size_t p = 0; p < src->count; p++) {
            if (src->v[p].literal != NULL)
                continue;
            argc[*c] = 4;
            argv[*c] = arena_calloc(st->data, 4, sizeof(char *));
            argvlen[*c] = arena_calloc(st->data, 4, sizeof(size_t));
            argv[*c][0] = "GETRANGE";
            argvlen[*c][0] = 8;
            argv[*c][1] = key->s;
            argvlen[*c][1] = key->len;
            argv[*c][2] = arena_printf(st->data, "%" PRIu64, src->v[p].offset);
            argvlen[*c][2] = strlen(argv[*c][2]);
            argv[*c][3] = arena_printf(st->data, "%" PRIu64, src->v[p].offset + src->v[p].size - 1);
            argvlen[*c][3] = strlen(argv[*c][3]);
            (*c)++;
        }
    }
}

static enum cmd_status fetch_got_data(struct cmd_ctx *ctx);

enum cmd_status fetch_read_data(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    arena_reset(st->data);
    /* Not past a message whose content is still to be read. */
    size_t end = st->n;
    if (plan_needs_content(&st->plan)) {
        end = st->cw_end;
    } else if (st->building) {
        for (end = st->i + 1; end < st->n && !st->msgs[end].build; end++)
            ;
    }
    st->srcs = arena_calloc(st->data, end - st->i, sizeof(struct fetch_source *));
    st->first_read = arena_calloc(st->data, end - st->i + 1, sizeof(*st->first_read));
    uint64_t total = 0;
    size_t nreads = 0, msgs = 0;
    st->dw_end = st->i;
    for (size_t k = st->i; k < end && msgs < FETCH_DATA_MSGS; k++) {
        struct fetch_msg *m = &st->msgs[k];
        st->first_read[k - st->i] = nreads;
        if (m->exists && !m->gone) {
            struct fetch_source *srcs = arena_calloc(st->data, st->plan.n, sizeof(*srcs));
            uint64_t bytes = 0;
            size_t reads = 0;
            bool big = false;
            if (!resolve_sources(st, m, srcs, &bytes, &reads, &big)) {
                m->gone = true; /* BINARY of an unknown encoding: left out */
                st->unknown_cte = true;
            } else if (big) {
                if (k == st->i)
                    return fetch_stream_start(ctx, srcs);
                break;
            } else {
                if (k > st->i && total + bytes > FETCH_DATA_BUDGET)
                    break;
                st->srcs[k - st->i] = srcs;
                total += bytes;
                nreads += reads;
                msgs++;
            }
        }
        st->dw_end = k + 1;
        st->first_read[k + 1 - st->i] = nreads;
    }
    if (nreads == 0) {
        for (size_t k = st->i; k < st->dw_end; k++) {
            struct fetch_msg *m = &st->msgs[k];
            if (m->exists && !m->gone)
                fetch_render_message(ctx, m, st->srcs[k - st->i], NULL, 0);
        }
        st->i = st->dw_end;
        return fetch_run(ctx);
    }
    int *argc = arena_calloc(st->data, nreads, sizeof(*argc));
    const char ***argv = arena_calloc(st->data, nreads, sizeof(*argv));
    size_t **argvlen = arena_calloc(st->data, nreads, sizeof(*argvlen));
    size_t c = 0;
    for (size_t k = st->i; k < st->dw_end; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !m->gone)
            add_reads(st, m, st->srcs[k - st->i], argc, argv, argvlen, &c);
    }
    return conn_redis_tx(ctx, fetch_got_data, c, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

static enum cmd_status fetch_got_data(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY)
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    const redisReply *r = res->reply;
    for (size_t k = st->i; k < st->dw_end; k++) {
        struct fetch_msg *m = &st->msgs[k];
        if (!m->exists || m->gone)
            continue;
        size_t from = st->first_read[k - st->i], to = st->first_read[k + 1 - st->i];
        if (to > r->elements) {
            fetch_content_broken(ctx, m, "short transaction reply");
            continue;
        }
        fetch_render_message(ctx, m, st->srcs[k - st->i], r->element + from, to - from);
    }
    st->i = st->dw_end;
    return fetch_run(ctx);
}

