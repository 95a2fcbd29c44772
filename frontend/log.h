/*
 * log: one logfmt line per event on stderr (DESIGN.md "Interfaces operators expect"):
 *   ts=2026-11-25T21:30:00.123Z level=info event=login conn=12 user=demouser result=ok
 * Values are written by the caller in the kv format; log_quote() escapes untrusted text.
 * Not thread-safe for configuration; log_write itself is safe from worker threads (one write(2)).
 */
#ifndef CIMAP_LOG_H
#define CIMAP_LOG_H

#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Sets the lowest level written (default LOG_INFO). */
void log_set_level(enum log_level level);

/* True when a message at level would be written (to skip building expensive ones). */
bool log_enabled(enum log_level level);

/* Writes "ts=.. level=.. event=<event> " followed by the formatted kv text and a newline. */
void log_write(enum log_level level, const char *event, const char *kv_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/*
 * Quotes untrusted bytes for a logfmt value into out (always NUL-terminated, truncated with "..."
 * to fit): wraps in double quotes, escapes '"' and '\\', and writes other bytes outside
 * printable ASCII as \xHH. Returns out.
 */
const char *log_quote(char *out, size_t out_size, const char *s, size_t len);

#endif
