/*
 * frontend/store.c against a real redis-server (no mocks). The program starts its own
 * redis-server on a free loopback port (no persistence, DEBUG enabled), restarts it and kills it
 * with SIGKILL where a scenario needs it, and always kills it at the end (group teardown, atexit,
 * and PR_SET_PDEATHSIG should this process die). Each scenario runs its own event loop.
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
#include "frontend/store.h"
#include "lua/scripts.h"
#include "redis_fixture.h"


/* ---- redis-server processes ----------------------------------------------------------------- */


static struct redis_proc main_redis = {-1, 0};
static struct redis_proc extra_redis = {-1, 0};
static bool have_ipv6;

static bool ipv6_loopback_ok(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in6 sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin6_family = AF_INET6;
    sa.sin6_addr = in6addr_loopback;
    bool ok = bind(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
    close(fd);
    return ok;
}

/* Synchronous hiredis connection for test-side setup; NULL if Redis does not answer. */
static void kill_all_redis(void)
{
    fixture_redis_kill(&main_redis);
    fixture_redis_kill(&extra_redis);
}

/* Runs one command on a fresh synchronous connection; returns the reply (caller frees). */
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

static void redis_sync_ok(const char *cmd)
{
    redisReply *r = redis_sync(cmd);
    assert_int_equal(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
}

/* ---- event loop ------------------------------------------------------------------------------ */

static struct event_base *base;
static struct evdns_base *dns;

static void tick_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
}

typedef bool pred_fn(void *arg);

/* Runs the loop until pred(arg) holds or timeout_ms pass; returns pred(arg). */
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

struct ready_want {
    struct store *s;
    unsigned connected;
};

static bool pred_connected(void *arg)
{
    const struct ready_want *w = arg;
    struct store_stats st;
    store_get_stats(w->s, &st);
    return st.connected == w->connected;
}

static void wait_connected(struct store *s, unsigned n, int timeout_ms)
{
    struct ready_want w = {s, n};
    assert_true(run_until(pred_connected, &w, timeout_ms));
}

/* ---- captured results ---------------------------------------------------------------------- */

struct captured {
    int calls;
    enum store_status status;
    int type;
    long long integer;
    size_t elements;
    char str[256];
    size_t len;
    char error[256];
};

#define NCAPTURE 64
static struct captured cap[NCAPTURE];

static void capture_cb(const struct store_result *res, uint64_t token)
{
    assert_true(token < NCAPTURE);
    struct captured *c = &cap[token];
    c->calls++;
    c->status = res->status;
    c->error[0] = '\0';
    c->str[0] = '\0';
    c->len = 0;
    c->type = 0;
    if (res->status == STORE_OK) {
        assert_non_null(res->reply);
        c->type = res->reply->type;
        c->integer = res->reply->integer;
        c->elements = res->reply->elements;
        if (res->reply->type == REDIS_REPLY_STRING || res->reply->type == REDIS_REPLY_STATUS) {
            c->len = res->reply->len < sizeof(c->str) ? res->reply->len : sizeof(c->str);
            memcpy(c->str, res->reply->str, c->len);
        }
        if (res->reply->type == REDIS_REPLY_ARRAY && res->reply->elements > 0)
            c->integer = res->reply->element[0]->integer;
    } else {
        assert_null(res->reply);
        assert_non_null(res->error);
        snprintf(c->error, sizeof(c->error), "%s", res->error);
    }
}

static bool pred_called(void *arg)
{
    return cap[(uintptr_t)arg].calls > 0;
}

static void wait_called(uint64_t token, int timeout_ms)
{
    assert_true(run_until(pred_called, (void *)(uintptr_t)token, timeout_ms));
}

/* store_command with NUL-terminated arguments. */
static void cmd(struct store *s, uint64_t shard, uint64_t token, int argc, ...)
{
    const char *argv[16];
    size_t lens[16];
    assert_true(argc <= 16);
    va_list ap;
    va_start(ap, argc);
    for (int i = 0; i < argc; i++) {
        argv[i] = va_arg(ap, const char *);
        lens[i] = strlen(argv[i]);
    }
    va_end(ap);
    store_command(s, shard, capture_cb, token, argc, argv, lens);
    assert_int_equal(cap[token].calls, 0); /* never called back from inside the call */
}

static void eval_ping(struct store *s, uint64_t shard, uint64_t token, const char *arg)
{
    const char *argv[] = {arg};
    const size_t lens[] = {strlen(arg)};
    store_eval(s, shard, LUA_SCRIPT_PING, capture_cb, token, 0, 1, argv, lens);
    assert_int_equal(cap[token].calls, 0);
}

static char url_buf[128];

static const char *url_for(const char *host, uint16_t port)
{
    snprintf(url_buf, sizeof(url_buf), "redis://%s:%u", host, (unsigned)port);
    return url_buf;
}

static struct store *new_store(const char *url, unsigned pool, uint32_t timeout_ms)
{
    struct store_config cfg;
    store_config_defaults(&cfg);
    cfg.url = url;
    cfg.pool_size = pool;
    cfg.timeout_ms = timeout_ms;
    cfg.connect_timeout_ms = 1000;
    cfg.backoff_min_ms = 20;
    cfg.backoff_max_ms = 200;
    const char *err = NULL;
    struct store *s = store_new(base, dns, &cfg, &err);
    if (s == NULL)
        fail_msg("store_new: %s", err);
    return s;
}

/* ---- stderr capture (log lines) ------------------------------------------------------------- */

static int saved_stderr = -1;
static FILE *captured_stderr;

static void stderr_capture_begin(void)
{
    captured_stderr = tmpfile();
    assert_non_null(captured_stderr);
    saved_stderr = dup(STDERR_FILENO);
    assert_true(saved_stderr >= 0);
    assert_true(dup2(fileno(captured_stderr), STDERR_FILENO) >= 0);
}

/* Restores stderr; returns what was logged (static buffer), also echoed to the real stderr. */
static const char *stderr_capture_end(void)
{
    static char text[65536];
    assert_true(dup2(saved_stderr, STDERR_FILENO) >= 0);
    close(saved_stderr);
    saved_stderr = -1;
    rewind(captured_stderr);
    size_t n = fread(text, 1, sizeof(text) - 1, captured_stderr);
    text[n] = '\0';
    fclose(captured_stderr);
    captured_stderr = NULL;
    fputs(text, stderr);
    return text;
}

/* ---- fixtures ------------------------------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    have_ipv6 = ipv6_loopback_ok();
    main_redis.port = fixture_free_port();
    atexit(kill_all_redis);
    fixture_redis_start(&main_redis, have_ipv6, NULL);
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
    memset(cap, 0, sizeof(cap));
    if (main_redis.pid <= 0 || !fixture_redis_pings(main_redis.port)) {
        fixture_redis_kill(&main_redis);
        fixture_redis_start(&main_redis, have_ipv6, NULL);
    }
    base = event_base_new();
    assert_non_null(base);
    dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (dns == NULL) { /* no usable resolv.conf: the hosts file is enough here */
        dns = evdns_base_new(base, 0);
        assert_non_null(dns);
        assert_int_equal(evdns_base_load_hosts(dns, NULL), 0);
    }
    return 0;
}

static int loop_teardown(void **state)
{
    (void)state;
    run_for(1); /* lets evdns release cancelled lookups */
    evdns_base_free(dns, 1);
    event_base_free(base);
    dns = NULL;
    base = NULL;
    return 0;
}

/* ---- scenarios ------------------------------------------------------------------------------ */

static void test_url_parse(void **state)
{
    (void)state;
    static const struct {
        const char *url;
        const char *host; /* NULL: must fail */
        unsigned port;
        unsigned db;
    } cases[] = {
        {"redis://127.0.0.1:6379", "127.0.0.1", 6379, 0},
        {"redis://localhost", "localhost", 6379, 0},
        {"redis://redis.example-1.net:7000/3", "redis.example-1.net", 7000, 3},
        {"redis://[::1]:6380/2", "::1", 6380, 2},
        {"redis://[::1]", "::1", 6379, 0},
        {"redis://h/", "h", 6379, 0},
        {"http://h:1", NULL, 0, 0},
        {"redis://", NULL, 0, 0},
        {"redis://:6379", NULL, 0, 0},
        {"redis://h:0", NULL, 0, 0},
        {"redis://h:65536", NULL, 0, 0},
        {"redis://h:12x", NULL, 0, 0},
        {"redis://h:", NULL, 0, 0},
        {"redis://h:1/x", NULL, 0, 0},
        {"redis://h:1/-1", NULL, 0, 0},
        {"redis://h:1/99999999999", NULL, 0, 0},
        {"redis://[::1:6379", NULL, 0, 0},
        {"redis://[nothex]:1", NULL, 0, 0},
        {"redis://user:pw@h:1", NULL, 0, 0},
        {"redis://h h:1", NULL, 0, 0},
        {"redis://[::1]x", NULL, 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char *host = NULL;
        uint16_t port = 0;
        uint32_t db = 99;
        const char *err = NULL;
        int rc = store_url_parse(cases[i].url, &host, &port, &db, &err);
        if (cases[i].host == NULL) {
            if (rc != -1)
                fail_msg("%s: accepted", cases[i].url);
            assert_non_null(err);
            assert_null(host);
        } else {
            if (rc != 0)
                fail_msg("%s: %s", cases[i].url, err);
            assert_string_equal(host, cases[i].host);
            assert_int_equal(port, cases[i].port);
            assert_int_equal(db, cases[i].db);
            free(host);
        }
    }
}

static void test_bad_config(void **state)
{
    (void)state;
    struct store_config cfg;
    store_config_defaults(&cfg);
    const char *err = NULL;
    cfg.pool_size = 0;
    assert_null(store_new(base, dns, &cfg, &err));
    assert_non_null(err);
    store_config_defaults(&cfg);
    cfg.url = "http://x";
    assert_null(store_new(base, dns, &cfg, &err));
    store_config_defaults(&cfg);
    cfg.backoff_min_ms = 500;
    cfg.backoff_max_ms = 100;
    assert_null(store_new(base, dns, &cfg, &err));
    store_config_defaults(&cfg);
    cfg.url = "redis://localhost:1";
    assert_null(store_new(base, NULL, &cfg, &err)); /* a name needs evdns */
    struct store *none = NULL;
    store_free(&none); /* NULL-safe */
    store_free(NULL);
}

/* Nothing listens: requests are answered "redis not connected" from the loop, never inline. */
static void test_not_connected(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", fixture_free_port()), 2, 1000);
    assert_false(store_ready(s));
    cmd(s, 0, 0, 1, "PING");
    wait_called(0, 2000);
    assert_int_equal(cap[0].status, STORE_UNAVAILABLE);
    assert_string_equal(cap[0].error, "redis not connected");
    run_for(100); /* a few refused attempts with backoff */
    eval_ping(s, 1, 1, "x");
    wait_called(1, 2000);
    assert_int_equal(cap[1].status, STORE_UNAVAILABLE);
    assert_false(store_ready(s));
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.requests, 2);
    assert_int_equal(st.unavailable, 2);
    assert_int_equal(st.connected, 0);
    store_free(&s);
    assert_null(s);
    assert_int_equal(cap[0].calls, 1);
    assert_int_equal(cap[1].calls, 1);
}

static void test_roundtrip_binary(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 2, 2000);
    wait_connected(s, 2, 3000);
    assert_true(store_ready(s));
    static const char value[] = {'a', '\0', 'b', '\0', '\r', '\n', 'c'};
    const char *set_argv[] = {"SET", "test:bin\0key", value};
    const size_t set_lens[] = {3, 12, sizeof(value)};
    store_command(s, 7, capture_cb, 0, 3, set_argv, set_lens);
    const char *get_argv[] = {"GET", "test:bin\0key"};
    const size_t get_lens[] = {3, 12};
    store_command(s, 7, capture_cb, 1, 2, get_argv, get_lens);
    assert_int_equal(cap[0].calls + cap[1].calls, 0);
    wait_called(1, 2000);
    assert_int_equal(cap[0].status, STORE_OK);
    assert_int_equal(cap[0].type, REDIS_REPLY_STATUS);
    assert_int_equal(cap[1].status, STORE_OK);
    assert_int_equal(cap[1].type, REDIS_REPLY_STRING);
    assert_int_equal(cap[1].len, sizeof(value));
    assert_memory_equal(cap[1].str, value, sizeof(value));
    cmd(s, 8, 2, 2, "GET", "test:missing");
    wait_called(2, 2000);
    assert_int_equal(cap[2].status, STORE_OK);
    assert_int_equal(cap[2].type, REDIS_REPLY_NIL);
    store_free(&s);
}

/* The SHA1 embedded at build time is what a real Redis answers to SCRIPT LOAD. */
static void test_embedded_sha1_matches_redis(void **state)
{
    (void)state;
    assert_true(LUA_SCRIPT_COUNT > 0);
    for (unsigned i = 0; i < LUA_SCRIPT_COUNT; i++) {
        const struct lua_script *ls = &lua_scripts[i];
        redisReply *r = redis_sync("SCRIPT LOAD %b", ls->body, ls->len);
        if (r->type != REDIS_REPLY_STRING)
            fail_msg("SCRIPT LOAD %s: %s", ls->name, r->type == REDIS_REPLY_ERROR ? r->str : "?");
        assert_string_equal(r->str, ls->sha1);
        freeReplyObject(r);
    }
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 1, 2000);
    wait_connected(s, 1, 3000);
    eval_ping(s, 0, 0, "hello\r\nworld");
    wait_called(0, 2000);
    assert_int_equal(cap[0].status, STORE_OK);
    assert_int_equal(cap[0].len, 12);
    assert_memory_equal(cap[0].str, "hello\r\nworld", 12);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.noscript_retries, 0);
    store_free(&s);
}

static void test_error_replies(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 1, 2000);
    wait_connected(s, 1, 3000);
    cmd(s, 0, 0, 1, "NO-SUCH-COMMAND");
    cmd(s, 0, 1, 3, "EVAL", "return redis.error_reply('boom: bad mailbox')", "0");
    cmd(s, 0, 2, 3, "SET", "test:str", "not a number");
    cmd(s, 0, 3, 4, "EVAL", "return redis.call('INCR', KEYS[1])", "1", "test:str");
    cmd(s, 0, 4, 3, "EVALSHA", "0000000000000000000000000000000000000000", "0");
    cmd(s, 0, 5, 1, "PING");
    wait_called(5, 2000);
    assert_int_equal(cap[0].status, STORE_ERROR);
    assert_non_null(strstr(cap[0].error, "unknown command"));
    assert_int_equal(cap[1].status, STORE_ERROR);
    assert_string_equal(cap[1].error, "boom: bad mailbox");
    assert_int_equal(cap[2].status, STORE_OK);
    assert_int_equal(cap[3].status, STORE_ERROR);
    assert_non_null(strstr(cap[3].error, "not an integer"));
    /* NOSCRIPT is retried only for store_eval, which knows the body. */
    assert_int_equal(cap[4].status, STORE_ERROR);
    assert_memory_equal(cap[4].error, "NOSCRIPT", 8);
    assert_int_equal(cap[5].status, STORE_OK);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.errors, 4);
    assert_int_equal(st.unavailable, 0);
    store_free(&s);
}

/* -BUSY (a script running too long) is STORE_UNAVAILABLE with Redis' text. */
static void test_busy_is_unavailable(void **state)
{
    (void)state;
    redis_sync_ok("CONFIG SET busy-reply-threshold 100");
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 2, 5000);
    wait_connected(s, 2, 3000);
    cmd(s, 0, 0, 3, "EVAL", "while true do end", "0");
    run_for(300);
    cmd(s, 1, 1, 1, "PING");
    wait_called(1, 2000);
    assert_int_equal(cap[1].status, STORE_UNAVAILABLE);
    assert_memory_equal(cap[1].error, "BUSY", 4);
    redis_sync_ok("SCRIPT KILL");
    wait_called(0, 2000);
    assert_int_equal(cap[0].status, STORE_ERROR);
    redis_sync_ok("CONFIG SET busy-reply-threshold 5000");
    store_free(&s);
}

/* A request that outlives its timeout is answered "timeout"; the connection is replaced and the
 * late reply never reaches the caller. */
static void test_timeout_and_recovery(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 1, 300);
    wait_connected(s, 1, 3000);
    long long t0 = fixture_now_ms();
    cmd(s, 0, 0, 3, "DEBUG", "SLEEP", "1");
    cmd(s, 0, 1, 1, "PING");
    wait_called(0, 2000);
    assert_true(fixture_now_ms() - t0 >= 250); /* answered by the timer, well before Redis wakes */
    assert_int_equal(cap[0].status, STORE_UNAVAILABLE);
    assert_string_equal(cap[0].error, "timeout");
    wait_called(1, 1000);
    assert_int_equal(cap[1].status, STORE_UNAVAILABLE);
    assert_false(store_ready(s));
    /* Redis wakes after 1 s; the pool reconnects and serves again. */
    wait_connected(s, 1, 4000);
    cmd(s, 0, 2, 1, "PING");
    wait_called(2, 2000);
    assert_int_equal(cap[2].status, STORE_OK);
    assert_int_equal(cap[2].len, 4);
    assert_memory_equal(cap[2].str, "PONG", 4);
    run_for(200);
    assert_int_equal(cap[0].calls, 1);
    assert_int_equal(cap[1].calls, 1);
    assert_int_equal(cap[2].calls, 1);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_true(st.timeouts >= 1);
    assert_int_equal(st.reconnects, 1);
    store_free(&s);
}

/* SCRIPT FLUSH behind the store's back: EVALSHA gets NOSCRIPT and is re-sent as EVAL. */
static void test_noscript_retry(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 1, 2000);
    wait_connected(s, 1, 3000);
    eval_ping(s, 0, 0, "before");
    wait_called(0, 2000);
    assert_int_equal(cap[0].status, STORE_OK);
    redis_sync_ok("SCRIPT FLUSH");
    eval_ping(s, 0, 1, "after-1");
    eval_ping(s, 0, 2, "after-2");
    cmd(s, 0, 3, 1, "PING");
    wait_called(1, 2000);
    wait_called(2, 2000);
    wait_called(3, 2000);
    assert_int_equal(cap[1].status, STORE_OK);
    assert_int_equal(cap[1].len, 7);
    assert_memory_equal(cap[1].str, "after-1", 7);
    assert_int_equal(cap[2].status, STORE_OK);
    assert_memory_equal(cap[2].str, "after-2", 7);
    assert_int_equal(cap[3].status, STORE_OK);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_true(st.noscript_retries >= 1 && st.noscript_retries <= 2);
    assert_int_equal(st.errors, 0);
    store_free(&s);
}

/* maxmemory-policy is checked on every (re)connect: loud warning unless noeviction. */
static void test_maxmemory_policy_warning(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 1, 2000);
    wait_connected(s, 1, 3000);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_true(st.policy_ok);
    stderr_capture_begin();
    redisReply *r = redis_sync("CONFIG SET maxmemory-policy allkeys-lru");
    freeReplyObject(r);
    r = redis_sync("CLIENT KILL TYPE normal"); /* drops the store's connection, not this one */
    freeReplyObject(r);
    struct ready_want w = {s, 0};
    bool dropped = run_until(pred_connected, &w, 2000);
    w.connected = 1;
    bool back = run_until(pred_connected, &w, 3000);
    const char *log = stderr_capture_end();
    redis_sync_ok("CONFIG SET maxmemory-policy noeviction");
    assert_true(dropped);
    assert_true(back);
    store_get_stats(s, &st);
    assert_false(st.policy_ok);
    assert_int_equal(st.reconnects, 1);
    assert_non_null(strstr(log, "level=warn event=redis.maxmemory_policy"));
    assert_non_null(strstr(log, "policy=\"allkeys-lru\""));
    store_free(&s);
}

/* A Redis that refuses CONFIG: the store still serves, and warns that it could not check. */
static void test_maxmemory_policy_unchecked(void **state)
{
    (void)state;
    extra_redis.port = fixture_free_port();
    static const char *const no_config[] = {"--rename-command", "CONFIG", "", NULL};
    fixture_redis_start(&extra_redis, have_ipv6, no_config);
    stderr_capture_begin();
    struct store *s = new_store(url_for("127.0.0.1", extra_redis.port), 1, 2000);
    struct ready_want w = {s, 1};
    bool ready = run_until(pred_connected, &w, 3000);
    const char *log = stderr_capture_end();
    assert_true(ready);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_false(st.policy_ok);
    assert_non_null(strstr(log, "policy=unknown"));
    assert_non_null(strstr(log, "could not check maxmemory-policy"));
    store_free(&s);
    fixture_redis_kill(&extra_redis);
}

/* SIGKILL Redis mid-use, then restart it on the same port. */
static void test_kill_and_restart(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 2, 5000);
    wait_connected(s, 2, 3000);
    cmd(s, 0, 0, 3, "DEBUG", "SLEEP", "2");
    cmd(s, 0, 1, 1, "PING");
    cmd(s, 1, 2, 2, "BLPOP", "test:never", "0"); /* pending on the other connection */
    run_for(100);
    assert_int_equal(cap[0].calls + cap[1].calls + cap[2].calls, 0);
    fixture_redis_kill(&main_redis);
    wait_called(0, 2000);
    wait_called(1, 2000);
    wait_called(2, 2000);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(cap[i].status, STORE_UNAVAILABLE);
        assert_string_equal(cap[i].error, "connection lost");
    }
    assert_false(store_ready(s));
    cmd(s, 0, 3, 1, "PING");
    eval_ping(s, 1, 4, "down");
    wait_called(3, 1000);
    wait_called(4, 1000);
    assert_int_equal(cap[3].status, STORE_UNAVAILABLE);
    assert_string_equal(cap[3].error, "redis not connected");
    assert_int_equal(cap[4].status, STORE_UNAVAILABLE);
    run_for(300); /* a few refused reconnects */
    fixture_redis_start(&main_redis, have_ipv6, NULL);
    wait_connected(s, 2, 3000);
    /* The new server never saw a SCRIPT LOAD but from the store's handshake. */
    const struct lua_script *ping = &lua_scripts[LUA_SCRIPT_PING];
    cmd(s, 0, 5, 3, "SCRIPT", "EXISTS", ping->sha1);
    eval_ping(s, 1, 6, "up");
    wait_called(5, 2000);
    wait_called(6, 2000);
    assert_int_equal(cap[5].status, STORE_OK);
    assert_int_equal(cap[5].type, REDIS_REPLY_ARRAY);
    assert_int_equal(cap[5].elements, 1);
    assert_int_equal(cap[5].integer, 1);
    assert_int_equal(cap[6].status, STORE_OK);
    assert_memory_equal(cap[6].str, "up", 2);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.reconnects, 2);
    assert_int_equal(st.noscript_retries, 0);
    store_free(&s);
}

static void test_localhost_via_evdns(void **state)
{
    (void)state;
    struct store *s = new_store(url_for("localhost", main_redis.port), 2, 2000);
    wait_connected(s, 2, 3000);
    cmd(s, 0, 0, 1, "PING");
    wait_called(0, 2000);
    assert_int_equal(cap[0].status, STORE_OK);
    store_free(&s);
    if (!have_ipv6) {
        print_message("no IPv6 loopback here: [::1] not tested\n");
        return;
    }
    s = new_store(url_for("[::1]", main_redis.port), 1, 2000);
    wait_connected(s, 1, 3000);
    eval_ping(s, 0, 1, "v6");
    wait_called(1, 2000);
    assert_int_equal(cap[1].status, STORE_OK);
    store_free(&s);
}

/* redis://host:port/DB selects DB on every connection; a DB Redis refuses keeps it not ready. */
static void test_select_db(void **state)
{
    (void)state;
    snprintf(url_buf, sizeof(url_buf), "redis://127.0.0.1:%u/3", (unsigned)main_redis.port);
    struct store *s = new_store(url_buf, 2, 2000);
    wait_connected(s, 2, 3000);
    cmd(s, 0, 0, 3, "SET", "test:db", "three");
    cmd(s, 1, 1, 3, "SET", "test:db", "three");
    wait_called(0, 2000);
    wait_called(1, 2000);
    assert_int_equal(cap[0].status, STORE_OK);
    assert_int_equal(cap[1].status, STORE_OK);
    store_free(&s);
    redisContext *ctx = fixture_redis_connect(main_redis.port);
    assert_non_null(ctx);
    redisReply *r = redisCommand(ctx, "SELECT 3");
    assert_non_null(r);
    freeReplyObject(r);
    r = redisCommand(ctx, "GET test:db");
    assert_non_null(r);
    assert_int_equal(r->type, REDIS_REPLY_STRING);
    assert_string_equal(r->str, "three");
    freeReplyObject(r);
    r = redisCommand(ctx, "SELECT 0");
    freeReplyObject(r);
    r = redisCommand(ctx, "EXISTS test:db");
    assert_int_equal(r->integer, 0);
    freeReplyObject(r);
    redisFree(ctx);

    stderr_capture_begin();
    snprintf(url_buf, sizeof(url_buf), "redis://127.0.0.1:%u/99", (unsigned)main_redis.port);
    s = new_store(url_buf, 1, 2000);
    run_for(300);
    bool ready = store_ready(s);
    store_free(&s);
    const char *log = stderr_capture_end();
    assert_false(ready);
    assert_non_null(strstr(log, "level=error event=redis.select"));
}

/* A name whose lookup never completes: the connect deadline cancels it, again and again, and
 * store_free cancels the one in progress; no leak, no late callback into freed memory. */
static void test_unresolvable_name(void **state)
{
    (void)state;
    int udp = socket(AF_INET, SOCK_DGRAM, 0); /* a "nameserver" that never answers */
    assert_true(udp >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(udp, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(udp, (struct sockaddr *)&sa, &len), 0);
    char ns[64];
    snprintf(ns, sizeof(ns), "127.0.0.1:%u", (unsigned)ntohs(sa.sin_port));
    struct evdns_base *silent = evdns_base_new(base, 0);
    assert_non_null(silent);
    assert_int_equal(evdns_base_nameserver_ip_add(silent, ns), 0);

    struct store_config cfg;
    store_config_defaults(&cfg);
    cfg.url = "redis://cimap-test.invalid:6379";
    cfg.pool_size = 2;
    cfg.connect_timeout_ms = 100;
    cfg.backoff_min_ms = 10;
    cfg.backoff_max_ms = 40;
    const char *err = NULL;
    struct store *s = store_new(base, silent, &cfg, &err);
    assert_non_null(s);
    run_for(450);
    assert_false(store_ready(s));
    cmd(s, 0, 0, 1, "PING");
    wait_called(0, 1000);
    assert_int_equal(cap[0].status, STORE_UNAVAILABLE);
    store_free(&s);
    run_for(20);
    evdns_base_free(silent, 1);
    close(udp);
}

#define PIPELINE_N 10000

static struct {
    uint64_t answered;
    uint64_t bad;
} pipe_state;

static void pipeline_cb(const struct store_result *res, uint64_t token)
{
    /* INCR answers 1, 2, 3, ...: in order iff token i sees i + 1 and arrives i-th. */
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_INTEGER ||
        res->reply->integer != (long long)token + 1 || token != pipe_state.answered)
        pipe_state.bad++;
    pipe_state.answered++;
}

static bool pred_pipeline_done(void *arg)
{
    (void)arg;
    return pipe_state.answered == PIPELINE_N;
}

static void test_pipeline_10000_in_order(void **state)
{
    (void)state;
    redisReply *r = redis_sync("DEL test:counter");
    freeReplyObject(r);
    memset(&pipe_state, 0, sizeof(pipe_state));
    struct store *s = new_store(url_for("127.0.0.1", main_redis.port), 4, 10000);
    wait_connected(s, 4, 3000);
    const char *argv[] = {"INCR", "test:counter"};
    const size_t lens[] = {4, 12};
    for (uint64_t i = 0; i < PIPELINE_N; i++)
        store_command(s, 42, pipeline_cb, i, 2, argv, lens);
    assert_int_equal(pipe_state.answered, 0);
    assert_true(run_until(pred_pipeline_done, NULL, 10000));
    assert_int_equal(pipe_state.bad, 0);
    struct store_stats st;
    store_get_stats(s, &st);
    assert_int_equal(st.requests, PIPELINE_N);
    assert_int_equal(st.errors + st.unavailable + st.timeouts, 0);
    store_free(&s);
}

/* A callback issues the next request (re-entrant use from inside a hiredis callback). */
static struct store *chain_store;
static int chain_steps;
static int chain_errors;

static void chain_cb(const struct store_result *res, uint64_t token)
{
    if (res->status != STORE_OK || res->reply->integer != (long long)token)
        chain_errors++;
    chain_steps++;
    if (token < 100) {
        const char *argv[] = {"INCR", "test:chain"};
        const size_t lens[] = {4, 10};
        store_command(chain_store, token, chain_cb, token + 1, 2, argv, lens);
    }
}

static bool pred_chain_done(void *arg)
{
    (void)arg;
    return chain_steps == 100;
}

static void test_reentrant_chain(void **state)
{
    (void)state;
    redisReply *r = redis_sync("DEL test:chain");
    freeReplyObject(r);
    chain_steps = chain_errors = 0;
    chain_store = new_store(url_for("127.0.0.1", main_redis.port), 3, 2000);
    wait_connected(chain_store, 3, 3000);
    const char *argv[] = {"INCR", "test:chain"};
    const size_t lens[] = {4, 10};
    store_command(chain_store, 0, chain_cb, 1, 2, argv, lens);
    assert_true(run_until(pred_chain_done, NULL, 5000));
    assert_int_equal(chain_errors, 0);
    store_free(&chain_store);
}

/* store_free answers everything pending before it returns, including requests made by the
 * callbacks it runs. */
static struct store *free_store;
static int free_answers;
static int free_reissued;

static void free_cb(const struct store_result *res, uint64_t token)
{
    assert_int_equal(res->status, STORE_UNAVAILABLE);
    free_answers++;
    if (token == 3) {
        const char *argv[] = {"PING"};
        const size_t lens[] = {4};
        free_reissued++;
        store_command(free_store, 0, free_cb, 1000, 1, argv, lens);
    }
}

static void test_free_with_pending(void **state)
{
    (void)state;
    free_answers = free_reissued = 0;
    free_store = new_store(url_for("127.0.0.1", main_redis.port), 2, 2000);
    wait_connected(free_store, 2, 3000);
    const char *argv[] = {"DEBUG", "SLEEP", "0.05"};
    const size_t lens[] = {5, 5, 4};
    for (uint64_t i = 0; i < 100; i++)
        store_command(free_store, i, free_cb, i, 3, argv, lens);
    run_for(10); /* some are on the wire, some answered maybe: all must be answered once */
    int before = free_answers;
    for (uint64_t i = 100; i < 110; i++)
        store_command(free_store, i, free_cb, i, 3, argv, lens);
    store_free(&free_store);
    assert_null(free_store);
    assert_int_equal(free_answers, 110 + free_reissued);
    assert_true(before < 100);
    assert_int_equal(free_reissued, 1);
    /* And a store that never connected, with deferred requests. */
    free_answers = free_reissued = 0;
    free_store = new_store(url_for("127.0.0.1", fixture_free_port()), 1, 2000);
    for (uint64_t i = 10; i < 20; i++)
        store_command(free_store, 0, free_cb, i, 3, argv, lens);
    store_free(&free_store);
    assert_int_equal(free_answers, 10);
    run_for(50); /* nothing fires after free */
    assert_int_equal(free_answers, 10);
}

int main(void)
{
    log_set_level(LOG_INFO);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_url_parse, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_bad_config, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_not_connected, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_roundtrip_binary, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_embedded_sha1_matches_redis, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(test_error_replies, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_busy_is_unavailable, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_timeout_and_recovery, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_noscript_retry, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_maxmemory_policy_warning, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_maxmemory_policy_unchecked, loop_setup,
                                        loop_teardown),
        cmocka_unit_test_setup_teardown(test_kill_and_restart, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_localhost_via_evdns, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_select_db, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_unresolvable_name, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_pipeline_10000_in_order, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_reentrant_chain, loop_setup, loop_teardown),
        cmocka_unit_test_setup_teardown(test_free_with_pending, loop_setup, loop_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
