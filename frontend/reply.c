/*
 * The reply writer: every byte cimapd sends to an IMAP client passes through here. Lines are
 * built in a scratch evbuffer and moved to the connection's output in one piece, so a response
 * line is never interleaved with another. Strings are encoded per RFC 3501 §4.3: quoted when
 * every byte is a 7-bit TEXT-CHAR, a literal otherwise (binary-safe, lengths always).
 * Under --debug each line is logged (truncated) as the server side of the transcript.
 */
#include "frontend/reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

#include "frontend/auth.h"
#include "frontend/conn.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/sasl.h"

#define QUOTED_MAX 1024 /* longer strings go out as literals */

static void log_server_line(struct conn *c, struct evbuffer *line)
{
    if (!conn_is_debug(c) || !log_enabled(LOG_DEBUG))
        return;
    size_t len = evbuffer_get_length(line);
    size_t show = len > 300 ? 300 : len;
    char buf[300];
    evbuffer_copyout(line, buf, show);
    char q[700];
    log_write(LOG_DEBUG, "imap.s", "conn=%llu line=%s", (unsigned long long)conn_id(c),
              log_quote(q, sizeof(q), buf, show));
}

void reply_line(struct conn *c, struct evbuffer *line)
{
    log_server_line(c, line);
    evbuffer_add(line, "\r\n", 2);
    evbuffer_add_buffer(conn_output(c), line);
}

static void vline(struct conn *c, const char *prefix, const char *code, const char *fmt,
                  va_list ap) __attribute__((format(printf, 4, 0)));

static void vline(struct conn *c, const char *prefix, const char *code, const char *fmt,
                  va_list ap)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "%s ", prefix);
    if (code != NULL)
        evbuffer_add_printf(b, "[%s] ", code);
    evbuffer_add_vprintf(b, fmt, ap);
    reply_line(c, b);
    evbuffer_free(b);
}

void reply_untagged(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vline(c, "*", NULL, fmt, ap);
    va_end(ap);
}

void reply_tagged(struct cmd_ctx *ctx, const char *status, const char *code, const char *fmt, ...)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "%s %s ", ctx->tag, status);
    if (code != NULL)
        evbuffer_add_printf(b, "[%s] ", code);
    va_list ap;
    va_start(ap, fmt);
    evbuffer_add_vprintf(b, fmt, ap);
    va_end(ap);
    reply_line(ctx->conn, b);
    evbuffer_free(b);
    ctx->result = status;
}

void reply_status(struct conn *c, const char *tag, const char *status, const char *code,
                  const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "%s %s ", tag != NULL ? tag : "*", status);
    if (code != NULL)
        evbuffer_add_printf(b, "[%s] ", code);
    evbuffer_add(b, text, strlen(text));
    reply_line(c, b);
    evbuffer_free(b);
}

void reply_continue(struct conn *c, const char *text)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "+ %s", text);
    reply_line(c, b);
    evbuffer_free(b);
}

void reply_bye(struct conn *c, const char *code, const char *text)
{
    reply_status(c, NULL, "BYE", code, text);
}

void reply_capabilities(struct conn *c, struct evbuffer *out)
{
    /* Exactly what is implemented; each later extension adds its word here. */
    evbuffer_add_printf(out, "IMAP4rev1 LITERAL+ ID ENABLE UNSELECT MULTIAPPEND APPENDLIMIT=%llu",
                        (unsigned long long)conn_frontend(c)->cfg->append_limit);
    evbuffer_add_printf(out, " NAMESPACE SPECIAL-USE STATUS=SIZE OBJECTID"); /* mailbox commands */
    evbuffer_add_printf(out, " BINARY"); /* FETCH */
    evbuffer_add_printf(out, " ESEARCH"); /* SEARCH RETURN (RFC 4731) */
    evbuffer_add_printf(out, " UIDPLUS MOVE"); /* UID EXPUNGE, COPYUID (RFC 4315); RFC 6851 */
    /* Login words only before login: STARTTLS on plaintext with a certificate; LOGINDISABLED and
     * no AUTH= where a password must not travel in clear (RFC 3501 §6.2.3, RFC 4959, RFC 8314). */
    if (conn_get_state(c) == CONN_STATE_NOT_AUTH) {
        if (conn_starttls_available(c))
            evbuffer_add_printf(out, " STARTTLS");
        if (!auth_allowed(c)) {
            evbuffer_add_printf(out, " LOGINDISABLED");
        } else {
            for (size_t i = 0; i < sasl_mech_count(); i++)
                evbuffer_add_printf(out, " AUTH=%s", sasl_mech_at(i)->name);
            evbuffer_add_printf(out, " SASL-IR");
        }
    }
}

void reply_greeting(struct conn *c)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "* OK [CAPABILITY ");
    reply_capabilities(c, b);
    evbuffer_add_printf(b, "] cimap ready");
    reply_line(c, b);
    evbuffer_free(b);
}

static bool quotable(const char *s, size_t len)
{
    if (len > QUOTED_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '\0' || ch == '\r' || ch == '\n' || ch >= 0x80)
            return false;
    }
    return true;
}

void reply_string(struct evbuffer *out, const char *s, size_t len)
{
    if (!quotable(s, len)) {
        evbuffer_add_printf(out, "{%zu}\r\n", len);
        evbuffer_add(out, s, len);
        return;
    }
    evbuffer_add(out, "\"", 1);
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\') {
            evbuffer_add(out, s + start, i - start);
            evbuffer_add(out, "\\", 1);
            start = i;
        }
    }
    evbuffer_add(out, s + start, len - start);
    evbuffer_add(out, "\"", 1);
}

void reply_nstring(struct evbuffer *out, const char *s, size_t len)
{
    if (s == NULL)
        evbuffer_add(out, "NIL", 3);
    else
        reply_string(out, s, len);
}
