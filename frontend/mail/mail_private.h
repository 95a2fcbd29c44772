/*
 * mail_private: what the mail_*.c files share and nobody else sees: the parse-time model that
 * mail_parse.c builds and mail_serial.c writes, the view's layout, small byte helpers and the
 * structured-header-value parsers (Content-Type and friends).
 */
#ifndef CIMAP_MAIL_PRIVATE_H
#define CIMAP_MAIL_PRIVATE_H

#include "frontend/mail/mail.h"

#define MAIL_NONE UINT32_MAX

/* ---- parse-time model (owned by the parser, strings in its pool) ---- */

/* A string in a pool: len == MAIL_NONE means NIL. */
struct mp_str {
    uint32_t off;
    uint32_t len;
};

struct mp_param {
    struct mp_str name, value;
};

struct mp_field {
    struct mp_str name;
    uint64_t offset, size;
};

/* Header slots captured while parsing a header block (first occurrence wins). */
enum mp_slot {
    MP_SLOT_CONTENT_TYPE = MAIL_ENV_COUNT,
    MP_SLOT_CTE,
    MP_SLOT_ID,
    MP_SLOT_DESCRIPTION,
    MP_SLOT_MD5,
    MP_SLOT_DISPOSITION,
    MP_SLOT_LANGUAGE,
    MP_SLOT_LOCATION,
    MP_SLOT_COUNT
};

struct mp_part {
    enum mail_part_kind kind;
    uint32_t parent, n_children, depth;
    bool is_message_header; /* root, or the child of a MESSAGE part: has an envelope */
    bool global;
    bool fields_truncated;
    bool decoded_size_known;
    uint64_t header_offset, header_size, body_offset, body_size, body_lines, decoded_size;
    uint64_t lf_at_body;     /* LFs seen before the body started */
    struct mp_str slot[MP_SLOT_COUNT]; /* raw unfolded values */
    struct mp_str type, subtype, disposition;
    uint32_t param_first, param_count, dparam_first, dparam_count, lang_first, lang_count;
    uint32_t field_first, field_count;
};

/* Everything the serialiser needs from a finished parse. */
struct mp_model {
    uint64_t size;
    const struct mp_part *parts;
    uint32_t n_parts;
    const struct mp_param *params;
    uint32_t n_params;
    const struct mp_str *strs; /* languages */
    uint32_t n_strs;
    const struct mp_field *fields;
    uint32_t n_fields;
    const uint8_t *pool;
    size_t pool_len;
};

/* Appends the serialised form of m to *out (mail_serial.c). */
int mail_serial_write(const struct mp_model *m, struct mail_buf *out, const char **error_r);

/* ---- views ---- */

struct mail_view {
    const uint8_t *blob;
    size_t blob_len;
    uint64_t size;
    uint32_t n_parts;
    struct mail_part *parts;
    struct mail_param *params;
    struct mail_str *strs;     /* languages and envelopes */
    struct mail_field *fields;
};

/* ---- serialisation ---- */

#define MAIL_BLOB_MAGIC0 'C'
#define MAIL_BLOB_MAGIC1 'M'
#define MAIL_BLOB_MAGIC2 'P'
#define MAIL_BLOB_VERSION 1

void mail_put_varint(struct mail_buf *b, uint64_t v);

/* ---- bytes ---- */

static inline uint8_t mail_lower(uint8_t c)
{
    return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
}

static inline bool mail_is_wsp(uint8_t c)
{
    return c == ' ' || c == '\t';
}

/* ASCII case-insensitive equality of a byte span and a C string literal. */
bool mail_span_eq(const uint8_t *s, size_t len, const char *word);
/* ASCII case-insensitive equality of two spans. */
bool mail_span_eq2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen);

/* Makes room for extra more bytes (no pointer into b moves until len + extra). */
void mail_buf_reserve(struct mail_buf *b, size_t extra);
/* Appends a NUL-free C string. */
void mail_buf_puts(struct mail_buf *b, const char *s);
/* Appends one byte (inline: the renderers call it for every parenthesis and space). */
static inline void mail_buf_putc(struct mail_buf *b, uint8_t c)
{
    if (b->cap == b->len)
        mail_buf_reserve(b, 1);
    b->data[b->len++] = c;
}
/* Appends a decimal number. */
void mail_buf_putu(struct mail_buf *b, uint64_t v);
/* Appends a code point as UTF-8. */
void mail_buf_put_utf8(struct mail_buf *b, uint32_t cp);

/* ---- structured header values (mail_mime.c) ---- */

/* A parameter as parsed (before RFC 2231 merging); spans point into the value or the scratch buf. */
struct mail_raw_param {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value;
    size_t value_len;
};

/* Result of parsing "type/subtype; a=b; ..." or "disposition; a=b". */
struct mail_ctype {
    const uint8_t *type;
    size_t type_len;       /* 0: none found */
    const uint8_t *subtype;
    size_t subtype_len;
    struct mail_param *params; /* merged; point into value or into scratch */
    size_t n_params;
};

#define MAIL_MAX_PARAMS 64

/*
 * Parses a Content-Type (want_subtype) or Content-Disposition value. Quoted values are unescaped
 * into scratch, RFC 2231 continuations are merged (into scratch). params must hold
 * MAIL_MAX_PARAMS entries. scratch must not be reallocated while the result is in use: it is
 * reserved up front (no pointer into it is taken before the reservation).
 */
void mail_ctype_parse(const uint8_t *v, size_t len, bool want_subtype, struct mail_ctype *out,
                      struct mail_param *params, struct mail_buf *scratch);

/* Splits a Content-Language value into tokens; calls fn for each. */
void mail_language_split(const uint8_t *v, size_t len,
                         void (*fn)(void *ctx, const uint8_t *tok, size_t tok_len), void *ctx);

/* Strips CFWS and returns the first token of a value (Content-Transfer-Encoding). */
void mail_first_token(const uint8_t *v, size_t len, const uint8_t **tok, size_t *tok_len);

/* ---- ENVELOPE addresses (mail_envelope.c) ---- */

void mail_render_address_list(struct mail_buf *out, const uint8_t *v, size_t len, unsigned flags,
                              bool *empty_r);

/* ---- charsets (mail_charset.c) ---- */

/* Converts bytes in charset (or UTF-8/Latin-1 guess when name is NULL) to UTF-8, appended. */
void mail_charset_to_utf8(const uint8_t *name, size_t name_len, const uint8_t *in, size_t len,
                          struct mail_buf *out);

/* Appends raw header text: valid UTF-8 as is, otherwise each byte as Latin-1 (Windows-1252). */
void mail_raw_to_utf8(const uint8_t *in, size_t len, struct mail_buf *out);

/* True when s is valid UTF-8 (no overlongs, surrogates or values past U+10FFFF). */
bool mail_utf8_valid(const uint8_t *s, size_t len);

#endif
