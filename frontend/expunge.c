/*
 * Batched expunge of the selected mailbox (see expunge.h). The candidates of a batch are read
 * (EXPUNGE_DELETED: ZRANGEBYSCORE deleted from a cursor, then filtered by the UID set and the
 * view; EXPUNGE_ALL: the next UIDs of the set), then their content ids, then expunge.lua runs
 * with the content keys in KEYS (every key a script touches arrives in KEYS). The script re-checks
 * each candidate, so the driver never needs a consistent snapshot across its reads.
 * The driver itself reports nothing: the handler's callback does (expunge_report, or nothing
 * for CLOSE).
 */
#include "frontend/expunge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/reply.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define EXPUNGE_BATCH 1000
#define BATCH_ARENA (64 * 1024)

static enum cmd_status next_batch(struct cmd_ctx *ctx);

static const struct store_result bad_reply = {STORE_ERROR, NULL, "ERR unexpected reply"};

void expunge_report(struct cmd_ctx *ctx, const uint32_t *uids, size_t n)
{
    struct selected *sel = conn_selected(ctx->conn);
    for (size_t i = 0; i < n; i++) {
        uint32_t seq = view_remove(sel->view, uids[i]);
        if (seq != 0)
            reply_untagged(ctx->conn, "%" PRIu32 " EXPUNGE", seq);
    }
}

void expunge_release(struct expunge_job *job)
{
    arena_free(&job->batch_arena);
}

static enum cmd_status finish(struct cmd_ctx *ctx, const struct store_result *failure)
{
    struct expunge_job *job = ctx->helper;
    if (failure != NULL) {
        job->failed = true;
        job->status = failure->status;
        const char *e = failure->error != NULL ? failure->error : "unexpected reply";
        job->error = arena_strndup(ctx->arena, e, strlen(e));
    }
    expunge_release(job);
    ctx->helper = NULL;
    return job->done(ctx);
}

/* True when uid is one the job may remove (UID set and view filters). */
static bool wanted(const struct cmd_ctx *ctx, const struct expunge_job *job, uint32_t uid)
{
    if (job->uids != NULL && !seqset_contains(job->uids, uid))
        return false;
    return !job->view_only || view_seq(conn_selected(ctx->conn)->view, uid) != 0;
}

/* The highest UID the job may consider. */
static uint32_t upper_bound(const struct cmd_ctx *ctx, const struct expunge_job *job)
{
    uint32_t hi = UINT32_MAX;
    if (job->uids != NULL)
        hi = job->uids->count > 0 ? job->uids->ranges[job->uids->count - 1].last : 0;
    if (job->view_only) {
        uint32_t top = view_max_uid(conn_selected(ctx->conn)->view);
        if (top < hi)
            hi = top;
    }
    return hi;
}

static enum cmd_status expunged(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return finish(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->integer < 0 || r->elements != 2 + (size_t)r->element[1]->integer)
        return finish(ctx, &bad_reply);
    size_t n = (size_t)r->element[1]->integer;
    uint32_t *removed = arena_alloc(job->batch_arena, (n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[2 + i];
        if (e->type != REDIS_REPLY_INTEGER || e->integer < 1 || e->integer > UINT32_MAX)
            return finish(ctx, &bad_reply);
        removed[i] = (uint32_t)e->integer;
    }
    if (n > 0)
        job->modseq = (uint64_t)r->element[0]->integer;
    job->total += n;
    if (job->removed != NULL && n > 0)
        job->removed(ctx, removed, n);
    if (job->exhausted)
        return finish(ctx, NULL);
    if (conn_output_full(ctx->conn))
        return conn_wait_drain(ctx, next_batch);
    return next_batch(ctx);
}

static enum cmd_status got_contents(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return finish(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != job->batch_n)
        return finish(ctx, &bad_reply);
    const struct selected *sel = conn_selected(ctx->conn);
    const char *nsid = conn_nsid(ctx->conn);
    struct arena *a = job->batch_arena;
    size_t n = job->batch_n;
    uint32_t *chunks = arena_alloc(a, (n > 0 ? n : 1) * sizeof(*chunks));
    size_t nchunks = keys_cache_chunks(job->batch, n, chunks);
    size_t nkeys = 12 + n + 2 * nchunks;
    size_t argc = nkeys + 2 + n;
    struct key *keys = arena_alloc(a, nkeys * sizeof(*keys));
    const char **argv = arena_alloc(a, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, argc * sizeof(*argvlen));
    keys_ns_meta(&keys[0], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], nsid, sel->mbxid, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[10], nsid);
    keys_ns_gc(&keys[11], nsid);
    /* A message already gone has no record: any valid content key will do (it is skipped). */
    static const char placeholder[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    size_t at = nkeys;
    argv[at] = sel->mbxid;
    argvlen[at++] = strlen(sel->mbxid);
    argv[at] = job->mode == EXPUNGE_ALL ? "all" : "deleted";
    argvlen[at] = strlen(argv[at]);
    at++;
    for (size_t i = 0; i < n; i++) {
        const redisReply *rec = r->element[i];
        char sha[KEYS_SHA256_LEN + 1];
        if (rec->type == REDIS_REPLY_STRING && rec->len > KEYS_SHA256_LEN &&
            keys_hex_valid(rec->str, KEYS_SHA256_LEN, KEYS_SHA256_LEN)) {
            memcpy(sha, rec->str, KEYS_SHA256_LEN);
            sha[KEYS_SHA256_LEN] = '\0';
        } else {
            memcpy(sha, placeholder, sizeof(placeholder));
        }
        keys_content(&keys[12 + i], nsid, sha);
        char *uid = arena_printf(a, "%" PRIu32, job->batch[i]);
        argv[at] = uid;
        argvlen[at++] = strlen(uid);
    }
    for (size_t i = 0; i < nchunks; i++) {
        keys_mbx_cache(&keys[12 + n + 2 * i], nsid, sel->mbxid, 'f', chunks[i]);
        keys_mbx_cache(&keys[12 + n + 2 * i + 1], nsid, sel->mbxid, 'm', chunks[i]);
    }
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    return conn_eval(ctx, expunged, LUA_SCRIPT_EXPUNGE, (int)nkeys, (int)argc, argv, argvlen);
}

/* Reads the content ids of job->batch. */
static enum cmd_status read_contents(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    const struct selected *sel = conn_selected(ctx->conn);
    struct arena *a = job->batch_arena;
    struct key msg;
    keys_mbx(&msg, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_MSG);
    size_t argc = 2 + job->batch_n;
    const char **argv = arena_alloc(a, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, argc * sizeof(*argvlen));
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = arena_strndup(a, msg.s, msg.len);
    argvlen[1] = msg.len;
    for (size_t i = 0; i < job->batch_n; i++) {
        char *uid = arena_printf(a, "%" PRIu32, job->batch[i]);
        argv[2 + i] = uid;
        argvlen[2 + i] = strlen(uid);
    }
    return conn_redis(ctx, got_contents, (int)argc, argv, argvlen);
}

static bool parse_uid(const redisReply *e, uint32_t *uid_r)
{
    char buf[16];
    if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof(buf))
        return false;
    memcpy(buf, e->str, e->len);
    buf[e->len] = '\0';
    char *end = NULL;
    unsigned long v = strtoul(buf, &end, 10);
    if (*end != '\0' || v == 0 || v > UINT32_MAX)
        return false;
    *uid_r = (uint32_t)v;
    return true;
}

static enum cmd_status got_candidates(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return finish(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements > EXPUNGE_BATCH)
        return finish(ctx, &bad_reply);
    job->batch_n = 0;
    job->batch = arena_alloc(job->batch_arena, (r->elements + 1) * sizeof(uint32_t));
    uint32_t last = 0;
    for (size_t i = 0; i < r->elements; i++) {
        uint32_t uid = 0;
        if (!parse_uid(r->element[i], &uid) || uid < job->cursor || uid <= last)
            return finish(ctx, &bad_reply);
        last = uid;
        if (wanted(ctx, job, uid))
            job->batch[job->batch_n++] = uid;
    }
    if (r->elements < EXPUNGE_BATCH || last >= upper_bound(ctx, job))
        job->exhausted = true;
    else
        job->cursor = last + 1;
    if (job->batch_n > 0)
        return read_contents(ctx);
    if (job->exhausted)
        return finish(ctx, NULL);
    return next_batch(ctx);
}

/* EXPUNGE_ALL: the next up to EXPUNGE_BATCH wanted UIDs of job->uids from the cursor. */
static void take_from_set(struct cmd_ctx *ctx, struct expunge_job *job)
{
    const struct seqset *set = job->uids;
    job->batch = arena_alloc(job->batch_arena, EXPUNGE_BATCH * sizeof(uint32_t));
    job->batch_n = 0;
    while (job->range < set->count && job->batch_n < EXPUNGE_BATCH) {
        const struct seqset_range *rg = &set->ranges[job->range];
        if (job->cursor < rg->first)
            job->cursor = rg->first;
        if (job->cursor > rg->last) {
            job->range++;
            continue;
        }
        uint32_t uid = job->cursor;
        if (wanted(ctx, job, uid))
            job->batch[job->batch_n++] = uid;
        if (uid == rg->last) {
            job->range++;
        } else {
            job->cursor = uid + 1;
        }
    }
    job->exhausted = job->range >= set->count;
}

static enum cmd_status next_batch(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    arena_reset(job->batch_arena);
    if (job->mode == EXPUNGE_ALL) {
        take_from_set(ctx, job);
        if (job->batch_n > 0)
            return read_contents(ctx);
        return finish(ctx, NULL);
    }
    uint32_t hi = upper_bound(ctx, job);
    if (job->cursor > hi || hi == 0)
        return finish(ctx, NULL);
    const struct selected *sel = conn_selected(ctx->conn);
    struct key deleted;
    keys_mbx(&deleted, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_DELETED);
    char lo[16], up[16];
    snprintf(lo, sizeof(lo), "%" PRIu32, job->cursor);
    snprintf(up, sizeof(up), "%" PRIu32, hi);
    const char *argv[] = {"ZRANGEBYSCORE", deleted.s, lo, up, "LIMIT", "0", "1000"};
    const size_t argvlen[] = {13, deleted.len, strlen(lo), strlen(up), 5, 1, 4};
    return conn_redis(ctx, got_candidates, 7, argv, argvlen);
}

enum cmd_status expunge_start(struct cmd_ctx *ctx, struct expunge_job *job)
{
    ctx->helper = job;
    job->failed = false;
    job->total = 0;
    job->modseq = conn_selected(ctx->conn)->highestmodseq;
    job->range = 0;
    job->cursor = 1;
    job->exhausted = false;
    if (job->batch_arena == NULL)
        job->batch_arena = arena_new(BATCH_ARENA);
    if (job->mode == EXPUNGE_ALL && job->uids == NULL)
        return finish(ctx, &bad_reply);
    return next_batch(ctx);
}
