/*
 * Password authentication shared by LOGIN (cmd_login.c) and AUTHENTICATE (cmd_authenticate.c),
 * so there is one mechanism for the record lookup, the worker-pool verification, the failure
 * delay and counting, and the success path — never two copies that drift apart.
 *
 * Steps: read the login record (HMGET nsid password state), verify on the worker pool, answer.
 * The user name and password are copied into the command's arena first (a step may run after the
 * caller's buffers are gone); the password moves into a malloc'd worker job at verification time
 * and is wiped there and in the arena. Does not decide *whether* a password may be sent on this
 * connection (auth_allowed, checked by the commands) nor parse any SASL (sasl*.c).
 */
#include "frontend/auth.h"
#include "frontend/user_limits.h"

#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "frontend/fleet.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/metrics.h"
#include "frontend/password.h"
#include "frontend/reply.h"
#include "keys/keys.h"

struct auth_state {
    const char *mech;
    char *login;       /* arena copy, NUL-terminated (may hold other NULs: then invalid) */
    size_t login_len;
    char *password;    /* arena copy until handed to the worker job, then wiped */
    size_t password_len;
    bool known;        /* an active record with a valid nsid exists */
    char nsid[KEYS_NSID_LEN + 1];
    unsigned failures;
    struct user_limits limits; /* from the record's param: fields */
};

/* Owned by the worker job until its done step frees it. */
struct verify_job {
    char *password;
    size_t password_len;
    char *hash;
    bool match;
};

bool auth_allowed(const struct conn *c)
{
    return conn_is_tls(c) || conn_is_loopback(c) || conn_frontend(c)->cfg->allow_plaintext_auth;
}

static const char *login_for_log(const struct auth_state *as)
{
    if (as->login == NULL)
        return "-";
    return keys_login_valid(as->login, as->login_len) ? as->login : "(invalid)";
}

static void verify_free(void *arg)
{
    struct verify_job *job = arg;
    if (job == NULL)
        return;
    if (job->password != NULL)
        OPENSSL_cleanse(job->password, job->password_len);
    free(job->password);
    free(job->hash);
    free(job);
}

static void verify_work(void *arg)
{
    struct verify_job *job = arg;
    const char *error = NULL;
    bool match = false;
    if (password_verify(job->password, job->password_len, job->hash, &match, &error) != 0) {
        log_write(LOG_WARN, "login.bad_hash", "error=\"%s\"", error);
        match = false;
    }
    job->match = match;
}

static enum cmd_status auth_verified(struct cmd_ctx *ctx);
static enum cmd_status auth_failed(struct cmd_ctx *ctx);
static enum cmd_status auth_admitted(struct cmd_ctx *ctx);

static enum cmd_status unavailable(struct cmd_ctx *ctx, const char *why)
{
    log_write(LOG_WARN, "login.unavailable", "conn=%llu error=\"%s\"",
              (unsigned long long)conn_id(ctx->conn), why);
    reply_tagged(ctx, "NO", "UNAVAILABLE", "Login temporarily unavailable: %s", why);
    return CMD_DONE;
}

static enum cmd_status start_verify(struct cmd_ctx *ctx, const char *hash, size_t hash_len)
{
    struct auth_state *as = ctx->state;
    struct verify_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return CMD_ERR;
    job->password_len = as->password_len;
    job->password = malloc(as->password_len + 1);
    job->hash = malloc(hash_len + 1);
    if (job->password == NULL || job->hash == NULL) {
        verify_free(job);
        return CMD_ERR;
    }
    memcpy(job->password, as->password, as->password_len);
    job->password[as->password_len] = '\0';
    OPENSSL_cleanse(as->password, as->password_len);
    memcpy(job->hash, hash, hash_len);
    job->hash[hash_len] = '\0';
    bool full = false;
    enum cmd_status st = conn_work(ctx, auth_verified, verify_work, verify_free, job, &full);
    if (full)
        return unavailable(ctx, "too many logins in progress");
    return st;
}

static enum cmd_status auth_got_record(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK) {
        OPENSSL_cleanse(as->password, as->password_len);
        return unavailable(ctx, res->error);
    }
    const redisReply *r = res->reply;
    const char *hash = password_dummy_hash();
    size_t hash_len = strlen(hash);
    user_limits_default(&as->limits);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3 + USER_LIMITS_COUNT) {
        const redisReply *nsid = r->element[0];
        const redisReply *pw = r->element[1];
        const redisReply *state = r->element[2];
        if (nsid->type == REDIS_REPLY_STRING && pw->type == REDIS_REPLY_STRING &&
            state->type == REDIS_REPLY_STRING && strcmp(state->str, "active") == 0 &&
            keys_nsid_valid(nsid->str, nsid->len)) {
            as->known = true;
            memcpy(as->nsid, nsid->str, KEYS_NSID_LEN);
            as->nsid[KEYS_NSID_LEN] = '\0';
            hash = pw->str;
            hash_len = pw->len;
            for (size_t i = 0; i < USER_LIMITS_COUNT; i++) {
                const redisReply *v = r->element[3 + i];
                if (v->type == REDIS_REPLY_STRING)
                    (void)user_limits_set(&as->limits, i, v->str, v->len);
            }
        }
    }
    return start_verify(ctx, hash, hash_len);
}

/* Counts the failure and answers it after the delay (auth_failed). */
static enum cmd_status fail_later(struct cmd_ctx *ctx, const char *why)
{
    struct auth_state *as = ctx->state;
    struct conn *c = ctx->conn;
    as->failures = conn_count_auth_failure(c);
    log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s mech=%s result=fail reason=\"%s\" failures=%u",
              (unsigned long long)conn_id(c), conn_peer(c), login_for_log(as), as->mech, why,
              as->failures);
    metrics_inc(METRICS_AUTH_FAILED);
    fleet_login_failed(c, as->login, as->login != NULL ? as->login_len : 0);
    return conn_sleep(ctx, auth_failed,
                      conn_frontend(c)->cfg->login_fail_delay_ms * as->failures);
}

static enum cmd_status auth_verified(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    struct verify_job *job = ctx->job;
    bool ok = as->known && job->match;
    verify_free(job);
    ctx->job = NULL;
    if (!ok)
        return fail_later(ctx, "bad credentials");
    return fleet_user_acquire(ctx, as->nsid, auth_admitted);
}

/* The password matched; the cluster-wide per-user connection limit decides (fleet.h). */
static enum cmd_status auth_admitted(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    struct conn *c = ctx->conn;
    enum fleet_verdict v = fleet_verdict(ctx);
    if (v == FLEET_UNAVAILABLE)
        return unavailable(ctx, "connection count not available");
    if (v == FLEET_REFUSED) {
        log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s mech=%s result=limit",
                  (unsigned long long)conn_id(c), conn_peer(c), as->login, as->mech);
        metrics_inc(METRICS_USER_LIMIT);
        reply_tagged(ctx, "NO", "LIMIT", "Too many connections for this user");
        return CMD_DONE;
    }
    conn_set_authenticated(c, as->login, as->nsid);
    conn_set_user_limits(c, &as->limits);
    metrics_inc(METRICS_AUTH_OK);
    log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s mech=%s tls=%d result=ok",
              (unsigned long long)conn_id(c), conn_peer(c), as->login, as->mech, conn_is_tls(c));
    struct evbuffer *caps = evbuffer_new();
    if (caps == NULL)
        return CMD_ERR;
    evbuffer_add(caps, "CAPABILITY ", 11);
    reply_capabilities(c, caps);
    evbuffer_add(caps, "", 1);
    reply_tagged(ctx, "OK", (const char *)evbuffer_pullup(caps, -1), "Logged in");
    evbuffer_free(caps);
    return CMD_DONE;
}

static enum cmd_status auth_failed(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    struct conn *c = ctx->conn;
    reply_tagged(ctx, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
    if (as->failures >= conn_frontend(c)->cfg->max_login_failures) {
        reply_bye(c, NULL, "Too many failed logins");
        conn_close_after_output(c);
    }
    return CMD_DONE;
}

static struct auth_state *new_state(struct cmd_ctx *ctx, const char *mech, const char *login,
                                    size_t login_len)
{
    struct auth_state *as = arena_calloc(ctx->arena, 1, sizeof(*as));
    as->mech = mech;
    if (login != NULL) {
        as->login = arena_strndup(ctx->arena, login, login_len);
        as->login_len = login_len;
    }
    ctx->state = as;
    return as;
}

static enum cmd_status auth_throttled_answer(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    struct conn *c = ctx->conn;
    /* RFC 5530 UNAVAILABLE: a temporary condition, so clients retry later rather than ask the
     * user for another password; the password was not looked at, so nothing is revealed. */
    reply_tagged(ctx, "NO", "UNAVAILABLE", "Too many failed logins; try again later");
    if (as->failures >= conn_frontend(c)->cfg->max_login_failures) {
        reply_bye(c, NULL, "Too many failed logins");
        conn_close_after_output(c);
    }
    return CMD_DONE;
}

/* The failed-login throttle (fleet.h) said whether to look at the password at all. */
static enum cmd_status auth_checked(struct cmd_ctx *ctx)
{
    struct auth_state *as = ctx->state;
    struct conn *c = ctx->conn;
    enum fleet_verdict v = fleet_verdict(ctx);
    if (v != FLEET_OK) {
        OPENSSL_cleanse(as->password, as->password_len);
        if (v == FLEET_UNAVAILABLE)
            return unavailable(ctx, "login throttle not available");
        as->failures = conn_count_auth_failure(c);
        log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s mech=%s result=throttled failures=%u",
                  (unsigned long long)conn_id(c), conn_peer(c), login_for_log(as), as->mech,
                  as->failures);
        metrics_inc(METRICS_AUTH_FAILED);
        metrics_inc(METRICS_AUTH_THROTTLED);
        return conn_sleep(ctx, auth_throttled_answer,
                          conn_frontend(c)->cfg->login_fail_delay_ms * as->failures);
    }
    struct key k;
    if (as->password_len > PASSWORD_MAX_LEN || keys_user(&k, as->login, as->login_len) != 0) {
        const char *dummy = password_dummy_hash();
        return start_verify(ctx, dummy, strlen(dummy)); /* fails, at the same cost */
    }
    const char *argv[5 + USER_LIMITS_COUNT] = {"HMGET", k.s, "nsid", "password", "state"};
    size_t argvlen[5 + USER_LIMITS_COUNT] = {5, k.len, 4, 8, 5};
    for (size_t i = 0; i < USER_LIMITS_COUNT; i++) {
        argv[5 + i] = user_limits_params[i];
        argvlen[5 + i] = strlen(user_limits_params[i]);
    }
    return conn_redis(ctx, auth_got_record, 5 + USER_LIMITS_COUNT, argv, argvlen);
}

enum cmd_status auth_verify(struct cmd_ctx *ctx, const char *mech, const char *login,
                            size_t login_len, const char *password, size_t password_len)
{
    struct auth_state *as = new_state(ctx, mech, login, login_len);
    as->password = arena_alloc(ctx->arena, password_len + 1);
    memcpy(as->password, password, password_len);
    as->password[password_len] = '\0';
    as->password_len = password_len;
    return fleet_login_check(ctx, login, login_len, auth_checked);
}

enum cmd_status auth_reject(struct cmd_ctx *ctx, const char *mech, const char *login,
                            size_t login_len, const char *why)
{
    new_state(ctx, mech, login, login_len);
    return fail_later(ctx, why);
}
