/*
 * reply: the only code that writes to a client (STYLE.md layout). Builds tagged, untagged and
 * continuation responses, and encodes strings as atoms, quoted strings or literals as RFC 3501
 * §4.3 allows. With --debug every response line is logged as the server side of the transcript.
 * Writes go to the connection's output buffer; backpressure is the caller's concern
 * (conn_output_full / conn_wait_drain).
 */
#ifndef CIMAP_REPLY_H
#define CIMAP_REPLY_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct cmd_ctx;
struct evbuffer;

/* "* <text>\r\n" (text formatted; must not contain CR or LF). */
void reply_untagged(struct conn *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/*
 * "<tag> <status> [<code>] <text>\r\n" for the running command. status is "OK", "NO" or "BAD";
 * code may be NULL. Records the status for the command log.
 */
void reply_tagged(struct cmd_ctx *ctx, const char *status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/*
 * "<tag> <status> [<code>] <text>" for a command that never ran (parse error, unknown command,
 * refused literal); tag NULL means "*". code may be NULL.
 */
void reply_status(struct conn *c, const char *tag, const char *status, const char *code,
                  const char *text);

/* "+ <text>\r\n". */
void reply_continue(struct conn *c, const char *text);

/* "* BYE [<code>] <text>\r\n" (code may be NULL). */
void reply_bye(struct conn *c, const char *code, const char *text);

/* The greeting: "* OK [CAPABILITY ...] <text>\r\n". */
void reply_greeting(struct conn *c);

/* Appends the capability list for the connection's current state (no leading space). */
void reply_capabilities(struct conn *c, struct evbuffer *out);

/*
 * Appends s (len bytes) as an IMAP string: a quoted string when every byte is a safe TEXT-CHAR
 * (and it is short), otherwise a literal. Binary-safe.
 */
void reply_string(struct evbuffer *out, const char *s, size_t len);

/* As reply_string, or NIL when s is NULL. */
void reply_nstring(struct evbuffer *out, const char *s, size_t len);

/* Hands a built line (without CRLF) to the client with CRLF, logging it under --debug. */
void reply_line(struct conn *c, struct evbuffer *line);

#endif
