/*
 * Start-up sequence, driven by Redis replies: wait for the store → schema_init.lua → (demo data:
 * EXISTS the demo user → hash its password on the worker pool → ns_create.lua → user_create.lua,
 * sweeping the fresh namespace if another front end created the user first). One sequence per
 * process, so its state is a file-level object; callbacks carry only the step number.
 */
#include "frontend/startup.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "frontend/demo.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/password.h"
#include "frontend/store.h"
#include "frontend/workers.h"
#include "keys/keys.h"

struct startup {
    struct frontend *fe;
    struct event *poll;
    struct demo_plan *plan; /* the demo mailboxes and messages, while they are written */
    size_t plan_next;
    char nsid[KEYS_NSID_LEN + 1];
    char *hash;
    bool hash_pending; /* a worker job refers to this object */
};

static struct startup *seq;
static bool schema_accepted; /* outlives seq: readiness asks after the sequence ended */

static void step_schema(void);
static void schema_done(const struct store_result *res, uint64_t token);

static void finish(void)
{
    log_write(LOG_INFO, "startup.done", "demo_data=%d", seq->fe->cfg->demo_data ? 1 : 0);
}

static void poll_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    if (!store_ready(seq->fe->store)) {
        struct timeval tv = {0, 100000};
        evtimer_add(seq->poll, &tv);
        return;
    }
    step_schema();
}

static void retry_later(const char *why)
{
    log_write(LOG_WARN, "startup.retry", "error=\"%s\"", why);
    struct timeval tv = {1, 0};
    evtimer_add(seq->poll, &tv);
}

static void step_schema(void)
{
    struct key k;
    keys_schema(&k);
    char version[16];
    int n = snprintf(version, sizeof(version), "%d", KEYS_SCHEMA_VERSION);
    const char *argv[] = {k.s, version};
    const size_t argvlen[] = {k.len, (size_t)n};
    store_eval(seq->fe->store, 0, LUA_SCRIPT_SCHEMA_INIT, schema_done, 0, 1, 2, argv, argvlen);
}

static void demo_exists_done(const struct store_result *res, uint64_t token);

static void schema_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_INTEGER) {
        retry_later(res->status == STORE_OK ? "unexpected schema reply" : res->error);
        return;
    }
    long long have = res->reply->integer;
    if (have > KEYS_SCHEMA_VERSION) {
        log_write(LOG_ERROR, "startup.schema_newer",
                  "have=%lld known=%d msg=\"this release cannot serve a newer keyspace\"", have,
                  KEYS_SCHEMA_VERSION);
        exit(78); /* EX_CONFIG: an operator must roll forward */
    }
    log_write(LOG_INFO, "startup.schema", "version=%lld", have);
    schema_accepted = true;
    if (!seq->fe->cfg->demo_data) {
        finish();
        return;
    }
    struct key k;
    if (keys_user(&k, DEMO_USER, strlen(DEMO_USER)) != 0)
        abort();
    const char *argv[] = {"EXISTS", k.s};
    const size_t argvlen[] = {6, k.len};
    store_command(seq->fe->store, 0, demo_exists_done, 0, 2, argv, argvlen);
}

struct hash_job {
    uint32_t cost;
    char *hash;
};

static void hash_work(void *arg)
{
    struct hash_job *job = arg;
    const char *error = NULL;
    if (password_hash(DEMO_PASSWORD, strlen(DEMO_PASSWORD), job->cost, &job->hash, &error) != 0)
        job->hash = NULL;
}

static void ns_created(const struct store_result *res, uint64_t token);

static void hash_done(void *arg, uint64_t token)
{
    (void)token;
    struct hash_job *job = arg;
    char *hash = job->hash;
    free(job);
    if (seq == NULL) {
        free(hash);
        return;
    }
    seq->hash_pending = false;
    if (hash == NULL) {
        log_write(LOG_ERROR, "startup.demo", "error=\"password hashing failed\"");
        return;
    }
    seq->hash = hash;
    keys_nsid_new(seq->nsid);
    struct key k;
    keys_ns_meta(&k, seq->nsid);
    const char *argv[] = {k.s, DEMO_USER};
    const size_t argvlen[] = {k.len, strlen(DEMO_USER)};
    store_eval(seq->fe->store, 0, LUA_SCRIPT_NS_CREATE, ns_created, 0, 1, 2, argv, argvlen);
}

static void demo_exists_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status != STORE_OK) {
        retry_later(res->error);
        return;
    }
    if (res->reply->type == REDIS_REPLY_INTEGER && res->reply->integer == 1) {
        log_write(LOG_INFO, "startup.demo", "user=%s result=exists", DEMO_USER);
        finish();
        return;
    }
    struct hash_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        abort();
    job->cost = seq->fe->cfg->kdf_cost;
    if (workers_submit(seq->fe->workers, hash_work, hash_done, job, 0) != 0) {
        free(job);
        retry_later("worker pool full");
        return;
    }
    seq->hash_pending = true;
}

static void user_created(const struct store_result *res, uint64_t token);
static void swept(const struct store_result *res, uint64_t token);

static void ns_created(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status != STORE_OK) {
        log_write(LOG_ERROR, "startup.demo", "step=ns_create error=\"%s\"", res->error);
        return;
    }
    struct key k;
    if (keys_user(&k, DEMO_USER, strlen(DEMO_USER)) != 0)
        abort();
    const char *argv[] = {k.s, seq->nsid, seq->hash};
    const size_t argvlen[] = {k.len, strlen(seq->nsid), strlen(seq->hash)};
    store_eval(seq->fe->store, 0, LUA_SCRIPT_USER_CREATE, user_created, 0, 1, 3, argv, argvlen);
}

static void demo_step(const struct store_result *res, uint64_t token);

/* Runs the next call of the demo plan, or finishes. */
static void demo_next(void)
{
    if (seq->plan_next >= demo_plan_count(seq->plan)) {
        log_write(LOG_INFO, "startup.demo", "user=%s result=created nsid=%s calls=%zu", DEMO_USER,
                  seq->nsid, seq->plan_next);
        demo_plan_free(&seq->plan);
        finish();
        return;
    }
    enum lua_script_id script;
    int nkeys = 0, argc = 0;
    const char *const *argv = NULL;
    const size_t *argvlen = NULL;
    demo_plan_call(seq->plan, seq->plan_next++, &script, &nkeys, &argc, &argv, &argvlen);
    store_eval(seq->fe->store, 0, script, demo_step, 0, nkeys, argc, argv, argvlen);
}

static void demo_step(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status != STORE_OK) {
        log_write(LOG_ERROR, "startup.demo", "step=%zu error=\"%s\"", seq->plan_next, res->error);
        demo_plan_free(&seq->plan);
        return;
    }
    demo_next();
}

static void user_created(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status == STORE_OK) {
        seq->plan = demo_plan_new(seq->nsid);
        if (seq->plan == NULL)
            return;
        demo_next();
        return;
    }
    /* Someone else made the user first (or the write failed): drop our fresh namespace. */
    log_write(LOG_INFO, "startup.demo", "user=%s result=\"%s\"", DEMO_USER, res->error);
    struct key meta;
    struct key prefix;
    keys_ns_meta(&meta, seq->nsid);
    keys_ns_prefix(&prefix, seq->nsid);
    const char *argv[] = {meta.s, prefix.s};
    const size_t argvlen[] = {meta.len, prefix.len};
    store_eval(seq->fe->store, 0, LUA_SCRIPT_NS_SWEEP, swept, 0, 1, 2, argv, argvlen);
}

static void swept(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (seq == NULL)
        return;
    if (res->status != STORE_OK)
        log_write(LOG_WARN, "startup.demo", "step=ns_sweep error=\"%s\"", res->error);
    finish();
}

int startup_begin(struct frontend *fe)
{
    seq = calloc(1, sizeof(*seq));
    if (seq == NULL)
        return -1;
    seq->fe = fe;
    seq->poll = evtimer_new(fe->base, poll_cb, NULL);
    if (seq->poll == NULL) {
        free(seq);
        seq = NULL;
        return -1;
    }
    struct timeval tv = {0, 0};
    evtimer_add(seq->poll, &tv);
    return 0;
}

bool startup_schema_accepted(void)
{
    return schema_accepted;
}

void startup_end(void)
{
    if (seq == NULL)
        return;
    event_free(seq->poll);
    demo_plan_free(&seq->plan);
    free(seq->hash);
    free(seq);
    seq = NULL;
}
