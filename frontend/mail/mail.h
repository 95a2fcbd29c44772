/*
 * mail: the message model (issue 4). A pure library, no I/O: cimapd and cimap-admin link it.
 *
 * Life of a message (DESIGN.md rule 6, "parse once"):
 *
 *   APPEND / delivery:  mail_parser_new → mail_parser_feed (any chunking) → mail_parser_finish
 *                       gives a serialised parse (a "blob", struct mail_buf) that is stored in
 *                       Redis beside the raw bytes. The raw bytes themselves are never copied.
 *   FETCH / SEARCH:     mail_view_open(blob) gives a read-only view (a part table pointing into the
 *                       blob) from which ENVELOPE, BODYSTRUCTURE and BODY are rendered and section
 *                       specs are resolved to byte ranges of the raw message ("pieces") that the
 *                       server reads with GETRANGE. Nothing is re-parsed.
 *
 * Offsets always refer to the bytes given to the parser. IMAP wants CRLF line ends on the wire: a
 * server that accepts bare-LF input (maildir import, LDA) should run the bytes through
 * mail_crlf_normaliser (mail_decode.h) *before* parsing and storing them.
 *
 * Part tree. Every part ("entity") has a header and a body. A MULTIPART part has child entities; a
 * MESSAGE part (message/rfc822, or message/global) has exactly one child: the encapsulated message,
 * whose header is the encapsulated message header. The root is the message itself. Parts are kept in
 * pre-order (the root is index 0). Section numbers follow RFC 3501 §6.4.5.
 *
 * Errors: fallible functions return 0 on success and -1 on failure with a static reason in
 * *error_r. Malformed mail is never an error: the parser always produces a valid tree (worst case a
 * text/plain leaf). Allocation failure aborts the process (like frontend/arena.h).
 *
 * Thread-safety: no global state; distinct objects may be used from different threads.
 */
#ifndef CIMAP_MAIL_H
#define CIMAP_MAIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- growable byte buffer (outputs of this library) ---- */

/* Owned by whoever declared it; zero-initialise ({0}) before first use, release with mail_buf_free. */
struct mail_buf {
    uint8_t *data; /* not NUL-terminated unless stated */
    size_t len;
    size_t cap;
};

/* Appends len bytes (aborts on OOM). */
void mail_buf_append(struct mail_buf *b, const void *data, size_t len);
/* Sets len to 0, keeps the allocation. */
void mail_buf_reset(struct mail_buf *b);
/* Frees the storage and zeroes *b. NULL-safe. */
void mail_buf_free(struct mail_buf *b);

/* ---- parsing ---- */

struct mail_limits {
    uint32_t max_depth;        /* nesting of multipart / message parts (deeper: leaf); default 50 */
    uint32_t max_parts;        /* parts in total (more: absorbed in the current body); default 10000 */
    uint32_t max_fields;       /* header fields indexed per part (more: fields_truncated); 10000 */
    uint32_t max_field_value;  /* bytes of one captured header value (longer: cut); 256 KiB */
    uint32_t max_boundary;     /* longest boundary parameter honoured (longer: leaf); 200 */
};

/* Fills the defaults quoted above. */
void mail_limits_default(struct mail_limits *limits);

struct mail_parser;

/* Creates a parser. limits may be NULL for the defaults; it is copied. Aborts on OOM. */
struct mail_parser *mail_parser_new(const struct mail_limits *limits);

/*
 * Consumes the next len bytes of the message. Chunks may split lines, headers and boundaries
 * anywhere; the parser keeps at most one (bounded) header line and a boundary-sized prefix, so memory
 * grows with the number of parts and header fields, never with body size. data need not stay valid
 * after the call. Never fails on malformed input.
 */
void mail_parser_feed(struct mail_parser *p, const uint8_t *data, size_t len);

/*
 * Ends the message and appends its serialised parse to *blob_r (the caller owns it). The parser
 * cannot be fed again. Returns 0, or -1 if the message exceeds the format (a part offset or count
 * beyond 2^32 parts / 2^48 bytes).
 */
int mail_parser_finish(struct mail_parser *p, struct mail_buf *blob_r, const char **error_r);

/* Frees the parser; sets *p to NULL. NULL-safe. */
void mail_parser_free(struct mail_parser **p);

/* One-shot convenience: parse msg[0..len) with limits (NULL: defaults) into *blob_r. */
int mail_parse(const uint8_t *msg, size_t len, const struct mail_limits *limits,
               struct mail_buf *blob_r, const char **error_r);

/* ---- the view over a stored parse ---- */

/* A string inside the blob (not NUL-terminated). data == NULL means NIL / absent. */
struct mail_str {
    const uint8_t *data;
    size_t len;
};

struct mail_param {
    struct mail_str name;  /* as written; RFC 2231 continuations merged into "name*" */
    struct mail_str value; /* quotes removed; for "name*" the charset'lang'%XX form */
};

/* One header field: where it is in the raw message (name + ':' + value + its line end(s)). */
struct mail_field {
    struct mail_str name; /* as written, trailing whitespace removed */
    uint64_t offset;      /* absolute offset in the raw message */
    uint64_t size;        /* bytes up to and including the line end of its last continuation */
};

/* Raw (unfolded, trimmed) envelope header values of a message header. */
enum mail_env_field {
    MAIL_ENV_DATE,
    MAIL_ENV_SUBJECT,
    MAIL_ENV_FROM,
    MAIL_ENV_SENDER,
    MAIL_ENV_REPLY_TO,
    MAIL_ENV_TO,
    MAIL_ENV_CC,
    MAIL_ENV_BCC,
    MAIL_ENV_IN_REPLY_TO,
    MAIL_ENV_MESSAGE_ID,
    MAIL_ENV_REFERENCES,
    MAIL_ENV_COUNT
};

enum mail_part_kind {
    MAIL_PART_LEAF,      /* anything that is not parsed further */
    MAIL_PART_MULTIPART, /* children: the body parts */
    MAIL_PART_MESSAGE,   /* message/rfc822 or message/global: one child, the encapsulated message */
};

/* A part as seen through a view. All pointers point into the view (valid until mail_view_free). */
struct mail_part {
    enum mail_part_kind kind;
    uint32_t index;          /* pre-order position; the root is 0 */
    uint32_t parent;         /* UINT32_MAX for the root */
    uint32_t n_children;     /* children are index+1 ... in pre-order; see next_sibling */
    uint32_t next_sibling;   /* index after this part's subtree (== part count at the end) */
    bool global;             /* message/global (RFC 6532) */
    bool fields_truncated;   /* more than max_fields header fields: fields[] is incomplete */
    bool decoded_size_known; /* a leaf with a known CTE: decoded_size is its BINARY size */
    uint64_t header_offset, header_size; /* header incl. the blank line that ends it (if any) */
    uint64_t body_offset, body_size;
    uint64_t body_lines;     /* LFs in the body, plus one for a final line without LF */
    uint64_t decoded_size;
    struct mail_str type, subtype; /* effective Content-Type (defaults filled in) */
    const struct mail_param *params;
    size_t n_params;
    struct mail_str id, description, encoding, md5, location; /* encoding: defaults to "7BIT" */
    struct mail_str disposition;   /* NIL when no Content-Disposition */
    const struct mail_param *disposition_params;
    size_t n_disposition_params;
    const struct mail_str *languages;
    size_t n_languages;
    const struct mail_str *envelope; /* MAIL_ENV_COUNT values for message headers, else NULL */
    const struct mail_field *fields;
    size_t n_fields;
};

struct mail_view;

/*
 * Opens a view on a serialised parse. The view points into blob, which must stay valid and
 * unchanged until mail_view_free. Returns 0, or -1 when the blob is not a (supported version of a)
 * serialised parse or is corrupt: every offset and count is checked.
 */
int mail_view_open(const uint8_t *blob, size_t len, struct mail_view **view_r, const char **error_r);

/* Frees the view; sets *view to NULL. NULL-safe. */
void mail_view_free(struct mail_view **view);

/* Size in bytes of the raw message (RFC822.SIZE when stored with CRLF line ends). */
uint64_t mail_view_size(const struct mail_view *view);

/* Number of parts (>= 1) and the part at index (index < count, else NULL). */
uint32_t mail_view_part_count(const struct mail_view *view);
const struct mail_part *mail_view_part(const struct mail_view *view, uint32_t index);

/* The root message header part (index 0); always has an envelope. */
const struct mail_part *mail_view_root(const struct mail_view *view);

/* ---- rendering (RFC 3501 §7.4.2, RFC 9051 §7.5.2) ---- */

enum mail_render_flags {
    MAIL_RENDER_EXTENSIONS = 1 << 0, /* BODYSTRUCTURE (extension data) rather than BODY */
    MAIL_RENDER_GLOBAL = 1 << 1,     /* IMAP4rev2 / UTF8=ACCEPT: message/global as a message part */
    MAIL_RENDER_UTF8 = 1 << 2,       /* quoted strings may carry valid UTF-8 (else 8-bit → literal) */
};

/* Appends the parenthesised ENVELOPE of message header part msg (root or a MESSAGE's child). */
void mail_render_envelope(const struct mail_view *view, const struct mail_part *msg, unsigned flags,
                          struct mail_buf *out);

/* Appends BODYSTRUCTURE (flags & MAIL_RENDER_EXTENSIONS) or BODY of the whole message. */
void mail_render_bodystructure(const struct mail_view *view, unsigned flags, struct mail_buf *out);

/* Appends s as an IMAP nstring (NIL, quoted or literal), the way all rendering does. */
void mail_render_nstring(struct mail_buf *out, const uint8_t *s, size_t len, bool nil, unsigned flags);

/* ---- sections (RFC 3501 §6.4.5 FETCH BODY[section], RFC 3516 BINARY[section]) ---- */

enum mail_section_text {
    MAIL_SECTION_ALL,               /* BODY[] / BODY[1.2] : the part's whole content */
    MAIL_SECTION_HEADER,
    MAIL_SECTION_HEADER_FIELDS,
    MAIL_SECTION_HEADER_FIELDS_NOT,
    MAIL_SECTION_TEXT,
    MAIL_SECTION_MIME,
};

#define MAIL_SECTION_MAX_PATH 64

/* A parsed section spec; owned by the caller, release with mail_section_free. */
struct mail_section {
    uint32_t path[MAIL_SECTION_MAX_PATH]; /* part numbers, each >= 1 */
    size_t path_len;
    enum mail_section_text text;
    struct mail_str *names;  /* HEADER.FIELDS[.NOT] names (malloc'd copies, unquoted) */
    size_t n_names;
};

/*
 * Parses the text between '[' and ']' (e.g. "1.2.HEADER.FIELDS (From To)", "", "TEXT", "3.MIME").
 * Keywords are case-insensitive; field names are atoms or quoted strings. Returns 0, or -1 on a
 * syntax error (the server answers BAD). *section is overwritten; free it even after -1.
 */
int mail_section_parse(const char *text, size_t len, struct mail_section *section, const char **error_r);

/* Frees the names of a section (leaves it empty). */
void mail_section_free(struct mail_section *section);

/* What a section's content is made of: byte ranges of the raw message and constant bytes. */
struct mail_piece {
    uint64_t offset;   /* raw message offset (when literal == NULL) */
    uint64_t size;
    const char *literal; /* non-NULL: send these size static bytes instead (e.g. the final "\r\n") */
};

/* A list of pieces; zero-initialise, free with mail_pieces_free. total = sum of sizes. */
struct mail_pieces {
    struct mail_piece *v;
    size_t count, cap;
    uint64_t total;
    /*
     * HEADER.FIELDS[.NOT] on a part whose field index is truncated (fields_truncated): v holds the
     * whole header instead; read it and call mail_header_filter (mail_search.h) to get the bytes.
     */
    bool needs_filter;
};

void mail_pieces_free(struct mail_pieces *pieces);

/*
 * Resolves a section to pieces of the raw message (appended to *out after resetting it). Returns 0,
 * or -1 when the section names no part of this message, or names HEADER/TEXT of a part that is not
 * a message (the server answers with an empty string or NIL as its protocol version asks).
 */
int mail_view_section(const struct mail_view *view, const struct mail_section *section,
                      struct mail_pieces *out, const char **error_r);

/* Returns the part a section path designates (BODY[1.2] → part "1.2"; empty path → the root). */
const struct mail_part *mail_view_find_part(const struct mail_view *view, const uint32_t *path,
                                            size_t path_len);

/*
 * Restricts pieces to the partial range <origin.count> of their concatenation (RFC 3501 §6.4.5).
 * origin past the end gives no pieces (an empty string).
 */
void mail_pieces_slice(struct mail_pieces *pieces, uint64_t origin, uint64_t count);

/* Appends the section path as "1.2.3" (for echoing BODY[1.2.3] in a FETCH response). */
void mail_section_render(const struct mail_section *section, struct mail_buf *out);

#include "frontend/mail/mail_decode.h"
#include "frontend/mail/mail_search.h"

#endif
