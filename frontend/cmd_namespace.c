/*
 * NAMESPACE (RFC 2342). cimap has one personal namespace with no prefix and "/" as the hierarchy
 * delimiter, and neither other users' nor shared namespaces, so the answer is constant and needs
 * no Redis round trip.
 */
#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_namespace(struct cmd_ctx *ctx)
{
    reply_untagged(ctx->conn, "NAMESPACE ((\"\" \"/\")) NIL NIL");
    reply_tagged(ctx, "OK", NULL, "NAMESPACE completed");
    return CMD_DONE;
}
