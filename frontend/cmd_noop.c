/*
 * NOOP (RFC 3501 §6.1.2). Its purpose is to let pending untagged updates through: with a mailbox
 * selected it replays the change log (updates.c) before completing.
 */
#include "frontend/commands.h"
#include "frontend/reply.h"
#include "frontend/updates.h"

static enum cmd_status noop_done(struct cmd_ctx *ctx)
{
    reply_tagged(ctx, "OK", NULL, "%s completed", ctx->desc->name);
    return CMD_DONE;
}

enum cmd_status cmd_noop(struct cmd_ctx *ctx)
{
    if (conn_selected(ctx->conn) == NULL)
        return noop_done(ctx);
    conn_take_updates_pending(ctx->conn);
    return updates_run(ctx, noop_done);
}
