/*
 * store: a fixed pool of pipelined hiredis async connections on the libevent loop (contract in
 * store.h, why in DESIGN.md "Request flow" and rule 9).
 *
 * Ownership
 * - A request (struct store_req) is owned by exactly one party at a time:
 *   * deferred (never sent: no connection ready, or the send failed): the store, on its deferred
 *     list, answered by a zero-delay timer — so a callback never runs inside store_command;
 *   * in flight: hiredis. hiredis runs its reply callback exactly once, with the reply or, when the
 *     context goes away, with NULL; that callback is the only place an in-flight request is freed.
 *   A timeout answers the caller at once (state ANSWERED) but leaves the request to hiredis; the
 *   late reply, or the NULL that comes when the connection is dropped, then only frees it. So a
 *   late reply never reaches the caller and hiredis never holds a dangling privdata.
 * - A connection slot (struct store_conn) lives as long as the store; hiredis' ac->data points at
 *   it. A slot holds at most one redisAsyncContext at a time.
 *
 * Dropping a connection (timeout, failed handshake) never frees the hiredis context in place: the
 * slot is marked CLOSING (no new traffic) and a zero-delay event frees the context on the next
 * loop turn, outside every hiredis callback (STYLE.md ownership rule 4). hiredis then runs every
 * pending reply callback with NULL, which answers those requests STORE_UNAVAILABLE. When hiredis
 * itself tears a context down (server closed, protocol error, nesting deeper than hiredis 0.14's
 * limit of 7), the first NULL reply marks the slot CLOSING so re-entrant requests avoid it, and
 * the disconnect callback schedules the reconnect.
 *
 * Connection life: IDLE --backoff timer--> RESOLVING (evdns, skipped for numeric hosts) -->
 * CONNECTING (hiredis to a numeric address, each resolved address in turn) --> HANDSHAKE (SELECT
 * db, SCRIPT LOAD of every embedded script with its SHA1 checked, CONFIG GET maxmemory-policy)
 * --> READY. One deadline (connect_timeout_ms) covers resolution, each connect and the
 * handshake. Any failure goes back to IDLE with an exponential backoff with jitter.
 *
 * Timers: one libevent timer per request, added with a libevent "common timeout" so that
 * thousands of identical deadlines cost O(1) each instead of a heap operation.
 *
 * Out of memory aborts: a request must be answered exactly once, and without memory it cannot
 * even be queued for its answer.
 *
 * Not done here: Redis Cluster redirections (-MOVED/-ASK are plain STORE_ERROR), AUTH/TLS to
 * Redis, the persistence-policy check, pub/sub (a separate connection owned elsewhere).
 */
#include "frontend/store.h"

#include <arpa/inet.h>
#include <assert.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>

#include "frontend/log.h"

#define STORE_MAX_POOL 64
#define STORE_MAX_ADDRS 8
#define STORE_MAX_HOST 253
#define STORE_SHA1_LEN 40

/* Reasons handed to callers with STORE_UNAVAILABLE (static storage). */
static const char reason_not_connected[] = "redis not connected";
static const char reason_timeout[] = "timeout";
static const char reason_lost[] = "connection lost";
static const char reason_closed[] = "store closed";
static const char reason_send[] = "redis send failed";

/* Error replies that mean "Redis cannot serve this now, try later" (DESIGN.md rule 9). */
static const char *const unavailable_errors[] = {
    "OOM", "LOADING", "BUSY", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN",
};

enum conn_state {
    CONN_IDLE,       /* no context; the retry timer is armed (or the store is closing) */
    CONN_RESOLVING,  /* evdns_getaddrinfo in progress */
    CONN_CONNECTING, /* context created, TCP connect in progress */
    CONN_HANDSHAKE,  /* connected, SELECT / SCRIPT LOAD / CONFIG GET in flight */
    CONN_READY,      /* takes traffic */
    CONN_CLOSING,    /* context being torn down (by us on the next turn, or by hiredis now) */
};

struct store_conn;

/* Argument of one evdns_getaddrinfo call; owned by its callback, which frees it. */
struct store_resolve {
    struct store_conn *conn; /* NULL once cancelled */
};

/* One pool slot. Owned by the store; lives as long as it. */
struct store_conn {
    struct store *store;
    unsigned index;
    enum conn_state state;
    redisAsyncContext *ac;         /* owned by hiredis' lifecycle; NULL when none */
    bool freeing;                  /* inside our own redisAsyncFree(ac) */
    bool was_ready;                /* has been READY before: the next READY is a reconnect */
    const char *drop_reason;       /* answer for requests still in flight when ac goes */
    struct event *retry_ev;        /* backoff timer: starts the next attempt */
    struct event *connect_ev;      /* deadline of resolve / connect / handshake */
    struct event *kill_ev;         /* zero-delay: frees a dropped context outside hiredis */
    struct event *flush_ev;        /* activated on send: writes the pipeline in this loop turn */
    struct store_resolve *resolve; /* pending resolution, or NULL */
    struct evdns_getaddrinfo_request *dns_req;
    char addrs[STORE_MAX_ADDRS][INET6_ADDRSTRLEN];
    unsigned naddrs;
    unsigned addr_next;            /* next address to try */
    unsigned addr_cur;             /* address of the current context */
    unsigned hs_script;            /* next SCRIPT LOAD reply expected in the handshake */
    uint32_t backoff_ms;           /* next (un-jittered) reconnect delay */
    unsigned failures;             /* consecutive failed attempts */
    char last_err[128];
};

enum req_state {
    REQ_DEFERRED, /* not sent; on the deferred list; answered by its zero-delay timer */
    REQ_INFLIGHT, /* sent; owned by hiredis; timer armed */
    REQ_ANSWERED, /* callback done (timed out); still owned by hiredis until its reply/NULL */
};

/* One request. Owner: see the design comment (store while deferred, hiredis while in flight). */
struct store_req {
    struct store *store;
    struct store_conn *conn; /* in flight: the slot it was sent on */
    store_cb *cb;
    uint64_t token;
    struct event *timer;
    enum req_state state;
    const char *reason;              /* deferred: reason given with STORE_UNAVAILABLE */
    struct store_req *prev, *next;   /* deferred list */
    char *cmd;                       /* eval: formatted EVALSHA command, kept for a retry */
    size_t cmd_len;
    size_t cmd_tail;                 /* offset of "numkeys" in cmd */
    int cmd_argc;
    enum lua_script_id script;
    bool is_eval;
    bool retried;
};

/* The pool. Owned by the caller of store_new. */
struct store {
    struct event_base *base;
    struct evdns_base *dns;
    char *host;
    bool host_numeric;
    uint16_t port;
    uint32_t db;
    struct store_config cfg;
    struct timeval timeout_tv;
    const struct timeval *timeout_common; /* common-timeout version of timeout_tv */
    struct timeval connect_tv;
    unsigned pool_size;
    struct store_conn *conns;
    struct store_req *deferred_head, *deferred_tail;
    bool closing;
    uint64_t rng;
    struct store_stats stats; /* .connected kept up to date by conn_set_state */
};

static void conn_start(struct store_conn *c);
static void conn_connect(struct store_conn *c);
static void req_reply_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- configuration and URL ---------------------------------------------------------------- */

void store_config_defaults(struct store_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->url = "redis://127.0.0.1:6379";
    cfg->pool_size = 4;
    cfg->timeout_ms = 5000;
    cfg->connect_timeout_ms = 2000;
    cfg->backoff_min_ms = 100;
    cfg->backoff_max_ms = 5000;
}

static bool url_host_char_ok(char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           ch == '.' || ch == '-' || ch == '_';
}

/* Parses 1..max decimal digits of [p, end) into *out (<= limit). Returns 0 or -1. */
static int url_parse_number(const char *p, const char *end, uint32_t limit, uint32_t *out)
{
    if (p == end || end - p > 10)
        return -1;
    uint64_t v = 0;
    for (; p < end; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        v = v * 10 + (uint64_t)(*p - '0');
    }
    if (v > limit)
        return -1;
    *out = (uint32_t)v;
    return 0;
}

int store_url_parse(const char *url, char **host_r, uint16_t *port_r, uint32_t *db_r,
                    const char **error_r)
{
    static const char scheme[] = "redis://";
    *host_r = NULL;
    if (url == NULL || strncmp(url, scheme, sizeof(scheme) - 1) != 0) {
        *error_r = "URL must start with redis://";
        return -1;
    }
    const char *p = url + sizeof(scheme) - 1;
    const char *host, *host_end;
    if (strchr(p, '@') != NULL) {
        *error_r = "credentials in the Redis URL are not supported";
        return -1;
    }
    if (*p == '[') {
        host = p + 1;
        host_end = strchr(host, ']');
        if (host_end == NULL) {
            *error_r = "unterminated [IPv6] host";
            return -1;
        }
        p = host_end + 1;
    } else {
        host = p;
        while (*p != '\0' && *p != ':' && *p != '/')
            p++;
        host_end = p;
    }
    size_t host_len = (size_t)(host_end - host);
    if (host_len == 0 || host_len > STORE_MAX_HOST) {
        *error_r = "missing or too long host";
        return -1;
    }
    char hostbuf[STORE_MAX_HOST + 1];
    memcpy(hostbuf, host, host_len);
    hostbuf[host_len] = '\0';
    if (host[-1] == '[') {
        struct in6_addr a6;
        if (inet_pton(AF_INET6, hostbuf, &a6) != 1) {
            *error_r = "bad IPv6 address";
            return -1;
        }
    } else {
        for (size_t i = 0; i < host_len; i++) {
            if (!url_host_char_ok(hostbuf[i])) {
                *error_r = "bad character in host";
                return -1;
            }
        }
    }
    uint32_t port = 6379, db = 0;
    if (*p == ':') {
        const char *q = ++p;
        while (*p != '\0' && *p != '/')
            p++;
        if (url_parse_number(q, p, 65535, &port) < 0 || port == 0) {
            *error_r = "bad port";
            return -1;
        }
    }
    if (*p == '/') {
        p++;
        if (*p != '\0') {
            const char *q = p;
            p += strlen(p);
            if (url_parse_number(q, p, INT32_MAX, &db) < 0) {
                *error_r = "bad database number";
                return -1;
            }
        }
    }
    if (*p != '\0') {
        *error_r = "unexpected text after host";
        return -1;
    }
    char *h = strdup(hostbuf);
    if (h == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    *host_r = h;
    *port_r = (uint16_t)port;
    *db_r = db;
    return 0;
}

/* ---- small helpers -------------------------------------------------------------------------- */

static struct timeval ms_to_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static uint64_t store_rand(struct store *s)
{
    /* xorshift64: jitter only, not security */
    uint64_t x = s->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s->rng = x;
    return x;
}

static void *store_alloc(size_t size)
{
    void *p = calloc(1, size);
    if (p == NULL) {
        /* A request must be answered exactly once; without memory it cannot even be queued. */
        log_write(LOG_ERROR, "store.oom", "size=%zu", size);
        abort();
    }
    return p;
}

static bool error_is_word(const char *err, const char *word)
{
    size_t n = strlen(word);
    return strncmp(err, word, n) == 0 && (err[n] == ' ' || err[n] == '\0');
}

static bool error_is_unavailable(const char *err)
{
    for (size_t i = 0; i < sizeof(unavailable_errors) / sizeof(unavailable_errors[0]); i++) {
        if (error_is_word(err, unavailable_errors[i]))
            return true;
    }
    return false;
}

static const char *conn_addr(const struct store_conn *c)
{
    return c->addr_cur < c->naddrs ? c->addrs[c->addr_cur] : c->store->host;
}

static void conn_set_state(struct store_conn *c, enum conn_state st)
{
    struct store *s = c->store;
    if (c->state == CONN_READY && st != CONN_READY)
        s->stats.connected--;
    else if (c->state != CONN_READY && st == CONN_READY)
        s->stats.connected++;
    c->state = st;
}

/* ---- connection life ---------------------------------------------------------------------- */

/* Next reconnect delay: the current backoff with "equal jitter" (between half and all of it). */
static uint32_t conn_backoff(struct store_conn *c)
{
    struct store *s = c->store;
    uint32_t base = c->backoff_ms;
    uint32_t half = base / 2;
    uint32_t delay = base - half + (uint32_t)(store_rand(s) % ((uint64_t)half + 1));
    c->backoff_ms = base >= s->cfg.backoff_max_ms / 2 ? s->cfg.backoff_max_ms : base * 2;
    return delay;
}

static void conn_schedule(struct store_conn *c, uint32_t delay_ms)
{
    conn_set_state(c, CONN_IDLE);
    event_del(c->connect_ev);
    if (c->store->closing)
        return;
    struct timeval tv = ms_to_tv(delay_ms);
    if (event_add(c->retry_ev, &tv) != 0)
        log_write(LOG_ERROR, "redis.retry", "conn=%u err=\"event_add failed\"", c->index);
}

/* A connection attempt failed before any request could use it: back off and start over. */
static void conn_fail(struct store_conn *c, const char *event, const char *err)
{
    struct store *s = c->store;
    c->failures++;
    c->naddrs = 0;
    c->addr_next = 0;
    c->addr_cur = 0;
    uint32_t delay = conn_backoff(c);
    /* Loud on the first failure of a streak, then quiet: one line per slot per outage. */
    log_write(c->failures == 1 ? LOG_WARN : LOG_DEBUG, event,
              "conn=%u host=%s port=%u err=\"%s\" failures=%u retry_ms=%" PRIu32, c->index, s->host,
              (unsigned)s->port, err, c->failures, delay);
    conn_schedule(c, delay);
}

/* Stops all traffic on c and frees its context on the next loop turn (never inside hiredis). */
static void conn_drop(struct store_conn *c, const char *reason)
{
    if (c->ac == NULL || c->state == CONN_CLOSING)
        return;
    conn_set_state(c, CONN_CLOSING);
    c->drop_reason = reason;
    event_del(c->connect_ev);
    event_active(c->kill_ev, EV_TIMEOUT, 1);
}

/* hiredis is tearing c's context down right now: keep new requests away from it. */
static void conn_mark_lost(struct store_conn *c)
{
    if (c->state != CONN_CLOSING) {
        conn_set_state(c, CONN_CLOSING);
        c->drop_reason = reason_lost;
    }
}

static void conn_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct store_conn *c = arg;
    redisAsyncContext *ac = c->ac;
    if (ac == NULL)
        return;
    c->freeing = true;
    redisAsyncFree(ac); /* runs every pending reply callback with NULL */
    c->freeing = false;
    c->ac = NULL;
    log_write(LOG_WARN, "redis.disconnect", "conn=%u addr=%s port=%u reason=\"%s\"", c->index,
              conn_addr(c), (unsigned)c->store->port, c->drop_reason);
    c->failures = 0;
    c->naddrs = 0;
    c->addr_next = 0;
    conn_schedule(c, conn_backoff(c));
}

static void conn_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct store_conn *c = ac->data;
    if (c->freeing)
        return; /* our own redisAsyncFree: the caller handles the slot */
    c->ac = NULL;
    event_del(c->kill_ev);
    log_write(LOG_WARN, "redis.disconnect", "conn=%u addr=%s port=%u err=\"%s\"", c->index,
              conn_addr(c), (unsigned)c->store->port,
              status == REDIS_OK ? "closed" : ac->c.errstr);
    c->failures = 0;
    c->naddrs = 0;
    c->addr_next = 0;
    conn_schedule(c, conn_backoff(c));
}

static void hs_select_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct store_conn *c = privdata;
    const redisReply *r = reply;
    if (r == NULL || c->state != CONN_HANDSHAKE || c->ac != ac)
        return;
    if (r->type != REDIS_REPLY_STATUS) {
        char err[128];
        if (r->type == REDIS_REPLY_ERROR)
            log_quote(err, sizeof(err), r->str, r->len);
        else
            snprintf(err, sizeof(err), "\"unexpected reply type %d\"", r->type);
        log_write(LOG_ERROR, "redis.select", "conn=%u db=%" PRIu32 " err=%s", c->index,
                  c->store->db, err);
        conn_drop(c, reason_lost);
    }
}

static void hs_script_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct store_conn *c = privdata;
    const redisReply *r = reply;
    if (r == NULL || c->state != CONN_HANDSHAKE || c->ac != ac)
        return;
    unsigned i = c->hs_script++;
    assert(i < LUA_SCRIPT_COUNT);
    const struct lua_script *ls = &lua_scripts[i];
    if (r->type == REDIS_REPLY_STRING && r->len == STORE_SHA1_LEN &&
        memcmp(r->str, ls->sha1, STORE_SHA1_LEN) == 0)
        return;
    char got[96];
    if (r->type == REDIS_REPLY_STRING || r->type == REDIS_REPLY_ERROR)
        log_quote(got, sizeof(got), r->str, r->len);
    else
        snprintf(got, sizeof(got), "\"reply type %d\"", r->type);
    log_write(LOG_ERROR, "redis.script_load", "conn=%u script=%s expected=%s got=%s", c->index,
              ls->name, ls->sha1, got);
    conn_drop(c, reason_lost);
}

static void hs_config_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct store_conn *c = privdata;
    struct store *s = c->store;
    const redisReply *r = reply;
    if (r == NULL || c->state != CONN_HANDSHAKE || c->ac != ac)
        return;
    assert(c->hs_script == LUA_SCRIPT_COUNT);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
        r->element[1]->type == REDIS_REPLY_STRING) {
        const redisReply *v = r->element[1];
        s->stats.policy_ok = v->len == 10 && memcmp(v->str, "noeviction", 10) == 0;
        if (!s->stats.policy_ok) {
            char policy[64];
            log_quote(policy, sizeof(policy), v->str, v->len);
            log_write(LOG_WARN, "redis.maxmemory_policy",
                      "conn=%u addr=%s policy=%s msg=\"maxmemory-policy is not noeviction: Redis "
                      "may evict keys and silently delete mail; set maxmemory-policy noeviction\"",
                      c->index, conn_addr(c), policy);
        }
    } else {
        char err[128];
        if (r->type == REDIS_REPLY_ERROR)
            log_quote(err, sizeof(err), r->str, r->len);
        else
            snprintf(err, sizeof(err), "\"unexpected reply type %d\"", r->type);
        s->stats.policy_ok = false;
        log_write(LOG_WARN, "redis.maxmemory_policy",
                  "conn=%u addr=%s policy=unknown err=%s msg=\"could not check maxmemory-policy; "
                  "unless it is noeviction, Redis may silently delete mail\"",
                  c->index, conn_addr(c), err);
    }
    event_del(c->connect_ev);
    c->backoff_ms = s->cfg.backoff_min_ms;
    c->failures = 0;
    if (c->was_ready)
        s->stats.reconnects++;
    c->was_ready = true;
    conn_set_state(c, CONN_READY);
    log_write(LOG_INFO, "redis.ready", "conn=%u addr=%s port=%u db=%" PRIu32 " scripts=%d",
              c->index, conn_addr(c), (unsigned)s->port, s->db, (int)LUA_SCRIPT_COUNT);
}

/* Queues the handshake; its replies arrive in this order. */
static void conn_handshake(struct store_conn *c)
{
    struct store *s = c->store;
    redisAsyncContext *ac = c->ac;
    c->hs_script = 0;
    if (s->db != 0) {
        char db[16];
        int n = snprintf(db, sizeof(db), "%" PRIu32, s->db);
        const char *argv[] = {"SELECT", db};
        const size_t lens[] = {6, (size_t)n};
        if (redisAsyncCommandArgv(ac, hs_select_cb, c, 2, argv, lens) != REDIS_OK)
            goto fail;
    }
    for (unsigned i = 0; i < LUA_SCRIPT_COUNT; i++) {
        const char *argv[] = {"SCRIPT", "LOAD", lua_scripts[i].body};
        const size_t lens[] = {6, 4, lua_scripts[i].len};
        if (redisAsyncCommandArgv(ac, hs_script_cb, c, 3, argv, lens) != REDIS_OK)
            goto fail;
    }
    const char *argv[] = {"CONFIG", "GET", "maxmemory-policy"};
    const size_t lens[] = {6, 3, 16};
    if (redisAsyncCommandArgv(ac, hs_config_cb, c, 3, argv, lens) != REDIS_OK)
        goto fail;
    return;
fail:
    log_write(LOG_ERROR, "redis.handshake", "conn=%u err=\"send failed\"", c->index);
    conn_drop(c, reason_lost);
}

static void conn_on_connect(const redisAsyncContext *cac, int status)
{
    struct store_conn *c = cac->data;
    if (status != REDIS_OK) {
        /* hiredis frees this context right after we return (no disconnect callback). */
        snprintf(c->last_err, sizeof(c->last_err), "%s", cac->c.errstr);
        c->ac = NULL;
        conn_set_state(c, CONN_IDLE);
        if (c->addr_next < c->naddrs) {
            struct timeval zero = {0, 0};
            event_del(c->connect_ev);
            if (event_add(c->retry_ev, &zero) == 0)
                return;
        }
        conn_fail(c, "redis.connect", c->last_err);
        return;
    }
    conn_set_state(c, CONN_HANDSHAKE);
    conn_handshake(c);
}

/* Tries the resolved addresses from addr_next on until a connect is under way. */
static void conn_connect(struct store_conn *c)
{
    struct store *s = c->store;
    snprintf(c->last_err, sizeof(c->last_err), "no address");
    while (c->addr_next < c->naddrs) {
        unsigned i = c->addr_next++;
        redisAsyncContext *ac = redisAsyncConnect(c->addrs[i], s->port);
        if (ac == NULL) {
            snprintf(c->last_err, sizeof(c->last_err), "out of memory");
            continue;
        }
        if (ac->err != 0) {
            snprintf(c->last_err, sizeof(c->last_err), "%s", ac->c.errstr);
            redisAsyncFree(ac);
            continue;
        }
        ac->data = c;
        if (redisLibeventAttach(ac, s->base) != REDIS_OK ||
            redisAsyncSetConnectCallback(ac, conn_on_connect) != REDIS_OK ||
            redisAsyncSetDisconnectCallback(ac, conn_on_disconnect) != REDIS_OK) {
            snprintf(c->last_err, sizeof(c->last_err), "hiredis setup failed");
            redisAsyncFree(ac);
            continue;
        }
        c->ac = ac;
        c->addr_cur = i;
        c->drop_reason = reason_lost;
        conn_set_state(c, CONN_CONNECTING);
        if (event_add(c->connect_ev, &s->connect_tv) != 0)
            log_write(LOG_ERROR, "redis.connect", "conn=%u err=\"event_add failed\"", c->index);
        return;
    }
    conn_fail(c, "redis.connect", c->last_err);
}

static void conn_resolve_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct store_resolve *r = arg;
    struct store_conn *c = r->conn;
    free(r);
    if (c == NULL) { /* cancelled */
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    c->resolve = NULL;
    c->dns_req = NULL;
    if (result != 0) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        conn_fail(c, "redis.resolve", evutil_gai_strerror(result));
        return;
    }
    c->naddrs = 0;
    c->addr_next = 0;
    for (const struct evutil_addrinfo *ai = res; ai != NULL && c->naddrs < STORE_MAX_ADDRS;
         ai = ai->ai_next) {
        const void *a;
        if (ai->ai_family == AF_INET)
            a = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
        else
            continue;
        char *dst = c->addrs[c->naddrs];
        if (evutil_inet_ntop(ai->ai_family, a, dst, sizeof(c->addrs[0])) == NULL)
            continue;
        bool dup = false;
        for (unsigned j = 0; j < c->naddrs; j++)
            dup = dup || strcmp(c->addrs[j], dst) == 0;
        if (!dup)
            c->naddrs++;
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (c->naddrs == 0) {
        conn_fail(c, "redis.resolve", "no IPv4 or IPv6 address");
        return;
    }
    conn_connect(c);
}

static void conn_cancel_resolve(struct store_conn *c)
{
    if (c->resolve == NULL)
        return;
    c->resolve->conn = NULL; /* its callback still runs (now or later) and frees it */
    c->resolve = NULL;
    struct evdns_getaddrinfo_request *req = c->dns_req;
    c->dns_req = NULL;
    if (req != NULL)
        evdns_getaddrinfo_cancel(req);
}

/* Starts a fresh attempt: resolve (unless numeric), then connect. */
static void conn_start(struct store_conn *c)
{
    struct store *s = c->store;
    c->naddrs = 0;
    c->addr_next = 0;
    c->addr_cur = 0;
    if (s->host_numeric) {
        snprintf(c->addrs[0], sizeof(c->addrs[0]), "%s", s->host);
        c->naddrs = 1;
        conn_connect(c);
        return;
    }
    struct store_resolve *r = store_alloc(sizeof(*r));
    r->conn = c;
    c->resolve = r;
    conn_set_state(c, CONN_RESOLVING);
    if (event_add(c->connect_ev, &s->connect_tv) != 0)
        log_write(LOG_ERROR, "redis.resolve", "conn=%u err=\"event_add failed\"", c->index);
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* May answer at once (hosts file, errors): then the callback has run and NULL comes back. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(s->dns, s->host, NULL, &hints, conn_resolve_cb, r);
    if (req != NULL)
        c->dns_req = req;
}

static void conn_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct store_conn *c = arg;
    if (c->addr_next < c->naddrs)
        conn_connect(c); /* the previous address refused: try the next one */
    else
        conn_start(c);
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct store_conn *c = arg;
    switch (c->state) {
    case CONN_RESOLVING:
        conn_cancel_resolve(c);
        conn_fail(c, "redis.resolve", "timeout");
        break;
    case CONN_CONNECTING: {
        /* Nothing was sent on this context, so freeing it here runs no callback of ours. */
        redisAsyncContext *ac = c->ac;
        snprintf(c->last_err, sizeof(c->last_err), "connect timeout");
        c->freeing = true;
        redisAsyncFree(ac);
        c->freeing = false;
        c->ac = NULL;
        conn_set_state(c, CONN_IDLE);
        if (c->addr_next < c->naddrs)
            conn_connect(c);
        else
            conn_fail(c, "redis.connect", c->last_err);
        break;
    }
    case CONN_HANDSHAKE:
        log_write(LOG_WARN, "redis.handshake", "conn=%u addr=%s err=\"timeout\"", c->index,
                  conn_addr(c));
        conn_drop(c, reason_lost);
        break;
    case CONN_IDLE:
    case CONN_READY:
    case CONN_CLOSING:
        break;
    }
}

/* ---- requests ----------------------------------------------------------------------------- */

static void req_timer_cb(evutil_socket_t fd, short what, void *arg);

static struct store_req *req_new(struct store *s, store_cb *cb, uint64_t token)
{
    struct store_req *r = store_alloc(sizeof(*r));
    r->store = s;
    r->cb = cb;
    r->token = token;
    r->timer = event_new(s->base, -1, 0, req_timer_cb, r);
    if (r->timer == NULL) {
        log_write(LOG_ERROR, "store.oom", "what=event");
        abort();
    }
    s->stats.requests++;
    return r;
}

static void req_free(struct store_req *r)
{
    event_free(r->timer);
    if (r->cmd != NULL)
        redisFreeCommand(r->cmd);
    free(r);
}

/* Calls the caller's callback (exactly once per request). */
static void req_answer(struct store_req *r, enum store_status status, const redisReply *reply,
                       const char *error)
{
    struct store *s = r->store;
    assert(r->state != REQ_ANSWERED);
    event_del(r->timer);
    r->state = REQ_ANSWERED;
    if (status == STORE_ERROR)
        s->stats.errors++;
    else if (status == STORE_UNAVAILABLE)
        s->stats.unavailable++;
    struct store_result res = {.status = status, .reply = reply, .error = error};
    r->cb(&res, r->token);
}

static void deferred_unlink(struct store *s, struct store_req *r)
{
    if (r->prev != NULL)
        r->prev->next = r->next;
    else
        s->deferred_head = r->next;
    if (r->next != NULL)
        r->next->prev = r->prev;
    else
        s->deferred_tail = r->prev;
    r->prev = r->next = NULL;
}

static struct store_req *deferred_pop(struct store *s)
{
    struct store_req *r = s->deferred_head;
    if (r == NULL)
        return NULL;
    s->deferred_head = r->next;
    if (r->next != NULL)
        r->next->prev = NULL;
    else
        s->deferred_tail = NULL;
    r->next = NULL;
    return r;
}

/* Answers r STORE_UNAVAILABLE from the loop (never from inside store_command). */
static void req_defer(struct store_req *r, const char *reason)
{
    struct store *s = r->store;
    r->state = REQ_DEFERRED;
    r->reason = reason;
    r->conn = NULL;
    r->prev = s->deferred_tail;
    r->next = NULL;
    if (s->deferred_tail != NULL)
        s->deferred_tail->next = r;
    else
        s->deferred_head = r;
    s->deferred_tail = r;
    if (s->closing)
        return; /* store_free answers it before returning */
    struct timeval zero = {0, 0};
    if (event_add(r->timer, &zero) != 0) {
        log_write(LOG_ERROR, "store.defer", "err=\"event_add failed\"");
        abort();
    }
}

/*
 * Writes what hiredis has queued for c now, once the current callback returns, instead of on the
 * next loop turn's writable event: a lone request (STATUS, a SELECT) saves one epoll round and two
 * epoll_ctl calls on its critical path, and every request queued by the same callback still goes
 * out in one write (event_active on an active event is a no-op).
 */
static void conn_flush_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct store_conn *c = arg;
    if (c->ac != NULL && !c->freeing && (c->ac->c.flags & REDIS_CONNECTED) != 0)
        redisAsyncHandleWrite(c->ac);
}

static void req_sent(struct store_req *r, struct store_conn *c)
{
    struct store *s = r->store;
    r->state = REQ_INFLIGHT;
    r->conn = c;
    event_active(c->flush_ev, 0, 0);
    if (event_add(r->timer, s->timeout_common) != 0) {
        log_write(LOG_ERROR, "store.timer", "err=\"event_add failed\"");
        abort();
    }
}

static void req_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct store_req *r = arg;
    struct store *s = r->store;
    if (r->state == REQ_DEFERRED) {
        deferred_unlink(s, r);
        req_answer(r, STORE_UNAVAILABLE, NULL, r->reason);
        req_free(r);
        return;
    }
    assert(r->state == REQ_INFLIGHT);
    struct store_conn *c = r->conn;
    s->stats.timeouts++;
    if (c->state != CONN_CLOSING)
        log_write(LOG_WARN, "redis.timeout", "conn=%u addr=%s timeout_ms=%" PRIu32
                  " action=reconnect", c->index, conn_addr(c), s->cfg.timeout_ms);
    /* Drop first, so a request made from the callback avoids this connection. hiredis keeps r
     * until the dropped context runs its callback with NULL; r is freed there. */
    conn_drop(c, reason_lost);
    req_answer(r, STORE_UNAVAILABLE, NULL, reason_timeout);
}

/* Re-sends an EVALSHA answered -NOSCRIPT as EVAL of the embedded body, at the end of the same
 * connection's pipeline. r keeps its timer and callback. Returns 0, or -1 if it could not send. */
static int req_retry_eval(struct store_req *r, redisAsyncContext *ac)
{
    const struct lua_script *ls = &lua_scripts[r->script];
    char head[64];
    int hn = snprintf(head, sizeof(head), "*%d\r\n$4\r\nEVAL\r\n$%zu\r\n", r->cmd_argc, ls->len);
    if (hn < 0 || (size_t)hn >= sizeof(head))
        return -1;
    size_t tail_len = r->cmd_len - r->cmd_tail;
    size_t len = (size_t)hn + ls->len + 2 + tail_len;
    char *buf = malloc(len);
    if (buf == NULL)
        return -1;
    memcpy(buf, head, (size_t)hn);
    memcpy(buf + hn, ls->body, ls->len);
    buf[(size_t)hn + ls->len] = '\r';
    buf[(size_t)hn + ls->len + 1] = '\n';
    memcpy(buf + (size_t)hn + ls->len + 2, r->cmd + r->cmd_tail, tail_len);
    int rc = redisAsyncFormattedCommand(ac, req_reply_cb, r, buf, len);
    free(buf);
    if (rc != REDIS_OK)
        return -1;
    r->retried = true;
    r->store->stats.noscript_retries++;
    redisFreeCommand(r->cmd);
    r->cmd = NULL;
    log_write(LOG_INFO, "redis.noscript", "conn=%u script=%s action=eval",
              ((struct store_conn *)ac->data)->index, ls->name);
    return 0;
}

static void req_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct store_req *r = privdata;
    struct store_conn *c = ac->data;
    const redisReply *rep = reply;
    if (rep == NULL) {
        /* The context is going away; every request still on it gets a NULL here. */
        if (!c->freeing)
            conn_mark_lost(c);
        if (r->state == REQ_INFLIGHT)
            req_answer(r, STORE_UNAVAILABLE, NULL, c->drop_reason);
        req_free(r);
        return;
    }
    if (r->state != REQ_INFLIGHT) { /* timed out earlier: the caller has its answer */
        req_free(r);
        return;
    }
    if (rep->type == REDIS_REPLY_ERROR) {
        if (r->is_eval && !r->retried && error_is_word(rep->str, "NOSCRIPT")) {
            if (req_retry_eval(r, ac) == 0)
                return;
            req_answer(r, STORE_UNAVAILABLE, NULL, reason_send);
            req_free(r);
            return;
        }
        req_answer(r, error_is_unavailable(rep->str) ? STORE_UNAVAILABLE : STORE_ERROR, NULL,
                   rep->str);
    } else {
        req_answer(r, STORE_OK, rep, NULL);
    }
    req_free(r);
}

/* shard % N while that connection is ready, else the next ready one. */
static struct store_conn *store_pick(struct store *s, uint64_t shard)
{
    if (s->closing)
        return NULL;
    unsigned start = (unsigned)(shard % s->pool_size);
    for (unsigned i = 0; i < s->pool_size; i++) {
        struct store_conn *c = &s->conns[(start + i) % s->pool_size];
        if (c->state == CONN_READY)
            return c;
    }
    return NULL;
}

void store_command(struct store *s, uint64_t shard, store_cb *cb, uint64_t token, int argc,
                   const char *const *argv, const size_t *argvlen)
{
    assert(s != NULL && cb != NULL && argc > 0 && argv != NULL && argvlen != NULL);
    struct store_req *r = req_new(s, cb, token);
    struct store_conn *c = store_pick(s, shard);
    if (c == NULL) {
        req_defer(r, s->closing ? reason_closed : reason_not_connected);
        return;
    }
    /* hiredis does not modify argv; its prototype just lacks the inner const. */
    if (redisAsyncCommandArgv(c->ac, req_reply_cb, r, argc, (const char **)argv,
                              argvlen) != REDIS_OK) {
        req_defer(r, reason_send);
        return;
    }
    req_sent(r, c);
}

void store_eval(struct store *s, uint64_t shard, enum lua_script_id script, store_cb *cb,
                uint64_t token, int nkeys, int argc, const char *const *argv,
                const size_t *argvlen)
{
    assert(s != NULL && cb != NULL && (unsigned)script < LUA_SCRIPT_COUNT);
    assert(nkeys >= 0 && argc >= nkeys && (argc == 0 || (argv != NULL && argvlen != NULL)));
    struct store_req *r = req_new(s, cb, token);
    const struct lua_script *ls = &lua_scripts[script];
    int total = argc + 3;
    const char **av = store_alloc(sizeof(*av) * (size_t)total);
    size_t *avl = store_alloc(sizeof(*avl) * (size_t)total);
    char nk[16];
    int nkl = snprintf(nk, sizeof(nk), "%d", nkeys);
    av[0] = "EVALSHA";
    avl[0] = 7;
    av[1] = ls->sha1;
    avl[1] = STORE_SHA1_LEN;
    av[2] = nk;
    avl[2] = (size_t)nkl;
    for (int i = 0; i < argc; i++) {
        av[3 + i] = argv[i];
        avl[3 + i] = argvlen[i];
    }
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, total, av, avl);
    free(av);
    free(avl);
    if (len < 0) {
        log_write(LOG_ERROR, "store.oom", "what=command");
        abort();
    }
    r->cmd = cmd;
    r->cmd_len = (size_t)len;
    r->cmd_argc = total;
    r->script = script;
    r->is_eval = true;
    /* "*<n>\r\n" "$7\r\nEVALSHA\r\n" "$40\r\n<sha1>\r\n": numkeys and the rest follow. */
    char head[32];
    int hn = snprintf(head, sizeof(head), "*%d\r\n", total);
    r->cmd_tail = (size_t)hn + 13 + 5 + STORE_SHA1_LEN + 2;
    assert(r->cmd_tail < r->cmd_len && memcmp(cmd, head, (size_t)hn) == 0 &&
           memcmp(cmd + hn, "$7\r\nEVALSHA\r\n$40\r\n", 18) == 0);

    struct store_conn *c = store_pick(s, shard);
    if (c == NULL) {
        req_defer(r, s->closing ? reason_closed : reason_not_connected);
        return;
    }
    if (redisAsyncFormattedCommand(c->ac, req_reply_cb, r, r->cmd, r->cmd_len) != REDIS_OK) {
        req_defer(r, reason_send);
        return;
    }
    req_sent(r, c);
}

/* ---- the pool ------------------------------------------------------------------------------- */

struct store *store_new(struct event_base *base, struct evdns_base *dns,
                        const struct store_config *cfg, const char **error_r)
{
    if (base == NULL || cfg == NULL) {
        *error_r = "missing event base or configuration";
        return NULL;
    }
    if (cfg->pool_size < 1 || cfg->pool_size > STORE_MAX_POOL) {
        *error_r = "pool_size must be 1..64";
        return NULL;
    }
    if (cfg->timeout_ms == 0 || cfg->connect_timeout_ms == 0 || cfg->backoff_min_ms == 0 ||
        cfg->backoff_max_ms < cfg->backoff_min_ms) {
        *error_r = "timeouts must be > 0 and backoff_min_ms <= backoff_max_ms";
        return NULL;
    }
    char *host;
    uint16_t port;
    uint32_t db;
    if (store_url_parse(cfg->url, &host, &port, &db, error_r) < 0)
        return NULL;
    unsigned char a[sizeof(struct in6_addr)];
    bool numeric = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
    if (!numeric && dns == NULL) {
        free(host);
        *error_r = "a Redis host name needs an evdns base";
        return NULL;
    }
    struct store *s = calloc(1, sizeof(*s));
    struct store_conn *conns = calloc(cfg->pool_size, sizeof(*conns));
    if (s == NULL || conns == NULL) {
        free(s);
        free(conns);
        free(host);
        *error_r = "out of memory";
        return NULL;
    }
    s->base = base;
    s->dns = dns;
    s->host = host;
    s->host_numeric = numeric;
    s->port = port;
    s->db = db;
    s->cfg = *cfg;
    s->cfg.url = NULL; /* not kept: host, port and db are */
    s->timeout_tv = ms_to_tv(cfg->timeout_ms);
    s->timeout_common = event_base_init_common_timeout(base, &s->timeout_tv);
    if (s->timeout_common == NULL)
        s->timeout_common = &s->timeout_tv;
    s->connect_tv = ms_to_tv(cfg->connect_timeout_ms);
    s->pool_size = cfg->pool_size;
    s->conns = conns;
    struct timeval now;
    gettimeofday(&now, NULL);
    s->rng = ((uint64_t)now.tv_sec << 20) ^ (uint64_t)now.tv_usec ^ ((uint64_t)getpid() << 32) ^
             (uint64_t)(uintptr_t)s;
    if (s->rng == 0)
        s->rng = 0x9e3779b97f4a7c15u;
    for (unsigned i = 0; i < s->pool_size; i++) {
        struct store_conn *c = &conns[i];
        c->store = s;
        c->index = i;
        c->state = CONN_IDLE;
        c->backoff_ms = cfg->backoff_min_ms;
        c->drop_reason = reason_lost;
        c->retry_ev = event_new(base, -1, 0, conn_retry_cb, c);
        c->connect_ev = event_new(base, -1, 0, conn_deadline_cb, c);
        c->kill_ev = event_new(base, -1, 0, conn_kill_cb, c);
        c->flush_ev = event_new(base, -1, 0, conn_flush_cb, c);
        if (c->retry_ev == NULL || c->connect_ev == NULL || c->kill_ev == NULL ||
            c->flush_ev == NULL) {
            store_free(&s);
            *error_r = "out of memory";
            return NULL;
        }
    }
    /* Connecting starts on the first loop turn, never inside store_new. */
    struct timeval zero = {0, 0};
    for (unsigned i = 0; i < s->pool_size; i++) {
        if (event_add(conns[i].retry_ev, &zero) != 0) {
            store_free(&s);
            *error_r = "event_add failed";
            return NULL;
        }
    }
    return s;
}

void store_free(struct store **sp)
{
    if (sp == NULL || *sp == NULL)
        return;
    struct store *s = *sp;
    /* *sp stays valid while callbacks run: a request they make is answered "store closed". */
    s->closing = true;
    /* First take every slot out of service, so a callback run below cannot pick one. */
    for (unsigned i = 0; i < s->pool_size; i++) {
        struct store_conn *c = &s->conns[i];
        if (c->retry_ev != NULL)
            event_del(c->retry_ev);
        if (c->connect_ev != NULL)
            event_del(c->connect_ev);
        if (c->kill_ev != NULL)
            event_del(c->kill_ev);
        if (c->flush_ev != NULL)
            event_del(c->flush_ev);
        conn_cancel_resolve(c);
        if (c->state != CONN_IDLE)
            conn_set_state(c, CONN_CLOSING);
        c->drop_reason = reason_closed;
    }
    for (unsigned i = 0; i < s->pool_size; i++) {
        struct store_conn *c = &s->conns[i];
        redisAsyncContext *ac = c->ac;
        if (ac == NULL)
            continue;
        c->freeing = true;
        redisAsyncFree(ac); /* in-flight callbacks run now with NULL: STORE_UNAVAILABLE */
        c->freeing = false;
        c->ac = NULL;
    }
    /* Deferred requests, including any made by the callbacks above or below. */
    struct store_req *r;
    while ((r = deferred_pop(s)) != NULL) {
        req_answer(r, STORE_UNAVAILABLE, NULL, r->reason);
        req_free(r);
    }
    for (unsigned i = 0; i < s->pool_size; i++) {
        struct store_conn *c = &s->conns[i];
        if (c->retry_ev != NULL)
            event_free(c->retry_ev);
        if (c->connect_ev != NULL)
            event_free(c->connect_ev);
        if (c->kill_ev != NULL)
            event_free(c->kill_ev);
        if (c->flush_ev != NULL)
            event_free(c->flush_ev);
    }
    free(s->conns);
    free(s->host);
    free(s);
    *sp = NULL;
}

bool store_ready(const struct store *s)
{
    return s != NULL && s->stats.connected > 0;
}

void store_get_stats(const struct store *s, struct store_stats *out)
{
    *out = s->stats;
}
