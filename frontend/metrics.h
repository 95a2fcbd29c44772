/*
 * metrics: the process's Prometheus metrics (DESIGN.md "Interfaces operators expect"). A small
 * registry of counters and histograms with fixed label sets, fed by conn.c, auth.c and the cluster
 * limits, rendered as text exposition format 0.0.4 by http.c's /metrics. Values that other
 * modules already count (Redis round trips, pub/sub wake-ups, connections by state) are read at
 * scrape time instead of being counted twice; metrics_write_* renders them.
 *
 * The registry is one process-wide object (like the log): every increment is an array update,
 * no allocation, no lookup by string except commands (a linear scan over at most
 * METRICS_MAX_COMMANDS static names, compared by pointer first). Event-loop thread only.
 */
#ifndef CIMAP_METRICS_H
#define CIMAP_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct evbuffer;

enum metrics_counter {
    METRICS_CONN_ACCEPTED,        /* client connections accepted */
    METRICS_CONN_REFUSED,         /* closed at accept: too many, draining, untrusted PROXY peer */
    METRICS_BYTES_IN,             /* bytes read from client sockets (TLS records included) */
    METRICS_BYTES_OUT,            /* bytes written to client sockets */
    METRICS_TLS_HANDSHAKE_OK,
    METRICS_TLS_HANDSHAKE_FAILED,
    METRICS_AUTH_OK,
    METRICS_AUTH_FAILED,          /* every failed LOGIN/AUTHENTICATE, throttled ones included */
    METRICS_AUTH_THROTTLED,       /* refused by the cluster-wide login throttle */
    METRICS_USER_LIMIT,           /* logins refused by --max-user-connections */
    METRICS_PROXY_OK,             /* PROXY protocol headers accepted */
    METRICS_PROXY_REJECTED,       /* malformed header or untrusted peer: connection closed */
    METRICS_PROTOCOL_ERRORS,      /* IMAP syntax errors answered BAD */
    METRICS_COMMAND_ERRORS,       /* internal command failures (BYE [SERVERBUG]) */
    METRICS_DRAIN_BYE,            /* BYE [UNAVAILABLE] sent while draining */
    METRICS_COUNTER_COUNT
};

/* Adds n to counter c. */
void metrics_add(enum metrics_counter c, uint64_t n);

/* Adds 1 to counter c. */
void metrics_inc(enum metrics_counter c);

#define METRICS_MAX_COMMANDS 64

/*
 * Counts one finished command: name (a static string, e.g. a cmd_desc name; compared by
 * pointer, so pass the same pointer each time), uid (came as "UID <name>"), result ("OK", "NO",
 * "BAD" or NULL when it ended without a tagged reply) and its duration. Commands beyond
 * METRICS_MAX_COMMANDS distinct names are counted under "OTHER".
 */
void metrics_command(const char *name, bool uid, const char *result, double ms);

/* Appends every registry metric, in text format 0.0.4, to out. */
void metrics_render(struct evbuffer *out);

/* Resets every value (tests). */
void metrics_reset(void);

/*
 * Rendering helpers for values collected at scrape time. Each writes "# HELP" and "# TYPE" lines
 * for name, then the sample. labels is NULL or the text between the braces (already escaped with
 * metrics_escape); type is "counter" or "gauge".
 */
void metrics_write_header(struct evbuffer *out, const char *name, const char *type,
                          const char *help);
void metrics_write_sample(struct evbuffer *out, const char *name, const char *labels,
                          double value);

/*
 * Escapes a label value (backslash, double quote, newline: text format 0.0.4) into out (always
 * NUL-terminated, truncated to fit). Returns out.
 */
const char *metrics_escape(char *out, size_t size, const char *value, size_t len);

#endif
