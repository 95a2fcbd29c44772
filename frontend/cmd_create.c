/*
 * CREATE (RFC 3501 §6.3.3, RFC 8474 MAILBOXID): one mbx_create.lua call. Every level of the name
 * goes to the script with a fresh id, top down; the script skips the levels that exist and
 * creates the others ("a/b/c" makes "a" and "a/b" when they are missing, §6.3.3), so a
 * half-created hierarchy is impossible and no lookup round trip is needed. The mailbox limit is
 * checked inside the script, so concurrent front ends cannot overshoot it.
 *
 * Not done: SPECIAL-USE on CREATE (RFC 6154 §3, the CREATE-SPECIAL-USE extension).
 */
#include <string.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/limits.h"
#include "frontend/user_limits.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"


static enum cmd_status create_done(struct cmd_ctx *ctx)
{
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, 2))
        return cmd_store_failed(ctx, res, "CREATE");
    const redisReply *id = res->reply->element[1];
    if (id->type != REDIS_REPLY_STRING || !keys_mbxid_valid(id->str, id->len)) {
        reply_tagged(ctx, "NO", "SERVERBUG", "CREATE failed: unexpected reply");
        return CMD_DONE;
    }
    /* RFC 8474 §4.1: a server that offers OBJECTID names the new mailbox's id in the tagged OK. */
    reply_tagged(ctx, "OK", arena_printf(ctx->arena, "MAILBOXID (%.*s)", (int)id->len, id->str),
                 "CREATE completed");
    return CMD_DONE;
}

enum cmd_status cmd_create(struct cmd_ctx *ctx)
{
    size_t len = 0;
    const char *name = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_NEW, true, &len);
    if (name == NULL)
        return CMD_DONE;
    if (strcmp(name, "INBOX") == 0) { /* §6.3.3: "It is an error to attempt to create INBOX" */
        reply_tagged(ctx, "NO", "ALREADYEXISTS", "INBOX always exists");
        return CMD_DONE;
    }
    size_t nparents = mboxname_parents(name, len, NULL, 0); /* bounded by the depth limit */
    size_t *lens = arena_alloc(ctx->arena, (nparents + 1) * sizeof(*lens));
    mboxname_parents(name, len, lens, nparents);
    lens[nparents] = len;
    size_t levels = nparents + 1;

    const char *nsid = conn_nsid(ctx->conn);
    size_t nkeys = 2 + levels;
    size_t argc = nkeys + 2 + 2 * levels;
    const char **argv = arena_alloc(ctx->arena, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(ctx->arena, argc * sizeof(*argvlen));
    struct key *keys = arena_alloc(ctx->arena, nkeys * sizeof(*keys));
    char(*ids)[KEYS_MBXID_LEN + 1] = arena_alloc(ctx->arena, levels * sizeof(*ids));
    keys_ns_meta(&keys[0], nsid);
    keys_ns_mailboxes(&keys[1], nsid);
    size_t a = nkeys;
    argv[a] = arena_printf(ctx->arena, "%u", (unsigned)conn_user_limits(ctx->conn)->max_mailboxes);
    argvlen[a] = strlen(argv[a]);
    a++;
    for (size_t i = 0; i < levels; i++) {
        keys_mbxid_new(ids[i]);
        keys_mbx(&keys[2 + i], nsid, ids[i], KEYS_MBX);
        argv[a] = name;
        argvlen[a++] = lens[i];
        argv[a] = ids[i];
        argvlen[a++] = KEYS_MBXID_LEN;
    }
    argv[a] = "";
    argvlen[a++] = 0;
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    return conn_eval(ctx, create_done, LUA_SCRIPT_MBX_CREATE, (int)nkeys, (int)a, argv, argvlen);
}
