/*
 * Batched expunge of the selected mailbox (see expunge.h). Candidates are read, then their content
 * ids, then expunge.lua runs with the content keys in KEYS (every key a script touches arrives in
 * KEYS); the script re-checks each candidate, so a concurrent STORE -FLAGS \Deleted wins.
 */
#include "frontend/expunge.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/arena.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define EXPUNGE_BATCH 1000

static enum cmd_status read_candidates(struct cmd_ctx *ctx);

static enum cmd_status finish(struct cmd_ctx *ctx, const struct store_result *failure)
{
    struct expunge_job *job = ctx->helper;
    if (failure != NULL) {
        job->failed = true;
        job->status = failure->status;
        const char *e = failure->error != NULL ? failure->error : "unexpected reply";
        job->error = arena_strndup(ctx->arena, e, strlen(e));
    }
    ctx->helper = NULL;
    return job->done(ctx);
}

static const struct store_result bad_reply = {STORE_ERROR, NULL, "ERR unexpected reply"};

static enum cmd_status expunged(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return finish(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->elements != 2 + (size_t)r->element[1]->integer)
        return finish(ctx, &bad_reply);
    job->modseq = (uint64_t)r->element[0]->integer;
    size_t n = (size_t)r->element[1]->integer;
    uint32_t *removed = arena_alloc(ctx->arena, (n + 1) * sizeof(uint32_t));
    for (size_t i = 0; i < n; i++) {
        const redisReply *e = r->element[2 + i];
        if (e->type != REDIS_REPLY_INTEGER || e->integer < 1 || e->integer > UINT32_MAX)
            return finish(ctx, &bad_reply);
        removed[i] = (uint32_t)e->integer;
    }
    job->total += n;
    if (job->removed != NULL && n > 0)
        job->removed(ctx, removed, n);
    if (job->batch_n == EXPUNGE_BATCH)
        return read_candidates(ctx); /* there may be more */
    return finish(ctx, NULL);
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
    size_t n = job->batch_n;
    size_t nkeys = 12 + n;
    struct key *keys = arena_alloc(ctx->arena, nkeys * sizeof(*keys));
    const char **argv = arena_alloc(ctx->arena, (nkeys + 1 + n) * sizeof(*argv));
    size_t *argvlen = arena_alloc(ctx->arena, (nkeys + 1 + n) * sizeof(*argvlen));
    keys_ns_meta(&keys[0], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], nsid, sel->mbxid, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[10], nsid);
    keys_ns_gc(&keys[11], nsid);
    /* A message already gone has no record: any valid content key will do (it is skipped). */
    static const char placeholder[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    size_t a = nkeys;
    argv[a] = sel->mbxid;
    argvlen[a++] = strlen(sel->mbxid);
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
        char *uid = arena_printf(ctx->arena, "%" PRIu32, job->batch[i]);
        argv[a] = uid;
        argvlen[a++] = strlen(uid);
    }
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    return conn_eval(ctx, expunged, LUA_SCRIPT_EXPUNGE, (int)nkeys, (int)a, argv, argvlen);
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
    if (r->elements == 0)
        return finish(ctx, NULL);
    job->batch_n = r->elements;
    job->batch = arena_alloc(ctx->arena, r->elements * sizeof(uint32_t));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        char buf[16];
        if (e->type != REDIS_REPLY_STRING || e->len == 0 || e->len >= sizeof(buf))
            return finish(ctx, &bad_reply);
        memcpy(buf, e->str, e->len);
        buf[e->len] = '\0';
        char *end = NULL;
        unsigned long v = strtoul(buf, &end, 10);
        if (*end != '\0' || v == 0 || v > UINT32_MAX)
            return finish(ctx, &bad_reply);
        job->batch[i] = (uint32_t)v;
    }
    const struct selected *sel = conn_selected(ctx->conn);
    struct key msg;
    keys_mbx(&msg, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_MSG);
    size_t argc = 2 + job->batch_n;
    const char **argv = arena_alloc(ctx->arena, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(ctx->arena, argc * sizeof(*argvlen));
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = arena_strndup(ctx->arena, msg.s, msg.len);
    argvlen[1] = msg.len;
    for (size_t i = 0; i < job->batch_n; i++) {
        const redisReply *e = r->element[i];
        argv[2 + i] = arena_strndup(ctx->arena, e->str, e->len);
        argvlen[2 + i] = e->len;
    }
    return conn_redis(ctx, got_contents, (int)argc, argv, argvlen);
}

static enum cmd_status read_candidates(struct cmd_ctx *ctx)
{
    const struct selected *sel = conn_selected(ctx->conn);
    struct key deleted;
    keys_mbx(&deleted, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_DELETED);
    const char *argv[] = {"ZRANGE", deleted.s, "0", "999"};
    const size_t argvlen[] = {6, deleted.len, 1, 3};
    return conn_redis(ctx, got_candidates, 4, argv, argvlen);
}

enum cmd_status expunge_start(struct cmd_ctx *ctx, struct expunge_job *job)
{
    ctx->helper = job;
    job->failed = false;
    job->total = 0;
    return read_candidates(ctx);
}
