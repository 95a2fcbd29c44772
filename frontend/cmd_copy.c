/*
 * COPY / UID COPY (RFC 3501 §6.4.7, §6.4.8) with COPYUID (RFC 4315 §3), and MOVE / UID MOVE
 * (RFC 6851): one family, because MOVE is the same copy followed by the removal of the sources.
 *
 * Copying (lua/copy.lua): the set is resolved against the session's view and walked in batches
 * of up to 1,000 ascending UIDs; for each, the sources' content ids are read (HMGET msg) so their
 * content keys can go to the script in KEYS. Every batch but the last is staged (records in the
 * operation's list /copy/<id>, content references taken, the destination untouched); the last
 * batch commits everything at once, so the destination either gains every copy or none
 * (RFC 3501 §6.4.7), however many batches the set spans. A failure after something was staged
 * releases the staged records (copy.lua abort, 1,000 per call) before answering.
 *
 * MOVE then sends "* OK [COPYUID ...]" and removes the moved messages from the source through
 * the expunge driver (expunge.lua mode `all`, batches of 1,000), reporting "* n EXPUNGE" for each
 * (RFC 6851 §3.3). The copies are committed before the first source message goes, so a failure
 * or a killed front end in between can leave a message in both mailboxes, never in neither.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/expunge.h"
#include "frontend/limits.h"
#include "frontend/log.h"
#include "frontend/mboxname.h"
#include "frontend/msgset.h"
#include "frontend/reply.h"
#include "frontend/user_limits.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define COPY_BATCH 1000
#define COPY_FIXED_KEYS 17

struct copy_state {
    const char *name;          /* "COPY", "UID COPY", "MOVE" or "UID MOVE" */
    bool move;
    const char *mailbox;       /* destination, normalised, in the arena */
    char dst[KEYS_MBXID_LEN + 1];
    char copyid[KEYS_STAGING_LEN + 1];
    struct seqset seqs;        /* sequence numbers to copy */
    size_t range;              /* walk of seqs */
    uint32_t next;
    uint32_t *batch;           /* this batch's source UIDs */
    size_t batch_n;
    bool commit;               /* this batch is the last one */
    uint64_t staged;           /* records staged so far */
    struct seqset_range *copied; /* source UIDs copied, as runs (malloc'd) */
    size_t ncopied, capcopied;
    uint64_t uidvalidity, first, total;
    struct store_result failure; /* kept while staged records are released */
    struct arena *batch_arena; /* reset per batch */
    struct expunge_job expunge; /* MOVE */
};

static enum cmd_status next_batch(struct cmd_ctx *ctx);
static enum cmd_status abort_staged(struct cmd_ctx *ctx);

static void copy_cleanup(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    if (st == NULL)
        return;
    free(st->copied);
    st->copied = NULL;
    arena_free(&st->batch_arena);
    expunge_release(&st->expunge);
}

static bool reply_uint(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return true;
    }
    return false;
}

/* Adds a copied source UID (ascending across the whole command) to the runs. */
static void note_copied(struct copy_state *st, uint32_t uid)
{
    if (st->ncopied > 0 && st->copied[st->ncopied - 1].last + 1 == uid) {
        st->copied[st->ncopied - 1].last = uid;
        return;
    }
    if (st->ncopied == st->capcopied) {
        size_t cap = st->capcopied == 0 ? 16 : st->capcopied * 2;
        struct seqset_range *grown = realloc(st->copied, cap * sizeof(*grown));
        if (grown == NULL)
            abort();
        st->copied = grown;
        st->capcopied = cap;
    }
    st->copied[st->ncopied].first = uid;
    st->copied[st->ncopied].last = uid;
    st->ncopied++;
}

/* Records the source UIDs of a reply (elements from..end); false on a malformed one. */
static bool note_reply_uids(struct copy_state *st, const redisReply *r, size_t from)
{
    for (size_t i = from; i < r->elements; i++) {
        uint64_t uid = 0;
        if (!reply_uint(r->element[i], &uid) || uid == 0 || uid > UINT32_MAX ||
            (st->ncopied > 0 && uid <= st->copied[st->ncopied - 1].last))
            return false;
        note_copied(st, (uint32_t)uid);
    }
    return true;
}

/* Answers a failure, after releasing whatever was staged. */
static enum cmd_status fail(struct cmd_ctx *ctx, const struct store_result *res)
{
    struct copy_state *st = ctx->state;
    st->failure.status = res->status;
    st->failure.reply = NULL;
    const char *e = res->error != NULL ? res->error : "ERR unexpected reply";
    st->failure.error = arena_strndup(ctx->arena, e, strlen(e));
    if (st->staged > 0)
        return abort_staged(ctx);
    return cmd_store_failed(ctx, &st->failure, st->name);
}

static const struct store_result bad_reply = {STORE_ERROR, NULL, "ERR unexpected reply"};

/* --- Releasing staged records --- */

static enum cmd_status aborted(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    uint64_t remaining = 0;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY ||
        res->reply->elements != 1 || !reply_uint(res->reply->element[0], &remaining)) {
        log_write(LOG_WARN, "copy.abort_failed", "conn=%llu copy=%s error=\"%s\"",
                  (unsigned long long)conn_id(ctx->conn), st->copyid,
                  res->error != NULL ? res->error : "unexpected reply");
        return cmd_store_failed(ctx, &st->failure, st->name);
    }
    if (remaining > 0)
        return abort_staged(ctx);
    return cmd_store_failed(ctx, &st->failure, st->name);
}

/* Common keys of every copy.lua call, into argv[0..COPY_FIXED_KEYS). */
static void fixed_keys(struct cmd_ctx *ctx, struct key *keys)
{
    struct copy_state *st = ctx->state;
    const struct selected *sel = conn_selected(ctx->conn);
    const char *nsid = conn_nsid(ctx->conn);
    keys_ns_meta(&keys[0], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], nsid, st->dst, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[10], nsid);
    keys_ns_gc(&keys[11], nsid);
    keys_ns_copies(&keys[12], nsid);
    keys_copy(&keys[13], nsid, st->copyid);
    keys_mbx(&keys[14], nsid, sel->mbxid, KEYS_MBX);
    keys_mbx(&keys[15], nsid, sel->mbxid, KEYS_MBX_MSG);
    keys_mbx(&keys[16], nsid, sel->mbxid, KEYS_MBX_FLAGS);
}

/*
 * Builds a copy.lua call: the fixed keys, one content key per sha (64 hex digits each, or a
 * placeholder when not valid), then mode, mbxids, limits and the given UIDs (may be none).
 */
static enum cmd_status eval_copy(struct cmd_ctx *ctx, cmd_step *next, const char *mode,
                                 const char *const *shas, size_t nsha, const uint32_t *uids,
                                 size_t nuid)
{
    struct copy_state *st = ctx->state;
    const struct selected *sel = conn_selected(ctx->conn);
    struct arena *a = st->batch_arena;
    size_t nkeys = COPY_FIXED_KEYS + nsha;
    size_t argc = nkeys + 6 + nuid;
    struct key *keys = arena_alloc(a, nkeys * sizeof(*keys));
    const char **argv = arena_alloc(a, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, argc * sizeof(*argvlen));
    fixed_keys(ctx, keys);
    static const char placeholder[] =
        "0000000000000000000000000000000000000000000000000000000000000000";
    for (size_t i = 0; i < nsha; i++)
        keys_content(&keys[COPY_FIXED_KEYS + i], conn_nsid(ctx->conn),
                     shas[i] != NULL ? shas[i] : placeholder);
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    const struct user_limits *lim = conn_user_limits(ctx->conn);
    const char *fixed[6] = {mode, st->dst, sel->mbxid,
                            arena_printf(a, "%llu", (unsigned long long)lim->quota_bytes),
                            arena_printf(a, "%llu", (unsigned long long)lim->quota_messages),
                            arena_printf(a, "%u", (unsigned)lim->max_keywords)};
    for (size_t i = 0; i < 6; i++) {
        argv[nkeys + i] = fixed[i];
        argvlen[nkeys + i] = strlen(fixed[i]);
    }
    for (size_t i = 0; i < nuid; i++) {
        char *u = arena_printf(a, "%" PRIu32, uids[i]);
        argv[nkeys + 6 + i] = u;
        argvlen[nkeys + 6 + i] = strlen(u);
    }
    return conn_eval(ctx, next, LUA_SCRIPT_COPY, (int)nkeys, (int)argc, argv, argvlen);
}

/* The sha256 at the start of s (len bytes) as a NUL-terminated arena string, or NULL. */
static const char *sha_at(struct arena *a, const char *s, size_t len)
{
    if (len < KEYS_SHA256_LEN || !keys_hex_valid(s, KEYS_SHA256_LEN, KEYS_SHA256_LEN) ||
        (len > KEYS_SHA256_LEN && s[KEYS_SHA256_LEN] != ' '))
        return NULL;
    return arena_strndup(a, s, KEYS_SHA256_LEN);
}

static enum cmd_status got_staged(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY ||
        res->reply->elements > COPY_BATCH) {
        log_write(LOG_WARN, "copy.abort_failed", "conn=%llu copy=%s",
                  (unsigned long long)conn_id(ctx->conn), st->copyid);
        return cmd_store_failed(ctx, &st->failure, st->name);
    }
    const redisReply *r = res->reply;
    const char **shas = arena_alloc(st->batch_arena, (r->elements + 1) * sizeof(*shas));
    for (size_t i = 0; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        const char *sp = e->type == REDIS_REPLY_STRING ? memchr(e->str, ' ', e->len) : NULL;
        shas[i] = sp != NULL ? sha_at(st->batch_arena, sp + 1, e->len - (size_t)(sp + 1 - e->str))
                             : NULL;
    }
    return eval_copy(ctx, aborted, "abort", shas, r->elements, NULL, 0);
}

static enum cmd_status abort_staged(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    arena_reset(st->batch_arena);
    struct key k;
    keys_copy(&k, conn_nsid(ctx->conn), st->copyid);
    const char *argv[] = {"LRANGE", k.s, "0", "999"};
    const size_t argvlen[] = {6, k.len, 1, 3};
    return conn_redis(ctx, got_staged, 4, argv, argvlen);
}

/* --- MOVE: removing the sources --- */

static enum cmd_status moved(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    if (st->expunge.failed) {
        struct store_result res = {st->expunge.status, NULL, st->expunge.error};
        return cmd_store_failed(ctx, &res, st->name);
    }
    reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
    return CMD_DONE;
}

/* --- Copying --- */

static enum cmd_status committed(struct cmd_ctx *ctx, const redisReply *r)
{
    struct copy_state *st = ctx->state;
    uint64_t modseq = 0, m = 0;
    if (r->elements < 5 || !reply_uint(r->element[0], &st->uidvalidity) ||
        !reply_uint(r->element[1], &modseq) || !reply_uint(r->element[2], &st->first) ||
        !reply_uint(r->element[3], &st->total) || !reply_uint(r->element[4], &m) ||
        r->elements != 5 + m || !note_reply_uids(st, r, 5))
        return fail(ctx, &bad_reply);
    st->staged = 0; /* the commit consumed the staging list */
    if (st->total == 0) {
        reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
        return CMD_DONE;
    }
    struct seqset src = {st->copied, st->ncopied};
    if (seqset_count(&src) != st->total) {
        log_write(LOG_ERROR, "copy.count_mismatch", "conn=%llu copied=%" PRIu64 " total=%" PRIu64,
                  (unsigned long long)conn_id(ctx->conn), seqset_count(&src), st->total);
        reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
        return CMD_DONE;
    }
    char *srcset = seqset_format_arena(ctx->arena, &src);
    char dstset[32];
    if (st->total == 1)
        snprintf(dstset, sizeof(dstset), "%" PRIu64, st->first);
    else
        snprintf(dstset, sizeof(dstset), "%" PRIu64 ":%" PRIu64, st->first,
                 st->first + st->total - 1);
    if (!st->move) {
        reply_tagged(ctx, "OK", NULL, "[COPYUID %" PRIu64 " %s %s] %s completed", st->uidvalidity,
                     srcset, dstset, st->name);
        return CMD_DONE;
    }
    /* RFC 6851 §4.3: COPYUID in an untagged OK before the EXPUNGEs. */
    reply_untagged(ctx->conn, "OK [COPYUID %" PRIu64 " %s %s] Moved", st->uidvalidity, srcset,
                   dstset);
    struct seqset *uids = arena_calloc(ctx->arena, 1, sizeof(*uids));
    *uids = src;
    st->expunge.mode = EXPUNGE_ALL;
    st->expunge.uids = uids;
    st->expunge.view_only = true;
    st->expunge.removed = expunge_report;
    st->expunge.done = moved;
    return expunge_start(ctx, &st->expunge);
}

static enum cmd_status copied(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return fail(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY)
        return fail(ctx, &bad_reply);
    if (st->commit)
        return committed(ctx, r);
    uint64_t staged = 0, m = 0;
    if (r->elements < 2 || !reply_uint(r->element[0], &staged) ||
        !reply_uint(r->element[1], &m) || r->elements != 2 + m)
        return fail(ctx, &bad_reply);
    st->staged = staged;
    if (!note_reply_uids(st, r, 2))
        return fail(ctx, &bad_reply);
    return next_batch(ctx);
}

static enum cmd_status got_contents(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return fail(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != st->batch_n)
        return fail(ctx, &bad_reply);
    const char **shas = arena_alloc(st->batch_arena, (st->batch_n + 1) * sizeof(*shas));
    for (size_t i = 0; i < st->batch_n; i++) {
        const redisReply *e = r->element[i];
        shas[i] = e->type == REDIS_REPLY_STRING ? sha_at(st->batch_arena, e->str, e->len) : NULL;
    }
    return eval_copy(ctx, copied, st->commit ? "commit" : "stage", shas, st->batch_n, st->batch,
                     st->batch_n);
}

static enum cmd_status next_batch(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct selected *sel = conn_selected(ctx->conn);
    arena_reset(st->batch_arena);
    struct arena *a = st->batch_arena;
    st->batch = arena_alloc(a, COPY_BATCH * sizeof(uint32_t));
    st->batch_n = 0;
    while (st->range < st->seqs.count && st->batch_n < COPY_BATCH) {
        const struct seqset_range *rg = &st->seqs.ranges[st->range];
        if (st->next < rg->first)
            st->next = rg->first;
        uint32_t uid = view_uid(sel->view, st->next);
        if (uid != 0)
            st->batch[st->batch_n++] = uid;
        if (st->next == rg->last)
            st->range++;
        else
            st->next++;
    }
    st->commit = st->range >= st->seqs.count;
    if (st->batch_n == 0) /* only when the view changed under the walk: commit what is staged */
        return eval_copy(ctx, copied, "commit", NULL, 0, NULL, 0);
    struct key msg;
    keys_mbx(&msg, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_MSG);
    size_t argc = 2 + st->batch_n;
    const char **argv = arena_alloc(a, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, argc * sizeof(*argvlen));
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = msg.s;
    argvlen[1] = msg.len;
    for (size_t i = 0; i < st->batch_n; i++) {
        char *u = arena_printf(a, "%" PRIu32, st->batch[i]);
        argv[2 + i] = u;
        argvlen[2 + i] = strlen(u);
    }
    return conn_redis(ctx, got_contents, (int)argc, argv, argvlen);
}

static enum cmd_status got_mailbox(struct cmd_ctx *ctx)
{
    struct copy_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return cmd_store_failed(ctx, res, st->name);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_STRING || !keys_mbxid_valid(r->str, r->len)) {
        reply_tagged(ctx, "NO", "TRYCREATE", "%s: no such mailbox", st->name);
        return CMD_DONE;
    }
    memcpy(st->dst, r->str, KEYS_MBXID_LEN);
    st->dst[KEYS_MBXID_LEN] = '\0';
    if (st->seqs.count == 0) {
        reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
        return CMD_DONE;
    }
    keys_staging_id_new(st->copyid);
    st->batch_arena = arena_new(64 * 1024);
    return next_batch(ctx);
}

static enum cmd_status copy_or_move(struct cmd_ctx *ctx, bool move)
{
    const struct selected *sel = conn_selected(ctx->conn);
    struct copy_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    st->move = move;
    st->name = move ? (ctx->uid ? "UID MOVE" : "MOVE") : (ctx->uid ? "UID COPY" : "COPY");
    ctx->state = st;
    ctx->cleanup = copy_cleanup;
    const char *error = NULL;
    const char *raw = NULL;
    size_t raw_len = 0;
    if (ctx->args[0].type != IMAP_ARG_ATOM || !cmd_arg_astring(&ctx->args[1], &raw, &raw_len)) {
        reply_tagged(ctx, "BAD", NULL, "%s takes a sequence set and a mailbox name", st->name);
        return CMD_DONE;
    }
    if (msgset_resolve(ctx->arena, sel->view, ctx->args[0].str, ctx->args[0].len, ctx->uid,
                       &st->seqs, &error) != 0) {
        reply_tagged(ctx, "BAD", NULL, "%s: %s", st->name, error);
        return CMD_DONE;
    }
    char *name = arena_alloc(ctx->arena, raw_len + 1);
    const char *code = NULL;
    struct mboxname_limits lim = {conn_user_limits(ctx->conn)->max_name_len,
                                  conn_user_limits(ctx->conn)->max_depth};
    if (mboxname_validate(raw, raw_len, &lim, name, &code, &error) != 0) {
        reply_tagged(ctx, "NO", "TRYCREATE", "%s: %s", st->name, error);
        return CMD_DONE;
    }
    st->mailbox = name;
    if (move && sel->readonly) {
        reply_tagged(ctx, "NO", "READ-ONLY", "%s: the mailbox is read-only", st->name);
        return CMD_DONE;
    }
    struct key k;
    keys_ns_mailboxes(&k, conn_nsid(ctx->conn));
    const char *argv[] = {"HGET", k.s, name};
    const size_t argvlen[] = {4, k.len, strlen(name)};
    return conn_redis(ctx, got_mailbox, 3, argv, argvlen);
}

enum cmd_status cmd_copy(struct cmd_ctx *ctx)
{
    return copy_or_move(ctx, false);
}

enum cmd_status cmd_move(struct cmd_ctx *ctx)
{
    return copy_or_move(ctx, true);
}
