/*
 * SUBSCRIBE and UNSUBSCRIBE (RFC 3501 §6.3.6, §6.3.7): one mbx_subscribe.lua call on the user's
 * subscriptions set. A subscribed name need not exist (§6.3.6), so the name is only validated,
 * never looked up. Unsubscribing a name that was not subscribed is answered OK too: the state the
 * client asked for holds, and clients that tidy up blindly should not see failures.
 */
#include <string.h>
#include <strings.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"

static enum cmd_status subscribe_done(struct cmd_ctx *ctx)
{
    if (!cmd_reply_is_array(ctx->store, 1))
        return cmd_store_failed(ctx, ctx->store, ctx->desc->name);
    reply_tagged(ctx, "OK", NULL, "%s completed", ctx->desc->name);
    return CMD_DONE;
}

enum cmd_status cmd_subscribe(struct cmd_ctx *ctx)
{
    size_t len = 0;
    const char *name = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_EXISTING, false, &len);
    if (name == NULL)
        return CMD_DONE;
    const char *on = strcasecmp(ctx->desc->name, "SUBSCRIBE") == 0 ? "1" : "0";
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, subs;
    keys_ns_meta(&meta, nsid);
    keys_ns_subscriptions(&subs, nsid);
    const char *argv[] = {meta.s, subs.s, on, name};
    const size_t argvlen[] = {meta.len, subs.len, 1, len};
    return conn_eval(ctx, subscribe_done, LUA_SCRIPT_MBX_SUBSCRIBE, 2, 4, argv, argvlen);
}
