/*
 * conn: one client connection. Owns its bufferevent, parser, queue of parsed commands and the
 * running command (STYLE.md ownership rule 1).
 *
 * Command model. A connection runs one command at a time. Commands the client pipelines are parsed
 * ahead into a bounded queue (config max_queued); parsing pauses while the queue is full, after a
 * command that must not be pipelined past (STARTTLS, IDLE, LOGOUT...), and at a literal while
 * another command is still running (its "+" must not land inside another response).
 * A handler returns CMD_DONE (it wrote its tagged reply), CMD_WAIT (it asked for something that
 * will continue it: a Redis reply, a worker-pool result, a timer or an output drain) or CMD_ERR
 * (an internal failure: the connection says BYE and closes). Before returning CMD_WAIT a handler
 * sets ctx->next to the step that continues it.
 *
 * Async results find the connection through a token (slot + generation), never a raw pointer
 * (STYLE.md rule 3); a result for a connection that is gone, or for a command that already ended,
 * is dropped (and its job freed). A connection is never freed inside one of its own callbacks: it
 * is marked closing and freed on the next loop turn (STYLE.md rule 4).
 */
#ifndef CIMAP_CONN_H
#define CIMAP_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "frontend/parser.h"
#include "frontend/store.h"

struct frontend;
struct conn;
struct evbuffer;

enum conn_state {
    CONN_STATE_NOT_AUTH = 1 << 0,
    CONN_STATE_AUTH = 1 << 1,
    CONN_STATE_SELECTED = 1 << 2,
    CONN_STATE_LOGOUT = 1 << 3,
};

enum cmd_status { CMD_DONE, CMD_WAIT, CMD_ERR };

struct cmd_desc;
struct cmd_ctx;
typedef enum cmd_status cmd_step(struct cmd_ctx *ctx);

/* The running command. Owned by its connection; freed (with its arena) after it ends. */
struct cmd_ctx {
    struct conn *conn;            /* valid while a step runs */
    const struct cmd_desc *desc;
    struct imap_command *cmd;     /* owns the arena, tag and arguments */
    struct arena *arena;          /* == cmd->arena: per-command allocations */
    const char *tag;
    const struct imap_arg *args;  /* arguments after the command name (after "UID x" for UID forms) */
    size_t argc;
    bool uid;                     /* came as "UID <name>" */
    cmd_step *next;               /* set before returning CMD_WAIT */
    void *state;                  /* the handler's own state, usually in the arena */
    void *helper;                 /* state of a shared multi-step helper the handler is running
                                   * (e.g. expunge_start), usually in the arena */
    void (*cleanup)(struct cmd_ctx *ctx); /* optional: frees what state holds outside the arena;
                                   * called once when the command ends, however it ends */
    const struct store_result *store; /* during a step continued by a Redis reply */
    void *job;                    /* during a step continued by a worker result (handler frees) */
    const char *result;           /* "OK" / "NO" / "BAD", set by reply_tagged, for the log */
    cmd_step *on_wake;            /* optional: run when a wake-up arrives while the command waits
                                   * in conn_read_line (IDLE); the line wait is cancelled */
    bool early;                   /* started at its first literal, before the line was complete
                                   * (commands with a literal hook: APPEND) */
    bool complete;                /* early: the whole command has been parsed (args are final) */
    struct arena *own_arena;      /* early: the arena used until the command is complete */
    const char *line;             /* during a step continued by conn_read_line: the line, or NULL
                                   * when it exceeded the line limit (it was discarded) */
    size_t line_len;
};

/*
 * Accepts a connected socket: creates the connection (and greets it). With implicit_tls (an IMAPS
 * listener; fe->tls must be set) the greeting goes out once the TLS handshake is done. -1 on
 * failure (fd closed).
 */
int conn_accept(struct frontend *fe, int fd, const struct sockaddr *addr, int addrlen,
                bool implicit_tls);

/* Registry of live connections. Owned by the frontend. */
struct conn_table *conn_table_new(void);
void conn_table_free(struct conn_table **t);
size_t conn_table_count(const struct conn_table *t);

/* Drops every connection at once (process exit); they are freed on the next loop turn. */
void conn_table_close_all(struct conn_table *t);

/*
 * Sends "* BYE [UNAVAILABLE] <text>" to every connection not running a command, or running IDLE
 * and waiting for its DONE, and closes them (drain; call again to catch commands that finished
 * since). Connections still reading their PROXY header are closed without a word.
 */
void conn_table_shutdown(struct conn_table *t, const char *text);

/* Open connections by state, for /metrics (one pass over the table). */
struct conn_table_stats {
    size_t proxy_header; /* still reading the PROXY protocol header */
    size_t not_auth;
    size_t auth;         /* authenticated, nothing selected */
    size_t selected;
    size_t idle;         /* running IDLE (also counted in auth/selected) */
    size_t closing;      /* saying goodbye (not counted elsewhere) */
    size_t tls;
};
void conn_table_get_stats(const struct conn_table *t, struct conn_table_stats *out);

/* Accessors for handlers and the reply writer. */
struct frontend *conn_frontend(const struct conn *c);
struct evbuffer *conn_output(struct conn *c);
enum conn_state conn_get_state(const struct conn *c);
uint64_t conn_id(const struct conn *c);
const char *conn_user(const struct conn *c);   /* NULL before login */
const char *conn_nsid(const struct conn *c);   /* NULL before login */
const char *conn_peer(const struct conn *c);   /* client address for logs */
/* The client's address: from the PROXY header when there was one, else the socket's peer. */
const struct sockaddr *conn_peer_addr(const struct conn *c);
bool conn_is_debug(const struct conn *c);

/* Enters the authenticated state for login/nsid (copied); switches to the authenticated limits. */
void conn_set_authenticated(struct conn *c, const char *login, const char *nsid);

struct selected;

/* The selected mailbox, or NULL when none is. */
struct selected *conn_selected(struct conn *c);

/* Enters the selected state with sel (owned from now on; a previous selection is freed). */
void conn_select(struct conn *c, struct selected *sel);

/* Leaves the selected state (back to authenticated), freeing the selection. */
void conn_unselect(struct conn *c);

struct mbxcache;
struct user_limits;

/* The logged-in user's limits (user_limits.h); defaults until conn_set_user_limits. */
const struct user_limits *conn_user_limits(const struct conn *c);

/* Replaces the user's limits (copied), at login. */
void conn_set_user_limits(struct conn *c, const struct user_limits *l);

/* The session's mailbox name -> id memory (mbxcache.h), allocated on first use. */
struct mbxcache *conn_mbxcache(struct conn *c);

/* True when a wake-up came since the last call (and clears it): updates_run is due. */
bool conn_take_updates_pending(struct conn *c);

/*
 * The pub/sub callback (pubsub_cb): fans a wake-up for user nsid out to the local sessions that
 * have the mailbox named in the payload selected and have not seen its modseq; with resync, to
 * every session of the user. arg is unused.
 */
void conn_pubsub_wake(const char *nsid, const char *payload, size_t len, bool resync, void *arg);

/* Counts a failed authentication; returns the count so far. */
unsigned conn_count_auth_failure(struct conn *c);

/* --- TLS (conn.c "TLS" region; the OpenSSL side is tls.c) --- */

/* True once the connection runs over TLS (IMAPS, or after STARTTLS), even mid-handshake. */
bool conn_is_tls(const struct conn *c);

/* True when the peer address is loopback (127.0.0.0/8, ::1, or ::ffff:127.0.0.0/104). */
bool conn_is_loopback(const struct conn *c);

/* True when STARTTLS can be offered: not authenticated, not TLS yet, a certificate configured. */
bool conn_starttls_available(const struct conn *c);

/*
 * Switches the connection to TLS for STARTTLS (RFC 3501 §6.2.1), after the handler queued its
 * tagged OK (which still goes out in plaintext, ahead of the handshake). Everything the client
 * sent after the STARTTLS line is discarded unread and the parser starts afresh, so plaintext
 * pipelined behind STARTTLS can never be taken as if it came over TLS (CVE-2011-0411). Only for
 * a CMD_F_NO_PIPELINE command running in the not-authenticated state with
 * conn_starttls_available(). Returns 0, or -1 with *error_r (static text; the connection is
 * unchanged and the caller should close it).
 */
int conn_start_tls(struct conn *c, const char **error_r);

/* After the current command's tagged reply: close once the output is flushed. */
void conn_close_after_output(struct conn *c);

/* --- Waiting: each returns CMD_WAIT for the handler to pass on, after setting ctx->next. --- */

/* Sends a Redis command on the connection's shard; the reply continues ctx->next. */
enum cmd_status conn_redis(struct cmd_ctx *ctx, cmd_step *next, int argc, const char *const *argv,
                           const size_t *argvlen);

/*
 * Sends n read commands as one MULTI/EXEC transaction on the connection's shard: one round trip,
 * one consistent snapshot. ctx->next continues with EXEC's reply, an array holding each command's
 * reply in order (an element may be an error reply); STORE_UNAVAILABLE if any part failed.
 * For reads only: every write is a Lua script (DESIGN.md rule 1).
 */
enum cmd_status conn_redis_tx(struct cmd_ctx *ctx, cmd_step *next, size_t n, const int *argc,
                              const char *const *const *argv, const size_t *const *argvlen);

/* EVALSHA of an embedded script (argv = nkeys keys then args); the reply continues ctx->next. */
enum cmd_status conn_eval(struct cmd_ctx *ctx, cmd_step *next, enum lua_script_id script,
                          int nkeys, int argc, const char *const *argv, const size_t *argvlen);

/*
 * Runs work(job) on the worker pool; done continues ctx->next with ctx->job = job (the step frees
 * it). If the connection or command is gone by then, free_job(job) is called instead. When the
 * pool is saturated, job is freed and *full_r set: the caller answers NO [UNAVAILABLE].
 */
enum cmd_status conn_work(struct cmd_ctx *ctx, cmd_step *next, void (*work)(void *job),
                          void (*free_job)(void *job), void *job, bool *full_r);

/*
 * Reads the next line the client sends (CRLF or LF removed; NUL-terminated copy in the arena) and
 * continues ctx->next with ctx->line / ctx->line_len. For continuation dialogues (AUTHENTICATE,
 * IDLE's DONE) of commands flagged CMD_F_NO_PIPELINE, so nothing has been parsed past them. A line
 * longer than the connection's line limit is discarded and delivered as ctx->line == NULL.
 */
enum cmd_status conn_read_line(struct cmd_ctx *ctx, cmd_step *next);

/* Continues ctx->next after ms milliseconds. */
enum cmd_status conn_sleep(struct cmd_ctx *ctx, cmd_step *next, uint32_t ms);

/* Continues ctx->next once the client's unsent output is below the low-water mark. */
enum cmd_status conn_wait_drain(struct cmd_ctx *ctx, cmd_step *next);

/*
 * For a literal hook that paused input (literal_data returned true): reading and parsing resume
 * after the current step returns.
 */
void conn_resume_input(struct cmd_ctx *ctx);

/* True when unsent output is above the high-water mark (a streaming handler should wait). */
bool conn_output_full(const struct conn *c);

#endif
