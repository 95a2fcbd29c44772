/*
 * mail_charset: text to UTF-8 for SEARCH (RFC 3501 §6.4.4 matches on decoded text): charset
 * conversion, RFC 2047 encoded words in headers and RFC 2231 parameter values.
 *
 * Real mail mislabels charsets all the time, so UTF-8, US-ASCII and unknown charsets share one
 * lenient decoder: valid UTF-8 passes, every byte that is not part of a valid sequence is read as
 * Windows-1252 (the superset browsers use for Latin-1 labels). Single-byte charsets go through the
 * tables in mail_charset_tables.h. Multi-byte Asian charsets are not converted (they pass through the
 * lenient decoder), which only costs matches, never correctness of anything else.
 */
#include <string.h>

#include "frontend/mail/mail_charset_tables.h"
#include "frontend/mail/mail_private.h"

struct charset_name {
    const char *name; /* lowercase, '-' and '_' removed */
    const uint16_t *table;
};

static const struct charset_name charsets[] = {
    { "utf8", NULL },          { "usascii", NULL },          { "ascii", NULL },
    { "iso88591", tab_cp1252 }, { "latin1", tab_cp1252 },     { "l1", tab_cp1252 },
    { "iso885915", tab_iso8859_15 }, { "latin9", tab_iso8859_15 },
    { "iso88592", tab_iso8859_2 }, { "latin2", tab_iso8859_2 },
    { "windows1250", tab_cp1250 }, { "cp1250", tab_cp1250 },
    { "windows1251", tab_cp1251 }, { "cp1251", tab_cp1251 },
    { "windows1252", tab_cp1252 }, { "cp1252", tab_cp1252 },
    { "koi8r", tab_koi8_r },
};

/* Normalises a charset name into buf (lowercase, no '-', '_', RFC 2231 "*lang" cut). */
static size_t norm_name(const uint8_t *name, size_t len, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] == '*')
            break;
        if (name[i] == '-' || name[i] == '_' || name[i] == ' ' || name[i] == '"')
            continue;
        if (n + 1 >= cap)
            return 0;
        buf[n++] = (char)mail_lower(name[i]);
    }
    buf[n] = '\0';
    return n;
}

static const struct charset_name *find_charset(const uint8_t *name, size_t len)
{
    char buf[32];
    if (name == NULL || norm_name(name, len, buf, sizeof(buf)) == 0)
        return NULL;
    for (size_t i = 0; i < sizeof(charsets) / sizeof(charsets[0]); i++) {
        if (strcmp(buf, charsets[i].name) == 0)
            return &charsets[i];
    }
    return NULL;
}

bool mail_charset_known(const uint8_t *name, size_t len)
{
    return find_charset(name, len) != NULL;
}

bool mail_charset_conv_init(struct mail_charset_conv *c, const uint8_t *name, size_t len)
{
    memset(c, 0, sizeof(*c));
    const struct charset_name *cs = name == NULL ? &charsets[1] : find_charset(name, len);
    c->table = cs != NULL ? cs->table : NULL;
    c->utf8 = c->table == NULL;
    return cs != NULL;
}

/* Length of the valid UTF-8 sequence at s (0 if invalid, -1 if it may be valid but is cut). */
static int utf8_seq(const uint8_t *s, size_t len)
{
    uint8_t c = s[0];
    int n;
    uint32_t min;
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF) {
        n = 2;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        n = 3;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        n = 4;
        min = 0x10000;
    } else {
        return 0;
    }
    uint32_t cp = c & (0x7F >> n);
    for (int k = 1; k < n; k++) {
        if ((size_t)k >= len)
            return -1;
        if ((s[k] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[k] & 0x3F);
        /* reject early what can never become valid (overlong, surrogate, > U+10FFFF) */
        if (k == 1 && ((n == 3 && c == 0xE0 && s[1] < 0xA0) || (n == 3 && c == 0xED && s[1] >= 0xA0) ||
                       (n == 4 && c == 0xF0 && s[1] < 0x90) || (n == 4 && c == 0xF4 && s[1] >= 0x90)))
            return 0;
    }
    return cp >= min ? n : 0;
}

bool mail_utf8_valid(const uint8_t *s, size_t len)
{
    size_t i = 0;
    while (i < len) {
        int n = utf8_seq(s + i, len - i);
        if (n <= 0)
            return false;
        i += (size_t)n;
    }
    return true;
}

/* Lenient UTF-8: valid sequences copied, other bytes read as Windows-1252. Returns bytes used;
 * stops early (leaving a cut sequence) only when final is false. */
static size_t lenient_utf8(const uint8_t *in, size_t len, bool final, struct mail_buf *out)
{
    if (len == 0)
        return 0;
    size_t i = 0, run = 0;
    while (i < len) {
        if (in[i] < 0x80) {
            i++;
            continue;
        }
        int n = utf8_seq(in + i, len - i);
        if (n > 0) {
            i += (size_t)n;
            continue;
        }
        mail_buf_append(out, in + run, i - run);
        if (n < 0 && !final)
            return i;
        mail_buf_put_utf8(out, tab_cp1252[in[i] - 0x80]);
        i++;
        run = i;
    }
    mail_buf_append(out, in + run, i - run);
    return i;
}

void mail_charset_conv_feed(struct mail_charset_conv *c, const uint8_t *in, size_t len,
                            struct mail_buf *out)
{
    if (len == 0)
        return;
    if (!c->utf8) {
        size_t run = 0;
        for (size_t i = 0; i < len; i++) {
            if (in[i] < 0x80)
                continue;
            mail_buf_append(out, in + run, i - run);
            mail_buf_put_utf8(out, c->table[in[i] - 0x80]);
            run = i + 1;
        }
        mail_buf_append(out, in + run, len - run);
        return;
    }
    while (c->pend_len > 0 && len > 0) {
        /* complete the sequence cut at the end of the previous feed */
        uint8_t tmp[4];
        memcpy(tmp, c->pend, c->pend_len);
        size_t add = 0;
        while (c->pend_len + add < 4 && add < len) {
            tmp[c->pend_len + add] = in[add];
            add++;
        }
        int n = utf8_seq(tmp, c->pend_len + add);
        if (n < 0) { /* still cut: everything we have joins pend */
            memcpy(c->pend, tmp, c->pend_len + add);
            c->pend_len = (uint8_t)(c->pend_len + add);
            return;
        }
        if (n == 0) { /* the pending lead byte was bad: emit it, retry with the rest */
            mail_buf_put_utf8(out, tab_cp1252[c->pend[0] - 0x80]);
            memmove(c->pend, c->pend + 1, --c->pend_len);
            continue;
        }
        mail_buf_append(out, tmp, (size_t)n);
        size_t used = (size_t)n - c->pend_len;
        c->pend_len = 0;
        in += used;
        len -= used;
    }
    size_t used = lenient_utf8(in, len, false, out);
    if (used < len) {
        c->pend_len = (uint8_t)(len - used);
        memcpy(c->pend, in + used, c->pend_len);
    }
}

void mail_charset_conv_finish(struct mail_charset_conv *c, struct mail_buf *out)
{
    if (c->pend_len > 0)
        lenient_utf8(c->pend, c->pend_len, true, out);
    c->pend_len = 0;
}

void mail_charset_to_utf8(const uint8_t *name, size_t name_len, const uint8_t *in, size_t len,
                          struct mail_buf *out)
{
    struct mail_charset_conv c;
    (void)mail_charset_conv_init(&c, name, name == NULL ? 0 : name_len);
    mail_charset_conv_feed(&c, in, len, out);
    mail_charset_conv_finish(&c, out);
}

void mail_raw_to_utf8(const uint8_t *in, size_t len, struct mail_buf *out)
{
    lenient_utf8(in, len, true, out);
}

/* ---- RFC 2047 ---- */

static int hexval(uint8_t c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = mail_lower(c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Parses an encoded word at s[i] ("=?cs?X?text?="); returns its end or 0. */
static size_t encoded_word(const uint8_t *s, size_t len, size_t i, struct mail_str *cs,
                           uint8_t *enc, struct mail_str *text)
{
    if (i + 1 >= len || s[i] != '=' || s[i + 1] != '?')
        return 0;
    size_t j = i + 2, c0 = j;
    while (j < len && s[j] != '?' && s[j] > ' ')
        j++;
    if (j + 2 >= len || s[j] != '?' || j == c0 || s[j + 2] != '?')
        return 0;
    *cs = (struct mail_str){ s + c0, j - c0 };
    *enc = mail_lower(s[j + 1]);
    if (*enc != 'b' && *enc != 'q')
        return 0;
    j += 3;
    size_t t0 = j;
    while (j + 1 < len && !(s[j] == '?' && s[j + 1] == '=')) {
        if (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n')
            return 0;
        j++;
    }
    if (j + 1 >= len)
        return 0;
    *text = (struct mail_str){ s + t0, j - t0 };
    return j + 2;
}

static void flush_words(struct mail_buf *bytes, struct mail_str *cs, struct mail_buf *out)
{
    if (bytes->len > 0 || cs->data != NULL)
        mail_charset_to_utf8(cs->data, cs->len, bytes->data, bytes->len, out);
    mail_buf_reset(bytes);
    cs->data = NULL;
    cs->len = 0;
}

void mail_header_decode(const uint8_t *v, size_t len, struct mail_buf *out)
{
    if (v == NULL || len == 0)
        return;
    struct mail_buf bytes = { 0 }; /* decoded bytes of adjacent words in one charset */
    struct mail_str cur_cs = { NULL, 0 };
    size_t i = 0, plain = 0;
    bool last_was_word = false;
    while (i < len) {
        struct mail_str cs, text;
        uint8_t enc;
        size_t end = (v[i] == '=') ? encoded_word(v, len, i, &cs, &enc, &text) : 0;
        if (end == 0) {
            i++;
            continue;
        }
        /* text between words: dropped if only whitespace between two encoded words (§6.2) */
        bool ws_only = true;
        for (size_t k = plain; k < i; k++)
            ws_only = ws_only && (v[k] == ' ' || v[k] == '\t' || v[k] == '\r' || v[k] == '\n');
        if (!(last_was_word && ws_only)) {
            flush_words(&bytes, &cur_cs, out);
            mail_raw_to_utf8(v + plain, i - plain, out);
        }
        const uint8_t *star = memchr(cs.data, '*', cs.len);
        if (star != NULL)
            cs.len = (size_t)(star - cs.data);
        if (cur_cs.data != NULL && !mail_span_eq2(cur_cs.data, cur_cs.len, cs.data, cs.len))
            flush_words(&bytes, &cur_cs, out);
        cur_cs = cs;
        if (enc == 'b') {
            mail_decode_all(MAIL_CTE_BASE64, text.data, text.len, &bytes);
        } else {
            for (size_t k = 0; k < text.len; k++) {
                uint8_t c = text.data[k];
                if (c == '_') {
                    mail_buf_putc(&bytes, ' ');
                } else if (c == '=' && k + 2 < text.len + 0 && hexval(text.data[k + 1]) >= 0 &&
                           hexval(text.data[k + 2]) >= 0) {
                    mail_buf_putc(&bytes, (uint8_t)(hexval(text.data[k + 1]) << 4 |
                                                    hexval(text.data[k + 2])));
                    k += 2;
                } else {
                    mail_buf_putc(&bytes, c);
                }
            }
        }
        i = plain = end;
        last_was_word = true;
    }
    flush_words(&bytes, &cur_cs, out);
    mail_raw_to_utf8(v + plain, len - plain, out);
    mail_buf_free(&bytes);
}

/* ---- RFC 2231 ---- */

void mail_param_decode_2231(const uint8_t *v, size_t len, struct mail_buf *out)
{
    if (v == NULL || len == 0)
        return;
    const uint8_t *q1 = memchr(v, '\'', len);
    const uint8_t *q2 = q1 ? memchr(q1 + 1, '\'', len - (size_t)(q1 + 1 - v)) : NULL;
    const uint8_t *cs = NULL;
    size_t cs_len = 0, i = 0;
    if (q2 != NULL) {
        cs = v;
        cs_len = (size_t)(q1 - v);
        i = (size_t)(q2 + 1 - v);
    }
    struct mail_buf bytes = { 0 };
    for (; i < len; i++) {
        int hi = v[i] == '%' && i + 2 < len ? hexval(v[i + 1]) : -1;
        int lo = hi >= 0 ? hexval(v[i + 2]) : -1;
        if (hi >= 0 && lo >= 0) {
            mail_buf_putc(&bytes, (uint8_t)((unsigned)hi << 4 | (unsigned)lo));
            i += 2;
        } else {
            mail_buf_putc(&bytes, v[i]);
        }
    }
    mail_charset_to_utf8(cs_len ? cs : NULL, cs_len, bytes.data, bytes.len, out);
    mail_buf_free(&bytes);
}

bool mail_param_get(const struct mail_param *params, size_t n, const char *name,
                    struct mail_buf *out)
{
    size_t nlen = strlen(name);
    for (size_t i = 0; i < n; i++) {
        const struct mail_str *pn = &params[i].name;
        const struct mail_str *pv = &params[i].value;
        if (pv->data == NULL)
            continue;
        if (pn->len == nlen + 1 && pn->data[nlen] == '*' && mail_span_eq2(pn->data, nlen,
                                                                          (const uint8_t *)name, nlen)) {
            mail_param_decode_2231(pv->data, pv->len, out);
            return true;
        }
        if (mail_span_eq2(pn->data, pn->len, (const uint8_t *)name, nlen)) {
            mail_header_decode(pv->data, pv->len, out);
            return true;
        }
    }
    return false;
}
