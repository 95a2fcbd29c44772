/*
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 3516 BINARY; RFC 8474 EMAILID/THREADID),
 * streamed in bounded batches (DESIGN.md rule 5, "Request flow").
 *
 * Shape. The item argument becomes a plan (fetch_att.c) that says which columns each message
 * needs. The sequence set is walked in batches of FETCH_BATCH messages:
 *   1. one MULTI/EXEC reads the batch's columns: HMGET msg (content id, internaldate, size,
 *      object ids) and/or HMGET flags, or ZMSCORE uids when only existence is needed;
 *   2. a non-PEEK body item in a read-write session sets \Seen on the batch's messages that lack
 *      it through store.lua (mode add) — one script call per batch — and those messages answer
 *      their new FLAGS (RFC 3501 §6.4.5);
 *   3. content fields (env, bs, parse) are read for windows of messages (one MULTI/EXEC each,
 *      smaller windows when parses are read since they are the larger values);
 *   4. body items are resolved to byte ranges from the stored parse (never re-parsed, rule 6).
 *      Consecutive messages whose ranges are small are read together, one GETRANGE per range in
 *      one MULTI/EXEC of at most FETCH_DATA_BUDGET bytes, and written while the reply is in hand;
 *      a message reading more than FETCH_SMALL is streamed alone: its literal header first, then
 *      FETCH_CHUNK GETRANGEs, each written as it arrives (base64/QP decoded on the fly for
 *      BINARY) with conn_wait_drain whenever the client's output is over the high-water mark.
 * Every step does bounded work and ends in a Redis round trip or an output drain, so other
 * clients of the front end keep being served; memory is bounded by the batch and window sizes
 * (three arenas reset per batch / window), never by the message count or a message's size.
 *
 * Vanished messages (RFC 2180 §4.1, RFC 5530). A message the view still holds but whose record is
 * gone (another session expunged it) is left out: UID FETCH simply omits it (RFC 3501 §6.4.8,
 * non-existent UIDs are ignored); FETCH omits it too and ends with
 * "NO [EXPUNGEISSUED]" after answering every message that still exists (RFC 2180 §4.1.2's
 * choice, which tells the client to NOOP to learn of the expunge). The same holds for a message
 * whose content disappears between reads.
 *
 * BINARY of a part with an unknown Content-Transfer-Encoding (and BINARY.SIZE of one) leaves the
 * message out and ends with "NO [UNKNOWN-CTE]" (RFC 3516 §4.3); the other messages are answered.
 * \Seen is set before the data is read; a message that later fails keeps it.
 *
 * Not here: MODSEQ and CHANGEDSINCE (CONDSTORE is not advertised yet), IMAP4rev2 NIL rules.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/fetch_att.h"
#include "frontend/fetch_render.h"
#include "frontend/log.h"
#include "frontend/msgset.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "keys/keys.h"
#include "lua/scripts.h"

#define FETCH_BATCH 1000                 /* messages per column read (and per store.lua call) */
#define FETCH_BATCH_COLUMNS 4000         /* the same when only columns are answered (FLAGS, UID, ...):
                                          * small replies, and fewer round trips matter most here */
#define FETCH_WINDOW_PARSE 64            /* messages per content read that includes parses */
#define FETCH_WINDOW_FIELDS 500          /* messages per content read of env/bs only */
#define FETCH_SMALL (256 * 1024)         /* a message reading more is streamed alone */
#define FETCH_DATA_BUDGET (1024 * 1024)  /* raw bytes per GETRANGE transaction */
#define FETCH_DATA_MSGS 256              /* messages per GETRANGE transaction */
#define FETCH_CHUNK (256 * 1024)         /* one GETRANGE while streaming */
#define FETCH_FILTER_MAX (16u << 20)     /* largest header filtered by hand */
#define FETCH_DECODE_SLICE (64 * 1024)   /* bytes decoded at a time while streaming */

struct fetch_state {
    struct fetch_plan plan;
    struct seqset seqs;
    size_t range;                 /* current range of seqs */
    uint32_t next_seq;            /* next sequence number to take from it (0: range not started) */
    const char *nsid;             /* the connection's (stable while the command runs) */
    struct selected *sel;
    struct arena *batch;          /* per batch: messages, their strings, command arguments */
    struct arena *window;         /* per content window: env/bs/parse copies */
    struct arena *data;           /* per data window / streamed message: sources, arguments */
    struct arena *io;             /* one streamed read's arguments */
    uint8_t *dec_out;             /* DECODE while streaming: FETCH_DECODE_SLICE + slack bytes */
    struct fetch_msg *msgs;       /* the batch */
    size_t batch_size;            /* messages per batch */
    const char **uids;            /* the batch's UIDs as text (batch arena) */
    size_t *uid_lens;
    size_t n;
    size_t i;                     /* next message to answer */
    size_t cw_start, cw_end;      /* content window: msgs[cw_start..cw_end) have their content */
    size_t dw_end;                /* data window being read: msgs[i..dw_end) */
    struct fetch_source **srcs;   /* per message of the data window: one source per item */
    size_t *first_read;           /* per message of the data window: index of its first read */
    struct mail_pieces pieces;    /* scratch for fetch_source_resolve */
    struct mail_buf buf;          /* scratch for fetch_source_write and decoding */
    struct evbuffer *line;        /* the response being built */
    /* Streaming one large message (msgs[i]). */
    struct fetch_source *s_srcs;
    size_t s_att;                 /* item being written */
    bool s_literal;               /* inside a streamed literal */
    size_t s_piece;
    uint64_t s_off;               /* offset inside the current piece */
    uint64_t s_emitted;           /* literal bytes written */
    uint64_t s_decoded;           /* DECODE: decoded bytes produced so far */
    uint64_t s_want;              /* bytes requested by the GETRANGE in flight */
    struct mail_decoder dec;
    /* Outcome. */
    bool vanished;                /* a message left out because its record or content is gone */
    bool unknown_cte;
    bool warned_no_store;
};

static enum cmd_status fetch_run(struct cmd_ctx *ctx);
static enum cmd_status fetch_stream(struct cmd_ctx *ctx);

/* ------------------------------------------------------------------ helpers */

static void close_views(struct fetch_state *st)
{
    for (size_t k = st->cw_start; k < st->cw_end && k < st->n; k++)
        mail_view_free(&st->msgs[k].view);
    st->cw_start = st->cw_end = 0;
}

static void fetch_cleanup(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (st == NULL)
        return;
    close_views(st);
    fetch_plan_free(&st->plan);
    mail_pieces_free(&st->pieces);
    mail_buf_free(&st->buf);
    arena_free(&st->batch);
    arena_free(&st->window);
    arena_free(&st->data);
    arena_free(&st->io);
    free(st->dec_out);
    if (st->line != NULL)
        evbuffer_free(st->line);
    ctx->state = NULL;
}

static bool reply_u64(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER) {
        if (r->integer < 0)
            return false;
        *out = (uint64_t)r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return false;
    uint64_t v = 0;
    for (size_t k = 0; k < r->len; k++) {
        if (r->str[k] < '0' || r->str[k] > '9')
            return false;
        v = v * 10 + (uint64_t)(r->str[k] - '0');
    }
    *out = v;
    return true;
}

/* True when a stored flag list (space-separated) holds \Seen. */
static bool flags_have_seen(const char *flags, size_t len)
{
    size_t start = 0;
    for (size_t k = 0; k <= len; k++) {
        if (k == len || flags[k] == ' ') {
            if (k - start == 5 && strncasecmp(flags + start, "\\Seen", 5) == 0)
                return true;
            start = k + 1;
        }
    }
    return false;
}

static const char *uid_text(struct arena *a, uint32_t uid, size_t *len_r)
{
    char *s = arena_printf(a, "%" PRIu32, uid);
    *len_r = strlen(s);
    return s;
}

/* Parses a msg record "<sha256> <internaldate> <size> <emailid> <threadid>" into m. */
static bool parse_record(struct arena *a, const redisReply *r, struct fetch_msg *m)
{
    if (r->type != REDIS_REPLY_STRING)
        return false;
    const char *f[5] = {0};
    size_t flen[5] = {0};
    size_t nf = 0, start = 0;
    for (size_t k = 0; k <= r->len && nf < 5; k++) {
        if (k == r->len || r->str[k] == ' ') {
            f[nf] = r->str + start;
            flen[nf] = k - start;
            nf++;
            start = k + 1;
        }
    }
    if (nf < 3 || !keys_hex_valid(f[0], flen[0], KEYS_SHA256_LEN))
        return false;
    char num[24];
    if (flen[1] == 0 || flen[1] >= sizeof(num) || flen[2] == 0 || flen[2] >= sizeof(num))
        return false;
    memcpy(num, f[1], flen[1]);
    num[flen[1]] = '\0';
    char *end = NULL;
    long long date = strtoll(num, &end, 10);
    if (*end != '\0')
        return false;
    memcpy(num, f[2], flen[2]);
    num[flen[2]] = '\0';
    unsigned long long size = strtoull(num, &end, 10);
    if (*end != '\0')
        return false;
    m->sha = arena_strndup(a, f[0], flen[0]);
    m->internaldate = date;
    m->size = size;
    m->emailid = nf > 3 ? arena_strndup(a, f[3], flen[3]) : "";
    m->threadid = nf > 4 ? arena_strndup(a, f[4], flen[4]) : "";
    return true;
}

/* The message of the batch with uid (the batch is in ascending UID order), or NULL. */
static struct fetch_msg *find_uid(struct fetch_state *st, uint32_t uid)
{
    size_t lo = 0, hi = st->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (st->msgs[mid].uid == uid)
            return &st->msgs[mid];
        if (st->msgs[mid].uid < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* ------------------------------------------------------------------ finishing */

static enum cmd_status fetch_finish(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const char *name = ctx->uid ? "UID FETCH" : "FETCH";
    if (st->unknown_cte)
        reply_tagged(ctx, "NO", "UNKNOWN-CTE", "Some parts have an unknown transfer encoding");
    else if (st->vanished && !ctx->uid)
        reply_tagged(ctx, "NO", "EXPUNGEISSUED", "Some messages were expunged meanwhile");
    else
        reply_tagged(ctx, "OK", NULL, "%s completed", name);
    return CMD_DONE;
}

/* ------------------------------------------------------------------ 1. columns */

static enum cmd_status fetch_got_columns(struct cmd_ctx *ctx);

/* Takes the next batch of messages from the sequence set; false when there is none. */
static bool next_batch(struct fetch_state *st)
{
    close_views(st);
    arena_reset(st->batch);
    arena_reset(st->window);
    arena_reset(st->data);
    st->n = st->i = st->dw_end = 0;
    st->msgs = arena_calloc(st->batch, st->batch_size, sizeof(*st->msgs));
    while (st->n < st->batch_size && st->range < st->seqs.count) {
        const struct seqset_range *r = &st->seqs.ranges[st->range];
        if (st->next_seq == 0)
            st->next_seq = r->first;
        uint32_t seq = st->next_seq;
        struct fetch_msg *m = &st->msgs[st->n];
        m->seq = seq;
        m->uid = view_uid(st->sel->view, seq);
        if (m->uid != 0)
            st->n++;
        if (seq == r->last) {
            st->range++;
            st->next_seq = 0;
        } else {
            st->next_seq = seq + 1;
        }
    }
    return st->n > 0;
}

static enum cmd_status fetch_read_columns(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (!next_batch(st))
        return fetch_finish(ctx);
    struct arena *a = st->batch;
    int argc[2];
    const char **argv[2];
    size_t *argvlen[2];
    size_t ncmd = 0;
    enum keys_mbx_part parts[2];
    const char *verbs[2];
    if (st->plan.need_msg) {
        parts[ncmd] = KEYS_MBX_MSG;
        verbs[ncmd++] = "HMGET";
    } else {
        /* Existence is free when nothing changed since the view was built (see got_columns). */
        parts[ncmd] = KEYS_MBX;
        verbs[ncmd++] = "HGET";
    }
    if (st->plan.need_flags) {
        parts[ncmd] = KEYS_MBX_FLAGS;
        verbs[ncmd++] = "HMGET";
    }
    const char **uids = arena_calloc(a, st->n, sizeof(*uids));
    size_t *uid_lens = arena_calloc(a, st->n, sizeof(*uid_lens));
    for (size_t k = 0; k < st->n; k++)
        uids[k] = uid_text(a, st->msgs[k].uid, &uid_lens[k]);
    st->uids = uids;
    st->uid_lens = uid_lens;
    for (size_t c = 0; c < ncmd; c++) {
        struct key *key = arena_alloc(a, sizeof(*key));
        keys_mbx(key, st->nsid, st->sel->mbxid, parts[c]);
        if (parts[c] == KEYS_MBX) {
            static const char *const probe[] = {"HGET", NULL, "highestmodseq"};
            argc[c] = 3;
            argv[c] = arena_calloc(a, 3, sizeof(char *));
            argvlen[c] = arena_calloc(a, 3, sizeof(size_t));
            argv[c][0] = probe[0];
            argvlen[c][0] = 4;
            argv[c][1] = key->s;
            argvlen[c][1] = key->len;
            argv[c][2] = probe[2];
            argvlen[c][2] = strlen(probe[2]);
            continue;
        }
        argc[c] = (int)st->n + 2;
        argv[c] = arena_calloc(a, st->n + 2, sizeof(char *));
        argvlen[c] = arena_calloc(a, st->n + 2, sizeof(size_t));
        argv[c][0] = verbs[c];
        argvlen[c][0] = strlen(verbs[c]);
        argv[c][1] = key->s;
        argvlen[c][1] = key->len;
        memcpy(&argv[c][2], uids, st->n * sizeof(*uids));
        memcpy(&argvlen[c][2], uid_lens, st->n * sizeof(*uid_lens));
    }
    return conn_redis_tx(ctx, fetch_got_columns, ncmd, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

static enum cmd_status fetch_got_store(struct cmd_ctx *ctx);

/* Sets \Seen on the batch's messages that lack it (store.lua, mode add). */
static enum cmd_status fetch_set_seen(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct arena *a = st->batch;
    const struct lua_script *script = lua_script_find("store");
    size_t unseen = 0;
    for (size_t k = 0; k < st->n; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !(m->flags != NULL && flags_have_seen(m->flags, m->flags_len)))
            unseen++;
    }
    if (unseen == 0)
        return fetch_run(ctx);
    if (script == NULL) {
        if (!st->warned_no_store)
            log_write(LOG_WARN, "fetch.no_store_script", "conn=%llu",
                      (unsigned long long)conn_id(ctx->conn));
        st->warned_no_store = true;
        return fetch_run(ctx);
    }
    size_t nkeys = 2 + KEYS_MBX_PART_COUNT;
    size_t argc = nkeys + 5 + unseen;
    const char **argv = arena_calloc(a, argc, sizeof(*argv));
    size_t *argvlen = arena_calloc(a, argc, sizeof(*argvlen));
    struct key *keys = arena_calloc(a, nkeys, sizeof(*keys));
    keys_ns_meta(&keys[0], st->nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], st->nsid, st->sel->mbxid, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[nkeys - 1], st->nsid);
    size_t n = 0;
    for (size_t k = 0; k < nkeys; k++) {
        argv[n] = keys[k].s;
        argvlen[n++] = keys[k].len;
    }
    const char *fixed[] = {st->sel->mbxid, "add", "\\Seen", "0", "0"};
    for (size_t k = 0; k < 5; k++) {
        argv[n] = fixed[k];
        argvlen[n++] = strlen(fixed[k]);
    }
    for (size_t k = 0; k < st->n; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !(m->flags != NULL && flags_have_seen(m->flags, m->flags_len))) {
            argv[n] = uid_text(a, m->uid, &argvlen[n]);
            n++;
        }
    }
    enum lua_script_id id = (enum lua_script_id)(script - lua_scripts);
    return conn_eval(ctx, fetch_got_store, id, (int)nkeys, (int)n, argv, argvlen);
}

static enum cmd_status fetch_got_store(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    if (!cmd_reply_is_array(res, 2))
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    const redisReply *r = res->reply;
    for (size_t k = 2; k + 2 < r->elements; k += 3) {
        uint64_t uid = 0;
        const redisReply *f = r->element[k + 1];
        if (!reply_u64(r->element[k], &uid) || uid > UINT32_MAX || f->type != REDIS_REPLY_STRING)
            continue;
        struct fetch_msg *m = find_uid(st, (uint32_t)uid);
        if (m == NULL)
            continue;
        m->flags = arena_strndup(st->batch, f->str, f->len);
        m->flags_len = f->len;
        m->flags_changed = true;
    }
    return fetch_run(ctx);
}

/* After the columns: \Seen for non-PEEK body items, then the messages. */
static enum cmd_status fetch_columns_done(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (st->plan.sets_seen && !st->sel->readonly)
        return fetch_set_seen(ctx);
    return fetch_run(ctx);
}

static enum cmd_status fetch_got_exists(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, st->n))
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    for (size_t k = 0; k < st->n; k++) {
        st->msgs[k].exists = res->reply->element[k]->type != REDIS_REPLY_NIL;
        if (!st->msgs[k].exists)
            st->vanished = true;
    }
    return fetch_columns_done(ctx);
}

static enum cmd_status fetch_got_columns(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    size_t ncmd = st->plan.need_flags ? 2 : 1;
    if (res->status != STORE_OK)
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    if (!cmd_reply_is_array(res, ncmd))
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    const redisReply *rec = res->reply->element[0];
    const redisReply *flags = ncmd == 2 ? res->reply->element[1] : NULL;
    if ((st->plan.need_msg && (rec->type != REDIS_REPLY_ARRAY || rec->elements != st->n)) ||
        (flags != NULL && (flags->type != REDIS_REPLY_ARRAY || flags->elements != st->n)))
        return cmd_store_failed(ctx, &(struct store_result){STORE_OK, NULL, NULL},
                                ctx->uid ? "UID FETCH" : "FETCH");
    /*
     * Without the msg column, existence comes from the mailbox's modseq: when it is still the one
     * the view reflects, nothing was expunged since and every UID of the view exists (the read is
     * one snapshot). Otherwise one more read (ZMSCORE uids) tells.
     */
    uint64_t highest = 0;
    bool exact = !st->plan.need_msg && reply_u64(rec, &highest) &&
                 highest == st->sel->highestmodseq;
    for (size_t k = 0; k < st->n; k++) {
        struct fetch_msg *m = &st->msgs[k];
        if (st->plan.need_msg) {
            const redisReply *e = rec->element[k];
            m->exists = parse_record(st->batch, e, m);
            if (!m->exists && e->type != REDIS_REPLY_NIL)
                log_write(LOG_ERROR, "fetch.bad_record", "conn=%llu uid=%" PRIu32,
                          (unsigned long long)conn_id(ctx->conn), m->uid);
            if (!m->exists)
                st->vanished = true;
        } else {
            m->exists = exact;
        }
        if (flags != NULL && flags->element[k]->type == REDIS_REPLY_STRING) {
            const redisReply *f = flags->element[k];
            m->flags = arena_strndup(st->batch, f->str, f->len);
            m->flags_len = f->len;
        }
    }
    if (st->plan.need_msg || exact)
        return fetch_columns_done(ctx);
    struct key key;
    keys_mbx(&key, st->nsid, st->sel->mbxid, KEYS_MBX_UIDS);
    const char **argv = arena_calloc(st->batch, st->n + 2, sizeof(*argv));
    size_t *argvlen = arena_calloc(st->batch, st->n + 2, sizeof(*argvlen));
    argv[0] = "ZMSCORE";
    argvlen[0] = 7;
    argv[1] = key.s;
    argvlen[1] = key.len;
    memcpy(&argv[2], st->uids, st->n * sizeof(*argv));
    memcpy(&argvlen[2], st->uid_lens, st->n * sizeof(*argvlen));
    return conn_redis(ctx, fetch_got_exists, (int)st->n + 2, argv, argvlen);
}

/* ------------------------------------------------------------------ 3. content fields */

static enum cmd_status fetch_got_content(struct cmd_ctx *ctx);

static size_t content_fields(const struct fetch_plan *plan, const char **fields)
{
    size_t n = 0;
    if (plan->need_env)
        fields[n++] = "env";
    if (plan->need_bs)
        fields[n++] = "bs";
    if (plan->need_parse)
        fields[n++] = "parse";
    return n;
}

static enum cmd_status fetch_read_content(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    close_views(st);
    arena_reset(st->window);
    size_t limit = st->plan.need_parse ? FETCH_WINDOW_PARSE : FETCH_WINDOW_FIELDS;
    st->cw_start = st->i;
    st->cw_end = st->i;
    const char *fields[3];
    size_t nf = content_fields(&st->plan, fields);
    size_t want = 0;
    for (size_t k = st->i; k < st->n && want < limit; k++) {
        if (st->msgs[k].exists && !st->msgs[k].gone)
            want++;
        st->cw_end = k + 1;
    }
    if (want == 0)
        return fetch_run(ctx);
    int *argc = arena_calloc(st->window, want, sizeof(*argc));
    const char ***argv = arena_calloc(st->window, want, sizeof(*argv));
    size_t **argvlen = arena_calloc(st->window, want, sizeof(*argvlen));
    size_t c = 0;
    for (size_t k = st->cw_start; k < st->cw_end; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (!m->exists || m->gone)
            continue;
        struct key *key = arena_alloc(st->window, sizeof(*key));
        keys_content(key, st->nsid, m->sha);
        argc[c] = (int)(nf + 2);
        argv[c] = arena_calloc(st->window, nf + 2, sizeof(char *));
        argvlen[c] = arena_calloc(st->window, nf + 2, sizeof(size_t));
        argv[c][0] = "HMGET";
        argvlen[c][0] = 5;
        argv[c][1] = key->s;
        argvlen[c][1] = key->len;
        for (size_t f = 0; f < nf; f++) {
            argv[c][2 + f] = fields[f];
            argvlen[c][2 + f] = strlen(fields[f]);
        }
        c++;
    }
    if (c == 0)
        return fetch_run(ctx);
    return conn_redis_tx(ctx, fetch_got_content, c, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

static void content_broken(struct cmd_ctx *ctx, struct fetch_msg *m, const char *why)
{
    struct fetch_state *st = ctx->state;
    m->gone = true;
    st->vanished = true;
    log_write(LOG_WARN, "fetch.content_missing", "conn=%llu uid=%" PRIu32 " reason=%s",
              (unsigned long long)conn_id(ctx->conn), m->uid, why);
}

static enum cmd_status fetch_got_content(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY)
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    const char *fields[3];
    size_t nf = content_fields(&st->plan, fields);
    size_t c = 0;
    for (size_t k = st->cw_start; k < st->cw_end; k++) {
        struct fetch_msg *m = &st->msgs[k];
        if (!m->exists || m->gone)
            continue;
        if (c >= res->reply->elements)
            break;
        const redisReply *e = res->reply->element[c++];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != nf) {
            content_broken(ctx, m, "content read failed");
            continue;
        }
        size_t f = 0;
        bool ok = true;
        if (st->plan.need_env) {
            const redisReply *v = e->element[f++];
            ok = ok && v->type == REDIS_REPLY_STRING;
            if (ok) {
                m->env = arena_strndup(st->window, v->str, v->len);
                m->env_len = v->len;
            }
        }
        if (st->plan.need_bs) {
            const redisReply *v = e->element[f++];
            ok = ok && v->type == REDIS_REPLY_STRING;
            if (ok) {
                m->bs = arena_strndup(st->window, v->str, v->len);
                m->bs_len = v->len;
            }
        }
        if (st->plan.need_parse) {
            const redisReply *v = e->element[f++];
            ok = ok && v->type == REDIS_REPLY_STRING;
            const char *error = NULL;
            if (ok) {
                uint8_t *blob = arena_alloc(st->window, v->len > 0 ? v->len : 1);
                memcpy(blob, v->str, v->len);
                if (mail_view_open(blob, v->len, &m->view, &error) != 0) {
                    content_broken(ctx, m, error);
                    continue;
                }
            }
        }
        if (!ok) {
            content_broken(ctx, m, "content fields missing");
            continue;
        }
        m->content = true;
    }
    return fetch_run(ctx);
}

/* ------------------------------------------------------------------ 4. rendering */

static bool needs_content(const struct fetch_plan *plan)
{
    return plan->need_env || plan->need_bs || plan->need_parse;
}

/* Opens a message's response: "* <seq> FETCH (". */
static void open_line(struct fetch_state *st, const struct fetch_msg *m)
{
    evbuffer_drain(st->line, evbuffer_get_length(st->line));
    evbuffer_add_printf(st->line, "* %" PRIu32 " FETCH (", m->seq);
}

/* Ends a message's response: the new FLAGS if \Seen was set and FLAGS not asked for, ")". */
static void close_line(struct cmd_ctx *ctx, const struct fetch_msg *m)
{
    struct fetch_state *st = ctx->state;
    if (m->flags_changed && !st->plan.has_flags) {
        struct fetch_att flags = {.kind = FETCH_ATT_FLAGS};
        evbuffer_add(st->line, " ", 1);
        (void)fetch_render_item(st->line, &flags, m, st->sel->recent_first);
    }
    evbuffer_add(st->line, ")", 1);
    reply_line(ctx->conn, st->line);
}

/*
 * Renders msgs[i] whole into st->line and sends it. srcs: its sources (body items), reads: the
 * GETRANGE replies for them. A message that cannot be answered is left out.
 */
static void render_message(struct cmd_ctx *ctx, struct fetch_msg *m, const struct fetch_source *srcs,
                           redisReply *const *reads, size_t nreads)
{
    struct fetch_state *st = ctx->state;
    open_line(st, m);
    size_t r = 0;
    for (size_t a = 0; a < st->plan.n; a++) {
        const struct fetch_att *att = &st->plan.atts[a];
        if (a > 0)
            evbuffer_add(st->line, " ", 1);
        if (att->kind == FETCH_ATT_SECTION) {
            size_t need = fetch_source_reads(&srcs[a]);
            if (r + need > nreads ||
                fetch_source_write(st->line, att, &srcs[a], reads + r, need, &st->buf) != 0) {
                content_broken(ctx, m, "raw bytes missing");
                evbuffer_drain(st->line, evbuffer_get_length(st->line));
                return;
            }
            r += need;
        } else if (fetch_render_item(st->line, att, m, st->sel->recent_first) != 0) {
            st->unknown_cte = true;
            evbuffer_drain(st->line, evbuffer_get_length(st->line));
            return;
        }
    }
    close_line(ctx, m);
}

/* Resolves every body item of m into srcs (data arena). Returns false for UNKNOWN-CTE. */
static bool resolve_sources(struct fetch_state *st, const struct fetch_msg *m,
                            struct fetch_source *srcs, uint64_t *read_r, size_t *nreads_r,
                            bool *big_r)
{
    *read_r = 0;
    *nreads_r = 0;
    *big_r = false;
    for (size_t a = 0; a < st->plan.n; a++) {
        const struct fetch_att *att = &st->plan.atts[a];
        if (att->kind != FETCH_ATT_SECTION)
            continue;
        struct fetch_source *src = &srcs[a];
        fetch_source_resolve(st->data, &st->pieces, att, m, src);
        if (src->kind == FETCH_SOURCE_UNKNOWN_CTE)
            return false;
        if (src->kind == FETCH_SOURCE_FILTER && src->read_size > FETCH_FILTER_MAX) {
            src->kind = FETCH_SOURCE_NIL; /* a pathological header: not filtered by hand */
            src->count = 0;
            src->read_size = 0;
        }
        *read_r += src->read_size;
        *nreads_r += fetch_source_reads(src);
        if (src->kind != FETCH_SOURCE_FILTER && src->read_size > FETCH_SMALL)
            *big_r = true;
    }
    if (*read_r > FETCH_SMALL)
        *big_r = true;
    return true;
}

/* Adds one GETRANGE per raw piece of srcs to the transaction arrays. */
static void add_reads(struct fetch_state *st, const struct fetch_msg *m,
                      const struct fetch_source *srcs, int *argc, const char ***argv,
                      size_t **argvlen, size_t *c)
{
    struct key *key = arena_alloc(st->data, sizeof(*key));
    keys_content_raw(key, st->nsid, m->sha);
    for (size_t a = 0; a < st->plan.n; a++) {
        if (st->plan.atts[a].kind != FETCH_ATT_SECTION)
            continue;
        const struct fetch_source *src = &srcs[a];
        for (size_t p = 0; p < src->count; p++) {
            if (src->v[p].literal != NULL)
                continue;
            argc[*c] = 4;
            argv[*c] = arena_calloc(st->data, 4, sizeof(char *));
            argvlen[*c] = arena_calloc(st->data, 4, sizeof(size_t));
            argv[*c][0] = "GETRANGE";
            argvlen[*c][0] = 8;
            argv[*c][1] = key->s;
            argvlen[*c][1] = key->len;
            argv[*c][2] = arena_printf(st->data, "%" PRIu64, src->v[p].offset);
            argvlen[*c][2] = strlen(argv[*c][2]);
            argv[*c][3] = arena_printf(st->data, "%" PRIu64, src->v[p].offset + src->v[p].size - 1);
            argvlen[*c][3] = strlen(argv[*c][3]);
            (*c)++;
        }
    }
}

static enum cmd_status fetch_got_data(struct cmd_ctx *ctx);
static enum cmd_status fetch_stream_start(struct cmd_ctx *ctx, struct fetch_source *srcs);

/*
 * Reads the body items of msgs[i...]: small messages together in one transaction, or streams
 * msgs[i] alone when it is large.
 */
static enum cmd_status fetch_read_data(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    arena_reset(st->data);
    size_t end = needs_content(&st->plan) ? st->cw_end : st->n;
    st->srcs = arena_calloc(st->data, end - st->i, sizeof(*st->srcs));
    st->first_read = arena_calloc(st->data, end - st->i + 1, sizeof(*st->first_read));
    uint64_t total = 0;
    size_t nreads = 0, msgs = 0;
    st->dw_end = st->i;
    for (size_t k = st->i; k < end && msgs < FETCH_DATA_MSGS; k++) {
        struct fetch_msg *m = &st->msgs[k];
        st->first_read[k - st->i] = nreads;
        if (m->exists && !m->gone) {
            struct fetch_source *srcs = arena_calloc(st->data, st->plan.n, sizeof(*srcs));
            uint64_t bytes = 0;
            size_t reads = 0;
            bool big = false;
            if (!resolve_sources(st, m, srcs, &bytes, &reads, &big)) {
                m->gone = true; /* BINARY of an unknown encoding: left out */
                st->unknown_cte = true;
            } else if (big) {
                if (k == st->i)
                    return fetch_stream_start(ctx, srcs);
                break;
            } else {
                if (k > st->i && total + bytes > FETCH_DATA_BUDGET)
                    break;
                st->srcs[k - st->i] = srcs;
                total += bytes;
                nreads += reads;
                msgs++;
            }
        }
        st->dw_end = k + 1;
        st->first_read[k + 1 - st->i] = nreads;
    }
    if (nreads == 0) {
        for (size_t k = st->i; k < st->dw_end; k++) {
            struct fetch_msg *m = &st->msgs[k];
            if (m->exists && !m->gone)
                render_message(ctx, m, st->srcs[k - st->i], NULL, 0);
        }
        st->i = st->dw_end;
        return fetch_run(ctx);
    }
    int *argc = arena_calloc(st->data, nreads, sizeof(*argc));
    const char ***argv = arena_calloc(st->data, nreads, sizeof(*argv));
    size_t **argvlen = arena_calloc(st->data, nreads, sizeof(*argvlen));
    size_t c = 0;
    for (size_t k = st->i; k < st->dw_end; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !m->gone)
            add_reads(st, m, st->srcs[k - st->i], argc, argv, argvlen, &c);
    }
    return conn_redis_tx(ctx, fetch_got_data, c, argc, (const char *const *const *)argv,
                         (const size_t *const *)argvlen);
}

static enum cmd_status fetch_got_data(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY)
        return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
    const redisReply *r = res->reply;
    for (size_t k = st->i; k < st->dw_end; k++) {
        struct fetch_msg *m = &st->msgs[k];
        if (!m->exists || m->gone)
            continue;
        size_t from = st->first_read[k - st->i], to = st->first_read[k + 1 - st->i];
        if (to > r->elements) {
            content_broken(ctx, m, "short transaction reply");
            continue;
        }
        render_message(ctx, m, st->srcs[k - st->i], r->element + from, to - from);
    }
    st->i = st->dw_end;
    return fetch_run(ctx);
}

/* ------------------------------------------------------------------ streaming one message */

static enum cmd_status fetch_stream_got_chunk(struct cmd_ctx *ctx);
static enum cmd_status fetch_stream_got_small(struct cmd_ctx *ctx);

static enum cmd_status fetch_stream_start(struct cmd_ctx *ctx, struct fetch_source *srcs)
{
    struct fetch_state *st = ctx->state;
    st->s_srcs = srcs;
    st->s_att = 0;
    st->s_literal = false;
    open_line(st, &st->msgs[st->i]);
    return fetch_stream(ctx);
}

/* Writes literal bytes of the streamed item, clipped to what its header promised. */
static void stream_emit(struct cmd_ctx *ctx, const uint8_t *data, size_t len)
{
    struct fetch_state *st = ctx->state;
    const struct fetch_source *src = &st->s_srcs[st->s_att];
    uint64_t room = src->out_size - st->s_emitted;
    if (len > room)
        len = (size_t)room;
    if (len > 0)
        evbuffer_add(conn_output(ctx->conn), data, len);
    st->s_emitted += len;
}

/* DECODE: feeds decoded bytes, keeping those inside the partial range. */
static void stream_emit_decoded(struct cmd_ctx *ctx, const uint8_t *data, size_t len)
{
    struct fetch_state *st = ctx->state;
    const struct fetch_att *att = &st->plan.atts[st->s_att];
    uint64_t origin = att->partial ? att->origin : 0;
    uint64_t start = st->s_decoded, end = st->s_decoded + len;
    st->s_decoded = end;
    if (end <= origin)
        return;
    size_t skip = start < origin ? (size_t)(origin - start) : 0;
    stream_emit(ctx, data + skip, len - skip);
}

/* Ends the streamed literal: flushes the decoder, pads if the content came up short. */
static void stream_end_literal(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct fetch_source *src = &st->s_srcs[st->s_att];
    if (src->kind == FETCH_SOURCE_DECODE) {
        uint8_t tail[MAIL_DECODE_SLACK];
        size_t n = mail_decoder_finish(&st->dec, tail);
        stream_emit_decoded(ctx, tail, n);
    }
    if (st->s_emitted < src->out_size) {
        log_write(LOG_ERROR, "fetch.short_literal", "conn=%llu uid=%" PRIu32 " missing=%" PRIu64,
                  (unsigned long long)conn_id(ctx->conn), st->msgs[st->i].uid,
                  src->out_size - st->s_emitted);
        char spaces[256];
        memset(spaces, ' ', sizeof(spaces));
        while (st->s_emitted < src->out_size) {
            uint64_t n = src->out_size - st->s_emitted;
            if (n > sizeof(spaces))
                n = sizeof(spaces);
            evbuffer_add(conn_output(ctx->conn), spaces, (size_t)n);
            st->s_emitted += n;
        }
    }
    st->s_literal = false;
    st->s_att++;
}

static enum cmd_status fetch_stream(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct fetch_msg *m = &st->msgs[st->i];
    while (st->s_att < st->plan.n) {
        const struct fetch_att *att = &st->plan.atts[st->s_att];
        struct fetch_source *src = &st->s_srcs[st->s_att];
        if (!st->s_literal) {
            if (st->s_att > 0)
                evbuffer_add(st->line, " ", 1);
            if (att->kind != FETCH_ATT_SECTION) {
                (void)fetch_render_item(st->line, att, m, st->sel->recent_first);
                st->s_att++;
                continue;
            }
            if (src->kind == FETCH_SOURCE_NIL || src->read_size == 0 ||
                (src->kind != FETCH_SOURCE_DECODE && src->read_size <= FETCH_CHUNK) ||
                src->kind == FETCH_SOURCE_FILTER) {
                size_t n = fetch_source_reads(src);
                if (n == 0) {
                    if (fetch_source_write(st->line, att, src, NULL, 0, &st->buf) != 0)
                        evbuffer_add(st->line, " NIL", 4);
                    st->s_att++;
                    continue;
                }
                arena_reset(st->io);
                int *argc = arena_calloc(st->io, n, sizeof(*argc));
                const char ***argv = arena_calloc(st->io, n, sizeof(*argv));
                size_t **argvlen = arena_calloc(st->io, n, sizeof(*argvlen));
                size_t c = 0;
                struct key *key = arena_alloc(st->io, sizeof(*key));
                keys_content_raw(key, st->nsid, m->sha);
                for (size_t p = 0; p < src->count; p++) {
                    if (src->v[p].literal != NULL)
                        continue;
                    argc[c] = 4;
                    argv[c] = arena_calloc(st->io, 4, sizeof(char *));
                    argvlen[c] = arena_calloc(st->io, 4, sizeof(size_t));
                    argv[c][0] = "GETRANGE";
                    argvlen[c][0] = 8;
                    argv[c][1] = key->s;
                    argvlen[c][1] = key->len;
                    argv[c][2] = arena_printf(st->io, "%" PRIu64, src->v[p].offset);
                    argvlen[c][2] = strlen(argv[c][2]);
                    argv[c][3] = arena_printf(st->io, "%" PRIu64,
                                              src->v[p].offset + src->v[p].size - 1);
                    argvlen[c][3] = strlen(argv[c][3]);
                    c++;
                }
                return conn_redis_tx(ctx, fetch_stream_got_small, c, argc,
                                     (const char *const *const *)argv,
                                     (const size_t *const *)argvlen);
            }
            /* A large literal: its header now, the bytes as they arrive. */
            fetch_literal_header(st->line, att, src->out_size, att->binary);
            evbuffer_add_buffer(conn_output(ctx->conn), st->line);
            st->s_literal = true;
            st->s_piece = 0;
            st->s_off = 0;
            st->s_emitted = 0;
            st->s_decoded = 0;
            mail_decoder_init(&st->dec, src->kind == FETCH_SOURCE_DECODE ? src->cte : MAIL_CTE_7BIT);
        }
        if (st->s_piece >= src->count || st->s_emitted >= src->out_size) {
            stream_end_literal(ctx);
            continue;
        }
        const struct mail_piece *pc = &src->v[st->s_piece];
        if (pc->literal != NULL) {
            stream_emit(ctx, (const uint8_t *)pc->literal, (size_t)pc->size);
            st->s_piece++;
            continue;
        }
        if (conn_output_full(ctx->conn))
            return conn_wait_drain(ctx, fetch_stream);
        uint64_t len = pc->size - st->s_off;
        if (len > FETCH_CHUNK)
            len = FETCH_CHUNK;
        st->s_want = len;
        struct key key;
        keys_content_raw(&key, st->nsid, m->sha);
        char from[24], to[24];
        int lf = snprintf(from, sizeof(from), "%" PRIu64, pc->offset + st->s_off);
        int lt = snprintf(to, sizeof(to), "%" PRIu64, pc->offset + st->s_off + len - 1);
        const char *argv[] = {"GETRANGE", key.s, from, to};
        const size_t argvlen[] = {8, key.len, (size_t)lf, (size_t)lt};
        return conn_redis(ctx, fetch_stream_got_chunk, 4, argv, argvlen);
    }
    close_line(ctx, m);
    st->s_srcs = NULL;
    st->i++;
    return fetch_run(ctx);
}

static enum cmd_status fetch_stream_got_small(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    const struct fetch_att *att = &st->plan.atts[st->s_att];
    const struct fetch_source *src = &st->s_srcs[st->s_att];
    if (res->status != STORE_OK || res->reply->type != REDIS_REPLY_ARRAY ||
        fetch_source_write(st->line, att, src, res->reply->element, res->reply->elements,
                           &st->buf) != 0) {
        /* The line may be partly sent already: answer NIL for this item. */
        content_broken(ctx, &st->msgs[st->i], "raw bytes missing");
        evbuffer_add(st->line, att->echo, att->echo_len);
        evbuffer_add(st->line, " NIL", 4);
        if (res->status == STORE_UNAVAILABLE) {
            evbuffer_add(st->line, ")", 1);
            reply_line(ctx->conn, st->line);
            return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
        }
    }
    st->s_att++;
    return fetch_stream(ctx);
}

static enum cmd_status fetch_stream_got_chunk(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    const struct fetch_source *src = &st->s_srcs[st->s_att];
    const redisReply *r = res->status == STORE_OK ? res->reply : NULL;
    if (r == NULL || r->type != REDIS_REPLY_STRING || (uint64_t)r->len != st->s_want) {
        /* The content went away (or Redis did): complete the literal so the stream stays
         * parseable, end the line, then stop (Redis down) or go on with the next message. */
        content_broken(ctx, &st->msgs[st->i], "raw bytes missing while streaming");
        st->s_piece = src->count;
        stream_end_literal(ctx);
        if (res->status == STORE_UNAVAILABLE) {
            evbuffer_add(st->line, ")", 1);
            reply_line(ctx->conn, st->line);
            return cmd_store_failed(ctx, res, ctx->uid ? "UID FETCH" : "FETCH");
        }
        return fetch_stream(ctx);
    }
    if (src->kind == FETCH_SOURCE_DECODE) {
        /* Decoded in slices into a fixed buffer. */
        if (st->dec_out == NULL) {
            st->dec_out = malloc(FETCH_DECODE_SLICE + MAIL_DECODE_SLACK);
            if (st->dec_out == NULL)
                abort();
        }
        size_t done = 0;
        while (done < r->len) {
            size_t n = r->len - done;
            if (n > FETCH_DECODE_SLICE)
                n = FETCH_DECODE_SLICE;
            size_t out = mail_decoder_feed(&st->dec, (const uint8_t *)r->str + done, n,
                                           st->dec_out);
            stream_emit_decoded(ctx, st->dec_out, out);
            done += n;
        }
    } else {
        stream_emit(ctx, (const uint8_t *)r->str, r->len);
    }
    st->s_off += r->len;
    if (st->s_off >= src->v[st->s_piece].size) {
        st->s_piece++;
        st->s_off = 0;
    }
    return fetch_stream(ctx);
}

/* ------------------------------------------------------------------ the loop */

static enum cmd_status fetch_run(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    for (;;) {
        if (st->i >= st->n)
            return fetch_read_columns(ctx);
        if (conn_output_full(ctx->conn))
            return conn_wait_drain(ctx, fetch_run);
        struct fetch_msg *m = &st->msgs[st->i];
        if (!m->exists || m->gone) {
            st->i++;
            continue;
        }
        if (needs_content(&st->plan) && st->i >= st->cw_end)
            return fetch_read_content(ctx);
        if (st->plan.need_raw)
            return fetch_read_data(ctx);
        render_message(ctx, m, NULL, NULL, 0);
        st->i++;
    }
}

enum cmd_status cmd_fetch(struct cmd_ctx *ctx)
{
    const char *name = ctx->uid ? "UID FETCH" : "FETCH";
    struct selected *sel = conn_selected(ctx->conn);
    if (sel == NULL) {
        reply_tagged(ctx, "BAD", NULL, "No mailbox selected");
        return CMD_DONE;
    }
    if (ctx->args[0].type != IMAP_ARG_ATOM) {
        reply_tagged(ctx, "BAD", NULL, "%s takes a sequence set", name);
        return CMD_DONE;
    }
    struct fetch_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    ctx->state = st;
    ctx->cleanup = fetch_cleanup;
    const char *error = NULL;
    if (fetch_plan_parse(ctx->arena, &ctx->args[1], ctx->uid, &st->plan, &error) != 0) {
        reply_tagged(ctx, "BAD", NULL, "%s: %s", name, error);
        return CMD_DONE;
    }
    if (msgset_resolve(ctx->arena, sel->view, ctx->args[0].str, ctx->args[0].len, ctx->uid,
                       &st->seqs, &error) != 0) {
        reply_tagged(ctx, "BAD", NULL, "%s: %s", name, error);
        return CMD_DONE;
    }
    st->sel = sel;
    st->nsid = conn_nsid(ctx->conn);
    bool columns_only = !st->plan.need_raw && !needs_content(&st->plan) && !st->plan.sets_seen;
    st->batch_size = columns_only ? FETCH_BATCH_COLUMNS : FETCH_BATCH;
    st->batch = arena_new(64 * 1024);
    st->window = arena_new(64 * 1024);
    st->data = arena_new(64 * 1024);
    st->io = arena_new(4 * 1024);
    st->line = evbuffer_new();
    if (st->line == NULL)
        abort();
    return fetch_read_columns(ctx);
}
