/*
 * fetch_stream: one large message of a FETCH, streamed (DESIGN.md "Request flow": large values
 * are read in bounded chunks and written as they arrive). The message's items are written in
 * order into the response; a body item reading more than FETCH_CHUNK gets its literal header
 * first (its size is known from the stored parse: section sizes, or the precomputed decoded size
 * for BINARY), then one GETRANGE of at most FETCH_CHUNK bytes at a time, each written to the
 * client as it arrives — decoded on the fly for BINARY of base64/quoted-printable, clipped to the
 * partial range — and the next one is asked for only once the client's output is below the
 * high-water mark. Smaller items of the same message are read whole in one transaction.
 * Memory: one chunk in flight plus the output buffer's high-water mark, whatever the size.
 *
 * A literal promised in its header is always completed: content that comes up short (removed
 * under us, which gc's grace period makes unlikely) is padded with spaces and logged, so the
 * client's parser stays in step; a large BINARY answer is always a literal8 ("~{n}"), since
 * whether it holds a NUL is only known once it is sent (RFC 3516 §4.2 allows literal8 for any).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frontend/cmd_common.h"
#include "frontend/fetch_state.h"
#include "frontend/log.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "keys/keys.h"

static enum cmd_status fetch_stream(struct cmd_ctx *ctx);
static enum cmd_status fetch_stream_got_chunk(struct cmd_ctx *ctx);
static enum cmd_status fetch_stream_got_small(struct cmd_ctx *ctx);

enum cmd_status fetch_stream_start(struct cmd_ctx *ctx, struct fetch_source *srcs)
{
    struct fetch_state *st = ctx->state;
    st->s_srcs = srcs;
    st->s_att = 0;
    st->s_literal = false;
    fetch_open_line(st, &st->msgs[st->i]);
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
                mail_buf_append(&st->out, " ", 1);
            if (att->kind != FETCH_ATT_SECTION) {
                (void)fetch_render_item(&st->out, att, m, st->sel->recent_first);
                st->s_att++;
                continue;
            }
            if (src->kind == FETCH_SOURCE_NIL || src->read_size == 0 ||
                (src->kind != FETCH_SOURCE_DECODE && src->read_size <= FETCH_CHUNK) ||
                src->kind == FETCH_SOURCE_FILTER) {
                size_t n = fetch_source_reads(src);
                if (n == 0) {
                    if (fetch_source_write(&st->out, att, src, NULL, 0, &st->buf) != 0)
                        mail_buf_append(&st->out, " NIL", 4);
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
            fetch_literal_header(&st->out, att, src->out_size, att->binary);
            evbuffer_add(conn_output(ctx->conn), st->out.data, st->out.len);
            mail_buf_reset(&st->out);
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
    fetch_close_line(ctx, m);
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
        fetch_source_write(&st->out, att, src, res->reply->element, res->reply->elements,
                           &st->buf) != 0) {
        /* The line may be partly sent already: answer NIL for this item. */
        fetch_content_broken(ctx, &st->msgs[st->i], "raw bytes missing");
        mail_buf_append(&st->out, att->echo, att->echo_len);
        mail_buf_append(&st->out, " NIL", 4);
        if (res->status == STORE_UNAVAILABLE) {
            mail_buf_append(&st->out, ")", 1);
            fetch_flush_lines(ctx);
            return cmd_store_failed(ctx, res, fetch_name(ctx));
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
        fetch_content_broken(ctx, &st->msgs[st->i], "raw bytes missing while streaming");
        st->s_piece = src->count;
        stream_end_literal(ctx);
        if (res->status == STORE_UNAVAILABLE) {
            mail_buf_append(&st->out, ")", 1);
            fetch_flush_lines(ctx);
            return cmd_store_failed(ctx, res, fetch_name(ctx));
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
