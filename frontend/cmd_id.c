/*
 * ID (RFC 2971): validates the client's parameter list (NIL or a list of string pairs, keys at
 * most 30 bytes, values at most 1024, at most 30 pairs), logs what the client says it is, and
 * answers with the server's own identification.
 */
#include <event2/buffer.h>

#include "frontend/commands.h"
#include "frontend/log.h"
#include "frontend/reply.h"

#define ID_MAX_PAIRS 30
#define ID_MAX_KEY 30
#define ID_MAX_VALUE 1024

static bool is_string(const struct imap_arg *a)
{
    return (a->type == IMAP_ARG_QUOTED || a->type == IMAP_ARG_LITERAL) && !a->streamed;
}

enum cmd_status cmd_id(struct cmd_ctx *ctx)
{
    const struct imap_arg *list = &ctx->args[0];
    if (list->type == IMAP_ARG_LIST) {
        if (list->count % 2 != 0 || list->count / 2 > ID_MAX_PAIRS) {
            reply_tagged(ctx, "BAD", NULL, "ID takes up to 30 field/value pairs");
            return CMD_DONE;
        }
        for (size_t i = 0; i < list->count; i += 2) {
            const struct imap_arg *k = &list->list[i];
            const struct imap_arg *v = &list->list[i + 1];
            if (!is_string(k) || k->len > ID_MAX_KEY ||
                !(v->type == IMAP_ARG_NIL || (is_string(v) && v->len <= ID_MAX_VALUE))) {
                reply_tagged(ctx, "BAD", NULL, "Malformed ID field");
                return CMD_DONE;
            }
        }
        if (log_enabled(LOG_INFO)) {
            /* One logfmt value: "name=Thunderbird; version=115.0". */
            struct evbuffer *b = evbuffer_new();
            if (b == NULL)
                return CMD_ERR;
            for (size_t i = 0; i < list->count; i += 2) {
                const struct imap_arg *v = &list->list[i + 1];
                evbuffer_add_printf(b, "%s%.*s=", i > 0 ? "; " : "", (int)list->list[i].len,
                                    list->list[i].str);
                if (v->type == IMAP_ARG_NIL)
                    evbuffer_add(b, "NIL", 3);
                else
                    evbuffer_add(b, v->str, v->len);
            }
            char q[512];
            size_t len = evbuffer_get_length(b);
            log_write(LOG_INFO, "client.id", "conn=%llu id=%s", (unsigned long long)conn_id(ctx->conn),
                      log_quote(q, sizeof(q), (const char *)evbuffer_pullup(b, -1), len));
            evbuffer_free(b);
        }
    } else if (list->type != IMAP_ARG_NIL) {
        reply_tagged(ctx, "BAD", NULL, "ID takes a list or NIL");
        return CMD_DONE;
    }
    reply_untagged(ctx->conn, "ID (\"name\" \"cimap\" \"version\" \"%s\" \"vendor\" \"cimap\")",
                   CIMAP_VERSION);
    reply_tagged(ctx, "OK", NULL, "ID completed");
    return CMD_DONE;
}
