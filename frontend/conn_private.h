/*
 * conn_private.h: the connection object shared by the files that implement conn.h — conn.c
 * (registry, lifecycle, running commands, accept), conn_input.c (parsing, literals, socket
 * callbacks), conn_wait.c (what a command waits on), conn_tls.c (STARTTLS/IMAPS). Nothing outside
 * these files includes it.
 */
#ifndef CIMAP_CONN_PRIVATE_H
#define CIMAP_CONN_PRIVATE_H

#include "frontend/conn.h"
#include "frontend/user_limits.h"

#include <arpa/inet.h>
#include <assert.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>

#include "frontend/commands.h"
#include "frontend/fleet.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/metrics.h"
#include "frontend/proxy.h"
#include "frontend/mbxcache.h"
#include "frontend/reply.h"
#include "frontend/pubsub.h"
#include "frontend/selected.h"
#include "frontend/watchers.h"
#include "frontend/tls.h"
#include "frontend/workers.h"
#include "keys/keys.h"

#define DRAIN_LOW (64 * 1024)   /* resume a streaming command below this much unsent output */
#define DRAIN_HIGH (256 * 1024) /* a streaming command waits above this */

/* A queued item: a parsed command, or an error to answer in its turn. */
struct qitem {
    struct imap_command *cmd; /* NULL for an error item */
    char *tag;                /* error item: malloc'd tag or NULL for "*" */
    const char *status;       /* error item: "BAD" or "NO" */
    const char *code;         /* error item: response code or NULL (static) */
    const char *text;         /* error item: static text */
    bool fatal;               /* error item: BYE and close after answering */
};

struct conn {
    struct frontend *fe;
    uint32_t slot;
    uint32_t gen;           /* changes for every command: tokens of older commands go stale */
    uint64_t id;
    uint64_t sid;           /* session token: slot + generation at accept; constant */
    bool watching;          /* registered in the watchers under its nsid */
    bool updates_pending;   /* a wake-up came that no updates_run has handled yet */
    struct bufferevent *bev;
    struct parser *parser;
    enum conn_state state;
    const struct conn_limits *limits;
    char peer[INET6_ADDRSTRLEN + 8];
    char *user;
    char nsid[KEYS_NSID_LEN + 1];
    struct selected *selected; /* the selected mailbox, or NULL */
    struct mbxcache *mbxcache; /* name -> mailbox id seen by this session (NULL until used) */
    struct user_limits ulimits; /* the logged-in user's limits (defaults before login) */
    struct qitem *queue;    /* ring of max_queued + 1 items (one extra for an error) */
    size_t q_cap, q_head, q_len;
    struct cmd_ctx *running;
    struct timespec started; /* when the running command started */
    struct event *idle_timer;
    struct event *wait_timer;
    unsigned auth_failures;
    uint32_t commands_in_state;
    bool lit_pending;       /* the parser stopped at a literal that awaits our decision */
    bool pipeline_blocked;  /* a CMD_F_NO_PIPELINE command is queued or running */
    bool in_pump;
    bool waiting_drain;
    bool want_line;         /* the running command waits for a raw line (conn_read_line) */
    bool input_paused;      /* a literal hook stopped input until conn_resume_input */
    uint64_t literal_left;  /* bytes of the streamed literal still to come */
    bool discarding_line;   /* dropping the rest of an over-long raw line */
    bool closing;           /* free once output is flushed; read nothing more */
    bool dead;              /* freed on the next loop turn */
    bool tls;               /* bev is a TLS filter over the socket bufferevent (TLS region) */
    bool tls_ready;         /* its handshake has completed */
    bool loopback;          /* the peer address is loopback */
    struct sockaddr_storage addr; /* the client's address (PROXY region) */
    struct proxy_parser *proxy;   /* while reading the PROXY header, else NULL */
    bool tls_after_proxy;         /* IMAPS behind PROXY: wrap TLS once the header is read */
};

struct conn_table {
    struct conn **slots;
    uint32_t cap;
    uint32_t count;
    uint32_t *free_slots;
    uint32_t free_count;
    uint32_t gen_counter;
    struct watchers *watch; /* nsid -> sessions with a mailbox selected (wake-up fan-out) */
};

/* Shared between the conn*.c files; each definition states its contract. */
uint64_t conn_token(const struct conn *c);
struct conn *conn_table_lookup(uint64_t token);
void conn_pump(struct conn *c);
#define CONN_FLUSH_MAX (64u * 1024) /* larger answers are written by the bufferevent */
void conn_flush_output(struct conn *c);
void conn_kill(struct conn *c);
void conn_after_step(struct conn *c, enum cmd_status st);
void conn_early_run(struct conn *c);
void conn_update_reading(struct conn *c);
void conn_kill_when_flushed(struct conn *c);
bool conn_tls_event(struct conn *c, short what);
void conn_queue_error(struct conn *c, const char *tag, const char *status, const char *code,
                      const char *text, bool fatal);
bool conn_queue_full(const struct conn *c);
void conn_queue_push(struct conn *c, struct qitem it);
void conn_read_cb(struct bufferevent *bev, void *arg);
void conn_write_cb(struct bufferevent *bev, void *arg);
void conn_event_cb(struct bufferevent *bev, short what, void *arg);
void conn_run_next_step(struct conn *c, const struct store_result *res);
void conn_start_next(struct conn *c);
void conn_wait_timer_cb(evutil_socket_t fd, short what, void *arg);
int conn_wrap_tls(struct conn *c, const char **error_r);
bool conn_addr_is_loopback(const struct sockaddr *sa);

#endif
