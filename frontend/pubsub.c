/*
 * pubsub: the front end's one Redis pub/sub connection (contract in pubsub.h, why in DESIGN.md
 * rules 3 and 4). A refcounted table of watched nsids; each watched nsid is one SUBSCRIBEd
 * channel (keys_ns_channel), and every message on it becomes one call of the front end's callback.
 *
 * Connection life: IDLE --backoff timer--> RESOLVING (evdns, skipped for numeric hosts) -->
 * CONNECTING (hiredis to each resolved address in turn) --> SUBSCRIBING (one pipelined burst:
 * SUBSCRIBE of every watched channel in batches, then SUBSCRIBE of the keepalive channel) -->
 * READY. One deadline (connect_timeout_ms) covers resolution, connect and the burst. Redis
 * answers in order, so the keepalive channel's confirmation, the burst's last reply, proves every
 * channel of the burst subscribed: only then does the callback run with resync = true for each
 * watched nsid, and a wake-up published after that call cannot be missed. An nsid first watched
 * (or watched again) while connected gets its resync call when its own confirmation arrives: the
 * watcher learns from when on no wake-up can be lost.
 *
 * Keepalive: hiredis 0.14 queues the callback of a PING sent in subscribe mode on a list that a
 * subscribe-mode (array) answer never pops, so every PING would leak a node until the connection
 * goes. A SUBSCRIBE of a channel already subscribed is answered with a confirmation like any other
 * and leaks nothing, so that is the ping: every keepalive_interval_ms the connection re-SUBSCRIBEs
 * PUBSUB_KEEPALIVE_CHANNEL, and a confirmation missing after keepalive_timeout_ms marks the
 * connection dead (a silently dead TCP peer, a stopped server). Keeping that one channel
 * subscribed also keeps hiredis in subscribe mode while no nsid is watched, so UNSUBSCRIBE of the
 * last watched channel never turns the context back into a command connection.
 *
 * hiredis 0.14 pub/sub: the callback given with SUBSCRIBE is kept per channel and called with the
 * subscribe confirmation, every message and the unsubscribe confirmation, and with NULL when the
 * context goes. All channels share pubsub_reply_cb with the pubsub as privdata; the channel name
 * in the reply says which nsid it is (parsed and checked against keys_ns_channel). Replies of an
 * unexpected shape are logged and ignored. Only (UN)SUBSCRIBE is ever sent on this connection.
 *
 * Table entries: an entry lives while it has watchers (refs > 0) or SUBSCRIBE confirmations
 * outstanding on the current connection (pending > 0; then it is a leftover of an unwatch and
 * only counts its confirmations, so a quick unwatch + watch pairs each confirmation with its
 * SUBSCRIBE). On a connection loss every entry forgets its connection state and leftovers go.
 *
 * Ownership: the pubsub owns its table, timers and at most one redisAsyncContext (ac->data points
 * back at it). The context is never freed inside a hiredis callback: dropping it marks the state
 * CLOSING and a zero-delay event frees it on the next loop turn (STYLE.md ownership rule 4). The
 * callback may watch/unwatch re-entrantly: nothing in the table is touched after a callback returns
 * without being looked up again, and the resync of a whole table runs from a snapshot of nsids.
 *
 * Not done here: sharded pub/sub (SSUBSCRIBE; hiredis 0.14 aborts on its pushes), AUTH/TLS, Redis
 * Cluster (classic pub/sub is broadcast across a cluster, so one node suffices).
 */
#include "frontend/pubsub.h"

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
#include <hiredis/hiredis.h>

#include "frontend/log.h"
#include "frontend/store.h"
#include "keys/keys.h"

/*
 * Subscribed by every front end and never published to: its re-SUBSCRIBE is the keepalive and its
 * confirmation marks the end of a (re)connect burst. PUBSUB NUMSUB of it counts live front ends.
 */
#define PUBSUB_KEEPALIVE_CHANNEL "/frontends/keepalive" /* keys_frontends_keepalive(), pinned */

#define PUBSUB_MAX_ADDRS 8
#define PUBSUB_BATCH 128      /* channels per SUBSCRIBE command of a burst */
#define PUBSUB_MIN_BUCKETS 64

enum pubsub_state {
    PS_IDLE,        /* no context; the retry timer is armed (or the pubsub is closing) */
    PS_RESOLVING,   /* evdns_getaddrinfo in progress */
    PS_CONNECTING,  /* context created, TCP connect in progress */
    PS_SUBSCRIBING, /* burst sent, waiting for the keepalive channel's confirmation */
    PS_READY,       /* every channel of the burst confirmed; keepalive running */
    PS_CLOSING,     /* context being torn down (by us on the next turn, or by hiredis now) */
};

/* One watched nsid. Owned by the table. */
struct pubsub_watch {
    struct pubsub_watch *next; /* bucket chain */
    unsigned refs;             /* local watchers; 0 = leftover waiting for confirmations */
    unsigned pending;          /* SUBSCRIBE confirmations outstanding on the current connection */
    bool subscribed;           /* SUBSCRIBE sent on the current connection, no UNSUBSCRIBE since */
    char nsid[KEYS_NSID_LEN + 1];
};

/* Argument of one evdns_getaddrinfo call; owned by its callback, which frees it. */
struct pubsub_resolve {
    struct pubsub *p; /* NULL once cancelled */
};

/* The subscriber. Owned by the caller of pubsub_new. */
struct pubsub {
    struct event_base *base;
    struct evdns_base *dns;
    char *host;
    bool host_numeric;
    uint16_t port;
    pubsub_cb *cb;
    void *arg;
    struct pubsub_timing timing;

    enum pubsub_state state;
    redisAsyncContext *ac;         /* NULL when none */
    bool freeing;                  /* inside our own redisAsyncFree(ac) */
    bool closing;                  /* pubsub_free running */
    bool was_ready;                /* has been READY: the next READY is a reconnect */
    bool ping_out;                 /* keepalive SUBSCRIBE sent, confirmation not yet seen */
    unsigned in_cb;                /* depth of calls into the user callback */
    const char *drop_reason;
    struct event *retry_ev;        /* backoff timer: starts the next attempt */
    struct event *connect_ev;      /* deadline of resolve / connect / burst */
    struct event *kill_ev;         /* zero-delay: frees a dropped context outside hiredis */
    struct event *ping_ev;         /* keepalive interval (persistent while READY) */
    struct event *pong_ev;         /* keepalive deadline */
    struct pubsub_resolve *resolve;
    struct evdns_getaddrinfo_request *dns_req;
    char addrs[PUBSUB_MAX_ADDRS][INET6_ADDRSTRLEN];
    unsigned naddrs;
    unsigned addr_next;
    unsigned addr_cur;
    uint32_t backoff_ms;
    unsigned failures;
    uint64_t rng;

    struct pubsub_watch **buckets;
    size_t nbuckets;               /* power of two */
    size_t nentries;               /* entries, leftovers included */

    struct pubsub_stats stats;     /* .channels = entries with refs > 0 */
};

static void ps_start(struct pubsub *p);
static void ps_connect(struct pubsub *p);
static void pubsub_reply_cb(redisAsyncContext *ac, void *reply, void *privdata);

/* ---- small helpers -------------------------------------------------------------------------- */

static struct timeval ms_to_tv(uint32_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return tv;
}

static uint64_t ps_rand(struct pubsub *p)
{
    /* xorshift64: jitter only */
    uint64_t x = p->rng;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    p->rng = x;
    return x;
}

static void *ps_alloc(size_t size)
{
    void *q = calloc(1, size);
    if (q == NULL) {
        /* The table must stay consistent with Redis; without memory it cannot. */
        log_write(LOG_ERROR, "pubsub.oom", "size=%zu", size);
        abort();
    }
    return q;
}

static const char *ps_addr(const struct pubsub *p)
{
    return p->addr_cur < p->naddrs ? p->addrs[p->addr_cur] : p->host;
}

static bool ps_live(const struct pubsub *p)
{
    return p->state == PS_SUBSCRIBING || p->state == PS_READY;
}

static void ps_set_state(struct pubsub *p, enum pubsub_state st)
{
    p->state = st;
    p->stats.connected = st == PS_READY;
}

/* ---- the table ------------------------------------------------------------------------------ */

static size_t watch_hash(const char *nsid)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a */
    for (size_t i = 0; i < KEYS_NSID_LEN; i++) {
        h ^= (unsigned char)nsid[i];
        h *= 0x100000001b3u;
    }
    return (size_t)(h ^ (h >> 29));
}

static struct pubsub_watch *watch_find(const struct pubsub *p, const char *nsid)
{
    struct pubsub_watch *w = p->buckets[watch_hash(nsid) & (p->nbuckets - 1)];
    while (w != NULL && memcmp(w->nsid, nsid, KEYS_NSID_LEN) != 0)
        w = w->next;
    return w;
}

static void watch_grow(struct pubsub *p)
{
    size_t n = p->nbuckets * 2;
    struct pubsub_watch **b = ps_alloc(n * sizeof(struct pubsub_watch *));
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct pubsub_watch *w = p->buckets[i];
        while (w != NULL) {
            struct pubsub_watch *next = w->next;
            size_t j = watch_hash(w->nsid) & (n - 1);
            w->next = b[j];
            b[j] = w;
            w = next;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
}

static struct pubsub_watch *watch_add(struct pubsub *p, const char *nsid)
{
    if (p->nentries >= p->nbuckets)
        watch_grow(p);
    struct pubsub_watch *w = ps_alloc(sizeof(*w));
    memcpy(w->nsid, nsid, KEYS_NSID_LEN);
    w->nsid[KEYS_NSID_LEN] = '\0';
    size_t i = watch_hash(nsid) & (p->nbuckets - 1);
    w->next = p->buckets[i];
    p->buckets[i] = w;
    p->nentries++;
    return w;
}

static void watch_remove(struct pubsub *p, struct pubsub_watch *w)
{
    struct pubsub_watch **pp = &p->buckets[watch_hash(w->nsid) & (p->nbuckets - 1)];
    while (*pp != w)
        pp = &(*pp)->next;
    *pp = w->next;
    p->nentries--;
    free(w);
}

/* The connection is gone: no entry is subscribed any more; leftovers go. */
static void watch_forget_connection(struct pubsub *p)
{
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct pubsub_watch **pp = &p->buckets[i];
        while (*pp != NULL) {
            struct pubsub_watch *w = *pp;
            w->pending = 0;
            w->subscribed = false;
            if (w->refs == 0) {
                *pp = w->next;
                p->nentries--;
                free(w);
            } else {
                pp = &w->next;
            }
        }
    }
}

/*
 * nsid of a channel name from Redis (len bytes), or false when it is not a user channel: the text
 * between the hash-tag braces must be a valid nsid whose keys_ns_channel is exactly this name.
 */
static bool channel_nsid(const char *ch, size_t len, char nsid[KEYS_NSID_LEN + 1])
{
    const char *open = memchr(ch, '{', len);
    if (open == NULL || (size_t)(ch + len - open) < KEYS_NSID_LEN + 2 ||
        open[KEYS_NSID_LEN + 1] != '}' || !keys_nsid_valid(open + 1, KEYS_NSID_LEN))
        return false;
    memcpy(nsid, open + 1, KEYS_NSID_LEN);
    nsid[KEYS_NSID_LEN] = '\0';
    struct key k;
    keys_ns_channel(&k, nsid);
    return k.len == len && memcmp(k.s, ch, len) == 0;
}

/* ---- callbacks into the front end --------------------------------------------------------- */

static void ps_call(struct pubsub *p, const char *nsid, const char *payload, size_t len,
                    bool resync)
{
    if (resync)
        p->stats.resyncs++;
    else
        p->stats.messages++;
    p->in_cb++;
    p->cb(nsid, payload, len, resync, p->arg);
    p->in_cb--;
}

/* resync = true for every watched nsid whose subscription is confirmed (the end of a burst). */
static void ps_resync_all(struct pubsub *p)
{
    size_t n = 0;
    char (*snap)[KEYS_NSID_LEN + 1] = NULL;
    if (p->stats.channels > 0)
        snap = ps_alloc(p->stats.channels * sizeof(*snap));
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (const struct pubsub_watch *w = p->buckets[i]; w != NULL; w = w->next) {
            if (w->refs > 0 && w->subscribed && w->pending == 0) {
                assert(n < p->stats.channels);
                memcpy(snap[n++], w->nsid, KEYS_NSID_LEN + 1);
            }
        }
    }
    /* The callback may watch/unwatch: look each one up again before calling. */
    for (size_t i = 0; i < n && ps_live(p); i++) {
        const struct pubsub_watch *w = watch_find(p, snap[i]);
        if (w != NULL && w->refs > 0)
            ps_call(p, snap[i], NULL, 0, true);
    }
    free(snap);
}

/* ---- connection life ------------------------------------------------------------------------ */

static uint32_t ps_backoff(struct pubsub *p)
{
    uint32_t base = p->backoff_ms;
    uint32_t half = base / 2;
    uint32_t delay = base - half + (uint32_t)(ps_rand(p) % ((uint64_t)half + 1));
    p->backoff_ms = base >= p->timing.backoff_max_ms / 2 ? p->timing.backoff_max_ms : base * 2;
    return delay;
}

static void ps_schedule(struct pubsub *p, uint32_t delay_ms)
{
    ps_set_state(p, PS_IDLE);
    event_del(p->connect_ev);
    event_del(p->ping_ev);
    event_del(p->pong_ev);
    p->ping_out = false;
    if (p->closing)
        return;
    struct timeval tv = ms_to_tv(delay_ms);
    if (event_add(p->retry_ev, &tv) != 0)
        log_write(LOG_ERROR, "pubsub.retry", "err=\"event_add failed\"");
}

/* An attempt failed before the connection was usable: back off and start over. */
static void ps_fail(struct pubsub *p, const char *event, const char *err)
{
    p->failures++;
    p->naddrs = 0;
    p->addr_next = 0;
    p->addr_cur = 0;
    uint32_t delay = ps_backoff(p);
    log_write(p->failures == 1 ? LOG_WARN : LOG_DEBUG, event,
              "host=%s port=%u err=\"%s\" failures=%u retry_ms=%" PRIu32, p->host,
              (unsigned)p->port, err, p->failures, delay);
    ps_schedule(p, delay);
}

/* Marks the connection lost for the table and the timers (context still to be freed). */
static void ps_lost(struct pubsub *p, const char *reason)
{
    ps_set_state(p, PS_CLOSING);
    p->drop_reason = reason;
    event_del(p->connect_ev);
    event_del(p->ping_ev);
    event_del(p->pong_ev);
    p->ping_out = false;
    watch_forget_connection(p);
}

/* Stops using the context and frees it on the next loop turn (never inside hiredis). */
static void ps_drop(struct pubsub *p, const char *reason)
{
    if (p->ac == NULL || p->state == PS_CLOSING)
        return;
    ps_lost(p, reason);
    event_active(p->kill_ev, EV_TIMEOUT, 1);
}

static void ps_kill_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *p = arg;
    redisAsyncContext *ac = p->ac;
    if (ac == NULL)
        return;
    p->freeing = true;
    redisAsyncFree(ac); /* channel callbacks run with NULL: ignored */
    p->freeing = false;
    p->ac = NULL;
    /* Loud once per outage: a server that accepts but never answers fails every attempt here. */
    log_write(p->failures <= 1 ? LOG_WARN : LOG_DEBUG, "pubsub.disconnect",
              "addr=%s port=%u reason=\"%s\" failures=%u", ps_addr(p), (unsigned)p->port,
              p->drop_reason, p->failures);
    p->naddrs = 0;
    p->addr_next = 0;
    ps_schedule(p, ps_backoff(p));
}

static void ps_on_disconnect(const redisAsyncContext *ac, int status)
{
    struct pubsub *p = ac->data;
    if (p->freeing)
        return; /* our own redisAsyncFree: the caller handles the rest */
    if (p->state != PS_CLOSING)
        ps_lost(p, "connection lost");
    p->ac = NULL;
    event_del(p->kill_ev);
    log_write(p->failures <= 1 ? LOG_WARN : LOG_DEBUG, "pubsub.disconnect",
              "addr=%s port=%u err=\"%s\" failures=%u", ps_addr(p), (unsigned)p->port,
              status == REDIS_OK ? "closed" : ac->c.errstr, p->failures);
    p->naddrs = 0;
    p->addr_next = 0;
    ps_schedule(p, ps_backoff(p));
}

/* SUBSCRIBE (or UNSUBSCRIBE) of n channels. Returns 0, or -1 when hiredis refused it. */
static int ps_send(struct pubsub *p, const char *verb, const struct key *chans, size_t n)
{
    const char *argv[PUBSUB_BATCH + 1];
    size_t lens[PUBSUB_BATCH + 1];
    assert(n >= 1 && n <= PUBSUB_BATCH);
    argv[0] = verb;
    lens[0] = strlen(verb);
    for (size_t i = 0; i < n; i++) {
        argv[i + 1] = chans[i].s;
        lens[i + 1] = chans[i].len;
    }
    /* The callback is kept per channel; UNSUBSCRIBE has none of its own (hiredis ignores it). */
    if (redisAsyncCommandArgv(p->ac, pubsub_reply_cb, p, (int)n + 1, argv, lens) != REDIS_OK)
        return -1;
    return 0;
}

static int ps_send_keepalive(struct pubsub *p)
{
    struct key k;
    keys_frontends_keepalive(&k);
    return ps_send(p, "SUBSCRIBE", &k, 1);
}

static int ps_send_one(struct pubsub *p, const char *verb, const char *nsid)
{
    struct key k;
    keys_ns_channel(&k, nsid);
    return ps_send(p, verb, &k, 1);
}

/* Connected: SUBSCRIBE every watched channel in batches, then the keepalive channel (marker). */
static void ps_burst(struct pubsub *p)
{
    struct key *chans = ps_alloc(PUBSUB_BATCH * sizeof(*chans));
    struct pubsub_watch **batch = ps_alloc(PUBSUB_BATCH * sizeof(struct pubsub_watch *));
    size_t n = 0;
    int rc = 0;
    for (size_t i = 0; i < p->nbuckets && rc == 0; i++) {
        for (struct pubsub_watch *w = p->buckets[i]; w != NULL && rc == 0; w = w->next) {
            if (w->refs == 0)
                continue;
            keys_ns_channel(&chans[n], w->nsid);
            batch[n++] = w;
            if (n == PUBSUB_BATCH) {
                rc = ps_send(p, "SUBSCRIBE", chans, n);
                for (size_t j = 0; j < n && rc == 0; j++) {
                    batch[j]->pending++;
                    batch[j]->subscribed = true;
                }
                n = 0;
            }
        }
    }
    if (rc == 0 && n > 0) {
        rc = ps_send(p, "SUBSCRIBE", chans, n);
        for (size_t j = 0; j < n && rc == 0; j++) {
            batch[j]->pending++;
            batch[j]->subscribed = true;
        }
    }
    free(chans);
    free(batch);
    if (rc == 0)
        rc = ps_send_keepalive(p);
    if (rc != 0) {
        log_write(LOG_ERROR, "pubsub.subscribe", "addr=%s err=\"send failed\"", ps_addr(p));
        ps_drop(p, "send failed");
    }
}

static void ps_on_connect(const redisAsyncContext *cac, int status)
{
    struct pubsub *p = cac->data;
    if (status != REDIS_OK) {
        /* hiredis frees this context right after we return (no disconnect callback). */
        char err[128];
        snprintf(err, sizeof(err), "%s", cac->c.errstr);
        p->ac = NULL;
        ps_set_state(p, PS_IDLE);
        if (p->addr_next < p->naddrs) {
            struct timeval zero = {0, 0};
            event_del(p->connect_ev);
            if (event_add(p->retry_ev, &zero) == 0)
                return;
        }
        ps_fail(p, "pubsub.connect", err);
        return;
    }
    ps_set_state(p, PS_SUBSCRIBING);
    ps_burst(p);
}

static void ps_connect(struct pubsub *p)
{
    char err[128];
    snprintf(err, sizeof(err), "no address");
    while (p->addr_next < p->naddrs) {
        unsigned i = p->addr_next++;
        redisAsyncContext *ac = redisAsyncConnect(p->addrs[i], p->port);
        if (ac == NULL) {
            snprintf(err, sizeof(err), "out of memory");
            continue;
        }
        if (ac->err != 0) {
            snprintf(err, sizeof(err), "%s", ac->c.errstr);
            redisAsyncFree(ac);
            continue;
        }
        ac->data = p;
        if (redisLibeventAttach(ac, p->base) != REDIS_OK ||
            redisAsyncSetConnectCallback(ac, ps_on_connect) != REDIS_OK ||
            redisAsyncSetDisconnectCallback(ac, ps_on_disconnect) != REDIS_OK) {
            snprintf(err, sizeof(err), "hiredis setup failed");
            redisAsyncFree(ac);
            continue;
        }
        p->ac = ac;
        p->addr_cur = i;
        p->drop_reason = "connection lost";
        ps_set_state(p, PS_CONNECTING);
        struct timeval tv = ms_to_tv(p->timing.connect_timeout_ms);
        if (event_add(p->connect_ev, &tv) != 0)
            log_write(LOG_ERROR, "pubsub.connect", "err=\"event_add failed\"");
        return;
    }
    ps_fail(p, "pubsub.connect", err);
}

static void ps_resolve_cb(int result, struct evutil_addrinfo *res, void *arg)
{
    struct pubsub_resolve *r = arg;
    struct pubsub *p = r->p;
    free(r);
    if (p == NULL) { /* cancelled */
        if (res != NULL)
            evutil_freeaddrinfo(res);
        return;
    }
    p->resolve = NULL;
    p->dns_req = NULL;
    if (result != 0) {
        if (res != NULL)
            evutil_freeaddrinfo(res);
        ps_fail(p, "pubsub.resolve", evutil_gai_strerror(result));
        return;
    }
    p->naddrs = 0;
    p->addr_next = 0;
    for (const struct evutil_addrinfo *ai = res; ai != NULL && p->naddrs < PUBSUB_MAX_ADDRS;
         ai = ai->ai_next) {
        const void *a;
        if (ai->ai_family == AF_INET)
            a = &((const struct sockaddr_in *)(const void *)ai->ai_addr)->sin_addr;
        else if (ai->ai_family == AF_INET6)
            a = &((const struct sockaddr_in6 *)(const void *)ai->ai_addr)->sin6_addr;
        else
            continue;
        char *dst = p->addrs[p->naddrs];
        if (evutil_inet_ntop(ai->ai_family, a, dst, sizeof(p->addrs[0])) == NULL)
            continue;
        bool dup = false;
        for (unsigned j = 0; j < p->naddrs && !dup; j++)
            dup = strcmp(p->addrs[j], dst) == 0;
        if (!dup)
            p->naddrs++;
    }
    if (res != NULL)
        evutil_freeaddrinfo(res);
    if (p->naddrs == 0) {
        ps_fail(p, "pubsub.resolve", "no IPv4 or IPv6 address");
        return;
    }
    ps_connect(p);
}

static void ps_cancel_resolve(struct pubsub *p)
{
    if (p->resolve == NULL)
        return;
    p->resolve->p = NULL; /* its callback still runs (now or later) and frees it */
    p->resolve = NULL;
    struct evdns_getaddrinfo_request *req = p->dns_req;
    p->dns_req = NULL;
    if (req != NULL)
        evdns_getaddrinfo_cancel(req);
}

static void ps_start(struct pubsub *p)
{
    p->naddrs = 0;
    p->addr_next = 0;
    p->addr_cur = 0;
    if (p->host_numeric) {
        snprintf(p->addrs[0], sizeof(p->addrs[0]), "%s", p->host);
        p->naddrs = 1;
        ps_connect(p);
        return;
    }
    struct pubsub_resolve *r = ps_alloc(sizeof(*r));
    r->p = p;
    p->resolve = r;
    ps_set_state(p, PS_RESOLVING);
    struct timeval tv = ms_to_tv(p->timing.connect_timeout_ms);
    if (event_add(p->connect_ev, &tv) != 0)
        log_write(LOG_ERROR, "pubsub.resolve", "err=\"event_add failed\"");
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    /* May answer at once (hosts file, errors): then the callback has run and NULL comes back. */
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(p->dns, p->host, NULL, &hints, ps_resolve_cb, r);
    if (req != NULL)
        p->dns_req = req;
}

static void ps_retry_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *p = arg;
    if (p->addr_next < p->naddrs)
        ps_connect(p);
    else
        ps_start(p);
}

static void ps_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *p = arg;
    switch (p->state) {
    case PS_RESOLVING:
        ps_cancel_resolve(p);
        ps_fail(p, "pubsub.resolve", "timeout");
        break;
    case PS_CONNECTING: {
        /* Nothing was sent on this context: freeing it here runs no callback of ours. */
        redisAsyncContext *ac = p->ac;
        p->freeing = true;
        redisAsyncFree(ac);
        p->freeing = false;
        p->ac = NULL;
        ps_set_state(p, PS_IDLE);
        if (p->addr_next < p->naddrs)
            ps_connect(p);
        else
            ps_fail(p, "pubsub.connect", "connect timeout");
        break;
    }
    case PS_SUBSCRIBING:
        p->failures++;
        ps_drop(p, "subscribe timeout");
        break;
    case PS_IDLE:
    case PS_READY:
    case PS_CLOSING:
        break;
    }
}

/* ---- keepalive ------------------------------------------------------------------------------ */

static void ps_ping_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *p = arg;
    if (p->state != PS_READY || p->ping_out)
        return;
    if (ps_send_keepalive(p) != 0) {
        ps_drop(p, "send failed");
        return;
    }
    p->ping_out = true;
    struct timeval tv = ms_to_tv(p->timing.keepalive_timeout_ms);
    if (event_add(p->pong_ev, &tv) != 0)
        log_write(LOG_ERROR, "pubsub.keepalive", "err=\"event_add failed\"");
}

static void ps_pong_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct pubsub *p = arg;
    if (p->state != PS_READY || !p->ping_out)
        return;
    p->stats.keepalive_timeouts++;
    log_write(LOG_WARN, "pubsub.keepalive", "addr=%s port=%u err=\"no answer within %" PRIu32
              " ms\" action=reconnect", ps_addr(p), (unsigned)p->port,
              p->timing.keepalive_timeout_ms);
    ps_drop(p, "keepalive timeout");
}

static void ps_became_ready(struct pubsub *p)
{
    event_del(p->connect_ev);
    p->backoff_ms = p->timing.backoff_min_ms;
    p->failures = 0;
    if (p->was_ready)
        p->stats.reconnects++;
    p->was_ready = true;
    ps_set_state(p, PS_READY);
    struct timeval tv = ms_to_tv(p->timing.keepalive_interval_ms);
    if (event_add(p->ping_ev, &tv) != 0)
        log_write(LOG_ERROR, "pubsub.keepalive", "err=\"event_add failed\"");
    log_write(LOG_INFO, "pubsub.ready", "addr=%s port=%u channels=%zu", ps_addr(p),
              (unsigned)p->port, p->stats.channels);
    ps_resync_all(p);
}

/* ---- replies -------------------------------------------------------------------------------- */

static bool reply_is(const redisReply *r, const char *word)
{
    size_t n = strlen(word);
    return r->type == REDIS_REPLY_STRING && r->len == n && strncasecmp(r->str, word, n) == 0;
}

static void ps_bad_reply(struct pubsub *p, const redisReply *r)
{
    char what[96];
    if (r->type == REDIS_REPLY_ARRAY && r->elements > 0 && r->element[0] != NULL &&
        (r->element[0]->type == REDIS_REPLY_STRING || r->element[0]->type == REDIS_REPLY_STATUS))
        log_quote(what, sizeof(what), r->element[0]->str, r->element[0]->len);
    else
        snprintf(what, sizeof(what), "\"reply type %d\"", r->type);
    log_write(LOG_WARN, "pubsub.reply", "addr=%s err=\"unexpected reply\" got=%s", ps_addr(p),
              what);
}

static void ps_on_subscribed(struct pubsub *p, const char *ch, size_t len)
{
    if (len == sizeof(PUBSUB_KEEPALIVE_CHANNEL) - 1 &&
        memcmp(ch, PUBSUB_KEEPALIVE_CHANNEL, len) == 0) {
        if (p->state == PS_SUBSCRIBING) {
            ps_became_ready(p);
        } else {
            p->ping_out = false;
            event_del(p->pong_ev);
        }
        return;
    }
    char nsid[KEYS_NSID_LEN + 1];
    if (!channel_nsid(ch, len, nsid))
        return;
    struct pubsub_watch *w = watch_find(p, nsid);
    if (w == NULL || w->pending == 0)
        return;
    if (--w->pending > 0)
        return;
    if (w->refs == 0) {
        watch_remove(p, w); /* unwatched meanwhile: nothing left to count */
        return;
    }
    /* Confirmed after the burst: this watcher can miss nothing from now on. */
    if (p->state == PS_READY && w->subscribed)
        ps_call(p, nsid, NULL, 0, true);
}

static void pubsub_reply_cb(redisAsyncContext *ac, void *reply, void *privdata)
{
    struct pubsub *p = privdata;
    const redisReply *r = reply;
    if (r == NULL) {
        /* The context is going away (our free, or hiredis tearing it down). */
        if (!p->freeing && p->ac == ac && p->state != PS_CLOSING)
            ps_lost(p, "connection lost");
        return;
    }
    if (p->ac != ac || !ps_live(p))
        return;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[1]->type !=
        REDIS_REPLY_STRING) {
        ps_bad_reply(p, r);
        return;
    }
    const redisReply *kind = r->element[0];
    const redisReply *chan = r->element[1];
    if (reply_is(kind, "message")) {
        const redisReply *msg = r->element[2];
        if (msg->type != REDIS_REPLY_STRING) {
            ps_bad_reply(p, r);
            return;
        }
        char nsid[KEYS_NSID_LEN + 1];
        if (!channel_nsid(chan->str, chan->len, nsid))
            return;
        const struct pubsub_watch *w = watch_find(p, nsid);
        if (w != NULL && w->refs > 0)
            ps_call(p, nsid, msg->str, msg->len, false);
    } else if (reply_is(kind, "subscribe")) {
        ps_on_subscribed(p, chan->str, chan->len);
    } else if (!reply_is(kind, "unsubscribe")) {
        ps_bad_reply(p, r);
    }
}

/* ---- public interface --------------------------------------------------------------------- */

void pubsub_timing_defaults(struct pubsub_timing *t)
{
    memset(t, 0, sizeof(*t));
    t->keepalive_interval_ms = 3000;
    t->keepalive_timeout_ms = 2000;
    t->connect_timeout_ms = 3000;
    t->backoff_min_ms = 100;
    t->backoff_max_ms = 5000;
}

int pubsub_set_timing(struct pubsub *p, const struct pubsub_timing *t, const char **error_r)
{
    if (t->keepalive_interval_ms == 0 || t->keepalive_timeout_ms == 0 ||
        t->connect_timeout_ms == 0 || t->backoff_min_ms == 0 ||
        t->backoff_max_ms < t->backoff_min_ms) {
        *error_r = "timings must be > 0 and backoff_min_ms <= backoff_max_ms";
        return -1;
    }
    p->timing = *t;
    p->backoff_ms = t->backoff_min_ms;
    if (p->state == PS_READY) {
        struct timeval tv = ms_to_tv(t->keepalive_interval_ms);
        if (event_add(p->ping_ev, &tv) != 0) {
            *error_r = "event_add failed";
            return -1;
        }
    }
    return 0;
}

struct pubsub *pubsub_new(struct event_base *base, struct evdns_base *dns, const char *url,
                          pubsub_cb *cb, void *arg, const char **error_r)
{
    if (base == NULL || cb == NULL) {
        *error_r = "missing event base or callback";
        return NULL;
    }
    char *host;
    uint16_t port;
    uint32_t db;
    if (store_url_parse(url, &host, &port, &db, error_r) < 0)
        return NULL;
    unsigned char a[sizeof(struct in6_addr)];
    bool numeric = inet_pton(AF_INET, host, a) == 1 || inet_pton(AF_INET6, host, a) == 1;
    if (!numeric && dns == NULL) {
        free(host);
        *error_r = "a Redis host name needs an evdns base";
        return NULL;
    }
    struct pubsub *p = calloc(1, sizeof(*p));
    struct pubsub_watch **buckets = calloc(PUBSUB_MIN_BUCKETS, sizeof(struct pubsub_watch *));
    if (p == NULL || buckets == NULL) {
        free(p);
        free(buckets);
        free(host);
        *error_r = "out of memory";
        return NULL;
    }
    p->base = base;
    p->dns = dns;
    p->host = host;
    p->host_numeric = numeric;
    p->port = port;
    p->cb = cb;
    p->arg = arg;
    pubsub_timing_defaults(&p->timing);
    p->backoff_ms = p->timing.backoff_min_ms;
    p->state = PS_IDLE;
    p->drop_reason = "connection lost";
    p->buckets = buckets;
    p->nbuckets = PUBSUB_MIN_BUCKETS;
    struct timeval now;
    gettimeofday(&now, NULL);
    p->rng = ((uint64_t)now.tv_sec << 20) ^ (uint64_t)now.tv_usec ^ ((uint64_t)getpid() << 32) ^
             (uint64_t)(uintptr_t)p;
    if (p->rng == 0)
        p->rng = 0x9e3779b97f4a7c15u;
    p->retry_ev = event_new(base, -1, 0, ps_retry_cb, p);
    p->connect_ev = event_new(base, -1, 0, ps_deadline_cb, p);
    p->kill_ev = event_new(base, -1, 0, ps_kill_cb, p);
    p->ping_ev = event_new(base, -1, EV_PERSIST, ps_ping_cb, p);
    p->pong_ev = event_new(base, -1, 0, ps_pong_timeout_cb, p);
    struct timeval zero = {0, 0};
    if (p->retry_ev == NULL || p->connect_ev == NULL || p->kill_ev == NULL ||
        p->ping_ev == NULL || p->pong_ev == NULL || event_add(p->retry_ev, &zero) != 0) {
        pubsub_free(&p);
        *error_r = "out of memory";
        return NULL;
    }
    /* Connecting starts on the first loop turn, never inside pubsub_new. */
    return p;
}

void pubsub_free(struct pubsub **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    struct pubsub *p = *pp;
    assert(p->in_cb == 0); /* not from inside the callback */
    p->closing = true;
    struct event *evs[] = {p->retry_ev, p->connect_ev, p->kill_ev, p->ping_ev, p->pong_ev};
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL)
            event_del(evs[i]);
    }
    ps_cancel_resolve(p);
    if (p->ac != NULL) {
        ps_set_state(p, PS_CLOSING);
        redisAsyncContext *ac = p->ac;
        p->freeing = true;
        redisAsyncFree(ac); /* channel callbacks run with NULL: ignored */
        p->freeing = false;
        p->ac = NULL;
    }
    for (size_t i = 0; i < sizeof(evs) / sizeof(evs[0]); i++) {
        if (evs[i] != NULL)
            event_free(evs[i]);
    }
    for (size_t i = 0; i < p->nbuckets; i++) {
        struct pubsub_watch *w = p->buckets[i];
        while (w != NULL) {
            struct pubsub_watch *next = w->next;
            free(w);
            w = next;
        }
    }
    free(p->buckets);
    free(p->host);
    free(p);
    *pp = NULL;
}

void pubsub_watch(struct pubsub *p, const char *nsid)
{
    if (nsid == NULL || strlen(nsid) != KEYS_NSID_LEN || !keys_nsid_valid(nsid, KEYS_NSID_LEN)) {
        log_write(LOG_ERROR, "pubsub.watch", "err=\"invalid nsid\"");
        return;
    }
    struct pubsub_watch *w = watch_find(p, nsid);
    if (w == NULL)
        w = watch_add(p, nsid);
    if (w->refs++ > 0)
        return;
    p->stats.channels++;
    if (!ps_live(p))
        return; /* subscribed by the next connect's burst */
    if (ps_send_one(p, "SUBSCRIBE", nsid) != 0) {
        ps_drop(p, "send failed"); /* the reconnect subscribes it */
        return;
    }
    w->pending++;
    w->subscribed = true;
}

void pubsub_unwatch(struct pubsub *p, const char *nsid)
{
    if (nsid == NULL || strlen(nsid) != KEYS_NSID_LEN || !keys_nsid_valid(nsid, KEYS_NSID_LEN))
        return;
    struct pubsub_watch *w = watch_find(p, nsid);
    if (w == NULL || w->refs == 0)
        return;
    if (--w->refs > 0)
        return;
    p->stats.channels--;
    if (w->subscribed && ps_live(p)) {
        w->subscribed = false;
        if (ps_send_one(p, "UNSUBSCRIBE", nsid) != 0) {
            ps_drop(p, "send failed"); /* forgets w too */
            return;
        }
    }
    w->subscribed = false;
    if (w->pending == 0)
        watch_remove(p, w);
}

bool pubsub_ready(const struct pubsub *p)
{
    return p != NULL && p->state == PS_READY;
}

void pubsub_get_stats(const struct pubsub *p, struct pubsub_stats *out)
{
    *out = p->stats;
}
