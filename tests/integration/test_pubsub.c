/*
 * frontend/pubsub.c against a real redis-server (no mocks). The program starts its own
 * redis-server on a free loopback port (no persistence, DEBUG enabled), kills it with SIGKILL,
 * stops it with SIGSTOP and restarts it where a scenario needs it, and always kills it at the end
 * (group teardown, atexit, and PR_SET_PDEATHSIG should this process die). Each scenario runs its
 * own event loop; wake-ups are published from synchronous hiredis connections.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <event2/dns.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>

#include "frontend/log.h"
#include "frontend/pubsub.h"
#include "keys/keys.h"
#include "redis_fixture.h"


/* ---- redis-server processes ----------------------------------------------------------------- */

static struct redis_proc main_redis = {-1, 0};
static struct redis_proc extra_redis = {-1, 0};

static void kill_all_redis(void)
{
    fixture_redis_kill(&main_redis);
    fixture_redis_kill(&extra_redis);
}

static redisReply *redis_sync(const char *fmt, ...)
{
    redisContext *ctx = fixture_redis_connect(main_redis.port);
    assert_non_null(ctx);
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(ctx, fmt, ap);
    va_end(ap);
    redisFree(ctx);
    assert_non_null(r);
    return r;
}

/* ---- nsids and channels ---------------------------------------------------------------------- */

#define NMAX 1100

/* Deterministic test nsid number i (a valid lowercase UUID). */
static void nsid_of(unsigned i, char out[KEYS_NSID_LEN + 1])
{
    snprintf(out, KEYS_NSID_LEN + 1, "%08x-0000-4000-8000-00000000cafe", i);
    assert_true(keys_nsid_valid(out, KEYS_NSID_LEN));
}

static int index_of(const char *nsid)
{
    unsigned i = 0;
    assert_int_equal(sscanf(nsid, "%8x", &i), 1);
    assert_true(i < NMAX);
    return (int)i;
}

static void channel_of(unsigned i, struct key *k)
{
    char nsid[KEYS_NSID_LEN + 1];
    nsid_of(i, nsid);
    keys_ns_channel(k, nsid);
}

/* PUBLISH on nsid i's channel; returns the receiver count. */
static long long publish(unsigned i, const char *payload, size_t len)
{
    struct key k;
    channel_of(i, &k);
    redisReply *r = redis_sync("PUBLISH %b %b", k.s, k.len, payload, len);
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    long long n = r->integer;
    freeReplyObject(r);
    return n;
}

static long long numsub(unsigned i)
{
    struct key k;
    channel_of(i, &k);
    redisReply *r = redis_sync("PUBSUB NUMSUB %b", k.s, k.len);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 2);
    long long n = r->element[1]->integer;
    freeReplyObject(r);
    return n;
}

/* ---- event loop and recorded callbacks ------------------------------------------------------ */

static struct event_base *base;
static struct evdns_base *dns;
static struct pubsub *ps;

static struct {
    int resync[NMAX];
    int msgs[NMAX];
    char payload[NMAX][64];
    size_t len[NMAX];
    int total_resync;
    int total_msgs;
} rec;

/* Optional extra behaviour of the callback (re-entrancy scenarios). */
static void (*hook)(int idx, bool resync);

static void record_cb(const char *nsid, const char *payload, size_t len, bool resync, void *arg)
{
    assert_ptr_equal(arg, &rec);
    assert_int_equal(strlen(nsid), KEYS_NSID_LEN);
    int i = index_of(nsid);
    if (resync) {
        assert_null(payload);
        assert_int_equal(len, 0);
        rec.resync[i]++;
        rec.total_resync++;
    } else {
        assert_non_null(payload);
        assert_true(len <= sizeof(rec.payload[0]));
        memcpy(rec.payload[i], payload, len);
        rec.len[i] = len;
        rec.msgs[i]++;
        rec.total_msgs++;
    }
    if (hook != NULL)
        hook(i, resync);
}

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

typedef bool pred_fn(void *arg);

static bool run_until(pred_fn *pred, void *arg, int timeout_ms)
{
    struct event *tick = event_new(base, -1, EV_PERSIST, tick_cb, NULL);
    assert_non_null(tick);
    struct timeval tv = {0, 5000};
    assert_int_equal(event_add(tick, &tv), 0);
    long long deadline = fixture_now_ms() + timeout_ms;
    while ((pred == NULL || !pred(arg)) && fixture_now_ms() < deadline)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(tick);
    return pred != NULL && pred(arg);
}

static void run_for(int ms)
{
    run_until(NULL, NULL, ms);
}

static bool pred_ready(void *arg)
{
    (void)arg;
    return pubsub_ready(ps);
}

static bool pred_not_ready(void *arg)
{
    (void)arg;
    return !pubsub_ready(ps);
}

static bool pred_total_resync(void *arg)
{
    return rec.total_resync >= (int)(intptr_t)arg;
}

static bool pred_total_msgs(void *arg)
{
    return rec.total_msgs >= (int)(intptr_t)arg;
}

static void wait_ready(int timeout_ms)
{
    assert_true(run_until(pred_ready, NULL, timeout_ms));
}

static void wait_resyncs(int total, int timeout_ms)
{
    if (!run_until(pred_total_resync, (void *)(intptr_t)total, timeout_ms))
        fail_msg("resync calls: %d, want %d", rec.total_resync, total);
}

static void wait_msgs(int total, int timeout_ms)
{
    if (!run_until(pred_total_msgs, (void *)(intptr_t)total, timeout_ms))
        fail_msg("messages: %d, want %d", rec.total_msgs, total);
}

/* Runs the loop until NUMSUB of nsid i is want (the (UN)SUBSCRIBE has reached Redis). */
static void wait_numsub(unsigned i, long long want, int timeout_ms)
{
    long long deadline = fixture_now_ms() + timeout_ms;
    long long n;
    while ((n = numsub(i)) != want && fixture_now_ms() < deadline)
        run_for(5);
    if (n != want)
        fail_msg("NUMSUB of nsid %u: %lld, want %lld", i, n, want);
}

static char url_buf[128];

static const char *url_for(const char *host, uint16_t port)
{
    snprintf(url_buf, sizeof(url_buf), "redis://%s:%u", host, (unsigned)port);
    return url_buf;
}

/* Fast timing so faults are noticed in test time. */
static struct pubsub *new_pubsub(const char *url, uint32_t ka_interval, uint32_t ka_timeout)
{
    const char *err = NULL;
    struct pubsub *p = pubsub_new(base, dns, url, record_cb, &rec, &err);
    if (p == NULL)
        fail_msg("pubsub_new: %s", err);
    struct pubsub_timing t;
    pubsub_timing_defaults(&t);
    t.keepalive_interval_ms = ka_interval;
    t.keepalive_timeout_ms = ka_timeout;
    t.connect_timeout_ms = 500;
    t.backoff_min_ms = 20;
    t.backoff_max_ms = 200;
    assert_int_equal(pubsub_set_timing(p, &t, &err), 0);
    return p;
}

static void watch(unsigned i)
{
    char nsid[KEYS_NSID_LEN + 1];
    nsid_of(i, nsid);
    pubsub_watch(ps, nsid);
}

static void unwatch(unsigned i)
{
    char nsid[KEYS_NSID_LEN + 1];
    nsid_of(i, nsid);
    pubsub_unwatch(ps, nsid);
}

static struct pubsub_stats stats(void)
{
    struct pubsub_stats st;
    pubsub_get_stats(ps, &st);
    return st;
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    main_redis.port = fixture_free_port();
    atexit(kill_all_redis);
    fixture_redis_start(&main_redis, false, NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    kill_all_redis();
    return 0;
}

static int loop_setup(void **state)
{
    (void)state;
    memset(&rec, 0, sizeof(rec));
    hook = NULL;
    if (main_redis.pid <= 0 || !fixture_redis_pings(main_redis.port)) {
        fixture_redis_kill(&main_redis);
        fixture_redis_start(&main_redis, false, NULL);
    }
    base = event_base_new();
    assert_non_null(base);
    dns = evdns_base_new(base, 0);
    assert_non_null(dns);
    assert_int_equal(evdns_base_load_hosts(dns, NULL), 0);
    return 0;
}

static int loop_teardown(void **state)
{
    (void)state;
    pubsub_free(&ps);
    run_for(1);
    evdns_base_free(dns, 1);
    event_base_free(base);
    dns = NULL;
    base = NULL;
    return 0;
}

/* ---- scenarios ------------------------------------------------------------------------------ */

static void test_bad_arguments(void **state)
{
    (void)state;
    const char *err = NULL;
    assert_null(pubsub_new(base, dns, "http://x", record_cb, &rec, &err));
    assert_non_null(err);
    err = NULL;
    assert_null(pubsub_new(base, NULL, "redis://localhost:1", record_cb, &rec, &err));
    assert_non_null(err);
    err = NULL;
    assert_null(pubsub_new(base, dns, "redis://127.0.0.1:1", NULL, &rec, &err));
    assert_non_null(err);
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    struct pubsub_timing t;
    pubsub_timing_defaults(&t);
    t.backoff_min_ms = 10;
    t.backoff_max_ms = 5;
    err = NULL;
    assert_int_equal(pubsub_set_timing(ps, &t, &err), -1);
    assert_non_null(err);
    /* Invalid nsids are ignored, never subscribed. */
    pubsub_watch(ps, "not-an-nsid");
    pubsub_watch(ps, "0000000A-0000-4000-8000-00000000cafe"); /* upper case */
    pubsub_unwatch(ps, "not-an-nsid");
    assert_int_equal(stats().channels, 0);
    struct pubsub *none = NULL;
    pubsub_free(&none);
    pubsub_free(NULL);
}

/* Watched before the connection exists: subscribed at connect, resync once, then messages. */
static void test_watch_publish(void **state)
{
    (void)state;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    watch(1);
    assert_false(pubsub_ready(ps));
    run_for(0);
    assert_int_equal(rec.total_resync, 0); /* nothing called back from inside the calls */
    wait_ready(2000);
    assert_int_equal(rec.resync[1], 1);
    assert_int_equal(rec.total_resync, 1);
    assert_int_equal(numsub(1), 1);

    assert_int_equal(publish(1, "Fabc 42", 7), 1);
    wait_msgs(1, 2000);
    assert_int_equal(rec.msgs[1], 1);
    assert_int_equal(rec.len[1], 7);
    assert_memory_equal(rec.payload[1], "Fabc 42", 7);

    /* Watched while connected: one resync when the SUBSCRIBE is confirmed. */
    watch(2);
    wait_resyncs(2, 2000);
    assert_int_equal(rec.resync[2], 1);
    assert_int_equal(numsub(2), 1);
    static const char bin[] = {'x', '\0', '\r', '\n', 'y'};
    assert_int_equal(publish(2, bin, sizeof(bin)), 1);
    assert_int_equal(publish(2, "", 0), 1); /* empty payload */
    wait_msgs(3, 2000);
    assert_int_equal(rec.msgs[2], 2);
    assert_int_equal(rec.len[2], 0);

    /* Unwatched nsids are not delivered (not even subscribed). */
    assert_int_equal(publish(3, "F 1", 3), 0);
    run_for(50);
    assert_int_equal(rec.msgs[3], 0);

    struct pubsub_stats st = stats();
    assert_int_equal(st.messages, 3);
    assert_int_equal(st.channels, 2);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(st.resyncs, 2);
    assert_true(st.connected);
    /* The keepalive channel is subscribed by the front end, too. */
    redisReply *r = redis_sync("PUBSUB CHANNELS %s", "/frontends/*");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, 1);
    freeReplyObject(r);
}

static void test_refcount(void **state)
{
    (void)state;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    wait_ready(2000);
    watch(5);
    watch(5);
    wait_resyncs(1, 2000);
    run_for(20);
    assert_int_equal(rec.resync[5], 1); /* one SUBSCRIBE, one confirmation */
    assert_int_equal(numsub(5), 1);
    assert_int_equal(stats().channels, 1);

    unwatch(5);
    run_for(20);
    assert_int_equal(numsub(5), 1);
    assert_int_equal(publish(5, "A 1", 3), 1);
    wait_msgs(1, 2000);

    unwatch(5);
    assert_int_equal(stats().channels, 0);
    wait_numsub(5, 0, 2000);
    assert_int_equal(publish(5, "A 2", 3), 0);
    unwatch(5); /* unwatching an unwatched nsid: no-op */
    unwatch(6);
    assert_int_equal(stats().channels, 0);

    /* watch, unwatch, watch before any confirmation: ends subscribed, one resync for the last. */
    watch(7);
    unwatch(7);
    watch(7);
    wait_resyncs(2, 2000);
    run_for(50);
    assert_int_equal(rec.resync[7], 1);
    assert_int_equal(numsub(7), 1);
    assert_int_equal(publish(7, "B 1", 3), 1);
    wait_msgs(2, 2000);
    assert_int_equal(rec.msgs[7], 1);

    /* watch then unwatch before the confirmation: no resync, not subscribed. */
    watch(8);
    unwatch(8);
    wait_numsub(8, 0, 2000);
    run_for(50);
    assert_int_equal(rec.resync[8], 0);
    assert_int_equal(stats().channels, 1);
}

/* 1,000 users: one burst at connect, every one resynced, every message to the right user. */
static void test_many(void **state)
{
    (void)state;
    const unsigned n = 1000;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    for (unsigned i = 0; i < n / 2; i++)
        watch(i);
    wait_ready(3000);
    for (unsigned i = n / 2; i < n; i++)
        watch(i); /* while connected: one SUBSCRIBE each */
    wait_resyncs((int)n, 3000);
    assert_int_equal(stats().channels, n);
    redisReply *r = redis_sync("PUBSUB CHANNELS %s", "/ns/*");
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->elements, n);
    freeReplyObject(r);

    redisContext *ctx = fixture_redis_connect(main_redis.port);
    assert_non_null(ctx);
    for (unsigned i = 0; i < n; i++) {
        struct key k;
        channel_of(i, &k);
        char msg[32];
        int ml = snprintf(msg, sizeof(msg), "F%u %u", i, i * 7);
        assert_int_equal(redisAppendCommand(ctx, "PUBLISH %b %b", k.s, k.len, msg, (size_t)ml),
                         REDIS_OK);
    }
    for (unsigned i = 0; i < n; i++) {
        void *reply = NULL;
        assert_int_equal(redisGetReply(ctx, &reply), REDIS_OK);
        assert_int_equal(((redisReply *)reply)->integer, 1);
        freeReplyObject(reply);
    }
    redisFree(ctx);
    wait_msgs((int)n, 3000);
    for (unsigned i = 0; i < n; i++) {
        char msg[32];
        int ml = snprintf(msg, sizeof(msg), "F%u %u", i, i * 7);
        assert_int_equal(rec.msgs[i], 1);
        assert_int_equal(rec.len[i], (size_t)ml);
        assert_memory_equal(rec.payload[i], msg, (size_t)ml);
        assert_int_equal(rec.resync[i], 1);
    }

    /* Killing the subscriber connection: reconnect, resubscribe all, resync all. */
    r = redis_sync("CLIENT KILL TYPE pubsub");
    assert_int_equal(r->type, REDIS_REPLY_INTEGER);
    assert_int_equal(r->integer, 1);
    freeReplyObject(r);
    wait_resyncs(2 * (int)n, 3000);
    for (unsigned i = 0; i < n; i++)
        assert_int_equal(rec.resync[i], 2);
    assert_int_equal(stats().reconnects, 1);
    assert_int_equal(numsub(n - 1), 1);
    assert_int_equal(publish(3, "again", 5), 1);
    wait_msgs((int)n + 1, 2000);

    for (unsigned i = 0; i < n; i++)
        unwatch(i);
    assert_int_equal(stats().channels, 0);
    wait_numsub(0, 0, 2000);
    wait_numsub(n - 1, 0, 2000);
}

/* SIGKILL + restart on the same port: every watched user resynced after the new subscribe. */
static void test_redis_restart(void **state)
{
    (void)state;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    watch(10);
    watch(11);
    watch(12);
    wait_ready(2000);
    assert_int_equal(rec.total_resync, 3);
    fixture_redis_kill(&main_redis);
    assert_true(run_until(pred_not_ready, NULL, 2000));
    run_for(300); /* a few refused reconnects */
    assert_false(pubsub_ready(ps));
    assert_int_equal(rec.total_resync, 3);
    fixture_redis_start(&main_redis, false, NULL);
    wait_resyncs(6, 3000);
    for (unsigned i = 10; i <= 12; i++)
        assert_int_equal(rec.resync[i], 2);
    assert_true(pubsub_ready(ps));
    for (unsigned i = 10; i <= 12; i++)
        assert_int_equal(publish(i, "up", 2), 1);
    wait_msgs(3, 2000);
    for (unsigned i = 10; i <= 12; i++)
        assert_int_equal(rec.msgs[i], 1);
    assert_int_equal(stats().reconnects, 1);
}

/* Nothing listens at first: watched users are subscribed when Redis appears. */
static void test_connect_later(void **state)
{
    (void)state;
    extra_redis.port = fixture_free_port();
    ps = new_pubsub(url_for("localhost", extra_redis.port), 1000, 1000); /* via evdns */
    watch(20);
    run_for(300);
    assert_false(pubsub_ready(ps));
    assert_int_equal(rec.total_resync, 0);
    fixture_redis_start(&extra_redis, false, NULL);
    wait_resyncs(1, 3000);
    assert_int_equal(rec.resync[20], 1);
    assert_int_equal(stats().reconnects, 0); /* the first connection, not a re-connection */
    pubsub_free(&ps);
    fixture_redis_kill(&extra_redis);
}

struct stall {
    long long started;
    long long noticed;
};

static bool pred_stall_noticed(void *arg)
{
    struct stall *s = arg;
    if (!pubsub_ready(ps) && s->noticed == 0)
        s->noticed = fixture_now_ms();
    return s->noticed != 0;
}

/* A stopped server (a silently dead peer): noticed within the keepalive bound, recovered after. */
static void test_keepalive_sigstop(void **state)
{
    (void)state;
    const int interval = 100, timeout = 200;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), interval, timeout);
    watch(30);
    wait_ready(2000);
    run_for(3 * interval); /* keepalives answered: still ready */
    assert_true(pubsub_ready(ps));
    assert_int_equal(stats().keepalive_timeouts, 0);
    assert_int_equal(kill(main_redis.pid, SIGSTOP), 0);
    struct stall s = {fixture_now_ms(), 0};
    bool noticed = run_until(pred_stall_noticed, &s, 3000);
    assert_int_equal(kill(main_redis.pid, SIGCONT), 0);
    assert_true(noticed);
    long long took = s.noticed - s.started;
    if (took > interval + timeout + 150)
        fail_msg("dead connection noticed after %lld ms", took);
    assert_int_equal(stats().keepalive_timeouts, 1);
    wait_resyncs(2, 3000);
    assert_true(pubsub_ready(ps));
    assert_int_equal(publish(30, "after", 5), 1);
    wait_msgs(1, 2000);
    assert_true(stats().reconnects >= 1);
}

/* DEBUG SLEEP longer than the keepalive timeout: same, without signals. */
static void test_keepalive_debug_sleep(void **state)
{
    (void)state;
    const int interval = 100, timeout = 200;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), interval, timeout);
    watch(31);
    wait_ready(2000);
    redisContext *ctx = fixture_redis_connect(main_redis.port);
    assert_non_null(ctx);
    assert_int_equal(redisAppendCommand(ctx, "DEBUG SLEEP 1"), REDIS_OK);
    int done = 0;
    while (!done)
        assert_int_equal(redisBufferWrite(ctx, &done), REDIS_OK);
    struct stall s = {fixture_now_ms(), 0};
    assert_true(run_until(pred_stall_noticed, &s, 3000));
    assert_true(s.noticed - s.started <= interval + timeout + 150);
    void *reply = NULL;
    assert_int_equal(redisGetReply(ctx, &reply), REDIS_OK); /* the sleep ends */
    freeReplyObject(reply);
    redisFree(ctx);
    wait_resyncs(2, 3000);
    assert_int_equal(publish(31, "woke", 4), 1);
    wait_msgs(1, 2000);
    assert_true(stats().keepalive_timeouts >= 1);
}

/* The callback watches and unwatches re-entrantly. */
static void hook_move(int idx, bool resync)
{
    if (!resync && idx == 40) {
        unwatch(40);
        watch(41);
    }
}

static int hook_calls;

static void hook_unwatch_all(int idx, bool resync)
{
    (void)idx;
    if (!resync || hook_calls++ > 0)
        return;
    for (unsigned i = 50; i < 100; i++)
        unwatch(i);
    watch(100);
}

static void test_reentrant(void **state)
{
    (void)state;
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    watch(40);
    wait_ready(2000);
    hook = hook_move;
    assert_int_equal(publish(40, "m", 1), 1);
    wait_msgs(1, 2000);
    wait_resyncs(2, 2000); /* 40 at connect, 41 once subscribed from inside the callback */
    assert_int_equal(rec.resync[41], 1);
    wait_numsub(40, 0, 2000);
    assert_int_equal(numsub(41), 1);
    assert_int_equal(publish(41, "n", 1), 1);
    wait_msgs(2, 2000);
    assert_int_equal(rec.msgs[41], 1);
    unwatch(41);

    /* The first resync call of a reconnect unwatches every other user: none of them is called. */
    for (unsigned i = 50; i < 100; i++)
        watch(i);
    wait_resyncs(2 + 50, 2000);
    hook_calls = 0;
    hook = hook_unwatch_all;
    redisReply *r = redis_sync("CLIENT KILL TYPE pubsub");
    freeReplyObject(r);
    wait_resyncs(2 + 50 + 2, 3000); /* the first one, then 100's own confirmation */
    run_for(50);
    assert_int_equal(rec.total_resync, 2 + 50 + 2);
    assert_int_equal(rec.resync[100], 1);
    assert_int_equal(stats().channels, 1);
    wait_numsub(50, 0, 2000);
    wait_numsub(99, 0, 2000);
    assert_int_equal(numsub(100), 1);
}

/* Freed with watchers, leftovers and a connection in every state: LeakSanitizer checks. */
static void test_free_with_watchers(void **state)
{
    (void)state;
    /* Ready, with watchers and an unwatch in flight. */
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    for (unsigned i = 0; i < 200; i++)
        watch(i);
    wait_ready(2000);
    watch(300);
    unwatch(300);
    unwatch(0);
    pubsub_free(&ps);
    assert_null(ps);
    /* Subscribing: a stopped server accepts the connection (kernel backlog) but never confirms. */
    assert_int_equal(kill(main_redis.pid, SIGSTOP), 0);
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    for (unsigned i = 0; i < 200; i++)
        watch(i);
    run_for(100);
    assert_false(pubsub_ready(ps));
    unwatch(3); /* UNSUBSCRIBE queued behind the unanswered burst */
    pubsub_free(&ps);
    assert_int_equal(kill(main_redis.pid, SIGCONT), 0);
    /* Never connected, resolving a name, and a dropped connection about to be freed. */
    ps = new_pubsub(url_for("127.0.0.1", fixture_free_port()), 1000, 1000);
    watch(1);
    run_for(50);
    pubsub_free(&ps);
    ps = new_pubsub(url_for("localhost", main_redis.port), 1000, 1000);
    watch(1);
    pubsub_free(&ps);
    ps = new_pubsub(url_for("127.0.0.1", main_redis.port), 1000, 1000);
    watch(1);
    wait_ready(2000);
    redisReply *r = redis_sync("CLIENT KILL TYPE pubsub");
    freeReplyObject(r);
    run_for(5);
    pubsub_free(&ps);
    run_for(50); /* nothing fires after free */
}

/*
 * Replies of a shape Redis does not send must not crash or deliver anything: a scripted peer (not
 * Redis: a real server cannot be made to send these) answers the burst, then sends wrong shapes
 * hiredis passes through, then one good message.
 */
static pid_t scripted_peer(uint16_t *port_r, const char *script, size_t len)
{
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(lfd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    assert_int_equal(listen(lfd, 4), 0);
    socklen_t sl = sizeof(sa);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&sa, &sl), 0);
    *port_r = ntohs(sa.sin_port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0)
            _exit(1);
        char buf[4096];
        size_t got = 0;
        /* Wait for the burst's end: the keepalive channel's SUBSCRIBE. */
        while (got < sizeof(buf) - 1) {
            ssize_t n = read(fd, buf + got, sizeof(buf) - 1 - got);
            if (n <= 0)
                _exit(1);
            got += (size_t)n;
            buf[got] = '\0';
            if (strstr(buf, "/frontends/keepalive\r\n") != NULL)
                break;
        }
        for (size_t off = 0; off < len;) {
            ssize_t n = write(fd, script + off, len - off);
            if (n <= 0)
                _exit(1);
            off += (size_t)n;
        }
        while (read(fd, buf, sizeof(buf)) > 0)
            ;
        _exit(0);
    }
    close(lfd);
    return pid;
}

static void test_wrong_shapes(void **state)
{
    (void)state;
    struct key k;
    channel_of(60, &k);
    char script[2048];
    int n = snprintf(script, sizeof(script),
                     "*3\r\n$9\r\nsubscribe\r\n$%zu\r\n%s\r\n:1\r\n"
                     "*3\r\n$9\r\nsubscribe\r\n$20\r\n/frontends/keepalive\r\n:2\r\n"
                     "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n:42\r\n"          /* integer payload */
                     "*2\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n"                 /* too short */
                     "*3\r\n$5\r\nbogus\r\n$%zu\r\n%s\r\n$1\r\nx\r\n"       /* unknown kind */
                     "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n*1\r\n$1\r\nx\r\n" /* array payload */
                     "*3\r\n$7\r\nmessage\r\n$20\r\n/frontends/keepalive\r\n$1\r\nx\r\n"
                     "*3\r\n$9\r\nsubscribe\r\n$22\r\n/ns/{nonsense}/channel\r\n:3\r\n"
                     "*3\r\n$7\r\nmessage\r\n$%zu\r\n%s\r\n$5\r\nhello\r\n",
                     k.len, k.s, k.len, k.s, k.len, k.s, k.len, k.s, k.len, k.s, k.len, k.s);
    assert_true(n > 0 && (size_t)n < sizeof(script));
    uint16_t port;
    pid_t peer = scripted_peer(&port, script, (size_t)n);
    ps = new_pubsub(url_for("127.0.0.1", port), 1000, 1000);
    watch(60);
    wait_msgs(1, 3000);
    run_for(20);
    assert_int_equal(rec.total_msgs, 1);
    assert_int_equal(rec.msgs[60], 1);
    assert_int_equal(rec.len[60], 5);
    assert_memory_equal(rec.payload[60], "hello", 5);
    assert_int_equal(rec.resync[60], 1);
    assert_true(pubsub_ready(ps));
    pubsub_free(&ps);
    kill(peer, SIGKILL);
    while (waitpid(peer, NULL, 0) < 0 && errno == EINTR)
        ;
}

int main(void)
{
    log_set_level(LOG_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bad_arguments, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_watch_publish, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_refcount, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_many, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_redis_restart, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_connect_later, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_sigstop, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_keepalive_debug_sleep, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_reentrant, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_free_with_watchers, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_wrong_shapes, loop_setup, loop_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
