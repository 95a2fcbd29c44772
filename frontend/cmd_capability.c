/* CAPABILITY (RFC 3501 §6.1.1): the list depends on the connection's state (reply.c). */
#include <event2/buffer.h>

#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_capability(struct cmd_ctx *ctx)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return CMD_ERR;
    evbuffer_add(b, "* CAPABILITY ", 13);
    reply_capabilities(ctx->conn, b);
    reply_line(ctx->conn, b);
    evbuffer_free(b);
    reply_tagged(ctx, "OK", NULL, "Capability completed");
    return CMD_DONE;
}
