/*
 * fetch_render: what one message's FETCH response is made of (RFC 3501 §7.4.2, RFC 3516 §4.2,
 * RFC 8474 §5). Renders the items that come from the message's columns and stored content fields,
 * and resolves body items to "sources": byte ranges of the raw message to read (GETRANGE), how to
 * turn them into the literal (as they are, CTE-decoded, or header-filtered) and the literal's size.
 * Pure, no I/O: cmd_fetch.c reads the bytes and writes them out.
 */
#ifndef CIMAP_FETCH_RENDER_H
#define CIMAP_FETCH_RENDER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "frontend/arena.h"
#include "frontend/fetch_att.h"
#include "frontend/mail/mail.h"

/* One message of a FETCH batch; strings live in the batch (or content window) arena. */
struct fetch_msg {
    uint32_t seq, uid;
    bool exists;             /* its record was read (not expunged by another session) */
    bool gone;               /* content missing or inconsistent: not answered */
    bool miss_msg;           /* its msg column is read the old way (HMGET), not from a cache */
    bool miss_flags;         /* the same for its flags column */
    bool build;              /* its parse goes into the 'm' cache chunk being built */
    uint32_t chunk_ix;       /* index of its cache chunk in the batch's chunk list */
    const char *rec;         /* the msg record as stored (for building the 'm' cache) */
    size_t rec_len;
    const uint8_t *parse;    /* the stored parse, when the 'm' cache gave it (batch arena) */
    size_t parse_len;
    const char *sha;         /* content id (NUL-terminated), when the msg column was read */
    int64_t internaldate;
    uint64_t size;
    const char *emailid;     /* "" when unknown */
    const char *threadid;    /* "" when unknown */
    const char *flags;       /* space-separated, NULL when none */
    size_t flags_len;
    bool flags_changed;      /* \Seen set by this FETCH: FLAGS is answered */
    bool content;            /* the content fields below were read */
    const char *env, *bs;    /* stored ENVELOPE / BODYSTRUCTURE, NULL when not read (then they
                              * are rendered from view, the same way APPEND rendered them) */
    size_t env_len, bs_len;
    struct mail_view *view;  /* over the stored parse, when read (freed with the window) */
};

/*
 * Appends one non-body item as "NAME value" (no leading space): UID, FLAGS (with \Recent when
 * uid >= recent_first), INTERNALDATE, RFC822.SIZE, ENVELOPE, BODY, BODYSTRUCTURE, EMAILID,
 * THREADID, BINARY.SIZE. ENVELOPE and BODYSTRUCTURE come from m->env / m->bs when read, else
 * from m->view. Returns 0, or -1 when BINARY.SIZE names a part of unknown transfer encoding
 * (the caller answers NO [UNKNOWN-CTE]); nothing is appended then.
 */
int fetch_render_item(struct mail_buf *out, const struct fetch_att *att, const struct fetch_msg *m,
                      uint32_t recent_first);

/* Appends the decimal digits of v. */
void fetch_put_u64(struct mail_buf *out, uint64_t v);

/* mail_buf_append with the common case (room left) inline: a response is many small pieces. */
static inline void fetch_put(struct mail_buf *out, const void *s, size_t len)
{
    if (out->data != NULL && out->cap - out->len >= len) {
        memcpy(out->data + out->len, s, len);
        out->len += len;
    } else {
        mail_buf_append(out, s, len);
    }
}

/* fetch_put of a string literal. */
#define FETCH_PUT_LIT(out, lit) fetch_put((out), (lit), sizeof(lit) - 1)

enum fetch_source_kind {
    FETCH_SOURCE_BYTES,       /* pieces, sent as they are */
    FETCH_SOURCE_DECODE,      /* one raw piece, CTE-decoded, then sliced to the partial range */
    FETCH_SOURCE_FILTER,      /* the whole header, filtered (HEADER.FIELDS on a truncated index) */
    FETCH_SOURCE_NIL,         /* the section names no part of this message */
    FETCH_SOURCE_UNKNOWN_CTE, /* BINARY of a part whose transfer encoding is unknown */
};

/* A body item of one message resolved against its parse. */
struct fetch_source {
    enum fetch_source_kind kind;
    struct mail_piece *v;    /* raw ranges (or constant bytes) in order (arena) */
    size_t count;
    uint64_t read_size;      /* raw bytes to read (sum of the non-constant pieces) */
    uint64_t out_size;       /* literal size (FILTER: known only after filtering) */
    enum mail_cte cte;       /* DECODE */
};

/*
 * Resolves a FETCH_ATT_SECTION item for m (m->view is needed unless att->whole). scratch is a
 * caller-owned, zero-initialised buffer reused across calls. The result lives in a.
 */
void fetch_source_resolve(struct arena *a, struct mail_pieces *scratch, const struct fetch_att *att,
                          const struct fetch_msg *m, struct fetch_source *src);

/* Appends "NAME " and the literal header "{n}\r\n" (or "~{n}\r\n" with literal8). */
void fetch_literal_header(struct mail_buf *out, const struct fetch_att *att, uint64_t size,
                          bool literal8);

/*
 * Appends a whole body item ("NAME " then its string) whose raw bytes are in reads: one GETRANGE
 * reply per non-constant piece, in order. scratch is a reusable buffer (not out). Returns 0, or
 * -1 when a reply is not a string of the expected length (the content went away): nothing is
 * appended.
 */
int fetch_source_write(struct mail_buf *out, const struct fetch_att *att,
                       const struct fetch_source *src, redisReply *const *reads, size_t nreads,
                       struct mail_buf *scratch);

/* Number of GETRANGE reads a source needs (its non-constant pieces). */
size_t fetch_source_reads(const struct fetch_source *src);

#endif
