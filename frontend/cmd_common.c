/*
 * Helpers shared by command handlers. The error mapping is the one place that turns a script's
 * "<CODE> <text>" error (keys/README.md "Scripts") into an IMAP response code.
 */
#include "frontend/cmd_common.h"

#include <string.h>

#include "frontend/log.h"
#include "frontend/reply.h"

/* Codes a script may answer with that go to the client as they are. */
static const char *const client_codes[] = {
    "NONEXISTENT", "ALREADYEXISTS", "TRYCREATE", "OVERQUOTA", "LIMIT", "CANNOT",
    "TOOBIG",      "INUSE",         "NOPERM",    "EXPUNGEISSUED", "UNKNOWN-CTE",
};

enum cmd_status cmd_store_failed(struct cmd_ctx *ctx, const struct store_result *res,
                                 const char *what)
{
    const char *err = res->error != NULL ? res->error : "unknown error";
    if (res->status == STORE_UNAVAILABLE) {
        reply_tagged(ctx, "NO", "UNAVAILABLE", "%s failed: %s, try again later", what, err);
        return CMD_DONE;
    }
    if (res->status == STORE_OK) {
        log_write(LOG_ERROR, "store.unexpected_reply", "conn=%llu what=%s",
                  (unsigned long long)conn_id(ctx->conn), what);
        reply_tagged(ctx, "NO", "SERVERBUG", "%s failed: unexpected reply", what);
        return CMD_DONE;
    }
    const char *space = strchr(err, ' ');
    size_t code_len = space != NULL ? (size_t)(space - err) : strlen(err);
    for (size_t i = 0; i < sizeof(client_codes) / sizeof(client_codes[0]); i++) {
        if (strlen(client_codes[i]) == code_len && memcmp(err, client_codes[i], code_len) == 0) {
            reply_tagged(ctx, "NO", client_codes[i], "%s", space != NULL ? space + 1 : what);
            return CMD_DONE;
        }
    }
    char q[300];
    log_write(LOG_ERROR, "store.script_error", "conn=%llu what=%s error=%s",
              (unsigned long long)conn_id(ctx->conn), what, log_quote(q, sizeof(q), err, strlen(err)));
    reply_tagged(ctx, "NO", "SERVERBUG", "%s failed", what);
    return CMD_DONE;
}

bool cmd_reply_is_array(const struct store_result *res, size_t n)
{
    return res->status == STORE_OK && res->reply != NULL &&
           res->reply->type == REDIS_REPLY_ARRAY && res->reply->elements >= n;
}

bool cmd_reply_u64(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0)
            return false;
        *out = (uint64_t)r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < r->len; i++) {
        if (r->str[i] < '0' || r->str[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(r->str[i] - '0');
    }
    *out = v;
    return true;
}

bool cmd_reply_u32(const redisReply *r, uint32_t *out)
{
    uint64_t v = 0;
    if (!cmd_reply_u64(r, &v) || v > UINT32_MAX)
        return false;
    *out = (uint32_t)v;
    return true;
}

bool cmd_arg_astring(const struct imap_arg *arg, const char **s_r, size_t *len_r)
{
    switch (arg->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_QUOTED:
        break;
    case IMAP_ARG_LITERAL:
        if (arg->streamed)
            return false;
        break;
    case IMAP_ARG_NIL:
        *s_r = "NIL";
        *len_r = 3;
        return true;
    case IMAP_ARG_LIST:
        return false;
    }
    *s_r = arg->str;
    *len_r = arg->len;
    return true;
}
