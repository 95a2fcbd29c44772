/*
 * LOGIN (RFC 3501 §6.2.3): checks the arguments and whether a password may be sent on this
 * connection (LOGINDISABLED: not over plaintext from a non-loopback peer unless
 * --allow-plaintext-auth), then hands the user name and password to auth.c, which does the
 * lookup, the worker-pool verification, the failure delay and the answer for LOGIN and
 * AUTHENTICATE alike.
 */
#include "frontend/auth.h"
#include "frontend/commands.h"
#include "frontend/reply.h"

enum cmd_status cmd_login(struct cmd_ctx *ctx)
{
    const struct imap_arg *user = &ctx->args[0];
    const struct imap_arg *pw = &ctx->args[1];
    if (!imap_arg_is_astring(user) || !imap_arg_is_astring(pw)) {
        reply_tagged(ctx, "BAD", NULL, "LOGIN takes a user name and a password");
        return CMD_DONE;
    }
    if (!auth_allowed(ctx->conn)) {
        reply_tagged(ctx, "NO", "PRIVACYREQUIRED", "Use STARTTLS or the IMAPS port to log in");
        return CMD_DONE;
    }
    return auth_verify(ctx, "LOGIN", user->str, user->len, pw->str, pw->len);
}
