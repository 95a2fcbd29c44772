/*
 * STARTTLS (RFC 3501 §6.2.1, RFC 2595). Valid only before login (the command table), on a
 * plaintext connection, with a certificate configured. The tagged OK is queued in plaintext,
 * then conn_start_tls() discards whatever the client sent after the STARTTLS line (the command
 * is CMD_F_NO_PIPELINE, so none of it was parsed) and puts TLS under the connection: no
 * plaintext command can be injected into the TLS session (CVE-2011-0411). The client must ask
 * for CAPABILITY again afterwards (§6.2.1); its list then no longer offers STARTTLS.
 */
#include "frontend/commands.h"
#include "frontend/log.h"
#include "frontend/reply.h"

enum cmd_status cmd_starttls(struct cmd_ctx *ctx)
{
    struct conn *c = ctx->conn;
    if (conn_is_tls(c)) {
        reply_tagged(ctx, "BAD", NULL, "TLS is already active");
        return CMD_DONE;
    }
    if (!conn_starttls_available(c)) {
        reply_tagged(ctx, "BAD", NULL, "STARTTLS is not available (no certificate configured)");
        return CMD_DONE;
    }
    reply_tagged(ctx, "OK", NULL, "Begin TLS negotiation now");
    const char *error = NULL;
    if (conn_start_tls(c, &error) != 0) {
        log_write(LOG_ERROR, "conn.starttls_failed", "conn=%llu error=\"%s\"",
                  (unsigned long long)conn_id(c), error);
        conn_close_after_output(c);
    }
    return CMD_DONE;
}
