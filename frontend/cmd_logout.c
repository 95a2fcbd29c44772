/* LOGOUT (RFC 3501 §6.1.3): BYE, tagged OK, then close once the output is flushed. */
#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_logout(struct cmd_ctx *ctx)
{
    reply_bye(ctx->conn, NULL, "Logging out");
    reply_tagged(ctx, "OK", NULL, "Logout completed");
    conn_close_after_output(ctx->conn);
    return CMD_DONE;
}
