/*
 * IDLE (RFC 2177). "+ idling", then every change to the selected mailbox is sent as it happens:
 * a wake-up from the user's pub/sub channel (conn_pubsub_wake) interrupts the wait for "DONE" and
 * runs updates_run, which writes EXISTS / EXPUNGE / FETCH straight away. Anything other than DONE
 * ends the command with BAD. The autologout timer keeps running while idling (CMD_F_IDLE), so
 * clients re-issue IDLE within the limit as RFC 2177 advises.
 */
#include <strings.h>

#include "frontend/commands.h"
#include "frontend/reply.h"
#include "frontend/updates.h"

static enum cmd_status idle_line(struct cmd_ctx *ctx);

static enum cmd_status idle_wait(struct cmd_ctx *ctx)
{
    struct conn *c = ctx->conn;
    if (conn_take_updates_pending(c) && conn_selected(c) != NULL)
        return updates_run(ctx, idle_wait); /* a wake-up came while the last run was going */
    return conn_read_line(ctx, idle_line);
}

static enum cmd_status idle_wake(struct cmd_ctx *ctx)
{
    if (conn_selected(ctx->conn) == NULL)
        return idle_wait(ctx);
    return updates_run(ctx, idle_wait);
}

static enum cmd_status idle_line(struct cmd_ctx *ctx)
{
    ctx->on_wake = NULL;
    if (ctx->line != NULL && ctx->line_len == 4 && strncasecmp(ctx->line, "DONE", 4) == 0) {
        reply_tagged(ctx, "OK", NULL, "IDLE terminated");
        return CMD_DONE;
    }
    reply_tagged(ctx, "BAD", NULL, "Expected DONE");
    return CMD_DONE;
}

enum cmd_status cmd_idle(struct cmd_ctx *ctx)
{
    reply_continue(ctx->conn, "idling");
    ctx->on_wake = idle_wake;
    conn_take_updates_pending(ctx->conn);
    if (conn_selected(ctx->conn) != NULL)
        return updates_run(ctx, idle_wait);
    return idle_wait(ctx);
}
