/*
 * NOOP (RFC 3501 §6.1.2). Its purpose is to let pending untagged updates through; with no mailbox
 * selected there are none yet, so it only completes.
 */
#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_noop(struct cmd_ctx *ctx)
{
    reply_tagged(ctx, "OK", NULL, "NOOP completed");
    return CMD_DONE;
}
