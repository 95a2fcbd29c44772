/*
 * The front end as one member of a fleet (fleet.h): heartbeat lease, per-user connection counts,
 * failed-login throttle, and the poll of Redis's persistence settings.
 *
 * One fleet object per process. Its own Redis requests (heartbeat, config poll, fire-and-forget
 * updates) carry the object's generation as the token and are sent on shard 0, so they stay in
 * order; a reply that finds no fleet of that generation is dropped (STYLE.md rule 3). Steps that
 * belong to a login run on the connection (conn_eval) and keep their state in ctx->helper.
 *
 * Local counts: a small hash map nsid -> this front end's authenticated connections of that user,
 * the value written to /ns/{<nsid>}/conns. When the lease lapsed (Redis was away longer than the
 * lease), other front ends may have dropped our fields, so every count is written again once the
 * lease is back. Not here: what a login answers (auth.c), key names (keys/), the scripts (lua/).
 */
#include "frontend/fleet.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "frontend/conn.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/store.h"
#include "keys/keys.h"

#define FLEET_MAX_LIVE 256   /* live ids passed to user_conns.lua */
#define FLEET_MAX_DEAD 256   /* ids of expired leases passed to user_conns.lua */
#define FLEET_BUCKETS 1024   /* local count map */
#define FLEET_SKEW_MS 60000  /* clock skew tolerated between front ends (ids carry start times) */

struct user_count {
    char nsid[KEYS_NSID_LEN + 1];
    uint32_t count;
    struct user_count *next;
};

struct fleet {
    struct frontend *fe;
    uint64_t gen;                /* token of this object's own requests */
    char id[FLEET_ID_MAX + 1];
    time_t started;
    struct event *tick;          /* heartbeat */
    struct event *leave_timer;
    int64_t sent_ms;             /* monotonic time the last lease renewal was sent */
    int64_t held_until_ms;       /* monotonic: lease held until then */
    bool was_held;               /* held at some point: a later renewal after a lapse re-asserts */
    int64_t live_at_ms;          /* Redis time of the live list */
    char *live[FLEET_MAX_LIVE];
    size_t nlive;
    char *dead[FLEET_MAX_DEAD];  /* leases that ran out (kept a day in the index) */
    size_t ndead;
    struct fleet_redis_info info;
    bool info_logged;
    bool last_aof;               /* the settings last logged */
    char last_fsync[16];
    struct user_count *buckets[FLEET_BUCKETS];
    void (*leave_done)(void *arg);
    void *leave_arg;
    int leave_pending;
};

/* The process's fleet, found by its requests' tokens. */
static struct fleet *current;
static uint64_t gen_counter;

static struct fleet *lookup(uint64_t token)
{
    return current != NULL && current->gen == token ? current : NULL;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------ local counts */

static size_t bucket_of(const char *nsid)
{
    uint32_t h = 2166136261u; /* FNV-1a */
    for (const char *p = nsid; *p != '\0'; p++)
        h = (h ^ (uint8_t)*p) * 16777619u;
    return h % FLEET_BUCKETS;
}

static struct user_count *count_find(struct fleet *f, const char *nsid, bool create)
{
    size_t b = bucket_of(nsid);
    for (struct user_count *u = f->buckets[b]; u != NULL; u = u->next) {
        if (strcmp(u->nsid, nsid) == 0)
            return u;
    }
    if (!create)
        return NULL;
    struct user_count *u = calloc(1, sizeof(*u));
    if (u == NULL)
        abort();
    snprintf(u->nsid, sizeof(u->nsid), "%s", nsid);
    u->next = f->buckets[b];
    f->buckets[b] = u;
    return u;
}

/* Lowers nsid's count by one, removing the entry at zero; returns the new count. */
static uint32_t count_down(struct fleet *f, const char *nsid)
{
    size_t b = bucket_of(nsid);
    for (struct user_count **pp = &f->buckets[b]; *pp != NULL; pp = &(*pp)->next) {
        struct user_count *u = *pp;
        if (strcmp(u->nsid, nsid) != 0)
            continue;
        if (u->count > 1) {
            u->count--;
            return u->count;
        }
        *pp = u->next;
        free(u);
        return 0;
    }
    return 0;
}

/* ------------------------------------------------------------------ own requests */

static void log_store_error(const char *what, const struct store_result *res)
{
    if (res->status == STORE_OK)
        return;
    char q[200];
    log_write(LOG_WARN, "fleet.redis", "op=%s error=%s", what,
              log_quote(q, sizeof(q), res->error, strlen(res->error)));
}

static void set_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    log_store_error("user_conns", res);
}

/* Writes this front end's count of nsid's connections (fire and forget; ordered on shard 0). */
static void send_count(struct fleet *f, const char *nsid, uint32_t count)
{
    struct key k;
    keys_ns_conns(&k, nsid);
    char n[16];
    int nl = snprintf(n, sizeof(n), "%" PRIu32, count);
    const char *argv[] = {k.s, "set", f->id, n};
    const size_t argvlen[] = {k.len, 3, strlen(f->id), (size_t)nl};
    store_eval(f->fe->store, 0, LUA_SCRIPT_USER_CONNS, set_done, f->gen, 1, 4, argv, argvlen);
}

static void reassert_counts(struct fleet *f)
{
    size_t n = 0;
    for (size_t b = 0; b < FLEET_BUCKETS; b++) {
        for (const struct user_count *u = f->buckets[b]; u != NULL; u = u->next) {
            send_count(f, u->nsid, u->count);
            n++;
        }
    }
    log_write(LOG_INFO, "fleet.lease_regained", "id=%s users=%zu", f->id, n);
}

static void lease_done(const struct store_result *res, uint64_t token)
{
    struct fleet *f = lookup(token);
    if (f == NULL)
        return;
    const redisReply *r = res->reply;
    if (res->status != STORE_OK || r->type != REDIS_REPLY_ARRAY || r->elements < 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[1]->integer < 0 || (size_t)r->element[1]->integer > r->elements - 2) {
        if (res->status == STORE_OK)
            log_write(LOG_WARN, "fleet.redis", "op=frontend_lease error=\"unexpected reply\"");
        log_store_error("frontend_lease", res);
        return;
    }
    int64_t now = mono_ms();
    bool lapsed = f->was_held && now > f->held_until_ms;
    f->held_until_ms = f->sent_ms + (int64_t)f->fe->cfg->lease_ttl_s * 1000;
    size_t nlive = (size_t)r->element[1]->integer;
    if (!f->was_held)
        log_write(LOG_INFO, "fleet.lease", "id=%s ttl_s=%" PRIu32 " live=%zu", f->id,
                  f->fe->cfg->lease_ttl_s, nlive);
    f->was_held = true;
    f->live_at_ms = r->element[0]->integer;
    for (size_t i = 0; i < f->nlive; i++)
        free(f->live[i]);
    for (size_t i = 0; i < f->ndead; i++)
        free(f->dead[i]);
    f->nlive = 0;
    f->ndead = 0;
    for (size_t i = 2; i < r->elements; i++) {
        const redisReply *e = r->element[i];
        bool is_live = i < 2 + nlive;
        if (e->type != REDIS_REPLY_STRING ||
            (is_live ? f->nlive >= FLEET_MAX_LIVE : f->ndead >= FLEET_MAX_DEAD))
            continue;
        char *id = strndup(e->str, e->len);
        if (id == NULL)
            abort();
        if (is_live)
            f->live[f->nlive++] = id;
        else
            f->dead[f->ndead++] = id;
    }
    f->info.frontends_live = f->nlive;
    if (lapsed)
        reassert_counts(f);
}

static void info_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    log_store_error("frontend_info", res);
}

/* CONFIG GET <name>: [name, value], or an error when CONFIG is disabled. */
static bool config_value(const struct store_result *res, char *out, size_t size)
{
    const redisReply *r = res->reply;
    if (res->status != STORE_OK || r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[1]->type != REDIS_REPLY_STRING)
        return false;
    size_t n = r->element[1]->len < size - 1 ? r->element[1]->len : size - 1;
    memcpy(out, r->element[1]->str, n);
    out[n] = '\0';
    return true;
}

static void aof_done(const struct store_result *res, uint64_t token)
{
    struct fleet *f = lookup(token);
    char v[16];
    if (f != NULL && config_value(res, v, sizeof(v)))
        f->info.appendonly = strcmp(v, "yes") == 0;
}

static void fsync_done(const struct store_result *res, uint64_t token)
{
    struct fleet *f = lookup(token);
    if (f != NULL && !config_value(res, f->info.appendfsync, sizeof(f->info.appendfsync)))
        snprintf(f->info.appendfsync, sizeof(f->info.appendfsync), "unknown");
}

/* The last of the three config replies (same connection, so in order): log news. */
static void policy_done(const struct store_result *res, uint64_t token)
{
    struct fleet *f = lookup(token);
    if (f == NULL)
        return;
    char policy[sizeof(f->info.policy)];
    if (!config_value(res, policy, sizeof(policy))) {
        if (f->info.known || !f->info_logged)
            log_write(LOG_WARN, "redis.config", "msg=\"CONFIG GET failed; cannot check "
                                                "maxmemory-policy and persistence\"");
        f->info.known = false;
        f->info_logged = true;
        return;
    }
    bool changed = !f->info.known || strcmp(policy, f->info.policy) != 0;
    snprintf(f->info.policy, sizeof(f->info.policy), "%s", policy);
    f->info.policy_noeviction = strcmp(policy, "noeviction") == 0;
    f->info.known = true;
    changed = changed || f->last_aof != f->info.appendonly ||
              strcmp(f->last_fsync, f->info.appendfsync) != 0;
    f->last_aof = f->info.appendonly;
    snprintf(f->last_fsync, sizeof(f->last_fsync), "%s", f->info.appendfsync);
    if (!changed)
        return;
    f->info_logged = true;
    log_write(f->info.policy_noeviction && f->info.appendonly ? LOG_INFO : LOG_WARN,
              "redis.persistence", "appendonly=%s appendfsync=%s maxmemory_policy=%s msg=\"%s\"",
              f->info.appendonly ? "yes" : "no", f->info.appendfsync, f->info.policy,
              !f->info.policy_noeviction ? "eviction would silently delete mail: not ready"
              : !f->info.appendonly     ? "no AOF: writes since the last snapshot are lost if Redis dies"
                                        : "ok");
}

static void send_config_poll(struct fleet *f)
{
    static const char *const names[] = {"appendonly", "appendfsync", "maxmemory-policy"};
    store_cb *const cbs[] = {aof_done, fsync_done, policy_done};
    for (size_t i = 0; i < 3; i++) {
        const char *argv[] = {"CONFIG", "GET", names[i]};
        const size_t argvlen[] = {6, 3, strlen(names[i])};
        store_command(f->fe->store, 0, cbs[i], f->gen, 3, argv, argvlen);
    }
}

static void send_info(struct fleet *f, uint32_t ttl_ms, store_cb *cb)
{
    const struct config *cfg = f->fe->cfg;
    struct key k;
    keys_frontend(&k, f->id);
    char ttl[16], addr[512], started[24], conns[24], updated[24], pid[16], host[64];
    snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
    size_t o = 0;
    addr[0] = '\0';
    for (size_t i = 0; i < cfg->listen_count + cfg->listen_tls_count; i++) {
        const char *a = i < cfg->listen_count ? cfg->listen[i] : cfg->listen_tls[i - cfg->listen_count];
        int n = snprintf(addr + o, sizeof(addr) - o, "%s%s%s", o > 0 ? "," : "", a,
                         i < cfg->listen_count ? "" : "/tls");
        if (n < 0 || (size_t)n >= sizeof(addr) - o)
            break;
        o += (size_t)n;
    }
    snprintf(started, sizeof(started), "%lld", (long long)f->started);
    snprintf(conns, sizeof(conns), "%zu", conn_table_count(f->fe->conns));
    snprintf(updated, sizeof(updated), "%lld", (long long)time(NULL));
    snprintf(pid, sizeof(pid), "%d", (int)getpid());
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "unknown");
    host[sizeof(host) - 1] = '\0';
    const char *http = cfg->http_listen != NULL ? cfg->http_listen : "";
    const char *argv[] = {k.s,       ttl,       "addr",    addr,    "http",    http,
                          "version", CIMAP_VERSION, "started", started, "connections", conns,
                          "updated", updated,   "host",    host,    "pid",     pid,
                          "draining", f->fe->draining ? "1" : "0"};
    size_t argvlen[sizeof(argv) / sizeof(argv[0])];
    for (size_t i = 0; i < sizeof(argv) / sizeof(argv[0]); i++)
        argvlen[i] = strlen(argv[i]);
    store_eval(f->fe->store, 0, LUA_SCRIPT_FRONTEND_INFO, cb, f->gen, 1,
               (int)(sizeof(argv) / sizeof(argv[0])), argv, argvlen);
}

static void send_lease(struct fleet *f, uint32_t ttl_ms, store_cb *cb)
{
    struct key k;
    keys_frontends(&k);
    char ttl[16];
    int n = snprintf(ttl, sizeof(ttl), "%" PRIu32, ttl_ms);
    const char *argv[] = {k.s, f->id, ttl};
    const size_t argvlen[] = {k.len, strlen(f->id), (size_t)n};
    store_eval(f->fe->store, 0, LUA_SCRIPT_FRONTEND_LEASE, cb, f->gen, 1, 3, argv, argvlen);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    uint32_t ttl_s = f->fe->cfg->lease_ttl_s;
    struct timeval tv = {0, 200000};
    if (store_ready(f->fe->store)) {
        f->sent_ms = mono_ms();
        send_lease(f, ttl_s * 1000, lease_done);
        send_info(f, ttl_s * 1000, info_done);
        send_config_poll(f);
        /* Renew three times per lease: two lost heartbeats in a row are survived. */
        tv.tv_sec = ttl_s / 3;
        tv.tv_usec = (suseconds_t)(ttl_s % 3) * 333333;
    }
    evtimer_add(f->tick, &tv);
}

struct fleet *fleet_new(struct frontend *fe)
{
    struct fleet *f = calloc(1, sizeof(*f));
    if (f == NULL)
        return NULL;
    f->fe = fe;
    f->gen = ++gen_counter;
    f->started = time(NULL);
    uint32_t rnd = 0;
    FILE *ur = fopen("/dev/urandom", "rb");
    if (ur != NULL) {
        if (fread(&rnd, sizeof(rnd), 1, ur) != 1)
            rnd = 0;
        fclose(ur);
    }
    rnd ^= (uint32_t)getpid() * 2654435761u ^ (uint32_t)mono_ms();
    snprintf(f->id, sizeof(f->id), "fe-%lld-%08x", (long long)wall_ms(), rnd);
    snprintf(f->info.policy, sizeof(f->info.policy), "unknown");
    snprintf(f->info.appendfsync, sizeof(f->info.appendfsync), "unknown");
    f->tick = evtimer_new(fe->base, tick_cb, f);
    if (f->tick == NULL) {
        free(f);
        return NULL;
    }
    struct timeval now = {0, 0};
    evtimer_add(f->tick, &now);
    current = f;
    return f;
}

void fleet_free(struct fleet **fp)
{
    if (fp == NULL || *fp == NULL)
        return;
    struct fleet *f = *fp;
    event_free(f->tick);
    if (f->leave_timer != NULL)
        event_free(f->leave_timer);
    for (size_t i = 0; i < f->nlive; i++)
        free(f->live[i]);
    for (size_t i = 0; i < f->ndead; i++)
        free(f->dead[i]);
    for (size_t b = 0; b < FLEET_BUCKETS; b++) {
        while (f->buckets[b] != NULL) {
            struct user_count *u = f->buckets[b];
            f->buckets[b] = u->next;
            free(u);
        }
    }
    if (current == f)
        current = NULL;
    free(f);
    *fp = NULL;
}

const char *fleet_id(const struct fleet *f)
{
    return f->id;
}

bool fleet_lease_held(const struct fleet *f)
{
    return f->was_held && mono_ms() < f->held_until_ms;
}

void fleet_get_redis_info(const struct fleet *f, struct fleet_redis_info *out)
{
    *out = f->info;
}

/* ------------------------------------------------------------------ leaving */

static void leave_finish(struct fleet *f)
{
    void (*done)(void *) = f->leave_done;
    f->leave_done = NULL;
    if (done != NULL)
        done(f->leave_arg);
}

static void leave_reply(const struct store_result *res, uint64_t token)
{
    struct fleet *f = lookup(token);
    if (f == NULL)
        return;
    log_store_error("leave", res);
    if (--f->leave_pending == 0) {
        log_write(LOG_INFO, "fleet.leave", "id=%s", f->id);
        leave_finish(f);
    }
}

static void leave_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct fleet *f = arg;
    if (f->leave_done != NULL)
        log_write(LOG_WARN, "fleet.leave", "id=%s result=timeout", f->id);
    leave_finish(f);
}

void fleet_leave(struct fleet *f, void (*done)(void *arg), void *arg)
{
    evtimer_del(f->tick);
    f->leave_done = done;
    f->leave_arg = arg;
    f->leave_pending = 2;
    f->leave_timer = evtimer_new(f->fe->base, leave_timeout, f);
    if (f->leave_timer == NULL) {
        leave_finish(f);
        return;
    }
    struct timeval tv = {1, 0};
    evtimer_add(f->leave_timer, &tv);
    /* Without the lease, other front ends drop this one's per-user counts (user_conns.lua). */
    send_lease(f, 0, leave_reply);
    send_info(f, 0, leave_reply);
}

/* ------------------------------------------------------------------ login helpers */

struct fleet_step {
    enum fleet_verdict verdict;
    cmd_step *next;
    int stage;                  /* login check: 0 address, 1 user, 2 done */
    char *login;                /* arena copy */
    size_t login_len;
    char nsid[KEYS_NSID_LEN + 1];
};

static struct fleet_step *step_new(struct cmd_ctx *ctx, cmd_step *next)
{
    struct fleet_step *s = arena_calloc(ctx->arena, 1, sizeof(*s));
    s->verdict = FLEET_OK;
    s->next = next;
    ctx->helper = s;
    return s;
}

enum fleet_verdict fleet_verdict(const struct cmd_ctx *ctx)
{
    const struct fleet_step *s = ctx->helper;
    return s != NULL ? s->verdict : FLEET_OK;
}

/* The throttle key of the client address: IPv4 as is, IPv6 by its /64 (one subscriber's). */
static int addr_key(const struct sockaddr *sa, struct key *k)
{
    char text[INET6_ADDRSTRLEN + 4];
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        if (inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == NULL)
            return -1;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            if (inet_ntop(AF_INET, in6->sin6_addr.s6_addr + 12, text, sizeof(text)) == NULL)
                return -1;
        } else {
            struct in6_addr net = in6->sin6_addr;
            memset(net.s6_addr + 8, 0, 8);
            char host[INET6_ADDRSTRLEN];
            if (inet_ntop(AF_INET6, &net, host, sizeof(host)) == NULL)
                return -1;
            snprintf(text, sizeof(text), "%s/64", host);
        }
    } else {
        return -1;
    }
    return keys_throttle_addr(k, text);
}

static enum cmd_status check_stage(struct cmd_ctx *ctx);

static enum cmd_status check_done(struct cmd_ctx *ctx)
{
    struct fleet_step *s = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK) {
        log_store_error("login_throttle", res);
        s->verdict = FLEET_UNAVAILABLE;
        return s->next(ctx);
    }
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 ||
        r->element[0]->type != REDIS_REPLY_INTEGER) {
        s->verdict = FLEET_UNAVAILABLE;
        return s->next(ctx);
    }
    if (r->element[0]->integer == 0) {
        s->verdict = FLEET_REFUSED;
        return s->next(ctx);
    }
    s->stage++;
    return check_stage(ctx);
}

static enum cmd_status check_stage(struct cmd_ctx *ctx)
{
    struct fleet_step *s = ctx->helper;
    struct conn *c = ctx->conn;
    const struct config *cfg = conn_frontend(c)->cfg;
    for (; s->stage < 2; s->stage++) {
        uint32_t cap = s->stage == 0 ? cfg->login_throttle_addr : cfg->login_throttle_user;
        struct key k;
        if (cap == 0)
            continue;
        if (s->stage == 0 ? addr_key(conn_peer_addr(c), &k) != 0
                          : keys_throttle_user(&k, s->login, s->login_len) != 0)
            continue;
        char capt[16], win[16];
        int cl = snprintf(capt, sizeof(capt), "%" PRIu32, cap);
        int wl = snprintf(win, sizeof(win), "%" PRIu32, cfg->login_throttle_window_s);
        const char *argv[] = {k.s, "check", capt, win};
        const size_t argvlen[] = {k.len, 5, (size_t)cl, (size_t)wl};
        return conn_eval(ctx, check_done, LUA_SCRIPT_LOGIN_THROTTLE, 1, 4, argv, argvlen);
    }
    return s->next(ctx);
}

enum cmd_status fleet_login_check(struct cmd_ctx *ctx, const char *login, size_t login_len,
                                  cmd_step *next)
{
    struct fleet_step *s = step_new(ctx, next);
    if (conn_frontend(ctx->conn)->fleet == NULL)
        return next(ctx);
    s->login = arena_strndup(ctx->arena, login, login_len);
    s->login_len = login_len;
    return check_stage(ctx);
}

static void fail_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    log_store_error("login_throttle", res);
}

static void send_fail(struct frontend *fe, const struct key *k, uint32_t cap)
{
    char capt[16], win[16];
    int cl = snprintf(capt, sizeof(capt), "%" PRIu32, cap);
    int wl = snprintf(win, sizeof(win), "%" PRIu32, fe->cfg->login_throttle_window_s);
    const char *argv[] = {k->s, "fail", capt, win};
    const size_t argvlen[] = {k->len, 4, (size_t)cl, (size_t)wl};
    store_eval(fe->store, 0, LUA_SCRIPT_LOGIN_THROTTLE, fail_done, 0, 1, 4, argv, argvlen);
}

void fleet_login_failed(struct conn *c, const char *login, size_t login_len)
{
    struct frontend *fe = conn_frontend(c);
    if (fe->fleet == NULL)
        return;
    struct key k;
    if (fe->cfg->login_throttle_addr > 0 && addr_key(conn_peer_addr(c), &k) == 0)
        send_fail(fe, &k, fe->cfg->login_throttle_addr);
    if (fe->cfg->login_throttle_user > 0 && login != NULL &&
        keys_throttle_user(&k, login, login_len) == 0)
        send_fail(fe, &k, fe->cfg->login_throttle_user);
}

static enum cmd_status acquire_done(struct cmd_ctx *ctx)
{
    struct fleet_step *s = ctx->helper;
    const struct store_result *res = ctx->store;
    struct frontend *fe = conn_frontend(ctx->conn);
    bool admitted = false;
    if (res->status != STORE_OK) {
        log_store_error("user_conns", res);
        s->verdict = FLEET_UNAVAILABLE;
    } else if (res->reply->type != REDIS_REPLY_ARRAY || res->reply->elements != 2 ||
               res->reply->element[0]->type != REDIS_REPLY_INTEGER) {
        s->verdict = FLEET_UNAVAILABLE;
    } else {
        admitted = res->reply->element[0]->integer == 1;
        s->verdict = admitted ? FLEET_OK : FLEET_REFUSED;
    }
    if (!admitted && fe->fleet != NULL)
        (void)count_down(fe->fleet, s->nsid); /* give the reservation back */
    return s->next(ctx);
}

enum cmd_status fleet_user_acquire(struct cmd_ctx *ctx, const char *nsid, cmd_step *next)
{
    struct fleet_step *s = step_new(ctx, next);
    struct frontend *fe = conn_frontend(ctx->conn);
    struct fleet *f = fe->fleet;
    if (f == NULL || fe->cfg->max_user_connections == 0)
        return next(ctx);
    snprintf(s->nsid, sizeof(s->nsid), "%s", nsid);
    /* Reserve locally first, so two logins of one user racing here both count. */
    struct user_count *u = count_find(f, nsid, true);
    u->count++;
    struct key k;
    keys_ns_conns(&k, nsid);
    char mine[16], max[16], cutoff[24], nlive[16];
    int ml = snprintf(mine, sizeof(mine), "%" PRIu32, u->count);
    int xl = snprintf(max, sizeof(max), "%" PRIu32, fe->cfg->max_user_connections);
    int64_t cut = f->live_at_ms > 0
                      ? f->live_at_ms - (int64_t)fe->cfg->lease_ttl_s * 1000 - FLEET_SKEW_MS
                      : 0;
    int cl = snprintf(cutoff, sizeof(cutoff), "%lld", (long long)(cut > 0 ? cut : 0));
    int nl = snprintf(nlive, sizeof(nlive), "%zu", f->nlive);
    const char *argv[7 + FLEET_MAX_LIVE + FLEET_MAX_DEAD];
    size_t argvlen[7 + FLEET_MAX_LIVE + FLEET_MAX_DEAD];
    int argc = 0;
    argv[argc] = k.s, argvlen[argc++] = k.len;
    argv[argc] = "acquire", argvlen[argc++] = 7;
    argv[argc] = f->id, argvlen[argc++] = strlen(f->id);
    argv[argc] = mine, argvlen[argc++] = (size_t)ml;
    argv[argc] = max, argvlen[argc++] = (size_t)xl;
    argv[argc] = cutoff, argvlen[argc++] = (size_t)cl;
    argv[argc] = nlive, argvlen[argc++] = (size_t)nl;
    for (size_t i = 0; i < f->nlive; i++)
        argv[argc] = f->live[i], argvlen[argc++] = strlen(f->live[i]);
    for (size_t i = 0; i < f->ndead; i++)
        argv[argc] = f->dead[i], argvlen[argc++] = strlen(f->dead[i]);
    return conn_eval(ctx, acquire_done, LUA_SCRIPT_USER_CONNS, 1, argc, argv, argvlen);
}

void fleet_user_release(struct frontend *fe, const char *nsid)
{
    struct fleet *f = fe->fleet;
    if (f == NULL || fe->cfg->max_user_connections == 0 || count_find(f, nsid, false) == NULL)
        return;
    send_count(f, nsid, count_down(f, nsid));
}
