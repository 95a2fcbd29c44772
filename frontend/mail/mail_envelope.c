/*
 * mail_envelope: the ENVELOPE of a message header (RFC 3501 §7.4.2, RFC 9051 §7.5.2) rendered from
 * the raw values the parser captured, including the RFC 5322 §3.4 address-list grammar (groups,
 * display names, quoted strings, comments, obsolete routes).
 *
 * Values stay raw as RFC 3501 asks: encoded words are not decoded, quoting is removed from display
 * names only. Sender and Reply-To fall back to From when absent or empty. Broken addresses never
 * fail the envelope: a word without '@' becomes a mailbox with host "MISSING_DOMAIN" and an empty
 * local part "MISSING_MAILBOX" (the convention Dovecot uses), stray characters are skipped.
 */
#include <string.h>

#include "frontend/mail/mail_private.h"

#define MAX_WORDS 128

enum word_kind { W_ATOM, W_QUOTED, W_DOT, W_DOMLIT };

struct word {
    enum word_kind kind;
    const uint8_t *p; /* raw span (quotes included for W_QUOTED) */
    size_t len;
};

/* RFC 5322 specials (and NUL, as strchr on their string would say); a table, since address lists
 * are scanned byte by byte for every ENVELOPE. */
static bool is_special(uint8_t c)
{
    static const bool special[256] = {
        [0] = true,   ['('] = true, [')'] = true, ['<'] = true, ['>'] = true, ['['] = true,
        [']'] = true, [':'] = true, [';'] = true, ['@'] = true, ['\\'] = true, [','] = true,
        ['.'] = true, ['"'] = true,
    };
    return special[c];
}

/* Skips whitespace and comments; remembers the first comment's content in *comment. */
static size_t skip_cfws(const uint8_t *s, size_t len, size_t i, struct mail_str *comment)
{
    while (i < len) {
        uint8_t c = s[i];
        if (c == ' ' || c == '\t' || c == '\r' || c == '\n') {
            i++;
            continue;
        }
        if (c != '(')
            break;
        size_t start = i + 1;
        int depth = 0;
        while (i < len) {
            if (s[i] == '\\' && i + 1 < len) {
                i += 2;
                continue;
            }
            if (s[i] == '(') {
                depth++;
            } else if (s[i] == ')' && --depth == 0) {
                break;
            }
            i++;
        }
        if (comment != NULL && comment->data == NULL) {
            comment->data = s + start;
            comment->len = (i < len ? i : len) - start;
        }
        if (i < len)
            i++;
    }
    return i;
}

/* Reads one word at s[i] (atom, quoted string, '.', domain literal); returns false if none. */
static bool read_word(const uint8_t *s, size_t len, size_t *i, struct word *w)
{
    size_t j = *i;
    if (j >= len)
        return false;
    w->p = s + j;
    if (s[j] == '"') {
        j++;
        while (j < len && s[j] != '"') {
            if (s[j] == '\\' && j + 1 < len)
                j++;
            j++;
        }
        if (j < len)
            j++;
        w->kind = W_QUOTED;
    } else if (s[j] == '[') {
        while (j < len && s[j] != ']')
            j++;
        if (j < len)
            j++;
        w->kind = W_DOMLIT;
    } else if (s[j] == '.') {
        j++;
        w->kind = W_DOT;
    } else {
        while (j < len && s[j] > ' ' && s[j] != 0x7f && !is_special(s[j]))
            j++;
        if (j == *i)
            return false;
        w->kind = W_ATOM;
    }
    w->len = j - *i;
    *i = j;
    return true;
}

/* Reads words (with CFWS between them) until a special that is not '.'. */
static size_t read_words(const uint8_t *s, size_t len, size_t i, struct word *words, size_t *n,
                         struct mail_str *comment)
{
    *n = 0;
    for (;;) {
        i = skip_cfws(s, len, i, comment);
        struct word w;
        if (!read_word(s, len, &i, &w))
            return i;
        if (*n < MAX_WORDS) {
            words[(*n)++] = w;
        } else { /* absurdly many words: extend the last one */
            struct word *last = &words[*n - 1];
            last->len = (size_t)(w.p + w.len - last->p);
            last->kind = W_ATOM;
        }
    }
}

/* Display name: quoted strings unquoted, words separated by one space. */
static void join_phrase(const struct word *w, size_t n, struct mail_buf *out)
{
    for (size_t k = 0; k < n; k++) {
        if (out->len > 0 && w[k].kind != W_DOT)
            mail_buf_putc(out, ' ');
        if (w[k].kind == W_QUOTED) {
            const uint8_t *p = w[k].p + 1;
            size_t m = w[k].len >= 2 && w[k].p[w[k].len - 1] == '"' ? w[k].len - 2 : w[k].len - 1;
            for (size_t j = 0; j < m; j++) {
                if (p[j] == '\\' && j + 1 < m)
                    j++;
                mail_buf_putc(out, p[j]);
            }
        } else {
            mail_buf_append(out, w[k].p, w[k].len);
        }
    }
}

/* Local part or domain: words concatenated as written, CFWS dropped. */
static void join_raw(const struct word *w, size_t n, struct mail_buf *out)
{
    for (size_t k = 0; k < n; k++)
        mail_buf_append(out, w[k].p, w[k].len);
}

static void emit_address(struct mail_buf *out, const struct mail_buf *name, bool name_nil,
                         const struct mail_buf *adl, const struct mail_buf *mbox,
                         const struct mail_buf *host, unsigned flags)
{
    mail_buf_putc(out, '(');
    mail_render_nstring(out, name->data, name->len, name_nil || name->len == 0, flags);
    mail_buf_putc(out, ' ');
    mail_render_nstring(out, adl->data, adl->len, adl->len == 0, flags);
    mail_buf_putc(out, ' ');
    if (mbox->len == 0)
        mail_buf_puts(out, "\"MISSING_MAILBOX\"");
    else
        mail_render_nstring(out, mbox->data, mbox->len, false, flags);
    mail_buf_putc(out, ' ');
    if (host->len == 0)
        mail_buf_puts(out, "\"MISSING_DOMAIN\"");
    else
        mail_render_nstring(out, host->data, host->len, false, flags);
    mail_buf_putc(out, ')');
}

struct addr_bufs {
    struct mail_buf name, adl, mbox, host;
};

static void bufs_reset(struct addr_bufs *b)
{
    mail_buf_reset(&b->name);
    mail_buf_reset(&b->adl);
    mail_buf_reset(&b->mbox);
    mail_buf_reset(&b->host);
}

/* Parses "<[route:]local@domain>" at s[i] == '<' into b; returns the index after it. */
static size_t parse_angle(const uint8_t *s, size_t len, size_t i, struct addr_bufs *b)
{
    struct word w[MAX_WORDS];
    size_t n;
    i++;
    i = skip_cfws(s, len, i, NULL);
    if (i < len && s[i] == '@') { /* obs-route: "@a,@b:" */
        size_t r0 = i;
        while (i < len && s[i] != ':' && s[i] != '>')
            i++;
        if (i < len && s[i] == ':') {
            for (size_t k = r0; k < i; k++) {
                if (s[k] > ' ')
                    mail_buf_putc(&b->adl, s[k]);
            }
            i++;
        } else {
            i = r0;
        }
    }
    i = read_words(s, len, i, w, &n, NULL);
    join_raw(w, n, &b->mbox);
    i = skip_cfws(s, len, i, NULL);
    if (i < len && s[i] == '@') {
        i = read_words(s, len, i + 1, w, &n, NULL);
        join_raw(w, n, &b->host);
    }
    while (i < len && s[i] != '>' && s[i] != ',' && s[i] != ';')
        i++;
    if (i < len && s[i] == '>')
        i++;
    return i;
}

static void address_list(struct mail_buf *out, const uint8_t *s, size_t len, unsigned flags,
                         struct addr_bufs *bp, bool *empty_r)
{
    struct word w[MAX_WORDS];
    struct addr_bufs b = *bp; /* scratch owned by the caller, reused across lists */
    size_t n, i = 0;
    bool in_group = false;
    size_t start_len = out->len;
    mail_buf_putc(out, '(');
    size_t items = 0;
    while (s != NULL && i < len) {
        struct mail_str comment = { NULL, 0 };
        i = skip_cfws(s, len, i, NULL);
        if (i >= len)
            break;
        if (s[i] == ',') {
            i++;
            continue;
        }
        if (s[i] == ';') {
            if (in_group) {
                mail_buf_puts(out, "(NIL NIL NIL NIL)");
                items++;
                in_group = false;
            }
            i++;
            continue;
        }
        bufs_reset(&b);
        i = read_words(s, len, i, w, &n, &comment);
        uint8_t c = i < len ? s[i] : 0;
        if (c == ':' && !in_group) {
            join_phrase(w, n, &b.name);
            mail_buf_puts(out, "(NIL NIL ");
            mail_render_nstring(out, b.name.data, b.name.len, false, flags);
            mail_buf_puts(out, " NIL)");
            items++;
            in_group = true;
            i++;
        } else if (c == '<') {
            join_phrase(w, n, &b.name);
            i = parse_angle(s, len, i, &b);
            i = skip_cfws(s, len, i, b.name.len == 0 ? &comment : NULL);
            if (b.name.len == 0 && comment.data != NULL)
                mail_buf_append(&b.name, comment.data, comment.len);
            emit_address(out, &b.name, false, &b.adl, &b.mbox, &b.host, flags);
            items++;
        } else if (c == '@') {
            join_raw(w, n, &b.mbox);
            i = read_words(s, len, i + 1, w, &n, &comment);
            join_raw(w, n, &b.host);
            i = skip_cfws(s, len, i, &comment);
            if (comment.data != NULL)
                mail_buf_append(&b.name, comment.data, comment.len);
            emit_address(out, &b.name, false, &b.adl, &b.mbox, &b.host, flags);
            items++;
        } else if (n > 0) {
            /* words without '@': a local name or junk */
            join_raw(w, n, &b.mbox);
            emit_address(out, &b.name, true, &b.adl, &b.mbox, &b.host, flags);
            items++;
        } else if (i < len && c != ',' && c != ';') {
            i++; /* a stray special */
        }
    }
    if (in_group) {
        mail_buf_puts(out, "(NIL NIL NIL NIL)");
        items++;
    }
    mail_buf_putc(out, ')');
    *bp = b;
    *empty_r = items == 0;
    if (items == 0)
        out->len = start_len;
}

static void bufs_free(struct addr_bufs *b)
{
    mail_buf_free(&b->name);
    mail_buf_free(&b->adl);
    mail_buf_free(&b->mbox);
    mail_buf_free(&b->host);
}

void mail_render_address_list(struct mail_buf *out, const uint8_t *s, size_t len, unsigned flags,
                              bool *empty_r)
{
    struct addr_bufs b = { { 0 }, { 0 }, { 0 }, { 0 } };
    address_list(out, s, len, flags, &b, empty_r);
    bufs_free(&b);
}

/* Renders the list v, or fallback when v yields no address (Sender/Reply-To, RFC 3501), or NIL. */
static void render_addresses(struct mail_buf *out, const struct mail_str *v,
                             const struct mail_str *fallback, unsigned flags, struct addr_bufs *b)
{
    bool empty = true;
    if (v->data != NULL)
        address_list(out, v->data, v->len, flags, b, &empty);
    if (empty && fallback != NULL && fallback->data != NULL)
        address_list(out, fallback->data, fallback->len, flags, b, &empty);
    if (empty)
        mail_buf_puts(out, "NIL");
}

void mail_render_envelope(const struct mail_view *view, const struct mail_part *msg, unsigned flags,
                          struct mail_buf *out)
{
    (void)view;
    const struct mail_str *e = msg->envelope;
    if (e == NULL) {
        mail_buf_puts(out, "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)");
        return;
    }
    struct addr_bufs b = { { 0 }, { 0 }, { 0 }, { 0 } };
    mail_buf_putc(out, '(');
    mail_render_nstring(out, e[MAIL_ENV_DATE].data, e[MAIL_ENV_DATE].len, e[MAIL_ENV_DATE].data == NULL,
                        flags);
    mail_buf_putc(out, ' ');
    mail_render_nstring(out, e[MAIL_ENV_SUBJECT].data, e[MAIL_ENV_SUBJECT].len,
                        e[MAIL_ENV_SUBJECT].data == NULL, flags);
    static const struct {
        enum mail_env_field field;
        bool from_fallback;
    } lists[] = { { MAIL_ENV_FROM, false }, { MAIL_ENV_SENDER, true }, { MAIL_ENV_REPLY_TO, true },
                  { MAIL_ENV_TO, false },   { MAIL_ENV_CC, false },    { MAIL_ENV_BCC, false } };
    for (size_t k = 0; k < sizeof(lists) / sizeof(lists[0]); k++) {
        mail_buf_putc(out, ' ');
        render_addresses(out, &e[lists[k].field], lists[k].from_fallback ? &e[MAIL_ENV_FROM] : NULL,
                         flags, &b);
    }
    bufs_free(&b);
    mail_buf_putc(out, ' ');
    mail_render_nstring(out, e[MAIL_ENV_IN_REPLY_TO].data, e[MAIL_ENV_IN_REPLY_TO].len,
                        e[MAIL_ENV_IN_REPLY_TO].data == NULL, flags);
    mail_buf_putc(out, ' ');
    mail_render_nstring(out, e[MAIL_ENV_MESSAGE_ID].data, e[MAIL_ENV_MESSAGE_ID].len,
                        e[MAIL_ENV_MESSAGE_ID].data == NULL, flags);
    mail_buf_putc(out, ')');
}
