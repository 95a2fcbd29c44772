/*
 * APPEND and MULTIAPPEND (RFC 3501 §6.3.11, RFC 3502), with APPENDUID (RFC 4315) and APPENDLIMIT
 * (RFC 7889).
 *
 * APPEND has literal hooks, so it starts at its first message literal:
 *   - each literal is checked before it is read: flags, date-time and size (NO [TOOBIG] before a
 *     synchronizing literal is sent at all);
 *   - a small message (<= APPEND_INLINE_MAX) stays in the command's arena and goes to the append
 *     script as an argument;
 *   - a larger one is streamed: its bytes feed the MIME parser and SHA-256 as they arrive and are
 *     written in 256 KiB chunks to a staging key with a TTL (staging_append.lua), at most one write
 *     in flight and at most two chunks buffered per connection — input pauses otherwise — so a
 *     50 MB message is never held in memory, and never copied into script arguments.
 * When the command line is complete, every message is parsed (DESIGN.md rule 6: the parse, its
 * ENVELOPE and BODYSTRUCTURE are stored beside the bytes), the mailbox name is resolved, and one
 * append.lua call stores them all or none.
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <openssl/evp.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/flags.h"
#include "frontend/frontend.h"
#include "frontend/imapdate.h"
#include "frontend/limits.h"
#include "frontend/log.h"
#include "frontend/mail/mail.h"
#include "frontend/mailbox.h"
#include "frontend/mboxname.h"
#include "frontend/msgprep.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "frontend/updates.h"
#include "frontend/user_limits.h"
#include "keys/keys.h"

#define APPEND_INLINE_MAX (256 * 1024) /* larger messages stream through a staging key */
#define STAGING_CHUNK (256 * 1024)
#define STAGING_TTL "3600"
#define APPEND_MAX_MESSAGES 1000       /* per MULTIAPPEND */
#define APPEND_MAX_MAILBOX_LITERAL 1024

struct append_msg {
    const char *flags;   /* canonical, arena */
    char date[24];       /* unix seconds as text, or "" for now */
    uint64_t size;
    size_t arg;          /* index of its literal in the final arguments */
    bool streamed;
    char staging_id[KEYS_STAGING_LEN + 1];
    struct mail_parser *parser; /* streamed: fed as bytes arrive */
    EVP_MD_CTX *sha;            /* streamed: fed as bytes arrive */
    uint64_t received;
    struct msgprep prep;        /* what is stored beside the bytes */
};

struct append_state {
    const char *mailbox;         /* normalised name, arena */
    struct append_msg *msgs;     /* malloc'd array */
    size_t n;
    size_t next_arg;             /* first argument of the next message (flags/date) */
    struct evbuffer *pending;    /* streamed bytes not yet written to staging */
    bool writing;                /* a staging write is in flight */
    bool failed;                 /* a staging write failed: answer NO at the end */
    char fail_text[160];
    char mbxid[KEYS_MBXID_LEN + 1];
    const char *ok_text;         /* the tagged OK, once stored (arena) */
};

static void append_cleanup(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    if (st == NULL)
        return;
    for (size_t i = 0; i < st->n; i++) {
        struct append_msg *m = &st->msgs[i];
        mail_parser_free(&m->parser);
        EVP_MD_CTX_free(m->sha);
        msgprep_free(&m->prep);
    }
    free(st->msgs);
    if (st->pending != NULL)
        evbuffer_free(st->pending);
    ctx->state = NULL;
}

static uint64_t append_limit(const struct cmd_ctx *ctx)
{
    return conn_frontend(ctx->conn)->cfg->append_limit;
}

/* Checks the flags and date that precede a message literal: args[from..to). */
static bool message_options(struct cmd_ctx *ctx, const struct imap_arg *args, size_t from,
                            size_t to, struct append_msg *m, const char **error_r)
{
    m->flags = "";
    m->date[0] = '\0';
    size_t i = from;
    if (i < to && args[i].type == IMAP_ARG_LIST) {
        m->flags = flags_canonical(ctx->arena, &args[i], false, error_r);
        if (m->flags == NULL)
            return false;
        i++;
    }
    if (i < to && args[i].type == IMAP_ARG_QUOTED) {
        int64_t t = 0;
        if (imapdate_parse(args[i].str, args[i].len, &t) != 0 || t < 0) {
            *error_r = "Invalid date-time";
            return false;
        }
        snprintf(m->date, sizeof(m->date), "%" PRId64, t);
        i++;
    }
    if (i != to) {
        *error_r = "Expected flags, date-time and a message literal";
        return false;
    }
    return true;
}

static enum lit_decision reject(struct cmd_ctx *ctx, const char *status, const char *code,
                                const char *text)
{
    reply_tagged(ctx, status, code, "%s", text);
    return LIT_REJECT;
}

enum lit_decision cmd_append_literal(struct cmd_ctx *ctx, const struct parser_literal_info *li)
{
    struct append_state *st = ctx->state;
    if (st == NULL) {
        st = arena_calloc(ctx->arena, 1, sizeof(*st));
        ctx->state = st;
        ctx->cleanup = append_cleanup;
        st->pending = evbuffer_new();
        if (st->pending == NULL)
            abort();
        st->next_arg = 1;
    }
    if (li->argc == 0) { /* the mailbox name itself as a literal */
        if (li->size > APPEND_MAX_MAILBOX_LITERAL)
            return reject(ctx, "BAD", NULL, "Mailbox name too long");
        return LIT_ACCEPT;
    }
    if (st->mailbox == NULL) {
        const char *raw = NULL;
        size_t raw_len = 0;
        const char *code = NULL, *error = NULL;
        if (!cmd_arg_astring(&li->args[0], &raw, &raw_len))
            return reject(ctx, "BAD", NULL, "APPEND takes a mailbox name");
        (void)code;
        const char *name = mboxname_normalize(ctx->arena, raw, raw_len, &error);
        if (name == NULL) /* a name that can never exist: creating it would not help */
            return reject(ctx, "NO", "CANNOT", error);
        st->mailbox = name;
    }
    if (st->n >= APPEND_MAX_MESSAGES)
        return reject(ctx, "NO", "LIMIT", "Too many messages in one APPEND");
    if (li->size == 0)
        return reject(ctx, "NO", NULL, "Empty message");
    if (li->size > append_limit(ctx))
        return reject(ctx, "NO", "TOOBIG", "Message larger than APPENDLIMIT");
    struct append_msg m;
    memset(&m, 0, sizeof(m));
    const char *error = NULL;
    if (!message_options(ctx, li->args, st->next_arg, li->argc, &m, &error))
        return reject(ctx, "BAD", NULL, error);
    m.size = li->size;
    m.arg = li->argc;
    st->next_arg = li->argc + 1;
    struct append_msg *grown = realloc(st->msgs, (st->n + 1) * sizeof(*grown));
    if (grown == NULL)
        abort();
    st->msgs = grown;
    if (li->size <= APPEND_INLINE_MAX) {
        st->msgs[st->n++] = m;
        return LIT_ACCEPT;
    }
    m.streamed = true;
    keys_staging_id_new(m.staging_id);
    m.parser = mail_parser_new(NULL);
    m.sha = EVP_MD_CTX_new();
    if (m.sha == NULL || EVP_DigestInit_ex(m.sha, EVP_sha256(), NULL) != 1)
        abort();
    st->msgs[st->n++] = m;
    return LIT_STREAM;
}

static enum cmd_status staging_written(struct cmd_ctx *ctx);

/* Sends the next staging chunk of the message being streamed (the last one). */
static void staging_write(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    struct append_msg *m = &st->msgs[st->n - 1];
    size_t len = evbuffer_get_length(st->pending);
    if (len > STAGING_CHUNK)
        len = STAGING_CHUNK;
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, staging;
    keys_ns_meta(&meta, nsid);
    keys_staging(&staging, nsid, m->staging_id);
    const char *chunk = (const char *)evbuffer_pullup(st->pending, (ssize_t)len);
    const char *argv[] = {meta.s, staging.s, chunk, STAGING_TTL};
    const size_t argvlen[] = {meta.len, staging.len, len, strlen(STAGING_TTL)};
    st->writing = true;
    (void)conn_eval(ctx, staging_written, LUA_SCRIPT_STAGING_APPEND, 2, 4, argv, argvlen);
    evbuffer_drain(st->pending, len); /* hiredis copied the command */
}

static bool streamed_done(const struct append_state *st)
{
    const struct append_msg *m = &st->msgs[st->n - 1];
    return m->received == m->size;
}

static enum cmd_status staging_written(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    st->writing = false;
    if (res->status != STORE_OK && !st->failed) {
        st->failed = true;
        snprintf(st->fail_text, sizeof(st->fail_text), "%s", res->error);
        evbuffer_drain(st->pending, evbuffer_get_length(st->pending));
    }
    conn_resume_input(ctx);
    size_t pending = evbuffer_get_length(st->pending);
    if (!st->failed && (pending >= STAGING_CHUNK || (pending > 0 && streamed_done(st)))) {
        staging_write(ctx);
        return CMD_WAIT;
    }
    return CMD_WAIT; /* the rest of the line, or (if complete) the connection runs cmd_append */
}

bool cmd_append_literal_data(struct cmd_ctx *ctx, const uint8_t *data, size_t len, bool last)
{
    struct append_state *st = ctx->state;
    struct append_msg *m = &st->msgs[st->n - 1];
    m->received += len;
    if (st->failed)
        return false; /* read and drop the rest; the command answers NO */
    mail_parser_feed(m->parser, data, len);
    if (EVP_DigestUpdate(m->sha, data, len) != 1)
        abort();
    evbuffer_add(st->pending, data, len);
    if (last) {
        unsigned char md[32];
        unsigned int mdlen = 0;
        if (EVP_DigestFinal_ex(m->sha, md, &mdlen) != 1 || mdlen != 32)
            abort();
        msgprep_hex(md, m->prep.sha_hex);
    }
    size_t pending = evbuffer_get_length(st->pending);
    if (!st->writing && (pending >= STAGING_CHUNK || (last && pending > 0)))
        staging_write(ctx);
    return evbuffer_get_length(st->pending) >= 2 * STAGING_CHUNK;
}

/* Parses (inline) or finishes (streamed) one message and renders what is stored beside it. */
static int prepare_message(struct cmd_ctx *ctx, struct append_msg *m, const char **error_r)
{
    if (!m->streamed) {
        const struct imap_arg *lit = &ctx->args[m->arg];
        return msgprep_bytes(&m->prep, (const uint8_t *)lit->str, lit->len, error_r);
    }
    if (m->received != m->size) {
        *error_r = "incomplete message";
        return -1;
    }
    if (mail_parser_finish(m->parser, &m->prep.blob, error_r) != 0)
        return -1;
    mail_parser_free(&m->parser);
    return msgprep_render(&m->prep, error_r);
}

static enum cmd_status append_reply(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    reply_tagged(ctx, "OK", NULL, "%s", st->ok_text);
    return CMD_DONE;
}

static enum cmd_status append_stored(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return cmd_store_failed(ctx, res, "APPEND");
    if (!cmd_reply_is_array(res, 4)) {
        reply_tagged(ctx, "NO", "SERVERBUG", "APPEND failed: unexpected reply");
        return CMD_DONE;
    }
    const redisReply *r = res->reply;
    long long uidvalidity = r->element[0]->integer;
    long long first = r->element[1]->integer;
    long long last = r->element[2]->integer;
    if (first == last)
        st->ok_text = arena_printf(ctx->arena, "[APPENDUID %lld %lld] APPEND completed", uidvalidity,
                                   first);
    else
        st->ok_text = arena_printf(ctx->arena, "[APPENDUID %lld %lld:%lld] APPEND completed",
                                   uidvalidity, first, last);
    /* RFC 3501 §6.3.11: appending to the selected mailbox announces the new messages (EXISTS)
     * before the tagged OK, so the client can use the APPENDUID at once. */
    const struct selected *sel = conn_selected(ctx->conn);
    if (sel != NULL && strcmp(sel->mbxid, st->mbxid) == 0)
        return updates_run(ctx, append_reply);
    return append_reply(ctx);
}

static enum cmd_status append_commit(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    struct append_item *items = arena_calloc(ctx->arena, st->n, sizeof(*items));
    for (size_t i = 0; i < st->n; i++) {
        const struct append_msg *m = &st->msgs[i];
        items[i].prep = &m->prep;
        items[i].size = m->size;
        items[i].date = m->date;
        items[i].flags = m->flags;
        if (m->streamed) {
            items[i].staging_id = m->staging_id;
        } else {
            items[i].raw = ctx->args[m->arg].str;
            items[i].raw_len = ctx->args[m->arg].len;
        }
    }
    /* The user's quotas and keyword limit (param:* of the user record; no quota by default). */
    const struct user_limits *u = conn_user_limits(ctx->conn);
    const struct append_limits limits = {u->quota_bytes, u->quota_messages, u->max_keywords};
    struct append_call call;
    append_call_build(ctx->arena, conn_nsid(ctx->conn), st->mbxid, &limits, items, st->n, &call);
    return conn_eval(ctx, append_stored, LUA_SCRIPT_APPEND, call.nkeys, call.argc, call.argv,
                     call.argvlen);
}

static enum cmd_status append_got_mailbox(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    if (st->mbxid[0] == '\0') {
        reply_tagged(ctx, "NO", "TRYCREATE", "No such mailbox");
        return CMD_DONE;
    }
    return append_commit(ctx);
}

enum cmd_status cmd_append(struct cmd_ctx *ctx)
{
    struct append_state *st = ctx->state;
    if (st == NULL || st->n == 0 || st->mailbox == NULL) {
        reply_tagged(ctx, "BAD", NULL, "APPEND takes a mailbox and a message literal");
        return CMD_DONE;
    }
    /* The line must end with the last message: nothing after its literal. */
    if (st->next_arg != ctx->argc) {
        reply_tagged(ctx, "BAD", NULL, "Unexpected arguments after the message");
        return CMD_DONE;
    }
    if (st->failed) {
        reply_tagged(ctx, "NO", "UNAVAILABLE", "APPEND failed: %s, try again later", st->fail_text);
        return CMD_DONE;
    }
    for (size_t i = 0; i < st->n; i++) {
        const char *error = NULL;
        if (prepare_message(ctx, &st->msgs[i], &error) != 0) {
            log_write(LOG_WARN, "append.parse_failed", "conn=%llu error=\"%s\"",
                      (unsigned long long)conn_id(ctx->conn), error);
            reply_tagged(ctx, "NO", "CANNOT", "Message cannot be stored: %s", error);
            return CMD_DONE;
        }
    }
    return mailbox_lookup(ctx, st->mailbox, st->mbxid, append_got_mailbox);
}

