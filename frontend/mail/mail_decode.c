/*
 * mail_decode: streaming Content-Transfer-Encoding decoders (RFC 2045 §6.7 quoted-printable, §6.8
 * base64) for BINARY (RFC 3516), body search and BINARY.SIZE, plus the CRLF normaliser.
 *
 * Decoders are byte state machines with no allocation: the caller owns the output buffer, sized by
 * MAIL_DECODE_SLACK. They are lenient as RFC 2045 recommends for readers: base64 ignores characters
 * outside its alphabet, quoted-printable passes malformed '=' sequences through and drops trailing
 * whitespace on encoded lines (held back, bounded, until the line's end shows it was trailing).
 * Charsets are not this file's business (mail_charset.c).
 */
#include <string.h>

#include "frontend/mail/mail_private.h"

enum qp_state { QP_NORMAL, QP_EQ, QP_EQ_HEX1, QP_EQ_WS, QP_EQ_CR };

enum mail_cte mail_cte_parse(const uint8_t *data, size_t len)
{
    const uint8_t *tok;
    size_t tok_len;
    mail_first_token(data, len, &tok, &tok_len);
    if (tok == NULL || mail_span_eq(tok, tok_len, "7bit"))
        return MAIL_CTE_7BIT;
    if (mail_span_eq(tok, tok_len, "8bit"))
        return MAIL_CTE_8BIT;
    if (mail_span_eq(tok, tok_len, "binary"))
        return MAIL_CTE_BINARY;
    if (mail_span_eq(tok, tok_len, "base64"))
        return MAIL_CTE_BASE64;
    if (mail_span_eq(tok, tok_len, "quoted-printable"))
        return MAIL_CTE_QP;
    return MAIL_CTE_UNKNOWN;
}

void mail_decoder_init(struct mail_decoder *d, enum mail_cte cte)
{
    memset(d, 0, sizeof(*d));
    d->cte = cte;
}

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = mail_lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

static int8_t b64val(uint8_t c)
{
    if (c >= 'A' && c <= 'Z')
        return (int8_t)(c - 'A');
    if (c >= 'a' && c <= 'z')
        return (int8_t)(c - 'a' + 26);
    if (c >= '0' && c <= '9')
        return (int8_t)(c - '0' + 52);
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

static size_t b64_flush_partial(struct mail_decoder *d, uint8_t *out)
{
    size_t n = 0;
    if (d->b64_count == 2) {
        out[n++] = (uint8_t)(d->b64_bits >> 4);
    } else if (d->b64_count == 3) {
        out[n++] = (uint8_t)(d->b64_bits >> 10);
        out[n++] = (uint8_t)(d->b64_bits >> 2);
    }
    d->b64_count = 0;
    d->b64_bits = 0;
    return n;
}

static size_t b64_feed(struct mail_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t n = 0;
    if (d->b64_done)
        return 0;
    for (size_t i = 0; i < len; i++) {
        int8_t v = b64val(in[i]);
        if (v < 0) {
            if (in[i] == '=') {
                n += b64_flush_partial(d, out + n);
                d->b64_done = true;
                break;
            }
            continue;
        }
        d->b64_bits = (d->b64_bits << 6) | (uint32_t)v;
        if (++d->b64_count == 4) {
            out[n++] = (uint8_t)(d->b64_bits >> 16);
            out[n++] = (uint8_t)(d->b64_bits >> 8);
            out[n++] = (uint8_t)d->b64_bits;
            d->b64_count = 0;
            d->b64_bits = 0;
        }
    }
    return n;
}

static size_t qp_flush_ws(struct mail_decoder *d, uint8_t *out)
{
    size_t n = d->qp_ws_len;
    memcpy(out, d->qp_ws, n);
    d->qp_ws_len = 0;
    return n;
}

static size_t qp_feed(struct mail_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        uint8_t c = in[i];
    again:
        switch ((enum qp_state)d->qp_state) {
        case QP_NORMAL:
            if (c == ' ' || c == '\t') {
                if (d->qp_ws_len == sizeof(d->qp_ws))
                    n += qp_flush_ws(d, out + n);
                d->qp_ws[d->qp_ws_len++] = c;
            } else if (c == '\r' || c == '\n') {
                d->qp_ws_len = 0; /* trailing whitespace is not part of the text */
                out[n++] = c;
            } else if (c == '=') {
                n += qp_flush_ws(d, out + n);
                d->qp_state = QP_EQ;
            } else {
                if (d->qp_ws_len > 0)
                    n += qp_flush_ws(d, out + n);
                out[n++] = c;
            }
            break;
        case QP_EQ:
            if (hexval(c) >= 0) {
                d->qp_hex = c;
                d->qp_state = QP_EQ_HEX1;
            } else if (c == '\r') {
                d->qp_state = QP_EQ_CR;
            } else if (c == '\n') {
                d->qp_state = QP_NORMAL; /* soft line break */
            } else if (c == ' ' || c == '\t') {
                d->qp_ws[d->qp_ws_len++] = c;
                d->qp_state = QP_EQ_WS;
            } else {
                out[n++] = '=';
                d->qp_state = QP_NORMAL;
                goto again;
            }
            break;
        case QP_EQ_HEX1:
            d->qp_state = QP_NORMAL;
            if (hexval(c) >= 0) {
                out[n++] = (uint8_t)(hexval(d->qp_hex) << 4 | hexval(c));
            } else {
                out[n++] = '=';
                out[n++] = d->qp_hex;
                goto again;
            }
            break;
        case QP_EQ_WS:
            if (c == ' ' || c == '\t') {
                if (d->qp_ws_len == sizeof(d->qp_ws)) {
                    out[n++] = '=';
                    n += qp_flush_ws(d, out + n);
                    d->qp_state = QP_NORMAL;
                    goto again;
                }
                d->qp_ws[d->qp_ws_len++] = c;
            } else if (c == '\r') {
                d->qp_ws_len = 0;
                d->qp_state = QP_EQ_CR;
            } else if (c == '\n') {
                d->qp_ws_len = 0;
                d->qp_state = QP_NORMAL;
            } else {
                out[n++] = '=';
                n += qp_flush_ws(d, out + n);
                d->qp_state = QP_NORMAL;
                goto again;
            }
            break;
        case QP_EQ_CR:
            d->qp_state = QP_NORMAL;
            if (c != '\n')
                goto again; /* "=\r" then text: a broken soft break */
            break;
        }
    }
    return n;
}

size_t mail_decoder_feed(struct mail_decoder *d, const uint8_t *in, size_t len, uint8_t *out)
{
    size_t n;
    switch (d->cte) {
    case MAIL_CTE_BASE64:
        n = b64_feed(d, in, len, out);
        break;
    case MAIL_CTE_QP:
        n = qp_feed(d, in, len, out);
        break;
    default:
        memcpy(out, in, len);
        n = len;
        break;
    }
    d->total += n;
    return n;
}

size_t mail_decoder_finish(struct mail_decoder *d, uint8_t *out)
{
    size_t n = 0;
    if (d->cte == MAIL_CTE_BASE64 && !d->b64_done) {
        n = b64_flush_partial(d, out);
        d->b64_done = true;
    } else if (d->cte == MAIL_CTE_QP) {
        if (d->qp_state == QP_EQ) {
            out[n++] = '=';
        } else if (d->qp_state == QP_EQ_HEX1) {
            out[n++] = '=';
            out[n++] = d->qp_hex;
        }
        d->qp_state = QP_NORMAL;
        d->qp_ws_len = 0;
    }
    d->total += n;
    return n;
}

void mail_decode_all(enum mail_cte cte, const uint8_t *in, size_t len, struct mail_buf *out)
{
    struct mail_decoder d;
    mail_decoder_init(&d, cte);
    mail_buf_reserve(out, len + MAIL_DECODE_SLACK);
    out->len += mail_decoder_feed(&d, in, len, out->data + out->len);
    out->len += mail_decoder_finish(&d, out->data + out->len);
}

size_t mail_crlf_normalise(struct mail_crlf_normaliser *n, const uint8_t *in, size_t len,
                           struct mail_buf *out)
{
    size_t before = out->len;
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (in[i] != '\n')
            continue;
        bool cr = i > 0 ? in[i - 1] == '\r' : n->last_cr;
        if (!cr) {
            mail_buf_append(out, in + start, i - start);
            mail_buf_append(out, "\r", 1);
            start = i;
        }
    }
    mail_buf_append(out, in + start, len - start);
    if (len > 0)
        n->last_cr = in[len - 1] == '\r';
    return out->len - before;
}
