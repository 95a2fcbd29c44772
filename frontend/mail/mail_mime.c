/*
 * mail_mime: parsers for the structured MIME header values (RFC 2045 §5 Content-Type, RFC 2183
 * Content-Disposition, RFC 3282 Content-Language, RFC 2045 §6 Content-Transfer-Encoding) with RFC
 * 2231 parameter continuations merged the way IMAP clients expect them in BODYSTRUCTURE: one
 * "name*" parameter holding charset'lang'%XX text, or one plain "name" when no segment was encoded.
 *
 * Tolerant by design: comments anywhere, junk between parameters, unquoted values with spaces
 * ("name=my file.pdf") and 8-bit bytes are accepted. It never fails; a value that yields no
 * type/subtype leaves the caller's default in place (RFC 2045 §5.2).
 */
#include <string.h>

#include "frontend/mail/mail_private.h"

static bool is_tspecial(uint8_t c)
{
    return c <= 0x20 || c == 0x7f || strchr("()<>@,;:\\\"/[]?=", c) != NULL;
}

static size_t skip_cfws(const uint8_t *v, size_t len, size_t i)
{
    while (i < len) {
        uint8_t c = v[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
        } else if (c == '(') {
            int depth = 0;
            while (i < len) {
                if (v[i] == '\\' && i + 1 < len) {
                    i += 2;
                    continue;
                }
                if (v[i] == '(')
                    depth++;
                else if (v[i] == ')' && --depth == 0) {
                    i++;
                    break;
                }
                i++;
            }
        } else {
            break;
        }
    }
    return i;
}

static size_t scan_token(const uint8_t *v, size_t len, size_t i)
{
    while (i < len && !is_tspecial(v[i]))
        i++;
    return i;
}

/* Skips a quoted string starting at v[i] == '"', unescaping into scratch when unq != NULL. */
static size_t scan_quoted(const uint8_t *v, size_t len, size_t i, struct mail_buf *unq)
{
    i++;
    while (i < len && v[i] != '"') {
        if (v[i] == '\\' && i + 1 < len)
            i++;
        if (unq != NULL && v[i] != '\r' && v[i] != '\n')
            unq->data[unq->len++] = v[i];
        i++;
    }
    return i < len ? i + 1 : i;
}

/* Moves past the next ';' at the top level (outside quotes and comments). */
static size_t skip_to_semicolon(const uint8_t *v, size_t len, size_t i)
{
    while (i < len) {
        if (v[i] == ';')
            return i + 1;
        if (v[i] == '"')
            i = scan_quoted(v, len, i, NULL);
        else if (v[i] == '(')
            i = skip_cfws(v, len, i);
        else
            i++;
    }
    return i;
}

static bool is_attr_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && !is_tspecial(c) && c != '*' && c != '\'' && c != '%';
}

static void pct_encode(struct mail_buf *b, const uint8_t *s, size_t len)
{
    static const char hex[] = "0123456789ABCDEF";
    for (size_t i = 0; i < len; i++) {
        if (is_attr_char(s[i])) {
            b->data[b->len++] = s[i];
        } else {
            b->data[b->len++] = '%';
            b->data[b->len++] = (uint8_t)hex[s[i] >> 4];
            b->data[b->len++] = (uint8_t)hex[s[i] & 15];
        }
    }
}

/* RFC 2231 name analysis: base length, section number (-1 none), extended flag. */
static void name_2231(const uint8_t *n, size_t len, size_t *base_r, long *section_r, bool *ext_r)
{
    const uint8_t *star = memchr(n, '*', len);
    *section_r = -1;
    *ext_r = false;
    if (star == NULL) {
        *base_r = len;
        return;
    }
    size_t i = (size_t)(star - n);
    *base_r = i;
    i++;
    if (i < len && n[i] >= '0' && n[i] <= '9') {
        long sec = 0;
        while (i < len && n[i] >= '0' && n[i] <= '9' && sec < 100000)
            sec = sec * 10 + (n[i++] - '0');
        *section_r = sec;
        if (i < len && n[i] == '*') {
            *ext_r = true;
            i++;
        }
    } else {
        *ext_r = true;
    }
    if (i != len) { /* "a*b": not RFC 2231, keep the name whole */
        *base_r = len;
        *section_r = -1;
        *ext_r = false;
    }
}

static void merge_2231(const struct mail_raw_param *raw, size_t n_raw, struct mail_ctype *out,
                       struct mail_param *params, struct mail_buf *scratch)
{
    bool done[MAIL_MAX_PARAMS] = { false };
    out->n_params = 0;
    for (size_t i = 0; i < n_raw; i++) {
        if (done[i])
            continue;
        size_t base;
        long sec;
        bool ext;
        name_2231(raw[i].name, raw[i].name_len, &base, &sec, &ext);
        struct mail_param *p = &params[out->n_params++];
        if (base == raw[i].name_len) { /* a plain parameter */
            p->name = (struct mail_str){ raw[i].name, raw[i].name_len };
            p->value = (struct mail_str){ raw[i].value, raw[i].value_len };
            done[i] = true;
            continue;
        }
        /* collect every segment of this base name, ordered by section number */
        size_t idx[MAIL_MAX_PARAMS];
        long secs[MAIL_MAX_PARAMS];
        bool exts[MAIL_MAX_PARAMS];
        size_t n = 0;
        bool any_ext = false;
        for (size_t j = i; j < n_raw; j++) {
            size_t b2;
            long s2;
            bool e2;
            if (done[j])
                continue;
            name_2231(raw[j].name, raw[j].name_len, &b2, &s2, &e2);
            if (b2 == raw[j].name_len || !mail_span_eq2(raw[j].name, b2, raw[i].name, base))
                continue;
            if (n > 0 && (s2 < 0 || secs[0] < 0))
                continue; /* "name*" mixed with sections: keep the first kind only */
            done[j] = true;
            size_t k = n++;
            while (k > 0 && secs[k - 1] > s2) {
                idx[k] = idx[k - 1];
                secs[k] = secs[k - 1];
                exts[k] = exts[k - 1];
                k--;
            }
            idx[k] = j;
            secs[k] = s2;
            exts[k] = e2;
            any_ext |= e2;
        }
        p->name = (struct mail_str){ raw[i].name, base + (any_ext ? 1 : 0) };
        const uint8_t *start = scratch->data + scratch->len;
        for (size_t k = 0; k < n; k++) {
            const struct mail_raw_param *r = &raw[idx[k]];
            if (!any_ext || exts[k]) {
                memcpy(scratch->data + scratch->len, r->value, r->value_len);
                scratch->len += r->value_len;
            } else {
                if (k == 0) {
                    scratch->data[scratch->len++] = '\'';
                    scratch->data[scratch->len++] = '\'';
                }
                pct_encode(scratch, r->value, r->value_len);
            }
        }
        p->value = (struct mail_str){ start, (size_t)(scratch->data + scratch->len - start) };
    }
}

void mail_ctype_parse(const uint8_t *v, size_t len, bool want_subtype, struct mail_ctype *out,
                      struct mail_param *params, struct mail_buf *scratch)
{
    struct mail_raw_param raw[MAIL_MAX_PARAMS];
    size_t n_raw = 0;
    memset(out, 0, sizeof(*out));
    out->params = params;
    mail_buf_reset(scratch);
    mail_buf_reserve(scratch, len * 4 + 256); /* unquoting ≤ len, merging ≤ 3 len + 2 per param */
    if (v == NULL)
        return;

    size_t i = skip_cfws(v, len, 0);
    size_t t0 = i;
    i = scan_token(v, len, i);
    if (i > t0) {
        const uint8_t *type = v + t0;
        size_t type_len = i - t0;
        if (want_subtype) {
            i = skip_cfws(v, len, i);
            if (i < len && v[i] == '/') {
                i = skip_cfws(v, len, i + 1);
                size_t s0 = i;
                i = scan_token(v, len, i);
                if (i > s0) {
                    out->type = type;
                    out->type_len = type_len;
                    out->subtype = v + s0;
                    out->subtype_len = i - s0;
                }
            }
        } else {
            out->type = type;
            out->type_len = type_len;
        }
    }
    while (i < len && n_raw < MAIL_MAX_PARAMS) {
        i = skip_to_semicolon(v, len, i);
        i = skip_cfws(v, len, i);
        size_t n0 = i;
        i = scan_token(v, len, i);
        if (i == n0)
            continue;
        size_t n1 = i;
        i = skip_cfws(v, len, i);
        if (i >= len || v[i] != '=')
            continue;
        i = skip_cfws(v, len, i + 1);
        struct mail_raw_param *r = &raw[n_raw];
        if (i < len && v[i] == '"') {
            r->value = scratch->data + scratch->len;
            size_t before = scratch->len;
            i = scan_quoted(v, len, i, scratch);
            r->value_len = scratch->len - before;
        } else {
            size_t v0 = i, end = i;
            /* up to ';', trimmed: tolerates unquoted spaces and specials */
            while (i < len && v[i] != ';') {
                if (v[i] == '(') {
                    i = skip_cfws(v, len, i);
                    continue;
                }
                if (!mail_is_wsp(v[i]) && v[i] != '\r' && v[i] != '\n')
                    end = i + 1;
                i++;
            }
            r->value = v + v0;
            r->value_len = end - v0;
        }
        r->name = v + n0;
        r->name_len = n1 - n0;
        n_raw++;
    }
    merge_2231(raw, n_raw, out, params, scratch);
}

void mail_language_split(const uint8_t *v, size_t len,
                         void (*fn)(void *ctx, const uint8_t *tok, size_t tok_len), void *ctx)
{
    size_t i = 0;
    while (v != NULL && i < len) {
        i = skip_cfws(v, len, i);
        size_t t0 = i;
        i = scan_token(v, len, i);
        if (i > t0)
            fn(ctx, v + t0, i - t0);
        else if (i < len)
            i++;
    }
}

void mail_first_token(const uint8_t *v, size_t len, const uint8_t **tok, size_t *tok_len)
{
    *tok = NULL;
    *tok_len = 0;
    if (v == NULL)
        return;
    size_t i = skip_cfws(v, len, 0);
    size_t t0 = i;
    i = scan_token(v, len, i);
    if (i > t0) {
        *tok = v + t0;
        *tok_len = i - t0;
    }
}
