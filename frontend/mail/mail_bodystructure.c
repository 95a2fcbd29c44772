/*
 * mail_bodystructure: BODY and BODYSTRUCTURE (RFC 3501 §7.4.2 and §9 "body", RFC 9051 §7.5.2)
 * rendered from a view, plus the IMAP string encoder every rendered value goes through.
 *
 * Grammar notes that shaped this file:
 *  - text parts carry body-fld-lines; message/rfc822 parts carry envelope, body and lines;
 *    message/global does too for IMAP4rev2 (RFC 9051 media-message) and is a basic part otherwise
 *    (MAIL_RENDER_GLOBAL off), as RFC 6532 §3.4 asks for non-UTF8 clients.
 *  - BODYSTRUCTURE always writes all extension fields (md5/params, dsp, lang, loc) so clients never
 *    have to guess where optional data ends; BODY writes none.
 *  - A language list with one entry is written as a single string, more as a list.
 *  - Strings are quoted when they are short 7-bit text, else sent as literals; NUL never occurs
 *    (the parser strips it from captured values).
 */
#include "frontend/mail/mail_private.h"

#define MAX_QUOTED 1024

void mail_render_nstring(struct mail_buf *out, const uint8_t *s, size_t len, bool nil, unsigned flags)
{
    if (nil || s == NULL) {
        mail_buf_puts(out, "NIL");
        return;
    }
    /* One pass: written quoted while it is checked; taken back for a literal when it cannot be. */
    bool quotable = len <= MAX_QUOTED;
    bool eight = false;
    size_t start_len = out->len;
    if (quotable) {
        mail_buf_reserve(out, 2 * len + 2);
        uint8_t *d = out->data + out->len;
        *d++ = '"';
        for (size_t i = 0; i < len; i++) {
            uint8_t c = s[i];
            if (c == '\r' || c == '\n' || c == '\0') {
                quotable = false;
                break;
            }
            eight |= c >= 0x80;
            if (c == '"' || c == '\\')
                *d++ = '\\';
            *d++ = c;
        }
        *d++ = '"';
        out->len = (size_t)(d - out->data);
    }
    if (quotable && eight)
        quotable = (flags & MAIL_RENDER_UTF8) && mail_utf8_valid(s, len);
    if (!quotable) {
        out->len = start_len;
        mail_buf_putc(out, '{');
        mail_buf_putu(out, len);
        mail_buf_puts(out, "}\r\n");
        mail_buf_append(out, s, len);
    }
}

static void put_str(struct mail_buf *out, struct mail_str s, unsigned flags)
{
    mail_render_nstring(out, s.data, s.len, s.data == NULL, flags);
}

static void put_params(struct mail_buf *out, const struct mail_param *p, size_t n, unsigned flags)
{
    if (n == 0) {
        mail_buf_puts(out, "NIL");
        return;
    }
    mail_buf_putc(out, '(');
    for (size_t i = 0; i < n; i++) {
        if (i > 0)
            mail_buf_putc(out, ' ');
        put_str(out, p[i].name, flags);
        mail_buf_putc(out, ' ');
        struct mail_str v = p[i].value;
        if (v.data == NULL)
            v = (struct mail_str){ (const uint8_t *)"", 0 };
        put_str(out, v, flags);
    }
    mail_buf_putc(out, ')');
}

/* body-fld-dsp SP body-fld-lang SP body-fld-loc */
static void put_ext_tail(struct mail_buf *out, const struct mail_part *p, unsigned flags)
{
    mail_buf_putc(out, ' ');
    if (p->disposition.data == NULL) {
        mail_buf_puts(out, "NIL");
    } else {
        mail_buf_putc(out, '(');
        put_str(out, p->disposition, flags);
        mail_buf_putc(out, ' ');
        put_params(out, p->disposition_params, p->n_disposition_params, flags);
        mail_buf_putc(out, ')');
    }
    mail_buf_putc(out, ' ');
    if (p->n_languages == 0) {
        mail_buf_puts(out, "NIL");
    } else if (p->n_languages == 1) {
        put_str(out, p->languages[0], flags);
    } else {
        mail_buf_putc(out, '(');
        for (size_t i = 0; i < p->n_languages; i++) {
            if (i > 0)
                mail_buf_putc(out, ' ');
            put_str(out, p->languages[i], flags);
        }
        mail_buf_putc(out, ')');
    }
    mail_buf_putc(out, ' ');
    put_str(out, p->location, flags);
}

#define MAX_RENDER_DEPTH 256

static void render_part(const struct mail_view *v, const struct mail_part *p, unsigned flags,
                        uint32_t depth, struct mail_buf *out)
{
    bool ext = (flags & MAIL_RENDER_EXTENSIONS) != 0;
    if (depth > MAX_RENDER_DEPTH) { /* only a hand-made blob gets here (the parser bounds depth) */
        mail_buf_puts(out, "(\"TEXT\" \"PLAIN\" NIL NIL NIL \"7BIT\" 0 0)");
        return;
    }
    mail_buf_putc(out, '(');
    if (p->kind == MAIL_PART_MULTIPART) {
        uint32_t c = p->index + 1;
        for (uint32_t k = 0; k < p->n_children && c < v->n_parts; k++) {
            render_part(v, &v->parts[c], flags, depth + 1, out);
            c = v->parts[c].next_sibling;
        }
        mail_buf_putc(out, ' ');
        put_str(out, p->subtype, flags);
        if (ext) {
            mail_buf_putc(out, ' ');
            put_params(out, p->params, p->n_params, flags);
            put_ext_tail(out, p, flags);
        }
        mail_buf_putc(out, ')');
        return;
    }
    put_str(out, p->type, flags);
    mail_buf_putc(out, ' ');
    put_str(out, p->subtype, flags);
    mail_buf_putc(out, ' ');
    put_params(out, p->params, p->n_params, flags);
    mail_buf_putc(out, ' ');
    put_str(out, p->id, flags);
    mail_buf_putc(out, ' ');
    put_str(out, p->description, flags);
    mail_buf_putc(out, ' ');
    put_str(out, p->encoding, flags);
    mail_buf_putc(out, ' ');
    mail_buf_putu(out, p->body_size);
    bool as_message = p->kind == MAIL_PART_MESSAGE && p->index + 1 < v->n_parts &&
                      (!p->global || (flags & MAIL_RENDER_GLOBAL));
    if (as_message) {
        const struct mail_part *child = &v->parts[p->index + 1];
        mail_buf_putc(out, ' ');
        mail_render_envelope(v, child, flags, out);
        mail_buf_putc(out, ' ');
        render_part(v, child, flags, depth + 1, out);
        mail_buf_putc(out, ' ');
        mail_buf_putu(out, p->body_lines);
    } else if (mail_span_eq(p->type.data, p->type.len, "text")) {
        mail_buf_putc(out, ' ');
        mail_buf_putu(out, p->body_lines);
    }
    if (ext) {
        mail_buf_putc(out, ' ');
        put_str(out, p->md5, flags);
        put_ext_tail(out, p, flags);
    }
    mail_buf_putc(out, ')');
}

void mail_render_bodystructure(const struct mail_view *view, unsigned flags, struct mail_buf *out)
{
    render_part(view, &view->parts[0], flags, 0, out);
}
