/*
 * FETCH and UID FETCH (RFC 3501 §6.4.5, §6.4.8; RFC 3516 BINARY; RFC 8474 EMAILID/THREADID),
 * streamed in bounded batches (DESIGN.md rule 5, "Request flow").
 *
 * Shape. The item argument becomes a plan (fetch_att.c) that says which columns each message
 * needs. The sequence set is walked in batches of FETCH_BATCH messages (FETCH_BATCH_COLUMNS
 * when only columns are answered; the limits live in fetch_state.h). A batch ends at a column
 * cache chunk boundary (colcache.h) whenever it holds more than one chunk, so a chunk is read by
 * one batch, whole. Per batch:
 *   1. the columns (fetch_columns.c): the chunks' caches ('f' flags, 'm' msg record + parse) and
 *      the mailbox's highestmodseq in one MULTI/EXEC; what they leave unknown is read the old way
 *      in a second one (HMGET msg, HMGET flags, HGET highestmodseq), and a chunk whose messages
 *      were all read that way in a snapshot that matches the view is built and stored;
 *   2. a non-PEEK body item in a read-write session sets \Seen on the batch's messages that lack
 *      it through store.lua (mode add, at most FETCH_STORE_MAX UIDs a call, with the flag cache
 *      keys of their chunks) and those messages answer their new FLAGS (RFC 3501 §6.4.5);
 *   3. content (fetch_content.c): views over the cached parses are opened in windows; the other
 *      messages' content fields (env, bs, parse) are read for windows of messages (one MULTI/EXEC
 *      each, at most FETCH_WINDOW_PARSE parses at a time). ENVELOPE and BODYSTRUCTURE are
 *      rendered from the parse when the parse is what was read;
 *   4. body items are resolved to byte ranges from the stored parse (never re-parsed, rule 6).
 *      Consecutive messages whose ranges are small are read together, one GETRANGE per range in
 *      one MULTI/EXEC of at most FETCH_DATA_BUDGET bytes, and written while the reply is in hand;
 *      a message reading more than FETCH_SMALL is streamed alone (fetch_stream.c): its literal
 *      header first, then FETCH_CHUNK GETRANGEs, each written as it arrives (base64/QP decoded
 *      on the fly for BINARY) with conn_wait_drain whenever the output is over the high-water
 *      mark.
 * Every step does bounded work and ends in a Redis round trip or an output drain, so other
 * clients of the front end keep being served; memory is bounded by the batch and window sizes
 * (arenas reset per batch / window, at most COLCACHE_MAX_VALUE per chunk), never by the message
 * count or a message's size. Responses are appended to one buffer (st->out) without printf-style
 * formatting and go out every FETCH_LINES_FLUSH bytes and before every wait.
 *
 * Vanished messages (RFC 2180 §4.1, RFC 5530). A message the view still holds but whose record is
 * gone (another session expunged it; a cache chunk that says it is absent means the same) is left
 * out: UID FETCH simply omits it (RFC 3501 §6.4.8, non-existent UIDs are ignored); FETCH omits it
 * too and ends with "NO [EXPUNGEISSUED]" after answering every message that still exists
 * (RFC 2180 §4.1.2's choice, which tells the client to NOOP to learn of the expunge). The same
 * holds for a message whose content disappears between reads.
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

const char *fetch_name(const struct cmd_ctx *ctx)
{
    return ctx->uid ? "UID FETCH" : "FETCH";
}

static void fetch_cleanup(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (st == NULL)
        return;
    fetch_close_views(st);
    fetch_chunks_free(st);
    fetch_plan_free(&st->plan);
    mail_pieces_free(&st->pieces);
    mail_buf_free(&st->buf);
    mail_buf_free(&st->out);
    arena_free(&st->batch);
    arena_free(&st->window);
    arena_free(&st->data);
    arena_free(&st->io);
    free(st->dec_out);
    free(st->values);
    if (st->line != NULL)
        evbuffer_free(st->line);
    ctx->state = NULL;
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
    if (st->unknown_cte)
        reply_tagged(ctx, "NO", "UNKNOWN-CTE", "Some parts have an unknown transfer encoding");
    else if (st->vanished && !ctx->uid)
        reply_tagged(ctx, "NO", "EXPUNGEISSUED", "Some messages were expunged meanwhile");
    else
        reply_tagged(ctx, "OK", NULL, "%s completed", fetch_name(ctx));
    return CMD_DONE;
}

/* ------------------------------------------------------------------ 1. batches */

/* The UID of the next message the sequence set gives (0 when there is none). */
static uint32_t peek_uid(const struct fetch_state *st)
{
    if (st->range >= st->seqs.count)
        return 0;
    uint32_t seq = st->next_seq != 0 ? st->next_seq : st->seqs.ranges[st->range].first;
    return view_uid(st->sel->view, seq);
}

/*
 * Takes the next batch of messages from the sequence set; false when there is none. A full batch
 * that holds more than one chunk and would leave the last one's messages to the next batch ends
 * before that chunk instead, so every chunk is read by one batch.
 */
static bool next_batch(struct fetch_state *st)
{
    fetch_close_views(st);
    fetch_chunks_free(st);
    arena_reset(st->batch);
    arena_reset(st->window);
    arena_reset(st->data);
    st->n = st->i = st->dw_end = 0;
    st->chunks = NULL;
    st->nchunks = 0;
    st->building = false;
    st->cache_read = false;
    st->msgs = arena_calloc(st->batch, st->batch_size, sizeof(*st->msgs));
    uint32_t last_chunk = 0;
    bool cut = false;
    size_t cut_n = 0, cut_range = 0;
    uint32_t cut_seq = 0;
    while (st->n < st->batch_size && st->range < st->seqs.count) {
        const struct seqset_range *r = &st->seqs.ranges[st->range];
        if (st->next_seq == 0)
            st->next_seq = r->first;
        uint32_t seq = st->next_seq;
        struct fetch_msg *m = &st->msgs[st->n];
        m->seq = seq;
        m->uid = view_uid(st->sel->view, seq);
        if (m->uid != 0) {
            uint32_t chunk = colcache_chunk(m->uid);
            if (st->n > 0 && chunk != last_chunk) {
                cut = true;
                cut_n = st->n;
                cut_range = st->range;
                cut_seq = seq;
            }
            last_chunk = chunk;
            st->n++;
        }
        if (seq == r->last) {
            st->range++;
            st->next_seq = 0;
        } else {
            st->next_seq = seq + 1;
        }
    }
    if (st->n == st->batch_size && cut) {
        uint32_t next = peek_uid(st);
        if (next != 0 && colcache_chunk(next) == last_chunk) {
            memset(&st->msgs[cut_n], 0, (st->n - cut_n) * sizeof(*st->msgs));
            st->n = cut_n;
            st->range = cut_range;
            st->next_seq = cut_seq;
        }
    }
    return st->n > 0;
}

static enum cmd_status fetch_next_batch(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (!next_batch(st))
        return fetch_finish(ctx);
    return fetch_read_columns_of_batch(ctx);
}

/* ------------------------------------------------------------------ 2. \Seen */

static enum cmd_status fetch_got_store(struct cmd_ctx *ctx);

static bool lacks_seen(const struct fetch_msg *m)
{
    return m->exists && !m->gone && !(m->flags != NULL && flags_have_seen(m->flags, m->flags_len));
}

/*
 * Sets \Seen on the batch's messages that lack it (store.lua, mode add), FETCH_STORE_MAX at a
 * time from msgs[seen_next]. store.lua's KEYS: meta, the mailbox keys, the channel, then the flag
 * cache key of each chunk of the UIDs given (keys_cache_chunks order), which it deletes.
 */
static enum cmd_status fetch_set_seen(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    struct arena *a = st->batch;
    const struct lua_script *script = lua_script_find("store");
    uint32_t *uids = arena_calloc(a, FETCH_STORE_MAX, sizeof(*uids));
    size_t unseen = 0;
    while (st->seen_next < st->n && unseen < FETCH_STORE_MAX) {
        const struct fetch_msg *m = &st->msgs[st->seen_next++];
        if (lacks_seen(m))
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
        keys_mbx_cache(&keys[nfixed + c], st->nsid, st->sel->mbxid, COLCACHE_FLAGS, chunks[c]);
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
        char *s = arena_printf(a, "%" PRIu32, uids[k]);
        argv[n] = s;
        argvlen[n++] = strlen(s);
    }
    enum lua_script_id id = (enum lua_script_id)(script - lua_scripts);
    return conn_eval(ctx, fetch_got_store, id, (int)nkeys, (int)n, argv, argvlen);
}

static enum cmd_status fetch_got_store(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK || !cmd_reply_is_array(res, 2))
        return cmd_store_failed(ctx, res, fetch_name(ctx));
    const redisReply *r = res->reply;
    /* A \Seen that changed something moved the modseq: the batch's 'm' builds cannot be stored
     * (cache_put.lua refuses them), so their parses are not read. */
    uint64_t highest = 0;
    fetch_builds_check(ctx, cmd_reply_u64(r->element[0], &highest), highest);
    for (size_t k = 2; k + 2 < r->elements; k += 3) {
        uint64_t uid = 0;
        const redisReply *f = r->element[k + 1];
        if (!cmd_reply_u64(r->element[k], &uid) || uid > UINT32_MAX || f->type != REDIS_REPLY_STRING)
            continue;
        struct fetch_msg *m = find_uid(st, (uint32_t)uid);
        if (m == NULL)
            continue;
        m->flags = arena_strndup(st->batch, f->str, f->len);
        m->flags_len = f->len;
        m->flags_changed = true;
    }
    if (st->seen_next < st->n)
        return fetch_set_seen(ctx);
    return fetch_run(ctx);
}

enum cmd_status fetch_columns_done(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (st->plan.sets_seen && !st->sel->readonly) {
        st->seen_next = 0;
        return fetch_set_seen(ctx);
    }
    return fetch_run(ctx);
}

/* ------------------------------------------------------------------ 4. rendering */

#define PUT_LIT(out, lit) FETCH_PUT_LIT(out, lit)

void fetch_open_line(struct fetch_state *st, const struct fetch_msg *m)
{
    if (st->out.len > 0)
        PUT_LIT(&st->out, "\r\n");
    st->line_start = st->out.len;
    PUT_LIT(&st->out, "* ");
    fetch_put_u64(&st->out, m->seq);
    PUT_LIT(&st->out, " FETCH (");
}

/* Takes back the response fetch_open_line started (and the line end it put before it). */
static void drop_line(struct fetch_state *st)
{
    st->out.len = st->line_start >= 2 ? st->line_start - 2 : 0;
}

void fetch_close_line(struct cmd_ctx *ctx, const struct fetch_msg *m)
{
    struct fetch_state *st = ctx->state;
    if (m->flags_changed && !st->plan.has_flags) {
        struct fetch_att flags = {.kind = FETCH_ATT_FLAGS};
        PUT_LIT(&st->out, " ");
        (void)fetch_render_item(&st->out, &flags, m, st->sel->recent_first);
    }
    PUT_LIT(&st->out, ")");
}

void fetch_flush_lines(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    if (st->out.len == 0)
        return;
    evbuffer_add(st->line, st->out.data, st->out.len);
    mail_buf_reset(&st->out);
    reply_line(ctx->conn, st->line);
}

void fetch_render_message(struct cmd_ctx *ctx, struct fetch_msg *m, const struct fetch_source *srcs,
                          redisReply *const *reads, size_t nreads)
{
    struct fetch_state *st = ctx->state;
    fetch_open_line(st, m);
    size_t r = 0;
    for (size_t a = 0; a < st->plan.n; a++) {
        const struct fetch_att *att = &st->plan.atts[a];
        if (a > 0)
            PUT_LIT(&st->out, " ");
        if (att->kind == FETCH_ATT_SECTION) {
            size_t need = fetch_source_reads(&srcs[a]);
            if (r + need > nreads ||
                fetch_source_write(&st->out, att, &srcs[a], reads + r, need, &st->buf) != 0) {
                fetch_content_broken(ctx, m, "raw bytes missing");
                drop_line(st);
                return;
            }
            r += need;
        } else if (fetch_render_item(&st->out, att, m, st->sel->recent_first) != 0) {
            st->unknown_cte = true;
            drop_line(st);
            return;
        }
    }
    fetch_close_line(ctx, m);
}

void fetch_content_broken(struct cmd_ctx *ctx, struct fetch_msg *m, const char *why)
{
    struct fetch_state *st = ctx->state;
    m->gone = true;
    st->vanished = true;
    log_write(LOG_WARN, "fetch.content_missing", "conn=%llu uid=%" PRIu32 " reason=%s",
              (unsigned long long)conn_id(ctx->conn), m->uid, why);
}

/* ------------------------------------------------------------------ the loop */

enum cmd_status fetch_run(struct cmd_ctx *ctx)
{
    struct fetch_state *st = ctx->state;
    /* Responses collect in st->out and go out together before every wait (and tagged reply). */
    for (;;) {
        if (st->out.len >= FETCH_LINES_FLUSH)
            fetch_flush_lines(ctx);
        if (st->i >= st->n) {
            fetch_flush_lines(ctx);
            return fetch_next_batch(ctx);
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
        if (st->i >= st->cw_end && fetch_needs_content(st, m)) {
            if (fetch_open_window(ctx)) {
                fetch_flush_lines(ctx);
                return fetch_read_content(ctx);
            }
            continue;
        }
        if (st->plan.need_raw) {
            fetch_flush_lines(ctx);
            return fetch_read_data(ctx);
        }
        fetch_render_message(ctx, m, NULL, NULL, 0);
        st->i++;
    }
}

enum cmd_status cmd_fetch(struct cmd_ctx *ctx)
{
    const char *name = fetch_name(ctx);
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
    st->caches = colcache_enabled(conn_frontend(ctx->conn));
    bool columns_only = !st->plan.need_raw && !st->plan.need_env && !st->plan.need_bs &&
                        !st->plan.need_parse && !st->plan.sets_seen;
    st->batch_size = columns_only ? FETCH_BATCH_COLUMNS : FETCH_BATCH;
    st->batch = arena_new(64 * 1024);
    st->window = arena_new(64 * 1024);
    st->data = arena_new(64 * 1024);
    st->io = arena_new(4 * 1024);
    st->line = evbuffer_new();
    if (st->line == NULL)
        abort();
    return fetch_next_batch(ctx);
}
