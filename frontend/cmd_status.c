/*
 * STATUS (RFC 3501 §6.3.10; MAILBOXID RFC 8474 §4.3; SIZE RFC 8438). O(1) reads and no script:
 * the name's id (HGET mailboxes) and one HMGET of the mailbox hash, whose counters the scripts
 * keep current (DESIGN.md rule 5). When the session remembers the name's id (mbxcache.h: clients
 * STATUS the same folders over and over), both reads go in one MULTI/EXEC round trip and the HGET
 * confirms the id; otherwise (or when it no longer matches) mailbox_lookup first — which also
 * creates a missing INBOX — then the HMGET. RECENT is the hash's `recent` counter; STATUS never
 * claims \Recent (that is SELECT's job).
 *
 * The answer names the mailbox as the client sent it, with INBOX normalised. A mailbox deleted
 * between the two reads (its hash gone or marked `removed`) is answered NO [NONEXISTENT].
 */
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/mailbox.h"
#include "frontend/mbxcache.h"
#include "frontend/reply.h"

/* The items, in the order of the HMGET fields (MAILBOXID needs no field). */
enum status_item {
    ITEM_MESSAGES,
    ITEM_RECENT,
    ITEM_UIDNEXT,
    ITEM_UIDVALIDITY,
    ITEM_UNSEEN,
    ITEM_SIZE,
    ITEM_MAILBOXID,
    ITEM_COUNT
};

static const char *const item_names[ITEM_COUNT] = {
    "MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN", "SIZE", "MAILBOXID",
};

/* Hash fields read for the items, then "removed" (set by mbx_delete.lua). */
static const char *const item_fields[] = {
    "messages", "recent", "uidnext", "uidvalidity", "unseen", "bytes", "removed",
};
#define FIELD_COUNT (sizeof(item_fields) / sizeof(item_fields[0]))
#define FIELD_REMOVED (FIELD_COUNT - 1)

struct status_state {
    const char *name;
    size_t name_len;
    enum status_item items[ITEM_COUNT]; /* as asked, duplicates dropped */
    size_t nitems;
    char mbxid[KEYS_MBXID_LEN + 1];
};

/* True when r is a decimal number (what the scripts store), for the answer as is. */
static bool reply_is_number(const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && r->len > 0 && r->len <= 20 &&
           strspn(r->str, "0123456789") == r->len;
}

/* Answers from the mailbox hash's fields (an HMGET reply). */
static enum cmd_status status_answer(struct cmd_ctx *ctx, const redisReply *r)
{
    struct status_state *st = ctx->state;
    if (r->element[ITEM_UIDVALIDITY]->type == REDIS_REPLY_NIL ||
        r->element[FIELD_REMOVED]->type != REDIS_REPLY_NIL) {
        reply_tagged(ctx, "NO", "NONEXISTENT", "No such mailbox");
        return CMD_DONE;
    }
    struct evbuffer *line = evbuffer_new();
    if (line == NULL)
        return CMD_ERR;
    evbuffer_add_printf(line, "* STATUS ");
    reply_string(line, st->name, st->name_len);
    evbuffer_add(line, " (", 2);
    for (size_t i = 0; i < st->nitems; i++) {
        enum status_item it = st->items[i];
        if (i > 0)
            evbuffer_add(line, " ", 1);
        if (it == ITEM_MAILBOXID) {
            evbuffer_add_printf(line, "MAILBOXID (%s)", st->mbxid);
            continue;
        }
        const redisReply *v = r->element[it];
        if (!reply_is_number(v)) {
            evbuffer_free(line);
            reply_tagged(ctx, "NO", "SERVERBUG", "Mailbox record is damaged");
            return CMD_DONE;
        }
        evbuffer_add_printf(line, "%s %.*s", item_names[it], (int)v->len, v->str);
    }
    evbuffer_add(line, ")", 1);
    reply_line(ctx->conn, line);
    evbuffer_free(line);
    reply_tagged(ctx, "OK", NULL, "STATUS completed");
    return CMD_DONE;
}

static enum cmd_status status_got_counters(struct cmd_ctx *ctx)
{
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, FIELD_COUNT))
        return cmd_store_failed(ctx, res, "STATUS");
    return status_answer(ctx, res->reply);
}

/* The HMGET of the mailbox hash's fields, in argv/argvlen (2 + FIELD_COUNT entries). */
static void hmget_args(const struct key *mbx, const char **argv, size_t *argvlen)
{
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = mbx->s;
    argvlen[1] = mbx->len;
    for (size_t i = 0; i < FIELD_COUNT; i++) {
        argv[2 + i] = item_fields[i];
        argvlen[2 + i] = strlen(item_fields[i]);
    }
}

static enum cmd_status status_got_id(struct cmd_ctx *ctx)
{
    struct status_state *st = ctx->state;
    mbxcache_put(conn_mbxcache(ctx->conn), st->name, st->mbxid);
    if (st->mbxid[0] == '\0') {
        reply_tagged(ctx, "NO", "NONEXISTENT", "No such mailbox");
        return CMD_DONE;
    }
    struct key mbx;
    keys_mbx(&mbx, conn_nsid(ctx->conn), st->mbxid, KEYS_MBX);
    const char *argv[2 + FIELD_COUNT];
    size_t argvlen[2 + FIELD_COUNT];
    hmget_args(&mbx, argv, argvlen);
    return conn_redis(ctx, status_got_counters, (int)(2 + FIELD_COUNT), argv, argvlen);
}

/* The one-round-trip path: [HGET mailboxes name, HMGET remembered mailbox]. */
static enum cmd_status status_got_tx(struct cmd_ctx *ctx)
{
    struct status_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, 2))
        return cmd_store_failed(ctx, res, "STATUS");
    const redisReply *id = res->reply->element[0];
    const redisReply *fields = res->reply->element[1];
    if (id->type == REDIS_REPLY_STRING && id->len == KEYS_MBXID_LEN &&
        memcmp(id->str, st->mbxid, KEYS_MBXID_LEN) == 0 && fields->type == REDIS_REPLY_ARRAY &&
        fields->elements == FIELD_COUNT)
        return status_answer(ctx, fields);
    /* Renamed, deleted or re-created meanwhile: look the name up afresh. */
    mbxcache_put(conn_mbxcache(ctx->conn), st->name, "");
    st->mbxid[0] = '\0';
    return mailbox_lookup(ctx, st->name, st->mbxid, status_got_id);
}

enum cmd_status cmd_status(struct cmd_ctx *ctx)
{
    const struct imap_arg *list = &ctx->args[1];
    if (list->type != IMAP_ARG_LIST || list->count == 0) {
        reply_tagged(ctx, "BAD", NULL, "STATUS takes a mailbox name and a list of items");
        return CMD_DONE;
    }
    struct status_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    bool seen[ITEM_COUNT] = {false};
    for (size_t i = 0; i < list->count; i++) {
        const struct imap_arg *a = &list->list[i];
        size_t it = 0;
        while (it < ITEM_COUNT && !(a->type == IMAP_ARG_ATOM && strlen(item_names[it]) == a->len &&
                                    strncasecmp(a->str, item_names[it], a->len) == 0))
            it++;
        if (it == ITEM_COUNT) {
            reply_tagged(ctx, "BAD", NULL, "Unknown STATUS item");
            return CMD_DONE;
        }
        if (!seen[it])
            st->items[st->nitems++] = (enum status_item)it;
        seen[it] = true;
    }
    st->name = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_EXISTING, false, &st->name_len);
    if (st->name == NULL)
        return CMD_DONE;
    ctx->state = st;
    const char *known = mbxcache_get(conn_mbxcache(ctx->conn), st->name);
    if (known == NULL)
        return mailbox_lookup(ctx, st->name, st->mbxid, status_got_id);
    memcpy(st->mbxid, known, KEYS_MBXID_LEN + 1);
    const char *nsid = conn_nsid(ctx->conn);
    struct key boxes, mbx;
    keys_ns_mailboxes(&boxes, nsid);
    keys_mbx(&mbx, nsid, st->mbxid, KEYS_MBX);
    const char *a0[] = {"HGET", boxes.s, st->name};
    const size_t l0[] = {4, boxes.len, st->name_len};
    const char *a1[2 + FIELD_COUNT];
    size_t l1[2 + FIELD_COUNT];
    hmget_args(&mbx, a1, l1);
    const int argc[] = {3, (int)(2 + FIELD_COUNT)};
    const char *const *argv[] = {a0, a1};
    const size_t *const argvlen[] = {l0, l1};
    return conn_redis_tx(ctx, status_got_tx, 2, argc, argv, argvlen);
}
