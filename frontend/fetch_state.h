/*
 * fetch_state: the state of a running FETCH, shared by cmd_fetch.c (batches, columns, content
 * windows, small reads) and fetch_stream.c (one large message streamed in chunks). Internal to
 * those two files; owned by the command (its arena), with the arenas and buffers below freed by
 * the command's cleanup.
 */
#ifndef CIMAP_FETCH_STATE_H
#define CIMAP_FETCH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/conn.h"
#include "frontend/fetch_att.h"
#include "frontend/fetch_render.h"
#include "frontend/seqset.h"

struct selected;
struct evbuffer;

/* Limits (cmd_fetch.c explains the flow). */
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
#define FETCH_LINES_FLUSH (64 * 1024)    /* responses collected before they go out together */

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
    struct evbuffer *line;        /* responses not sent yet: complete ones joined by CRLF, then
                                   * the one being built (reply_line adds the last CRLF) */
    size_t line_start;            /* where the one being built starts */
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

/* Continues with the next message (or batch); the step every read and drain comes back to. */
enum cmd_status fetch_run(struct cmd_ctx *ctx);

/* Streams msgs[i] alone (its body items read more than FETCH_SMALL); srcs: its sources. */
enum cmd_status fetch_stream_start(struct cmd_ctx *ctx, struct fetch_source *srcs);

/* Starts a message's response in st->line: "* <seq> FETCH (". */
void fetch_open_line(struct fetch_state *st, const struct fetch_msg *m);

/*
 * Ends it: the new FLAGS when \Seen was set and FLAGS not asked for, then ")". It goes out with
 * the next fetch_flush_lines, which must come before any wait, tagged reply or direct write.
 */
void fetch_close_line(struct cmd_ctx *ctx, const struct fetch_msg *m);

/* Sends the collected responses (reply_line). */
void fetch_flush_lines(struct cmd_ctx *ctx);

/* Marks m as not answerable (its content went away) and logs why. */
void fetch_content_broken(struct cmd_ctx *ctx, struct fetch_msg *m, const char *why);

#endif
