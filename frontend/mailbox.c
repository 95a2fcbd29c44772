/*
 * mailbox: the shared sub-steps of mailbox commands (see mailbox.h). A lookup is one HGET of the
 * mailboxes hash; only a missing INBOX costs more: mbx_create.lua makes it (no mailbox limit,
 * INBOX must always exist), and when another session won that race (ALREADYEXISTS) the id is
 * read again. Nothing here is kept beyond the running command: the sub-step's state lives in the
 * command's arena and ctx->state is handed back to the caller before its next step runs.
 *
 * Deliberately not here: default mailboxes other than INBOX (Sent, Drafts... come with the user,
 * made by whoever creates it) and any caching of names or ids (another front end may change them
 * at any time).
 */
#include "frontend/mailbox.h"
#include "frontend/user_limits.h"

#include <string.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/limits.h"
#include "frontend/log.h"
#include "frontend/reply.h"

struct lookup {
    void *caller_state; /* ctx->state of the command, restored before next */
    cmd_step *next;
    char *mbxid_r;
    const char *name;
    bool inbox;
    bool created;       /* mbx_create already tried (once only) */
};

void mailbox_limits(const struct cmd_ctx *ctx, struct mboxname_limits *out)
{
    const struct user_limits *u = conn_user_limits(ctx->conn); /* param:* of the user record */
    out->max_len = u->max_name_len;
    out->max_depth = u->max_depth;
}

const char *mailbox_arg_name(struct cmd_ctx *ctx, const struct imap_arg *arg,
                             enum mailbox_arg_use use, bool strip_delim, size_t *len_r)
{
    const char *raw = NULL;
    size_t len = 0;
    if (!cmd_arg_astring(arg, &raw, &len)) {
        reply_tagged(ctx, "BAD", NULL, "%s takes a mailbox name", ctx->desc->name);
        return NULL;
    }
    if (strip_delim && len > 1 && raw[len - 1] == MBOXNAME_DELIM)
        len--;
    struct mboxname_limits limits = {MBOXNAME_MAX_LEN, MBOXNAME_MAX_DEPTH};
    if (use == MAILBOX_ARG_NEW)
        mailbox_limits(ctx, &limits);
    if (len > MBOXNAME_MAX_LEN) {
        reply_tagged(ctx, "NO", "LIMIT", "Mailbox name too long");
        return NULL;
    }
    const char *code = NULL;
    const char *error = NULL;
    char *out = arena_alloc(ctx->arena, len + 1);
    if (mboxname_validate(raw, len, &limits, out, &code, &error) != 0) {
        reply_tagged(ctx, "NO", code, "%s", error);
        return NULL;
    }
    *len_r = len;
    return out;
}

/* Gives ctx->state back and runs the caller's next step. */
static enum cmd_status lookup_continue(struct cmd_ctx *ctx, struct lookup *l)
{
    ctx->state = l->caller_state;
    ctx->store = NULL;
    return l->next(ctx);
}

static enum cmd_status lookup_fail(struct cmd_ctx *ctx, struct lookup *l,
                                   const struct store_result *res)
{
    ctx->state = l->caller_state;
    return cmd_store_failed(ctx, res, ctx->desc->name);
}

static enum cmd_status lookup_bad_id(struct cmd_ctx *ctx, struct lookup *l)
{
    ctx->state = l->caller_state;
    log_write(LOG_ERROR, "mailbox.bad_id", "conn=%llu user=%s",
              (unsigned long long)conn_id(ctx->conn), conn_user(ctx->conn));
    reply_tagged(ctx, "NO", "SERVERBUG", "Mailbox record is damaged");
    return CMD_DONE;
}

static enum cmd_status lookup_send_create(struct cmd_ctx *ctx);

static enum cmd_status lookup_got_id(struct cmd_ctx *ctx)
{
    struct lookup *l = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return lookup_fail(ctx, l, res);
    const redisReply *r = res->reply;
    if (r->type == REDIS_REPLY_NIL) {
        if (l->inbox && !l->created)
            return lookup_send_create(ctx);
        if (l->inbox)
            return lookup_bad_id(ctx, l); /* created, then gone again: not worth a loop */
        l->mbxid_r[0] = '\0';
        return lookup_continue(ctx, l);
    }
    if (r->type != REDIS_REPLY_STRING || !keys_mbxid_valid(r->str, r->len))
        return lookup_bad_id(ctx, l);
    memcpy(l->mbxid_r, r->str, KEYS_MBXID_LEN);
    l->mbxid_r[KEYS_MBXID_LEN] = '\0';
    return lookup_continue(ctx, l);
}

static enum cmd_status lookup_send_get(struct cmd_ctx *ctx)
{
    struct lookup *l = ctx->state;
    struct key k;
    keys_ns_mailboxes(&k, conn_nsid(ctx->conn));
    const char *argv[] = {"HGET", k.s, l->name};
    const size_t argvlen[] = {4, k.len, strlen(l->name)};
    return conn_redis(ctx, lookup_got_id, 3, argv, argvlen);
}

static enum cmd_status lookup_created(struct cmd_ctx *ctx)
{
    struct lookup *l = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status == STORE_ERROR && res->error != NULL &&
        strncmp(res->error, "ALREADYEXISTS", 13) == 0)
        return lookup_send_get(ctx); /* another session made it first */
    if (!cmd_reply_is_array(res, 2))
        return lookup_fail(ctx, l, res);
    const redisReply *id = res->reply->element[1];
    if (id->type != REDIS_REPLY_STRING || !keys_mbxid_valid(id->str, id->len))
        return lookup_bad_id(ctx, l);
    memcpy(l->mbxid_r, id->str, KEYS_MBXID_LEN);
    l->mbxid_r[KEYS_MBXID_LEN] = '\0';
    log_write(LOG_INFO, "mailbox.inbox_created", "conn=%llu user=%s mbxid=%s",
              (unsigned long long)conn_id(ctx->conn), conn_user(ctx->conn), l->mbxid_r);
    return lookup_continue(ctx, l);
}

static enum cmd_status lookup_send_create(struct cmd_ctx *ctx)
{
    struct lookup *l = ctx->state;
    const char *nsid = conn_nsid(ctx->conn);
    char mbxid[KEYS_MBXID_LEN + 1];
    keys_mbxid_new(mbxid);
    struct key meta, mailboxes, mbx;
    keys_ns_meta(&meta, nsid);
    keys_ns_mailboxes(&mailboxes, nsid);
    keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
    l->created = true;
    /* max_mailboxes 0: INBOX is never refused for the mailbox limit. */
    const char *argv[] = {meta.s, mailboxes.s, mbx.s, "0", "INBOX", mbxid, ""};
    const size_t argvlen[] = {meta.len, mailboxes.len, mbx.len, 1, 5, KEYS_MBXID_LEN, 0};
    return conn_eval(ctx, lookup_created, LUA_SCRIPT_MBX_CREATE, 3, 7, argv, argvlen);
}

static struct lookup *lookup_begin(struct cmd_ctx *ctx, const char *name, char *mbxid_r,
                                   cmd_step *next)
{
    struct lookup *l = arena_calloc(ctx->arena, 1, sizeof(*l));
    l->caller_state = ctx->state;
    l->next = next;
    l->mbxid_r = mbxid_r;
    l->name = name;
    l->inbox = strcmp(name, "INBOX") == 0;
    ctx->state = l;
    return l;
}

enum cmd_status mailbox_lookup(struct cmd_ctx *ctx, const char *name, char *mbxid_r,
                               cmd_step *next)
{
    lookup_begin(ctx, name, mbxid_r, next);
    return lookup_send_get(ctx);
}

enum cmd_status mailbox_ensure_inbox(struct cmd_ctx *ctx, char *mbxid_r, cmd_step *next)
{
    return mailbox_lookup(ctx, "INBOX", mbxid_r, next);
}

enum cmd_status mailbox_create_inbox(struct cmd_ctx *ctx, char *mbxid_r, cmd_step *next)
{
    lookup_begin(ctx, "INBOX", mbxid_r, next);
    return lookup_send_create(ctx);
}
