/*
 * mail_decode: transfer encodings (RFC 2045 §6, RFC 3516 BINARY), charsets to UTF-8, encoded words
 * (RFC 2047), parameter values (RFC 2231) and CRLF normalisation. All streaming where the input can
 * be large; included by mail.h.
 */
#ifndef CIMAP_MAIL_DECODE_H
#define CIMAP_MAIL_DECODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CIMAP_MAIL_H
#error "include frontend/mail/mail.h, not mail_decode.h"
#endif

enum mail_cte {
    MAIL_CTE_7BIT,   /* also used when the header is absent */
    MAIL_CTE_8BIT,
    MAIL_CTE_BINARY,
    MAIL_CTE_BASE64,
    MAIL_CTE_QP,     /* quoted-printable */
    MAIL_CTE_UNKNOWN /* BINARY must answer NO [UNKNOWN-CTE] (RFC 3516 §4.3) */
};

/* Classifies a Content-Transfer-Encoding value (case-insensitive; NULL data → 7BIT). */
enum mail_cte mail_cte_parse(const uint8_t *data, size_t len);

/* Worst-case bytes a decoder may emit beyond the input it is fed in one call. */
#define MAIL_DECODE_SLACK 260

/* Streaming CTE decoder state; plain data, no allocation (no free function). */
struct mail_decoder {
    enum mail_cte cte;
    uint32_t b64_bits;
    uint8_t b64_count;
    bool b64_done;      /* '=' padding seen: rest ignored */
    uint8_t qp_state;   /* after '=', '=X', '=' + whitespace, '=' + CR */
    uint8_t qp_hex;     /* the X of a pending "=X" */
    uint8_t qp_ws[256]; /* trailing whitespace held until we know the line goes on */
    uint16_t qp_ws_len;
    uint64_t total;     /* bytes emitted so far */
};

/* Starts decoding cte (UNKNOWN behaves like 7BIT: identity). */
void mail_decoder_init(struct mail_decoder *d, enum mail_cte cte);

/*
 * Decodes in[0..len) into out, which must hold len + MAIL_DECODE_SLACK bytes; returns the number
 * of bytes written. Invalid input is never an error: base64 skips characters outside its alphabet,
 * quoted-printable passes malformed "=" sequences through literally.
 */
size_t mail_decoder_feed(struct mail_decoder *d, const uint8_t *in, size_t len, uint8_t *out);

/* Flushes held bytes into out (room for MAIL_DECODE_SLACK); returns the number written. */
size_t mail_decoder_finish(struct mail_decoder *d, uint8_t *out);

/* Convenience: decodes in whole and appends to *out. */
void mail_decode_all(enum mail_cte cte, const uint8_t *in, size_t len, struct mail_buf *out);

/* What BINARY[section] needs: the part's raw body range, its encoding and decoded size. */
struct mail_binary {
    const struct mail_part *part;
    uint64_t offset, size;  /* raw (encoded) body bytes to read and decode */
    enum mail_cte cte;      /* MAIL_CTE_UNKNOWN: answer NO [UNKNOWN-CTE] */
    bool decoded_size_known;
    uint64_t decoded_size;  /* BINARY.SIZE (known for every leaf with a known CTE) */
};

/*
 * Resolves BINARY[path] (only part numbers are allowed, RFC 3516 §4.1; an empty path means the
 * whole message, not decoded). Returns 0, or -1 when no such part exists or the section carries a
 * HEADER/TEXT/MIME specifier.
 */
int mail_view_binary(const struct mail_view *view, const struct mail_section *section,
                     struct mail_binary *out, const char **error_r);

/* ---- charsets ---- */

/* Streaming conversion of one charset to UTF-8; plain data (no free function). */
struct mail_charset_conv {
    const uint16_t *table; /* single-byte charsets: code points of bytes 0x80..0xFF */
    bool utf8;             /* UTF-8 (and unknown charsets): validated, bad bytes → U+FFFD */
    uint8_t pend[4];       /* UTF-8 sequence split across feeds */
    uint8_t pend_len;
};

/*
 * Sets up conversion from the named charset (case-insensitive, RFC 2231 "*lang" suffix ignored).
 * Supports UTF-8, US-ASCII, ISO-8859-1, -2, -15, Windows-1250, -1251, -1252, KOI8-R. Returns true
 * when the charset is known; otherwise the conversion still works, treating input as UTF-8.
 * name == NULL means US-ASCII.
 */
bool mail_charset_conv_init(struct mail_charset_conv *c, const uint8_t *name, size_t len);

/* Converts in[0..len) and appends UTF-8 to *out. */
void mail_charset_conv_feed(struct mail_charset_conv *c, const uint8_t *in, size_t len,
                            struct mail_buf *out);

/* Flushes an incomplete trailing sequence (as U+FFFD). */
void mail_charset_conv_finish(struct mail_charset_conv *c, struct mail_buf *out);

/* True when the charset name is one mail_charset_conv_init knows. */
bool mail_charset_known(const uint8_t *name, size_t len);

/* ---- header words and parameters ---- */

/*
 * Decodes RFC 2047 encoded-words in an (unfolded) header value and appends UTF-8 to *out;
 * whitespace between adjacent encoded words is dropped (§6.2), other text is converted from
 * UTF-8/Latin-1 guessing (8-bit raw headers are common). Malformed words are kept as they are.
 */
void mail_header_decode(const uint8_t *value, size_t len, struct mail_buf *out);

/*
 * Decodes an RFC 2231 extended value ("charset'lang'%XX..." as kept in a "name*" mail_param) to
 * UTF-8, appended to *out. A value without two quotes is taken as percent-encoded UTF-8.
 */
void mail_param_decode_2231(const uint8_t *value, size_t len, struct mail_buf *out);

/*
 * Finds parameter name (case-insensitive, without '*') in params and appends its UTF-8 value to
 * *out (decoding RFC 2231 or RFC 2047 as needed). Returns true when found.
 */
bool mail_param_get(const struct mail_param *params, size_t n, const char *name,
                    struct mail_buf *out);

/* ---- CRLF normalisation (before parsing and storing) ---- */

struct mail_crlf_normaliser {
    bool last_cr; /* the previous chunk ended with CR */
};

/*
 * Appends in[0..len) to *out with every bare LF turned into CRLF (CR alone is left alone). Chunks
 * may split a CRLF. Returns the number of bytes appended.
 */
size_t mail_crlf_normalise(struct mail_crlf_normaliser *n, const uint8_t *in, size_t len,
                           struct mail_buf *out);

#endif
