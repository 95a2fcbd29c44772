/*
 * AUTHENTICATE (RFC 3501 §6.2.2) with SASL-IR (RFC 4959). The IMAP side of a SASL exchange:
 * an optional initial response on the command line ("=" is an empty one), "+ <base64>"
 * challenges, one raw client line per response (conn_read_line: the command is
 * CMD_F_NO_PIPELINE, so nothing was parsed past it), "*" cancels (tagged BAD, as §6.2.2 says),
 * malformed base64 is a BAD. The mechanism (sasl_<mech>.c) turns responses into credentials;
 * auth.c verifies them exactly as for LOGIN (delay, failure count, disconnect).
 *
 * Secrets: the command line's arguments are masked in the --debug transcript by
 * CMD_F_SENSITIVE; the continuation lines are logged here as "***" (or "*" for a cancel), and
 * decoded responses are wiped as soon as auth.c has copied what it needs.
 */
#include <string.h>

#include <openssl/crypto.h>

#include "frontend/arena.h"
#include "frontend/auth.h"
#include "frontend/commands.h"
#include "frontend/log.h"
#include "frontend/reply.h"
#include "frontend/sasl.h"

struct authn_state {
    const struct sasl_mech *mech;
    void *mech_state;
};

static enum cmd_status got_line(struct cmd_ctx *ctx);

/* Feeds one decoded response (NULL: none yet) to the mechanism and acts on the result. */
static enum cmd_status run_step(struct cmd_ctx *ctx, const unsigned char *resp, size_t len)
{
    struct authn_state *as = ctx->state;
    const struct sasl_mech *mech = as->mech;
    struct sasl_output out = {0};
    switch (mech->step(as->mech_state, ctx->arena, resp, len, &out)) {
    case SASL_CHALLENGE:
        reply_continue(ctx->conn, out.challenge);
        return conn_read_line(ctx, got_line);
    case SASL_CREDENTIALS:
        return auth_verify(ctx, mech->name, out.authcid, out.authcid_len, out.password,
                           out.password_len);
    case SASL_FAILED:
        return auth_reject(ctx, mech->name, out.authcid, out.authcid_len, out.error);
    }
    return CMD_ERR;
}

/* Decodes a base64 response and runs the mechanism on it; the decoded bytes are wiped after. */
static enum cmd_status respond(struct cmd_ctx *ctx, const char *text, size_t len)
{
    unsigned char *buf = arena_alloc(ctx->arena, SASL_BASE64_DECODED_MAX(len) + 1);
    size_t n = 0;
    if (sasl_base64_decode(text, len, buf, &n) != 0) {
        reply_tagged(ctx, "BAD", NULL, "Invalid base64 in the authentication exchange");
        return CMD_DONE;
    }
    enum cmd_status st = run_step(ctx, buf, n);
    OPENSSL_cleanse(buf, n);
    return st;
}

static enum cmd_status got_line(struct cmd_ctx *ctx)
{
    struct conn *c = ctx->conn;
    bool cancel = ctx->line != NULL && ctx->line_len == 1 && ctx->line[0] == '*';
    if (conn_is_debug(c) && log_enabled(LOG_DEBUG))
        log_write(LOG_DEBUG, "imap.c", "conn=%llu line=\"%s\"", (unsigned long long)conn_id(c),
                  cancel ? "*" : "***");
    if (ctx->line == NULL) {
        reply_tagged(ctx, "BAD", NULL, "Authentication response too long");
        return CMD_DONE;
    }
    if (cancel) {
        reply_tagged(ctx, "BAD", NULL, "Authentication cancelled");
        return CMD_DONE;
    }
    return respond(ctx, ctx->line, ctx->line_len);
}

enum cmd_status cmd_authenticate(struct cmd_ctx *ctx)
{
    const struct imap_arg *name = &ctx->args[0];
    if (name->type != IMAP_ARG_ATOM) {
        reply_tagged(ctx, "BAD", NULL, "AUTHENTICATE takes a mechanism name");
        return CMD_DONE;
    }
    if (!auth_allowed(ctx->conn)) {
        reply_tagged(ctx, "NO", "PRIVACYREQUIRED", "Use STARTTLS or the IMAPS port to log in");
        return CMD_DONE;
    }
    const struct sasl_mech *mech = sasl_find(name->str, name->len);
    if (mech == NULL) {
        reply_tagged(ctx, "NO", NULL, "Unsupported authentication mechanism");
        return CMD_DONE;
    }
    struct authn_state *as = arena_calloc(ctx->arena, 1, sizeof(*as));
    as->mech = mech;
    as->mech_state = mech->state_size > 0 ? arena_calloc(ctx->arena, 1, mech->state_size) : NULL;
    ctx->state = as;
    if (ctx->argc < 2)
        return run_step(ctx, NULL, 0);
    /* RFC 4959: initial-response = base64 / "=" (an empty response). */
    const struct imap_arg *ir = &ctx->args[1];
    if (ir->type != IMAP_ARG_ATOM) {
        reply_tagged(ctx, "BAD", NULL, "The initial response must be base64 or \"=\"");
        return CMD_DONE;
    }
    if (ir->len == 1 && ir->str[0] == '=')
        return run_step(ctx, (const unsigned char *)"", 0);
    return respond(ctx, ir->str, ir->len);
}
