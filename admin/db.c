/*
 * db: blocking hiredis for cimap-admin. One connection per process, opened only when a command
 * actually needs Redis (so usage errors never wait on a network timeout).
 *
 * Error replies are copied into the db object (hiredis replies are freed right away), and sorted
 * into "unavailable" (worth retrying later: EX_TEMPFAIL for an MTA or a cron job) versus "answered
 * with an error". A NOSCRIPT answer to EVALSHA loads the embedded script and retries once; the SHA1
 * Redis computes is checked against the embedded one so a build mismatch cannot go unnoticed.
 *
 * Not done here: AUTH/TLS to Redis, Redis Cluster redirections, pipelining (cimap-admin's work is
 * small and sequential; a big sweep is bounded by batches instead).
 */
#include "admin/db.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

/* Owned by the command that opened it (admin.c keeps the only one). */
struct db {
    redisContext *ctx;
    bool dead;          /* an I/O error or timeout happened: the stream is out of sync */
    bool unavailable;   /* kind of the last failure */
    char error[512];    /* text of the last failure */
};

/* Redis error codes meaning "not now", not "no" (DESIGN.md rule 9). */
static const char *const unavailable_codes[] = {
    "LOADING", "BUSY", "OOM", "READONLY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "MISCONF",
    "NOREPLICAS", "NOTBUSY",
};

static char connect_error[512];

int db_url_parse(const char *url, char **host_r, uint16_t *port_r, uint32_t *db_r,
                 const char **error_r)
{
    static const char scheme[] = "redis://";
    *host_r = NULL;
    if (strncmp(url, scheme, strlen(scheme)) != 0) {
        *error_r = "Redis URL must start with redis://";
        return -1;
    }
    const char *p = url + strlen(scheme);
    const char *host = p;
    size_t host_len;
    if (*p == '[') {
        const char *close = strchr(p, ']');
        if (close == NULL || close == p + 1) {
            *error_r = "Redis URL has a malformed [IPv6] address";
            return -1;
        }
        host = p + 1;
        host_len = (size_t)(close - host);
        p = close + 1;
    } else {
        host_len = strcspn(p, ":/");
        p += host_len;
    }
    if (host_len == 0 || host_len > 253) {
        *error_r = "Redis URL has no host";
        return -1;
    }
    for (size_t i = 0; i < host_len; i++) {
        char c = host[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '-' || c == ':' || c == '_';
        if (!ok) {
            *error_r = "Redis URL has an invalid character in its host";
            return -1;
        }
    }

    unsigned long port = 6379;
    if (*p == ':') {
        p++;
        if (*p < '0' || *p > '9') {
            *error_r = "Redis URL has an invalid port";
            return -1;
        }
        char *end;
        port = strtoul(p, &end, 10);
        if (port == 0 || port > 65535 || end - p > 5) {
            *error_r = "Redis URL has an invalid port";
            return -1;
        }
        p = end;
    }
    unsigned long db = 0;
    if (*p == '/') {
        p++;
        if (*p != '\0') {
            if (*p < '0' || *p > '9') {
                *error_r = "Redis URL has an invalid database number";
                return -1;
            }
            char *end;
            db = strtoul(p, &end, 10);
            if (db > 100000 || end - p > 6) {
                *error_r = "Redis URL has an invalid database number";
                return -1;
            }
            p = end;
        }
    }
    if (*p != '\0') {
        *error_r = "Redis URL has trailing characters (expected redis://HOST:PORT[/DB])";
        return -1;
    }
    char *h = malloc(host_len + 1);
    if (h == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    memcpy(h, host, host_len);
    h[host_len] = '\0';
    *host_r = h;
    *port_r = (uint16_t)port;
    *db_r = (uint32_t)db;
    return 0;
}

static struct timeval ms_to_tv(uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    return tv;
}

int db_connect(const char *url, uint32_t timeout_ms, struct db **db_r, const char **error_r)
{
    *db_r = NULL;
    char *host;
    uint16_t port;
    uint32_t dbnum;
    if (db_url_parse(url, &host, &port, &dbnum, error_r) != 0)
        return -1;

    struct db *d = calloc(1, sizeof(*d));
    if (d == NULL) {
        free(host);
        *error_r = "out of memory";
        return -1;
    }
    struct timeval tv = ms_to_tv(timeout_ms);
    d->ctx = redisConnectWithTimeout(host, port, tv);
    if (d->ctx == NULL || d->ctx->err != 0) {
        snprintf(connect_error, sizeof(connect_error), "cannot connect to Redis at %s:%u: %s",
                 host, (unsigned)port, d->ctx != NULL ? d->ctx->errstr : "out of memory");
        free(host);
        db_free(&d);
        *error_r = connect_error;
        return -1;
    }
    if (redisSetTimeout(d->ctx, tv) != REDIS_OK) {
        snprintf(connect_error, sizeof(connect_error), "cannot set the Redis timeout: %s",
                 d->ctx->errstr);
        free(host);
        db_free(&d);
        *error_r = connect_error;
        return -1;
    }
    free(host);

    if (dbnum != 0) {
        char num[16];
        int n = snprintf(num, sizeof(num), "%u", (unsigned)dbnum);
        const char *argv[] = {"SELECT", num};
        const size_t argvlen[] = {6, (size_t)n};
        redisReply *reply;
        const char *error;
        if (db_command(d, 2, argv, argvlen, &reply, &error) != 0) {
            snprintf(connect_error, sizeof(connect_error), "cannot select Redis database %u: %s",
                     (unsigned)dbnum, error);
            db_free(&d);
            *error_r = connect_error;
            return -1;
        }
        freeReplyObject(reply);
    }
    *db_r = d;
    return 0;
}

void db_free(struct db **dp)
{
    struct db *d = *dp;
    if (d == NULL)
        return;
    *dp = NULL;
    if (d->ctx != NULL)
        redisFree(d->ctx);
    free(d);
}

static bool is_unavailable_code(const char *str, size_t len)
{
    size_t word = 0;
    while (word < len && str[word] != ' ')
        word++;
    for (size_t i = 0; i < sizeof(unavailable_codes) / sizeof(unavailable_codes[0]); i++) {
        if (strlen(unavailable_codes[i]) == word && memcmp(str, unavailable_codes[i], word) == 0)
            return true;
    }
    return false;
}

int db_command(struct db *d, size_t argc, const char *const *argv, const size_t *argvlen,
               redisReply **reply_r, const char **error_r)
{
    *reply_r = NULL;
    if (d->dead) {
        d->unavailable = true;
        *error_r = d->error;
        return -1;
    }
    if (argc > INT_MAX) {
        d->unavailable = false;
        snprintf(d->error, sizeof(d->error), "too many arguments");
        *error_r = d->error;
        return -1;
    }
    redisReply *reply = redisCommandArgv(d->ctx, (int)argc, (const char **)argv, argvlen);
    if (reply == NULL) {
        d->dead = true;
        d->unavailable = true;
        snprintf(d->error, sizeof(d->error), "Redis connection failed: %s",
                 d->ctx->err != 0 ? d->ctx->errstr : "no reply");
        *error_r = d->error;
        return -1;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        d->unavailable = is_unavailable_code(reply->str, reply->len);
        snprintf(d->error, sizeof(d->error), "%.*s", (int)(reply->len < 400 ? reply->len : 400),
                 reply->str);
        freeReplyObject(reply);
        *error_r = d->error;
        return -1;
    }
    *reply_r = reply;
    return 0;
}

/* SCRIPT LOAD the embedded script and check Redis computes the same SHA1. */
static int script_load(struct db *d, const struct lua_script *s, const char **error_r)
{
    const char *argv[] = {"SCRIPT", "LOAD", s->body};
    const size_t argvlen[] = {6, 4, s->len};
    redisReply *reply;
    if (db_command(d, 3, argv, argvlen, &reply, error_r) != 0)
        return -1;
    bool same = reply->type == REDIS_REPLY_STRING && reply->len == 40 &&
                memcmp(reply->str, s->sha1, 40) == 0;
    freeReplyObject(reply);
    if (!same) {
        d->unavailable = false;
        snprintf(d->error, sizeof(d->error), "Redis disagrees on the SHA1 of script %s", s->name);
        *error_r = d->error;
        return -1;
    }
    return 0;
}

int db_script(struct db *d, enum lua_script_id id, size_t nkeys, const char *const *keys,
              const size_t *keylen, size_t nargs, const char *const *args, const size_t *arglen,
              redisReply **reply_r, const char **error_r)
{
    *reply_r = NULL;
    const struct lua_script *s = &lua_scripts[id];
    size_t argc = 3 + nkeys + nargs;
    const char **argv = malloc(argc * sizeof(*argv));
    size_t *argvlen = malloc(argc * sizeof(*argvlen));
    if (argv == NULL || argvlen == NULL) {
        free(argv);
        free(argvlen);
        d->unavailable = false;
        snprintf(d->error, sizeof(d->error), "out of memory");
        *error_r = d->error;
        return -1;
    }
    char nkeys_s[24];
    int n = snprintf(nkeys_s, sizeof(nkeys_s), "%zu", nkeys);
    argv[0] = "EVALSHA";
    argvlen[0] = 7;
    argv[1] = s->sha1;
    argvlen[1] = 40;
    argv[2] = nkeys_s;
    argvlen[2] = (size_t)n;
    for (size_t i = 0; i < nkeys; i++) {
        argv[3 + i] = keys[i];
        argvlen[3 + i] = keylen[i];
    }
    for (size_t i = 0; i < nargs; i++) {
        argv[3 + nkeys + i] = args[i];
        argvlen[3 + nkeys + i] = arglen[i];
    }

    int rc = db_command(d, argc, argv, argvlen, reply_r, error_r);
    if (rc != 0 && db_error_is(d, "NOSCRIPT")) {
        rc = script_load(d, s, error_r);
        if (rc == 0)
            rc = db_command(d, argc, argv, argvlen, reply_r, error_r);
    }
    free(argv);
    free(argvlen);
    return rc;
}

bool db_unavailable(const struct db *d)
{
    return d->unavailable;
}

bool db_error_is(const struct db *d, const char *code)
{
    size_t n = strlen(code);
    return !d->unavailable && strncmp(d->error, code, n) == 0 &&
           (d->error[n] == ' ' || d->error[n] == '\0');
}
