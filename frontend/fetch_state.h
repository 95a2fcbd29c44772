/*
 * fetch_state: the state of a running FETCH, shared by cmd_fetch.c (batches, the loop, \Seen,
 * rendering), fetch_columns.c (the column reads, through the column caches), fetch_content.c
 * (content windows, small reads) and fetch_stream.c (one large message streamed in chunks).
 * Internal to those files; owned by the command (its arena), with the arenas, builders and
 * buffers below freed by the command's cleanup.
 */
#ifndef CIMAP_FETCH_STATE_H
#define CIMAP_FETCH_STATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/colcache.h"
#include "frontend/conn.h"
#include "frontend/fetch_att.h"
#include "frontend/fetch_render.h"
#include "frontend/seqset.h"

struct selected;
struct evbuffer;

/* Limits (cmd_fetch.c explains the flow). */
#define FETCH_BATCH COLCACHE_CHUNK       /* messages per column read: one cache chunk */
#define FETCH_BATCH_COLUMNS (4 * COLCACHE_CHUNK) /* the same when only columns are answered (FLAGS,
                                          * UID, ...): small replies, fewer round trips matter most */
#define FETCH_STORE_MAX 1000             /* UIDs per store.lua call (its limit) */
#define FETCH_CACHE_SHARE 4              /* a chunk's cache is read when the batch holds at least
                                          * 1/FETCH_CACHE_SHARE of the view's messages in it */
#define FETCH_REBUILD_MIN 64             /* a present chunk is rebuilt when this many of the batch's
                                          * messages are above its upto (new mail) */
#define FETCH_WINDOW_PARSE 64            /* parses read per content read */
#define FETCH_WINDOW_BUILD 256           /* the same when only parses are read (cache building) */
#define FETCH_WINDOW_FIELDS 500          /* messages per content window */
#define FETCH_SMALL (256 * 1024)         /* a message reading more is streamed alone */
#define FETCH_DATA_BUDGET (1024 * 1024)  /* raw bytes per GETRANGE transaction */
#define FETCH_DATA_MSGS 256              /* messages per GETRANGE transaction */
#define FETCH_CHUNK (256 * 1024)         /* one GETRANGE while streaming */
#define FETCH_FILTER_MAX (16u << 20)     /* largest header filtered by hand */
#define FETCH_DECODE_SLICE (64 * 1024)   /* bytes decoded at a time while streaming */
#define FETCH_LINES_FLUSH (64 * 1024)    /* responses collected before they go out together */

/* A column cache chunk the batch touches (fetch_columns.c). */
struct fetch_chunk {
    uint32_t chunk;
    size_t first, end;            /* msgs[first..end) have their UIDs in it */
    uint32_t upto;                /* the highest view UID in it + 1 */
    bool whole;                   /* the batch holds every view UID in it: it can be built */
    bool use;                     /* its caches are read (the batch holds enough of it) */
    bool have_f, have_m;          /* a well-formed value was read (f, m: open on it) */
    struct colcache f, m;
    bool build_f, build_m;        /* built from this batch's old-way reads */
    bool guard_ok;                /* guard holds the ZCOUNT read with those reads */
    uint64_t guard;               /* UIDs of the mailbox in [chunk first, upto) */
    bool building;                /* mb is open: parses are being added as they are read */
    size_t mb_want, mb_added;     /* messages to add, added */
    struct colcache_builder mb;   /* the 'm' value being built (malloc'd; freed at batch end) */
};

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
    struct fetch_chunk *chunks;   /* the cache chunks of the batch, ascending */
    struct colcache_rec *recs;    /* COLCACHE_CHUNK records: a value being checked (batch) */
    size_t nchunks;
    bool caches;                  /* colcache_enabled: the caches are read and built */
    bool cache_read;              /* the batch's caches were read, at modseq cache_modseq */
    uint64_t cache_modseq;
    bool building;                /* some chunk of the batch has an 'm' value being built */
    char *values;                 /* the cache values read for the batch (malloc'd, reused) */
    size_t values_cap;
    size_t *miss_m;               /* msgs whose msg column is read the old way */
    size_t nmiss_m;
    size_t *miss_f;               /* msgs whose flags column is read the old way (or, without
                                   * the msg column, whose existence is checked the old way) */
    size_t nmiss_f;
    size_t seen_next;             /* fetch_set_seen: next message to look at */
    size_t n;
    size_t i;                     /* next message to answer */
    size_t cw_start, cw_end;      /* content window: msgs[cw_start..cw_end) have their content */
    uint8_t *cw_ways;             /* per message of the window: how its content is read (as
                                   * sent: a build given up meanwhile does not change it) */
    bool cw_probe;                /* the content read starts with HGET highestmodseq */
    size_t dw_end;                /* data window being read: msgs[i..dw_end) */
    struct fetch_source **srcs;   /* per message of the data window: one source per item */
    size_t *first_read;           /* per message of the data window: index of its first read */
    struct mail_pieces pieces;    /* scratch for fetch_source_resolve */
    struct mail_buf buf;          /* scratch for fetch_source_write and decoding */
    struct mail_buf out;          /* responses not sent yet: complete ones joined by CRLF, then
                                   * the one being built (reply_line adds the last CRLF) */
    size_t line_start;            /* where the one being built starts in out */
    struct evbuffer *line;        /* out on its way to the connection (fetch_flush_lines) */
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

/* The command's name for tagged replies: "FETCH" or "UID FETCH". */
const char *fetch_name(const struct cmd_ctx *ctx);

/*
 * Reads the columns of the batch msgs[0..n) (fetch_columns.c): the caches first, the old way for
 * what they leave unknown; builds the chunks it can; continues with fetch_columns_done.
 */
enum cmd_status fetch_read_columns_of_batch(struct cmd_ctx *ctx);

/* After the columns: \Seen for non-PEEK body items, then the messages (cmd_fetch.c). */
enum cmd_status fetch_columns_done(struct cmd_ctx *ctx);

/* Frees the batch's cache builders (fetch_columns.c); before the batch arena is reset. */
void fetch_chunks_free(struct fetch_state *st);

/*
 * Adds msgs[k]'s parse to the 'm' chunk being built for it, or marks that build failed
 * (parse == NULL); stores the chunk once its last message is in (fetch_columns.c).
 */
void fetch_chunk_add_parse(struct cmd_ctx *ctx, size_t k, const uint8_t *parse, size_t len);

/*
 * Gives up the 'm' builds that cannot be stored any more: the mailbox's highestmodseq (known:
 * read as a number) is not the one they are built at (cache_put.lua would refuse them), so the
 * parses still to be read only for them are not read.
 */
void fetch_builds_check(struct cmd_ctx *ctx, bool known, uint64_t highest);

/* Stores the 'm' chunks whose messages are all in (those before msgs[upto]). */
void fetch_chunks_finish(struct cmd_ctx *ctx, size_t upto);

/* Parses a msg record "<sha256> <internaldate> <size> <emailid> <threadid>" into m (arena a). */
bool fetch_parse_record(struct arena *a, const char *s, size_t len, struct fetch_msg *m);

/* True when the message's content (env/bs/parse) must be read or opened before it is answered. */
bool fetch_needs_content(const struct fetch_state *st, const struct fetch_msg *m);

/*
 * Opens the content window starting at msgs[i] (fetch_content.c): views over cached parses are
 * opened at once. Returns true when some of its messages need a content read (fetch_read_content).
 */
bool fetch_open_window(struct cmd_ctx *ctx);

/* Reads the content of the window's messages that need it; continues with fetch_run. */
enum cmd_status fetch_read_content(struct cmd_ctx *ctx);

/* Closes the window's views. */
void fetch_close_views(struct fetch_state *st);

/* Reads and answers the body items of msgs[i...] (fetch_content.c). */
enum cmd_status fetch_read_data(struct cmd_ctx *ctx);

/*
 * Renders m whole into st->out (cmd_fetch.c). srcs: its sources (body items), reads: the GETRANGE
 * replies for them. A message that cannot be answered is left out.
 */
void fetch_render_message(struct cmd_ctx *ctx, struct fetch_msg *m, const struct fetch_source *srcs,
                          redisReply *const *reads, size_t nreads);

/* Streams msgs[i] alone (its body items read more than FETCH_SMALL); srcs: its sources. */
enum cmd_status fetch_stream_start(struct cmd_ctx *ctx, struct fetch_source *srcs);

/* Starts a message's response in st->out: "* <seq> FETCH (". */
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
