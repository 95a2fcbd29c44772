/*
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 3516 BINARY; RFC 8474 EMAILID/THREADID),
 * streamed in bounded batches (DESIGN.md rule 5, "Request flow").
 *
 * Shape. The item argument becomes a plan (fetch_att.c) that says which columns each message
 * needs. The sequence set is walked in batches of FETCH_BATCH messages (FETCH_BATCH_COLUMNS
 * when only columns are answered; the limits live in fetch_state.h):
 *   1. one MULTI/EXEC reads the batch's columns: HMGET msg (content id, internaldate, size,
 *      object ids) and/or HMGET flags. Without msg, existence comes from the mailbox's
 *      highestmodseq read in the same snapshot: equal to the view's, nothing was expunged since
 *      and the view is exact; otherwise one ZMSCORE uids tells;
 *   2. a non-PEEK body item in a read-write session sets \Seen on the batch's messages that lack
 *      it through store.lua (mode add) — one script call per batch — and those messages answer
 *      their new FLAGS (RFC 3501 §6.4.5);
 *   3. content fields (env, bs, parse) are read for windows of messages (one MULTI/EXEC each,
 *      smaller windows when parses are read since they are the larger values);
 *   4. body items are resolved to byte ranges from the stored parse (never re-parsed, rule 6).
 *      Consecutive messages whose ranges are small are read together, one GETRANGE per range in
 *      one MULTI/EXEC of at most FETCH_DATA_BUDGET bytes, and written while the reply is in hand;
 *      a message reading more than FETCH_SMALL is streamed alone (fetch_stream.c): its literal
 *      header first, then FETCH_CHUNK GETRANGEs, each written as it arrives (base64/QP decoded
 *      on the fly for BINARY) with conn_wait_drain whenever the output is over the high-water
 *      mark.
 * Every step does bounded work and ends in a Redis round trip or an output drain, so other
 * clients of the front end keep being served; memory is bounded by the batch and window sizes
 * (arenas reset per batch / window), never by the message count or a message's size.
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
#include "frontend/fetch_state.h"
#include "frontend/log.h"
#include "frontend/msgset.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "keys/keys.h"
#include "lua/scripts.h"

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

/*
 * Sets \Seen on the batch's messages that lack it (store.lua, mode add). store.lua's KEYS: meta,
 * the mailbox keys, the channel, then the flag cache key of each chunk of the UIDs given
 * (keys_cache_chunks order), which it deletes when it changes anything.
 */
static enum cmd_status fetch_set_seen(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct arena *a = st->batch;
    const struct lua_script *script = lua_script_find("store");
    uint32_t *uids = arena_calloc(a, st->n > 0 ? st->n : 1, sizeof(*uids));
    size_t unseen = 0;
    for (size_t k = 0; k < st->n; k++) {
        const struct fetch_msg *m = &st->msgs[k];
        if (m->exists && !(m->flags != NULL && flags_have_seen(m->flags, m->flags_len)))
            uids[unseen++] = m->uid;
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
    uint32_t *chunks = arena_calloc(a, unseen, sizeof(*chunks));
    size_t nchunks = keys_cache_chunks(uids, unseen, chunks);
    size_t nfixed = 2 + KEYS_MBX_PART_COUNT;
    size_t nkeys = nfixed + nchunks;
    size_t argc = nkeys + 5 + unseen;
    const char **argv = arena_calloc(a, argc, sizeof(*argv));
    size_t *argvlen = arena_calloc(a, argc, sizeof(*argvlen));
    struct key *keys = arena_calloc(a, nkeys, sizeof(*keys));
    keys_ns_meta(&keys[0], st->nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], st->nsid, st->sel->mbxid, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[nfixed - 1], st->nsid);
    for (size_t c = 0; c < nchunks; c++)
        keys_mbx_cache(&keys[nfixed + c], st->nsid, st->sel->mbxid, 'f', chunks[c]);
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
    for (size_t k = 0; k < unseen; k++) {
        argv[n] = uid_text(a, uids[k], &argvlen[n]);
        n++;
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

void fetch_content_broken(struct cmd_ctx *ctx, struct fetch_msg *m, const char *why)
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
            fetch_content_broken(ctx, m, "content read failed");
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
                    fetch_content_broken(ctx, m, error);
                    continue;
                }
            }
        }
        if (!ok) {
            fetch_content_broken(ctx, m, "content fields missing");
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
void fetch_open_line(struct fetch_state *st, const struct fetch_msg *m)
{
    if (evbuffer_get_length(st->line) > 0)
        evbuffer_add(st->line, "\r\n", 2);
    st->line_start = evbuffer_get_length(st->line);
    evbuffer_add_printf(st->line, "* %" PRIu32 " FETCH (", m->seq);
}

/* Takes back the response fetch_open_line started (and the line end it put before it). */
static void drop_line(struct fetch_state *st)
{
    size_t keep = st->line_start >= 2 ? st->line_start - 2 : 0;
    struct evbuffer *head = evbuffer_new();
    if (head == NULL)
        abort();
    if (evbuffer_remove_buffer(st->line, head, keep) != (int)keep)
        abort();
    evbuffer_drain(st->line, evbuffer_get_length(st->line));
    evbuffer_add_buffer(st->line, head);
    evbuffer_free(head);
}

void fetch_close_line(struct cmd_ctx *ctx, const struct fetch_msg *m)
{
    struct fetch_state *st = ctx->state;
    if (m->flags_changed && !st->plan.has_flags) {
        struct fetch_att flags = {.kind = FETCH_ATT_FLAGS};
        evbuffer_add(st->line, " ", 1);
        (void)fetch_render_item(st->line, &flags, m, st->sel->recent_first);
    }
    evbuffer_add(st->line, ")", 1);
}

void fetch_flush_lines(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (evbuffer_get_length(st->line) > 0)
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
    fetch_open_line(st, m);
    size_t r = 0;
    for (size_t a = 0; a < st->plan.n; a++) {
        const struct fetch_att *att = &st->plan.atts[a];
        if (a > 0)
            evbuffer_add(st->line, " ", 1);
        if (att->kind == FETCH_ATT_SECTION) {
            size_t need = fetch_source_reads(&srcs[a]);
            if (r + need > nreads ||
                fetch_source_write(st->line, att, &srcs[a], reads + r, need, &st->buf) != 0) {
                fetch_content_broken(ctx, m, "raw bytes missing");
                drop_line(st);
                return;
            }
            r += need;
        } else if (fetch_render_item(st->line, att, m, st->sel->recent_first) != 0) {
            st->unknown_cte = true;
            drop_line(st);
            return;
        }
    }
    fetch_close_line(ctx, m);
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

/*
 * Reads the body items of msgs[i...]: small messages together in one transaction, or streams
 * msgs[i] alone when it is large.
 */
static enum cmd_status fetch_read_data(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    arena_reset(st->data);
    size_t end = needs_content(&st->plan) ? st->cw_end : st->n;
    st->srcs = arena_calloc(st->data, end - st->i, sizeof(struct fetch_source *));
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
            fetch_content_broken(ctx, m, "short transaction reply");
            continue;
        }
        render_message(ctx, m, st->srcs[k - st->i], r->element + from, to - from);
    }
    st->i = st->dw_end;
    return fetch_run(ctx);
}

/* ------------------------------------------------------------------ the loop */

enum cmd_status fetch_run(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    /* Responses collect in st->line and go out together before every wait (and tagged reply). */
    for (;;) {
        if (evbuffer_get_length(st->line) >= FETCH_LINES_FLUSH)
            fetch_flush_lines(ctx);
        if (st->i >= st->n) {
            fetch_flush_lines(ctx);
            return fetch_read_columns(ctx);
        }
        if (conn_output_full(ctx->conn)) {
            fetch_flush_lines(ctx);
            return conn_wait_drain(ctx, fetch_run);
        }
        struct fetch_msg *m = &st->msgs[st->i];
        if (!m->exists || m->gone) {
            st->i++;
            continue;
        }
        if (needs_content(&st->plan) && st->i >= st->cw_end) {
            fetch_flush_lines(ctx);
            return fetch_read_content(ctx);
        }
        if (st->plan.need_raw) {
            fetch_flush_lines(ctx);
            return fetch_read_data(ctx);
        }
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
