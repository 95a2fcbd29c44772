/*
 * mail_search: what SEARCH and threading need beyond the stored parse: header field walking in raw
 * header bytes, case-insensitive UTF-8 substring matching over streamed text, body text decoding
 * (transfer encoding, then charset), sent-date parsing and RFC 5256 base subjects.
 *
 * Matching folds both sides with a simple lowercase mapping (ASCII, Latin-1, Latin Extended-A,
 * Greek, Cyrillic) — the practical core of i;unicode-casemap without its normalisation tables.
 * The matcher keeps only needle-length bytes between feeds, so a body of any size is searched in
 * bounded memory. Nothing here allocates beyond the caller's buffers and small bounded scratch.
 */
#include <string.h>

#include "frontend/mail/mail_private.h"

/* ---- header fields ---- */

static size_t line_end(const uint8_t *h, size_t len, size_t i, size_t *next)
{
    const uint8_t *nl = memchr(h + i, '\n', len - i);
    if (nl == NULL) {
        *next = len;
        return len;
    }
    size_t x = (size_t)(nl - h);
    *next = x + 1;
    return x > i && h[x - 1] == '\r' ? x - 1 : x;
}

/* One raw field (a line plus its continuations) at *pos; false at the blank line or end. */
static bool raw_field(const uint8_t *h, size_t len, size_t *pos, size_t *start, size_t *content_end,
                      size_t *end)
{
    size_t i = *pos, next;
    if (i >= len)
        return false;
    size_t e = line_end(h, len, i, &next);
    if (e == i)
        return false; /* blank line: end of header */
    *start = i;
    *content_end = e;
    i = next;
    while (i < len && (h[i] == ' ' || h[i] == '\t')) {
        *content_end = line_end(h, len, i, &next);
        i = next;
    }
    *end = i;
    *pos = i;
    return true;
}

bool mail_header_next(const uint8_t *h, size_t len, size_t *pos, struct mail_header_field *f)
{
    size_t start, cend, end;
    while (raw_field(h, len, pos, &start, &cend, &end)) {
        const uint8_t *colon = memchr(h + start, ':', cend - start);
        if (colon == NULL)
            continue;
        size_t nlen = (size_t)(colon - (h + start));
        while (nlen > 0 && mail_is_wsp(h[start + nlen - 1]))
            nlen--;
        f->name = h + start;
        f->name_len = nlen;
        f->value = colon + 1;
        f->value_len = cend - (size_t)(colon + 1 - h);
        f->offset = start;
        f->size = end - start;
        return true;
    }
    return false;
}

void mail_header_unfold(const uint8_t *v, size_t len, struct mail_buf *out)
{
    if (v == NULL)
        return;
    size_t a = 0, b = len;
    while (a < b && (mail_is_wsp(v[a]) || v[a] == '\r' || v[a] == '\n'))
        a++;
    while (b > a && (mail_is_wsp(v[b - 1]) || v[b - 1] == '\r' || v[b - 1] == '\n'))
        b--;
    size_t run = a;
    for (size_t i = a; i < b; i++) {
        if (v[i] == '\r' || v[i] == '\n') {
            mail_buf_append(out, v + run, i - run);
            run = i + 1;
        }
    }
    mail_buf_append(out, v + run, b - run);
}

bool mail_header_find(const uint8_t *h, size_t len, const char *name, bool decode,
                      struct mail_buf *out)
{
    size_t pos = 0;
    struct mail_header_field f;
    while (mail_header_next(h, len, &pos, &f)) {
        if (!mail_span_eq(f.name, f.name_len, name))
            continue;
        if (!decode) {
            mail_header_unfold(f.value, f.value_len, out);
        } else {
            struct mail_buf tmp = { 0 };
            mail_header_unfold(f.value, f.value_len, &tmp);
            mail_header_decode(tmp.data, tmp.len, out);
            mail_buf_free(&tmp);
        }
        return true;
    }
    return false;
}

void mail_header_filter(const uint8_t *h, size_t len, const struct mail_section *s,
                        struct mail_buf *out)
{
    size_t pos = 0, start, cend, end;
    while (raw_field(h, len, &pos, &start, &cend, &end)) {
        const uint8_t *colon = memchr(h + start, ':', cend - start);
        size_t nlen = colon ? (size_t)(colon - (h + start)) : 0;
        while (nlen > 0 && mail_is_wsp(h[start + nlen - 1]))
            nlen--;
        bool listed = false;
        for (size_t i = 0; i < s->n_names && !listed; i++)
            listed = mail_span_eq2(h + start, nlen, s->names[i].data, s->names[i].len);
        if (listed == (s->text == MAIL_SECTION_HEADER_FIELDS))
            mail_buf_append(out, h + start, end - start);
    }
    mail_buf_append(out, "\r\n", 2);
}

/* ---- case folding ---- */

static uint32_t fold_cp(uint32_t c)
{
    if (c < 0x80)
        return (c >= 'A' && c <= 'Z') ? c + 32 : c;
    if (c >= 0xC0 && c <= 0xDE && c != 0xD7)
        return c + 32;
    if (c >= 0x100 && c <= 0x17F) {
        if (c == 0x130)
            return 'i';
        if (c == 0x178)
            return 0xFF;
        if ((c >= 0x139 && c <= 0x148) || (c >= 0x179 && c <= 0x17E))
            return (c & 1) ? c + 1 : c;
        if (c == 0x138 || c == 0x149 || c == 0x17F)
            return c;
        return (c & 1) ? c : c + 1;
    }
    if (c >= 0x391 && c <= 0x3A9 && c != 0x3A2)
        return c + 32;
    if (c == 0x3C2)
        return 0x3C3; /* final sigma */
    if (c == 0x386)
        return 0x3AC;
    if (c >= 0x388 && c <= 0x38A)
        return c + 37;
    if (c == 0x38C)
        return 0x3CC;
    if (c == 0x38E || c == 0x38F)
        return c + 63;
    if (c >= 0x410 && c <= 0x42F)
        return c + 32;
    if (c >= 0x400 && c <= 0x40F)
        return c + 80;
    if ((c >= 0x460 && c <= 0x481) || (c >= 0x48A && c <= 0x4BF))
        return (c & 1) ? c : c + 1;
    return c;
}

/* Folds text into out; returns the bytes used (a cut trailing sequence is left unless final). */
static size_t fold_utf8(const uint8_t *s, size_t len, bool final, struct mail_buf *out)
{
    size_t i = 0;
    mail_buf_reserve(out, len);
    while (i < len) {
        uint8_t c = s[i];
        if (c < 0x80) {
            out->data[out->len++] = (c >= 'A' && c <= 'Z') ? (uint8_t)(c + 32) : c;
            i++;
            continue;
        }
        int n = 0;
        if (c >= 0xC2 && c <= 0xDF)
            n = 2;
        else if (c >= 0xE0 && c <= 0xEF)
            n = 3;
        else if (c >= 0xF0 && c <= 0xF4)
            n = 4;
        if (n == 0) {
            mail_buf_putc(out, c);
            i++;
            continue;
        }
        if (i + (size_t)n > len) {
            if (!final)
                return i;
            mail_buf_append(out, s + i, len - i);
            return len;
        }
        uint32_t cp = c & (0x7F >> n);
        bool ok = true;
        for (int k = 1; k < n; k++) {
            ok = ok && (s[i + (size_t)k] & 0xC0) == 0x80;
            cp = (cp << 6) | (s[i + (size_t)k] & 0x3F);
        }
        if (!ok) {
            mail_buf_putc(out, c);
            i++;
            continue;
        }
        if (n == 2 || n == 3)
            mail_buf_put_utf8(out, fold_cp(cp));
        else
            mail_buf_append(out, s + i, (size_t)n);
        i += (size_t)n;
    }
    return i;
}

void mail_utf8_fold(const uint8_t *text, size_t len, struct mail_buf *out)
{
    (void)fold_utf8(text, len, true, out);
}

/* ---- matcher ---- */

void mail_matcher_init(struct mail_matcher *m, const uint8_t *needle, size_t len)
{
    memset(m, 0, sizeof(*m));
    mail_utf8_fold(needle, len, &m->needle);
}

static size_t utf8_need(uint8_t lead)
{
    return lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
}

/* memmem is a GNU extension; this is the portable memchr + memcmp form. */
static bool contains(const uint8_t *h, size_t hlen, const uint8_t *n, size_t nlen)
{
    if (nlen == 0)
        return true;
    const uint8_t *p = h, *end = h + hlen;
    while ((size_t)(end - p) >= nlen) {
        p = memchr(p, n[0], (size_t)(end - p) - nlen + 1);
        if (p == NULL)
            return false;
        if (memcmp(p, n, nlen) == 0)
            return true;
        p++;
    }
    return false;
}

/* Searches the window, then keeps only its last needle-1 bytes. */
static bool window_check(struct mail_matcher *m)
{
    if (m->window.len >= m->needle.len &&
        contains(m->window.data, m->window.len, m->needle.data, m->needle.len)) {
        m->found = true;
        return true;
    }
    size_t keep = m->needle.len - 1;
    if (m->window.len > keep) {
        memmove(m->window.data, m->window.data + m->window.len - keep, keep);
        m->window.len = keep;
    }
    return false;
}

bool mail_matcher_feed(struct mail_matcher *m, const uint8_t *text, size_t len)
{
    if (m->found)
        return true;
    if (m->needle.len == 0) {
        m->found = true;
        return true;
    }
    if (m->pend_len > 0) {
        /* pend is a lead byte and part of its sequence: complete it first */
        size_t need = utf8_need(m->pend[0]);
        size_t add = need - m->pend_len;
        if (len < add) {
            memcpy(m->pend + m->pend_len, text, len);
            m->pend_len += len;
            return false;
        }
        memcpy(m->pend + m->pend_len, text, add);
        (void)fold_utf8(m->pend, need, true, &m->window);
        m->pend_len = 0;
        text += add;
        len -= add;
    }
    do {
        size_t n = len < 65536 ? len : 65536;
        size_t used = fold_utf8(text, n, false, &m->window);
        if (used < n && n == len) { /* a sequence cut at the end of the text */
            m->pend_len = n - used;
            memcpy(m->pend, text + used, m->pend_len);
            used = n;
        }
        text += used;
        len -= used;
        if (window_check(m))
            return true;
    } while (len > 0);
    return false;
}

void mail_matcher_reset(struct mail_matcher *m)
{
    mail_buf_reset(&m->window);
    m->pend_len = 0;
    m->found = false;
}

void mail_matcher_free(struct mail_matcher *m)
{
    mail_buf_free(&m->needle);
    mail_buf_free(&m->window);
}

bool mail_text_contains(const uint8_t *text, size_t len, const uint8_t *needle, size_t needle_len)
{
    struct mail_matcher m;
    mail_matcher_init(&m, needle, needle_len);
    bool found = mail_matcher_feed(&m, text, len);
    mail_matcher_free(&m);
    return found;
}

/* ---- body text ---- */

bool mail_part_is_searchable_text(const struct mail_part *part)
{
    return part->kind == MAIL_PART_LEAF && mail_span_eq(part->type.data, part->type.len, "text");
}

void mail_text_decoder_init(struct mail_text_decoder *t, const struct mail_part *part)
{
    memset(t, 0, sizeof(*t));
    mail_decoder_init(&t->dec, mail_cte_parse(part->encoding.data, part->encoding.len));
    const uint8_t *cs = NULL;
    size_t cs_len = 0;
    for (size_t i = 0; i < part->n_params; i++) {
        if (mail_span_eq(part->params[i].name.data, part->params[i].name.len, "charset") &&
            part->params[i].value.data != NULL) {
            cs = part->params[i].value.data;
            cs_len = part->params[i].value.len;
        }
    }
    (void)mail_charset_conv_init(&t->conv, cs, cs_len);
}

void mail_text_decoder_feed(struct mail_text_decoder *t, const uint8_t *raw, size_t len,
                            struct mail_buf *out)
{
    while (len > 0) {
        size_t n = len < 65536 ? len : 65536;
        mail_buf_reset(&t->scratch);
        mail_buf_reserve(&t->scratch, n + MAIL_DECODE_SLACK);
        t->scratch.len = mail_decoder_feed(&t->dec, raw, n, t->scratch.data);
        mail_charset_conv_feed(&t->conv, t->scratch.data, t->scratch.len, out);
        raw += n;
        len -= n;
    }
}

void mail_text_decoder_finish(struct mail_text_decoder *t, struct mail_buf *out)
{
    mail_buf_reset(&t->scratch);
    mail_buf_reserve(&t->scratch, MAIL_DECODE_SLACK);
    t->scratch.len = mail_decoder_finish(&t->dec, t->scratch.data);
    mail_charset_conv_feed(&t->conv, t->scratch.data, t->scratch.len, out);
    mail_charset_conv_finish(&t->conv, out);
}

void mail_text_decoder_free(struct mail_text_decoder *t)
{
    mail_buf_free(&t->scratch);
}

/* ---- dates ---- */

/* Skips a (possibly nested) comment starting at s[i] == '('; returns the index after it. */
static size_t skip_comment(const uint8_t *s, size_t len, size_t i)
{
    int depth = 0;
    for (; i < len; i++) {
        if (s[i] == '\\' && i + 1 < len)
            i++;
        else if (s[i] == '(')
            depth++;
        else if (s[i] == ')' && --depth == 0)
            return i + 1;
    }
    return len;
}

static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static const char *const months[] = { "jan", "feb", "mar", "apr", "may", "jun",
                                      "jul", "aug", "sep", "oct", "nov", "dec" };

static const struct {
    const char *name;
    int minutes;
} zones[] = {
    { "ut", 0 },       { "utc", 0 },      { "gmt", 0 },      { "z", 0 },
    { "est", -300 },   { "edt", -240 },   { "cst", -360 },   { "cdt", -300 },
    { "mst", -420 },   { "mdt", -360 },   { "pst", -480 },   { "pdt", -420 },
    { "cet", 60 },     { "cest", 120 },   { "bst", 60 },     { "met", 60 },
    { "mest", 120 },   { "eet", 120 },    { "eest", 180 },   { "jst", 540 },
};

static int read_num(const uint8_t *s, size_t len, size_t *i, int *digits)
{
    int v = 0;
    *digits = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        if (*digits < 9)
            v = v * 10 + (s[*i] - '0');
        (*digits)++;
        (*i)++;
    }
    return v;
}

int mail_date_parse(const uint8_t *s, size_t len, int64_t *time_r, int *tz_r, const char **error_r)
{
    int day = -1, mon = -1, year = -1, hh = -1, mm = 0, ss = 0, tz = 0, d;
    bool pm = false, am = false;
    size_t i = 0;
    while (s != NULL && i < len) {
        uint8_t c = s[i];
        if (c == '(') {
            i = skip_comment(s, len, i);
        } else if (c >= '0' && c <= '9') {
            int n = read_num(s, len, &i, &d);
            if (i < len && s[i] == ':' && hh < 0) {
                hh = n;
                i++;
                mm = read_num(s, len, &i, &d);
                if (i < len && s[i] == ':') {
                    i++;
                    ss = read_num(s, len, &i, &d);
                }
                if (i < len && s[i] == '.') { /* fractional seconds */
                    i++;
                    (void)read_num(s, len, &i, &d);
                }
            } else if (i < len && s[i] == '-' && d == 4 && year < 0) {
                year = n; /* ISO 8601 date */
                i++;
                mon = read_num(s, len, &i, &d) - 1;
                if (i < len && s[i] == '-') {
                    i++;
                    day = read_num(s, len, &i, &d);
                }
                if (i < len && (s[i] == 'T' || s[i] == 't'))
                    i++;
            } else if (d >= 3 && year < 0) {
                year = n;
            } else if (day < 0) {
                day = n;
            } else if (year < 0) {
                year = n;
            }
        } else if ((c == '+' || c == '-') && i + 1 < len && s[i + 1] >= '0' && s[i + 1] <= '9' &&
                   hh >= 0) {
            i++;
            size_t i0 = i;
            int n = read_num(s, len, &i, &d);
            if (d <= 2 && i < len && s[i] == ':') { /* +01:00 */
                i++;
                int m2 = read_num(s, len, &i, &d);
                n = n * 100 + m2;
            } else if (d <= 2) {
                n *= 100;
            }
            (void)i0;
            int minutes = (n / 100) * 60 + n % 100;
            if (minutes <= 24 * 60)
                tz = c == '-' ? -minutes : minutes;
        } else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') {
            size_t w0 = i;
            while (i < len && (((s[i] | 0x20) >= 'a' && (s[i] | 0x20) <= 'z')))
                i++;
            size_t wl = i - w0;
            if (wl >= 3 && mon < 0) {
                for (int k = 0; k < 12; k++) {
                    if (mail_span_eq(s + w0, 3, months[k]))
                        mon = k;
                }
            }
            for (size_t k = 0; k < sizeof(zones) / sizeof(zones[0]); k++) {
                if (hh >= 0 && mail_span_eq(s + w0, wl, zones[k].name))
                    tz = zones[k].minutes;
            }
            if (mail_span_eq(s + w0, wl, "pm"))
                pm = true;
            if (mail_span_eq(s + w0, wl, "am"))
                am = true;
        } else {
            i++;
        }
    }
    if (year >= 0 && year < 50)
        year += 2000;
    else if (year >= 50 && year < 1000)
        year += 1900;
    if (hh < 0)
        hh = 0;
    if (pm && hh < 12)
        hh += 12;
    if (am && hh == 12)
        hh = 0;
    if (day < 1 || day > 31 || mon < 0 || mon > 11 || year < 1900 || year > 9999 || hh > 23 ||
        mm > 59 || ss > 60) {
        *error_r = "unrecognised date";
        return -1;
    }
    int64_t days = days_from_civil(year, (unsigned)mon + 1, (unsigned)day);
    *time_r = days * 86400 + hh * 3600 + mm * 60 + ss - (int64_t)tz * 60;
    *tz_r = tz;
    return 0;
}

/* ---- threading ---- */

bool mail_msgid_next(const uint8_t *s, size_t len, size_t *pos, const uint8_t **id, size_t *id_len)
{
    size_t i = *pos;
    while (i < len) {
        if (s[i] == '(') {
            i = skip_comment(s, len, i);
            continue;
        }
        if (s[i] != '<') {
            i++;
            continue;
        }
        const uint8_t *gt = memchr(s + i, '>', len - i);
        if (gt == NULL)
            break;
        size_t end = (size_t)(gt - s) + 1;
        const uint8_t *lt2 = memchr(s + i + 1, '<', end - i - 1);
        if (lt2 != NULL) { /* "<<id>": restart at the inner '<' */
            i = (size_t)(lt2 - s);
            continue;
        }
        *pos = end;
        if (end - i > 2) {
            *id = s + i;
            *id_len = end - i;
            return true;
        }
        i = end;
    }
    *pos = len;
    return false;
}

/* RFC 5256 §5 subj-blob at s[i]: "[" *BLOBCHAR "]" *WSP; returns its end or 0. */
static size_t subj_blob(const uint8_t *s, size_t len, size_t i)
{
    if (i >= len || s[i] != '[')
        return 0;
    i++;
    while (i < len && s[i] != '[' && s[i] != ']')
        i++;
    if (i >= len || s[i] != ']')
        return 0;
    i++;
    while (i < len && s[i] == ' ')
        i++;
    return i;
}

/* subj-refwd at s[i]: ("re" / "fw" / "fwd") *WSP [subj-blob] ":"; returns its end or 0. */
static size_t subj_refwd(const uint8_t *s, size_t len, size_t i)
{
    if (len - i >= 3 && mail_span_eq(s + i, 3, "fwd"))
        i += 3;
    else if (len - i >= 2 && (mail_span_eq(s + i, 2, "re") || mail_span_eq(s + i, 2, "fw")))
        i += 2;
    else
        return 0;
    while (i < len && s[i] == ' ')
        i++;
    size_t b = subj_blob(s, len, i);
    if (b)
        i = b;
    return i < len && s[i] == ':' ? i + 1 : 0;
}

void mail_base_subject(const uint8_t *subject, size_t len, struct mail_buf *out)
{
    struct mail_buf dec = { 0 }, tmp = { 0 };
    mail_header_unfold(subject, len, &tmp);
    mail_header_decode(tmp.data, tmp.len, &dec);
    /* (1) whitespace runs become one space */
    mail_buf_reset(&tmp);
    for (size_t i = 0; i < dec.len; i++) {
        uint8_t c = dec.data[i];
        bool ws = c == ' ' || c == '\t' || c == '\r' || c == '\n';
        if (ws) {
            if (tmp.len == 0 || tmp.data[tmp.len - 1] != ' ')
                mail_buf_putc(&tmp, ' ');
        } else {
            mail_buf_putc(&tmp, c);
        }
    }
    const uint8_t *s = tmp.data;
    size_t a = 0, b = tmp.len;
    for (;;) {
        /* (2) trailers */
        for (;;) {
            if (b > a && s[b - 1] == ' ')
                b--;
            else if (b - a >= 5 && mail_span_eq(s + b - 5, 5, "(fwd)"))
                b -= 5;
            else
                break;
        }
        /* (3) and (4) leaders, until nothing changes */
        bool changed = true;
        while (changed) {
            changed = false;
            while (a < b && s[a] == ' ') {
                a++;
                changed = true;
            }
            size_t j = a, k;
            while ((k = subj_blob(s, b, j)) != 0)
                j = k;
            size_t r = subj_refwd(s, b, j);
            if (r) {
                a = r;
                changed = true;
                continue;
            }
            size_t blob = subj_blob(s, b, a);
            if (blob && blob < b) {
                a = blob;
                changed = true;
            }
        }
        /* (5) [fwd: ...] */
        if (b - a >= 6 && mail_span_eq(s + a, 5, "[fwd:") && s[b - 1] == ']') {
            a += 5;
            b -= 1;
            continue;
        }
        break;
    }
    if (b > a)
        mail_buf_append(out, s + a, b - a);
    mail_buf_free(&dec);
    mail_buf_free(&tmp);
}
