/*
 * DELETE (RFC 3501 §6.3.4). Two phases:
 *   1. the name: HGET of its id, then mbx_delete.lua, which removes the name at once, marks the
 *      mailbox removed (sessions that have it selected learn it from its change log) and puts it
 *      in the user's trash set;
 *   2. the messages: mbx_purge.lua in batches of LIMITS_PURGE_BATCH — read the batch's UIDs
 *      (ZRANGE uids), their content ids (HMGET msg), release them — until none remain, when the
 *      script deletes every key of the mailbox. Each batch is bounded, so deleting a 100,000-message
 *      mailbox never blocks Redis; the client waits for the whole purge and then gets OK.
 * Children keep their names (§6.3.4: inferior names are not removed); LIST then shows the parent as
 * \Noselect. INBOX cannot be deleted (NO [CANNOT]).
 *
 * Once phase 1 succeeded the mailbox is gone for every client, so a failure during the purge is
 * logged and DELETE is still answered OK: the mailbox stays in the trash set, and the user's next
 * DELETE, once its own purge is done, purges up to LEFTOVER_SWEEPS such leftovers (mbx_purge is
 * idempotent, so a purge running concurrently elsewhere does no harm).
 * The batch buffers are allocated once per command (at most ~250 KiB, only for mailboxes with
 * messages) and reused by every batch, so memory does not grow with the mailbox.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/limits.h"
#include "frontend/log.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"

#define UID_MAX_LEN 10        /* decimal digits of a 32-bit UID */
#define CONTENT_KEY_MAX 160   /* "/ns/{<nsid>}/content/<sha256>" is 116 bytes */
#define PURGE_FIXED_KEYS 12   /* meta, trash, the 9 mailbox keys, gc */
#define LEFTOVER_SWEEPS 4     /* leftover trash entries one DELETE purges at most */

struct delete_state {
    const char *name;
    size_t name_len;
    char mbxid[KEYS_MBXID_LEN + 1];
    /* the current purge batch, reused */
    size_t n;                                   /* UIDs in the batch */
    char (*uids)[UID_MAX_LEN + 1];
    char (*content)[CONTENT_KEY_MAX];
    const char **argv;
    size_t *argvlen;
    struct key *cache;                          /* the batch's column-cache keys */
    uint32_t *chunks;
    uint64_t released;
    uint64_t remaining;                         /* after the last batch; 0 before the first */
    unsigned sweeps;                            /* leftover trash entries purged after ours */
};

static enum cmd_status purge_read(struct cmd_ctx *ctx);

static enum cmd_status delete_got_leftover(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    /* Best effort: whatever happens here, the DELETE itself is complete. */
    if (res->status == STORE_OK && res->reply->type == REDIS_REPLY_STRING &&
        keys_mbxid_valid(res->reply->str, res->reply->len) &&
        memcmp(res->reply->str, st->mbxid, KEYS_MBXID_LEN) != 0) {
        memcpy(st->mbxid, res->reply->str, KEYS_MBXID_LEN);
        st->mbxid[KEYS_MBXID_LEN] = '\0';
        st->released = 0;
        st->remaining = 0;
        st->sweeps++;
        log_write(LOG_INFO, "mailbox.purge_leftover", "conn=%llu user=%s mbxid=%s",
                  (unsigned long long)conn_id(ctx->conn), conn_user(ctx->conn), st->mbxid);
        return purge_read(ctx);
    }
    reply_tagged(ctx, "OK", NULL, "DELETE completed");
    return CMD_DONE;
}

static enum cmd_status delete_finish(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    log_write(LOG_INFO, "mailbox.purged", "conn=%llu user=%s mbxid=%s released=%" PRIu64,
              (unsigned long long)conn_id(ctx->conn), conn_user(ctx->conn), st->mbxid, st->released);
    if (st->sweeps >= LEFTOVER_SWEEPS) {
        reply_tagged(ctx, "OK", NULL, "DELETE completed");
        return CMD_DONE;
    }
    /* A purge cut short (front end killed, Redis outage, client gone) left its mailbox in the
     * trash set: the next DELETE of the same user finishes it. */
    struct key trash;
    keys_ns_trash(&trash, conn_nsid(ctx->conn));
    const char *argv[] = {"SRANDMEMBER", trash.s};
    const size_t argvlen[] = {11, trash.len};
    return conn_redis(ctx, delete_got_leftover, 2, argv, argvlen);
}

/* Phase 2 failed: the mailbox is deleted for clients; its messages wait in the trash set. */
static enum cmd_status purge_failed(struct cmd_ctx *ctx, const char *why)
{
    struct delete_state *st = ctx->state;
    char q[200];
    log_write(LOG_WARN, "mailbox.purge_incomplete", "conn=%llu user=%s mbxid=%s error=%s",
              (unsigned long long)conn_id(ctx->conn), conn_user(ctx->conn), st->mbxid,
              log_quote(q, sizeof(q), why, strlen(why)));
    reply_tagged(ctx, "OK", NULL, "DELETE completed (messages are released later)");
    return CMD_DONE;
}

static bool reply_count(const redisReply *r, long long *out)
{
    if (r->type != REDIS_REPLY_INTEGER || r->integer < 0)
        return false;
    *out = r->integer;
    return true;
}

static enum cmd_status purge_done(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    long long released = 0;
    long long remaining = 0;
    if (!cmd_reply_is_array(res, 2))
        return purge_failed(ctx, res->status == STORE_OK ? "unexpected reply" : res->error);
    if (!reply_count(res->reply->element[0], &released) ||
        !reply_count(res->reply->element[1], &remaining))
        return purge_failed(ctx, "unexpected reply");
    st->released += (uint64_t)released;
    if (remaining == 0)
        return delete_finish(ctx);
    if (st->remaining > 0 && (uint64_t)remaining >= st->remaining) /* never loop forever */
        return purge_failed(ctx, "purge made no progress");
    st->remaining = (uint64_t)remaining;
    return purge_read(ctx);
}

static enum cmd_status purge_send(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    const char *nsid = conn_nsid(ctx->conn);
    struct key fixed[PURGE_FIXED_KEYS];
    keys_ns_meta(&fixed[0], nsid);
    keys_ns_trash(&fixed[1], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&fixed[2 + p], nsid, st->mbxid, (enum keys_mbx_part)p);
    keys_ns_gc(&fixed[2 + KEYS_MBX_PART_COUNT], nsid);
    const char *small_argv[PURGE_FIXED_KEYS + 1];
    size_t small_len[PURGE_FIXED_KEYS + 1];
    const char **argv = st->n > 0 ? st->argv : small_argv;
    size_t *argvlen = st->n > 0 ? st->argvlen : small_len;
    for (size_t i = 0; i < PURGE_FIXED_KEYS; i++) {
        argv[i] = fixed[i].s;
        argvlen[i] = fixed[i].len;
    }
    size_t nkeys = PURGE_FIXED_KEYS + st->n;
    for (size_t i = 0; i < st->n; i++) {
        argv[PURGE_FIXED_KEYS + i] = st->content[i];
        argvlen[PURGE_FIXED_KEYS + i] = strlen(st->content[i]);
    }
    /* The column caches of the batch's chunks (mbx_purge.lua deletes them). */
    uint32_t *uids32 = st->n > 0 ? st->chunks : NULL;
    for (size_t i = 0; i < st->n; i++)
        uids32[i] = (uint32_t)strtoul(st->uids[i], NULL, 10);
    size_t nchunks = st->n > 0 ? keys_cache_chunks(uids32, st->n, st->chunks) : 0;
    if (nchunks > 0 && st->cache == NULL)
        st->cache = arena_alloc(ctx->arena, 2 * LIMITS_PURGE_BATCH * sizeof(*st->cache));
    for (size_t i = 0; i < nchunks; i++) {
        keys_mbx_cache(&st->cache[2 * i], nsid, st->mbxid, 'f', st->chunks[i]);
        keys_mbx_cache(&st->cache[2 * i + 1], nsid, st->mbxid, 'm', st->chunks[i]);
        argv[nkeys] = st->cache[2 * i].s;
        argvlen[nkeys++] = st->cache[2 * i].len;
        argv[nkeys] = st->cache[2 * i + 1].s;
        argvlen[nkeys++] = st->cache[2 * i + 1].len;
    }
    argv[nkeys] = st->mbxid;
    argvlen[nkeys] = KEYS_MBXID_LEN;
    for (size_t i = 0; i < st->n; i++) {
        argv[nkeys + 1 + i] = st->uids[i];
        argvlen[nkeys + 1 + i] = strlen(st->uids[i]);
    }
    return conn_eval(ctx, purge_done, LUA_SCRIPT_MBX_PURGE, (int)nkeys, (int)(nkeys + 1 + st->n),
                     argv, argvlen);
}

static enum cmd_status purge_got_records(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, st->n))
        return purge_failed(ctx, res->status == STORE_OK ? "unexpected reply" : res->error);
    const char *nsid = conn_nsid(ctx->conn);
    for (size_t i = 0; i < st->n; i++) {
        const redisReply *rec = res->reply->element[i];
        struct key k;
        /* "<sha256> <internaldate> <size> <emailid> <threadid>"; a UID without a record is passed
         * with any key of the namespace: the script skips it. */
        if (rec->type == REDIS_REPLY_STRING && rec->len > KEYS_SHA256_LEN &&
            rec->str[KEYS_SHA256_LEN] == ' ' && keys_hex_valid(rec->str, KEYS_SHA256_LEN, KEYS_SHA256_LEN)) {
            char sha[KEYS_SHA256_LEN + 1];
            memcpy(sha, rec->str, KEYS_SHA256_LEN);
            sha[KEYS_SHA256_LEN] = '\0';
            keys_content(&k, nsid, sha);
        } else {
            keys_ns_meta(&k, nsid);
        }
        if (k.len >= CONTENT_KEY_MAX)
            return purge_failed(ctx, "content key too long");
        memcpy(st->content[i], k.s, k.len + 1);
    }
    return purge_send(ctx);
}

static enum cmd_status purge_got_uids(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, 0))
        return purge_failed(ctx, res->status == STORE_OK ? "unexpected reply" : res->error);
    const redisReply *r = res->reply;
    if (r->elements > LIMITS_PURGE_BATCH)
        return purge_failed(ctx, "unexpected reply");
    st->n = 0;
    if (r->elements == 0)
        return purge_send(ctx); /* empty: the script deletes the mailbox's keys */
    if (st->uids == NULL) {
        size_t argc = PURGE_FIXED_KEYS + 4 * LIMITS_PURGE_BATCH + 1;
        st->uids = arena_alloc(ctx->arena, LIMITS_PURGE_BATCH * sizeof(*st->uids));
        st->content = arena_alloc(ctx->arena, LIMITS_PURGE_BATCH * sizeof(*st->content));
        st->argv = arena_alloc(ctx->arena, argc * sizeof(*st->argv));
        st->argvlen = arena_alloc(ctx->arena, argc * sizeof(*st->argvlen));
        st->chunks = arena_alloc(ctx->arena, LIMITS_PURGE_BATCH * sizeof(*st->chunks));
    }
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *u = r->element[i];
        if (u->type != REDIS_REPLY_STRING || u->len == 0 || u->len > UID_MAX_LEN ||
            strspn(u->str, "0123456789") != u->len)
            return purge_failed(ctx, "bad UID in the uids set");
        memcpy(st->uids[i], u->str, u->len);
        st->uids[i][u->len] = '\0';
    }
    st->n = r->elements;
    struct key msg;
    keys_mbx(&msg, conn_nsid(ctx->conn), st->mbxid, KEYS_MBX_MSG);
    const char **argv = st->argv;
    size_t *argvlen = st->argvlen;
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = msg.s;
    argvlen[1] = msg.len;
    for (size_t i = 0; i < st->n; i++) {
        argv[2 + i] = st->uids[i];
        argvlen[2 + i] = strlen(st->uids[i]);
    }
    return conn_redis(ctx, purge_got_records, (int)(2 + st->n), argv, argvlen);
}

static enum cmd_status purge_read(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    struct key uids;
    keys_mbx(&uids, conn_nsid(ctx->conn), st->mbxid, KEYS_MBX_UIDS);
    char last[24];
    int n = snprintf(last, sizeof(last), "%d", LIMITS_PURGE_BATCH - 1);
    const char *argv[] = {"ZRANGE", uids.s, "0", last};
    const size_t argvlen[] = {6, uids.len, 1, (size_t)n};
    return conn_redis(ctx, purge_got_uids, 4, argv, argvlen);
}

static enum cmd_status delete_deleted(struct cmd_ctx *ctx)
{
    if (!cmd_reply_is_array(ctx->store, 1))
        return cmd_store_failed(ctx, ctx->store, "DELETE");
    return purge_read(ctx);
}

static enum cmd_status delete_got_id(struct cmd_ctx *ctx)
{
    struct delete_state *st = ctx->state;
    if (st->mbxid[0] == '\0') {
        reply_tagged(ctx, "NO", "NONEXISTENT", "No such mailbox");
        return CMD_DONE;
    }
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, mailboxes, mbx, log, channel, trash;
    keys_ns_meta(&meta, nsid);
    keys_ns_mailboxes(&mailboxes, nsid);
    keys_mbx(&mbx, nsid, st->mbxid, KEYS_MBX);
    keys_mbx(&log, nsid, st->mbxid, KEYS_MBX_LOG);
    keys_ns_channel(&channel, nsid);
    keys_ns_trash(&trash, nsid);
    const char *argv[] = {meta.s, mailboxes.s, mbx.s, log.s, channel.s, trash.s, st->name, st->mbxid};
    const size_t argvlen[] = {meta.len,    mailboxes.len, mbx.len,      log.len,
                              channel.len, trash.len,     st->name_len, KEYS_MBXID_LEN};
    return conn_eval(ctx, delete_deleted, LUA_SCRIPT_MBX_DELETE, 6, 8, argv, argvlen);
}

enum cmd_status cmd_delete(struct cmd_ctx *ctx)
{
    size_t len = 0;
    const char *name = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_EXISTING, false, &len);
    if (name == NULL)
        return CMD_DONE;
    if (strcmp(name, "INBOX") == 0) {
        reply_tagged(ctx, "NO", "CANNOT", "INBOX cannot be deleted");
        return CMD_DONE;
    }
    struct delete_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    st->name = name;
    st->name_len = len;
    ctx->state = st;
    return mailbox_lookup(ctx, name, st->mbxid, delete_got_id);
}
