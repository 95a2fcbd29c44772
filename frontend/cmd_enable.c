/*
 * ENABLE (RFC 5161). No enableable extension is implemented yet (CONDSTORE, QRESYNC,
 * UTF8=ACCEPT come later), so every name is validated as an atom and none is enabled: the
 * untagged ENABLED lists nothing, as the RFC prescribes for unknown extensions.
 */
#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_enable(struct cmd_ctx *ctx)
{
    for (size_t i = 0; i < ctx->argc; i++) {
        if (ctx->args[i].type != IMAP_ARG_ATOM) {
            reply_tagged(ctx, "BAD", NULL, "ENABLE takes capability names");
            return CMD_DONE;
        }
    }
    reply_untagged(ctx->conn, "ENABLED");
    reply_tagged(ctx, "OK", NULL, "ENABLE completed");
    return CMD_DONE;
}
