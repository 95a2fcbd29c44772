/*
 * LOGIN (RFC 3501 §6.2.3). Steps: read the login record (one HMGET), verify the password on the
 * worker pool (never on the event loop, DESIGN.md rule 7), answer. Unknown users, invalid names
 * and tombstoned records are verified against a dummy hash of the same cost, so the answer time
 * does not tell whether a user exists. A failure is answered only after a delay that grows with
 * the connection's failure count, and the connection is closed after config max_login_failures.
 */
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/crypto.h>

#include "frontend/commands.h"
#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/password.h"
#include "frontend/reply.h"
#include "keys/keys.h"

struct login_state {
    const char *login; /* arena copy, NUL-terminated */
    size_t login_len;
    bool known;        /* an active record with a valid nsid exists */
    char nsid[KEYS_NSID_LEN + 1];
    unsigned failures;
};

/* Owned by the worker job until its done step frees it. */
struct verify_job {
    char *password;
    size_t password_len;
    char *hash;
    bool match;
};

static void verify_free(void *arg)
{
    struct verify_job *job = arg;
    if (job == NULL)
        return;
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

static enum cmd_status login_verified(struct cmd_ctx *ctx);
static enum cmd_status login_failed(struct cmd_ctx *ctx);

static enum cmd_status unavailable(struct cmd_ctx *ctx, const char *why)
{
    log_write(LOG_WARN, "login.unavailable", "conn=%llu error=\"%s\"",
              (unsigned long long)conn_id(ctx->conn), why);
    reply_tagged(ctx, "NO", "UNAVAILABLE", "Login temporarily unavailable: %s", why);
    return CMD_DONE;
}

static enum cmd_status start_verify(struct cmd_ctx *ctx, const char *hash, size_t hash_len)
{
    const struct imap_arg *pw = &ctx->args[1];
    struct verify_job *job = calloc(1, sizeof(*job));
    if (job == NULL)
        return CMD_ERR;
    job->password_len = pw->len;
    job->password = malloc(pw->len + 1);
    job->hash = malloc(hash_len + 1);
    if (job->password == NULL || job->hash == NULL) {
        verify_free(job);
        return CMD_ERR;
    }
    memcpy(job->password, pw->str, pw->len);
    job->password[pw->len] = '\0';
    memcpy(job->hash, hash, hash_len);
    job->hash[hash_len] = '\0';
    bool full = false;
    enum cmd_status st = conn_work(ctx, login_verified, verify_work, verify_free, job, &full);
    if (full)
        return unavailable(ctx, "too many logins in progress");
    return st;
}

static enum cmd_status login_got_record(struct cmd_ctx *ctx)
{
    struct login_state *ls = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return unavailable(ctx, res->error);
    const redisReply *r = res->reply;
    const char *hash = password_dummy_hash();
    size_t hash_len = strlen(hash);
    if (r->type == REDIS_REPLY_ARRAY && r->elements == 3) {
        const redisReply *nsid = r->element[0];
        const redisReply *pw = r->element[1];
        const redisReply *state = r->element[2];
        if (nsid->type == REDIS_REPLY_STRING && pw->type == REDIS_REPLY_STRING &&
            state->type == REDIS_REPLY_STRING && strcmp(state->str, "active") == 0 &&
            keys_nsid_valid(nsid->str, nsid->len)) {
            ls->known = true;
            memcpy(ls->nsid, nsid->str, KEYS_NSID_LEN);
            ls->nsid[KEYS_NSID_LEN] = '\0';
            hash = pw->str;
            hash_len = pw->len;
        }
    }
    return start_verify(ctx, hash, hash_len);
}

static enum cmd_status login_verified(struct cmd_ctx *ctx)
{
    struct login_state *ls = ctx->state;
    struct verify_job *job = ctx->job;
    bool ok = ls->known && job->match;
    verify_free(job);
    ctx->job = NULL;
    struct conn *c = ctx->conn;
    const struct config *cfg = conn_frontend(c)->cfg;
    if (!ok) {
        ls->failures = conn_count_auth_failure(c);
        log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s result=fail failures=%u",
                  (unsigned long long)conn_id(c), conn_peer(c),
                  keys_login_valid(ls->login, ls->login_len) ? ls->login : "(invalid)",
                  ls->failures);
        return conn_sleep(ctx, login_failed, cfg->login_fail_delay_ms * ls->failures);
    }
    conn_set_authenticated(c, ls->login, ls->nsid);
    log_write(LOG_INFO, "login", "conn=%llu peer=%s user=%s result=ok", (unsigned long long)conn_id(c),
              conn_peer(c), ls->login);
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

static enum cmd_status login_failed(struct cmd_ctx *ctx)
{
    struct login_state *ls = ctx->state;
    struct conn *c = ctx->conn;
    reply_tagged(ctx, "NO", "AUTHENTICATIONFAILED", "Authentication failed");
    if (ls->failures >= conn_frontend(c)->cfg->max_login_failures) {
        reply_bye(c, NULL, "Too many failed logins");
        conn_close_after_output(c);
    }
    return CMD_DONE;
}

enum cmd_status cmd_login(struct cmd_ctx *ctx)
{
    const struct imap_arg *user = &ctx->args[0];
    const struct imap_arg *pw = &ctx->args[1];
    if (!imap_arg_is_astring(user) || !imap_arg_is_astring(pw)) {
        reply_tagged(ctx, "BAD", NULL, "LOGIN takes a user name and a password");
        return CMD_DONE;
    }
    struct login_state *ls = arena_calloc(ctx->arena, 1, sizeof(*ls));
    ls->login = user->str;
    ls->login_len = user->len;
    ctx->state = ls;
    struct key k;
    if (pw->len > PASSWORD_MAX_LEN || keys_user(&k, user->str, user->len) != 0) {
        const char *dummy = password_dummy_hash();
        return start_verify(ctx, dummy, strlen(dummy)); /* fails, at the same cost */
    }
    const char *argv[] = {"HMGET", k.s, "nsid", "password", "state"};
    const size_t argvlen[] = {5, k.len, 4, 8, 5};
    return conn_redis(ctx, login_got_record, 5, argv, argvlen);
}
