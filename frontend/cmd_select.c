/*
 * SELECT and EXAMINE (RFC 3501 §6.3.1-2, RFC 8474 MAILBOXID). Three steps, each one Redis round
 * trip: the name's id (HGET mailboxes), the snapshot (mbx_select.lua: counters, \Recent claimed
 * atomically across front ends, the first 1,000 UID runs), and — only for mailboxes with more
 * holes than that — the remaining runs in batches of 1,000 (ZRANGE runs). The session's UID view
 * is built from the runs, so a 100,000-message mailbox with few holes costs two round trips and a
 * few bytes (DESIGN.md rule 5).
 *
 * The runs read after the snapshot may already include changes made after it; EXISTS is counted
 * from the runs actually read, so what the client is told always matches the view, and the change
 * log (live updates) is applied idempotently from the snapshot's modseq.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/log.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define RUNS_BATCH 1000

struct select_state {
    const char *name;     /* normalised, in the arena */
    struct selected *sel; /* built up here; handed to the connection at the end */
    uint32_t first_unseen_uid;
    uint64_t runs_total;
    uint64_t runs_read;
};

/* Adds one "first:last" run of a /runs reply to the view. */
static bool add_run(struct selected *sel, const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && view_add_run_text(sel->view, r->str, r->len);
}

static enum cmd_status bad_snapshot(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    selected_free(&st->sel);
    log_write(LOG_ERROR, "select.bad_snapshot", "conn=%llu", (unsigned long long)conn_id(ctx->conn));
    reply_tagged(ctx, "NO", "SERVERBUG", "%s failed: inconsistent mailbox data", ctx->desc->name);
    return CMD_DONE;
}

static void flag_list(struct evbuffer *b, const char *keywords, bool star)
{
    evbuffer_add_printf(b, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    if (keywords[0] != '\0')
        evbuffer_add_printf(b, " %s", keywords);
    if (star)
        evbuffer_add(b, " \\*", 3);
    evbuffer_add(b, ")", 1);
}

static enum cmd_status select_finish(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    struct selected *sel = st->sel;
    struct conn *c = ctx->conn;
    uint32_t exists = view_count(sel->view);
    if (view_max_uid(sel->view) >= sel->uidnext)
        sel->uidnext = view_max_uid(sel->view) + 1; /* runs read after the snapshot */
    uint32_t recent = view_count_from(sel->view, sel->recent_first);

    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return CMD_ERR;
    evbuffer_add_printf(b, "* FLAGS ");
    flag_list(b, sel->keywords, false);
    reply_line(c, b);
    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add_printf(b, "* OK [PERMANENTFLAGS ");
    if (sel->readonly)
        evbuffer_add(b, "()", 2);
    else
        flag_list(b, sel->keywords, true);
    evbuffer_add_printf(b, "] %s", sel->readonly ? "Read-only mailbox" : "Flags permitted");
    reply_line(c, b);
    evbuffer_free(b);
    reply_untagged(c, "%" PRIu32 " EXISTS", exists);
    reply_untagged(c, "%" PRIu32 " RECENT", recent);
    if (st->first_unseen_uid != 0) {
        uint32_t seq = view_seq(sel->view, st->first_unseen_uid);
        if (seq != 0)
            reply_untagged(c, "OK [UNSEEN %" PRIu32 "] First unseen", seq);
    }
    reply_untagged(c, "OK [UIDVALIDITY %" PRIu32 "] UIDs valid", sel->uidvalidity);
    reply_untagged(c, "OK [UIDNEXT %" PRIu32 "] Predicted next UID", sel->uidnext);
    reply_untagged(c, "OK [MAILBOXID (%s)] Ok", sel->mbxid);
    bool readonly = sel->readonly;
    conn_select(c, sel);
    st->sel = NULL;
    reply_tagged(ctx, "OK", readonly ? "READ-ONLY" : "READ-WRITE", "%s completed",
                 ctx->desc->name);
    return CMD_DONE;
}

static enum cmd_status select_more_runs(struct cmd_ctx *ctx);

static enum cmd_status select_got_runs(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK) {
        selected_free(&st->sel);
        return cmd_store_failed(ctx, res, ctx->desc->name);
    }
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY)
        return bad_snapshot(ctx);
    for (size_t i = 0; i < r->elements; i++) {
        if (!add_run(st->sel, r->element[i]))
            return bad_snapshot(ctx);
    }
    st->runs_read += r->elements;
    if (r->elements < RUNS_BATCH)
        return select_finish(ctx);
    return select_more_runs(ctx);
}

static enum cmd_status select_more_runs(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    struct key k;
    keys_mbx(&k, conn_nsid(ctx->conn), st->sel->mbxid, KEYS_MBX_RUNS);
    /* The runs after the highest UID the view holds, by score (a run's first UID), never by rank:
     * an expunge between two pages removes or splits runs and shifts every rank after it, so a
     * rank page could skip a run. A run that appeared or grew after the snapshot (new mail) only
     * adds UIDs the log replay adds too. */
    char start[24], count[24];
    int ls = snprintf(start, sizeof(start), "(%" PRIu32, view_max_uid(st->sel->view));
    int lc = snprintf(count, sizeof(count), "%d", RUNS_BATCH);
    const char *argv[] = {"ZRANGEBYSCORE", k.s, start, "+inf", "LIMIT", "0", count};
    const size_t argvlen[] = {13, k.len, (size_t)ls, 4, 5, 1, (size_t)lc};
    return conn_redis(ctx, select_got_runs, 7, argv, argvlen);
}

static enum cmd_status select_got_snapshot(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK) {
        selected_free(&st->sel);
        if (res->status == STORE_ERROR && strncmp(res->error, "NONEXISTENT", 11) == 0) {
            reply_tagged(ctx, "NO", "NONEXISTENT", "No such mailbox");
            return CMD_DONE;
        }
        return cmd_store_failed(ctx, res, ctx->desc->name);
    }
    if (!cmd_reply_is_array(res, 9))
        return bad_snapshot(ctx);
    const redisReply *r = res->reply;
    struct selected *sel = st->sel;
    uint64_t messages = 0;
    if (!cmd_reply_u32(r->element[0], &sel->uidvalidity) || !cmd_reply_u32(r->element[1], &sel->uidnext) ||
        !cmd_reply_u64(r->element[2], &sel->highestmodseq) || !cmd_reply_u64(r->element[3], &messages) ||
        !cmd_reply_u32(r->element[4], &sel->recent_first) ||
        !cmd_reply_u32(r->element[5], &st->first_unseen_uid) ||
        r->element[6]->type != REDIS_REPLY_STRING || !cmd_reply_u64(r->element[8], &st->runs_total))
        return bad_snapshot(ctx);
    sel->keywords = strndup(r->element[6]->str, r->element[6]->len);
    if (sel->keywords == NULL)
        abort();
    for (size_t i = 9; i < r->elements; i++) {
        if (!add_run(sel, r->element[i]))
            return bad_snapshot(ctx);
    }
    st->runs_read = r->elements - 9;
    if (st->runs_read >= st->runs_total)
        return select_finish(ctx);
    return select_more_runs(ctx);
}

static enum cmd_status select_snapshot(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, mbx, runs, unseen;
    keys_ns_meta(&meta, nsid);
    keys_mbx(&mbx, nsid, st->sel->mbxid, KEYS_MBX);
    keys_mbx(&runs, nsid, st->sel->mbxid, KEYS_MBX_RUNS);
    keys_mbx(&unseen, nsid, st->sel->mbxid, KEYS_MBX_UNSEEN);
    const char *claim = st->sel->readonly ? "0" : "1";
    const char *argv[] = {meta.s, mbx.s, runs.s, unseen.s, st->sel->mbxid, claim, "1000"};
    const size_t argvlen[] = {meta.len, mbx.len, runs.len, unseen.len, KEYS_MBXID_LEN, 1, 4};
    return conn_eval(ctx, select_got_snapshot, LUA_SCRIPT_MBX_SELECT, 4, 7, argv, argvlen);
}

static enum cmd_status select_got_id(struct cmd_ctx *ctx)
{
    struct select_state *st = ctx->state;
    if (st->sel->mbxid[0] == '\0') {
        selected_free(&st->sel);
        reply_tagged(ctx, "NO", "NONEXISTENT", "No such mailbox");
        return CMD_DONE;
    }
    return select_snapshot(ctx);
}

enum cmd_status cmd_select(struct cmd_ctx *ctx)
{
    /* RFC 3501 §6.3.1: a SELECT, even a failing one, first leaves the selected state. */
    conn_unselect(ctx->conn);
    size_t len = 0;
    const char *name = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_EXISTING, false, &len);
    if (name == NULL)
        return CMD_DONE; /* answered */
    struct select_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    ctx->state = st;
    st->name = name;
    st->sel = selected_new();
    st->sel->readonly = strcasecmp(ctx->desc->name, "EXAMINE") == 0;
    st->sel->name = strdup(st->name);
    if (st->sel->name == NULL)
        abort();
    /* INBOX always exists for a logged-in user: mailbox_lookup creates it when missing. */
    return mailbox_lookup(ctx, st->name, st->sel->mbxid, select_got_id);
}
