/*
 * mail_section: section specs (RFC 3501 §6.4.5, RFC 3516 §4.1) parsed and resolved against a view
 * to "pieces": byte ranges of the raw message plus constant bytes, so the server can stream any
 * BODY[section]<partial> with GETRANGE and never re-parse or hold the message.
 *
 * Numbering: a part number indexes the children of the current multipart, and "1" of a message that
 * is not multipart is its body. Descending through a message/rfc822 part moves to the encapsulated
 * message, so "2.1" is the first part of the message attached as part 2, "2.HEADER" its header and
 * "2.MIME" the MIME header of part 2 itself. HEADER.FIELDS uses the stored field index: the selected
 * fields are ranges (adjacent ones merged) followed by the blank line.
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/mail/mail_private.h"

/* ---- parsing ---- */

static bool is_astring_char(uint8_t c)
{
    return c > ' ' && c < 0x7f && strchr("(){%*\"\\]", c) == NULL;
}

static bool take_word(const char *t, size_t len, size_t *i, const char *word)
{
    size_t n = strlen(word);
    if (len - *i < n || !mail_span_eq((const uint8_t *)t + *i, n, word))
        return false;
    *i += n;
    return true;
}

static void add_name(struct mail_section *s, const uint8_t *name, size_t len, size_t *cap)
{
    if (s->n_names == *cap) {
        *cap = *cap ? *cap * 2 : 8;
        struct mail_str *n = realloc(s->names, *cap * sizeof(*n));
        if (n == NULL)
            abort();
        s->names = n;
    }
    uint8_t *copy = malloc(len + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, name, len);
    copy[len] = '\0';
    s->names[s->n_names].data = copy;
    s->names[s->n_names].len = len;
    s->n_names++;
}

static int parse_names(struct mail_section *s, const char *t, size_t len, size_t i,
                       const char **error_r)
{
    size_t cap = 0;
    if (i >= len || t[i] != ' ') {
        *error_r = "HEADER.FIELDS needs a list of field names";
        return -1;
    }
    i++;
    if (i >= len || t[i] != '(') {
        *error_r = "HEADER.FIELDS needs a parenthesised list";
        return -1;
    }
    i++;
    for (;;) {
        while (i < len && t[i] == ' ')
            i++;
        if (i >= len) {
            *error_r = "unterminated field name list";
            return -1;
        }
        if (t[i] == ')') {
            i++;
            break;
        }
        if (t[i] == '"') {
            struct mail_buf name = { 0 };
            i++;
            while (i < len && t[i] != '"') {
                if (t[i] == '\\' && i + 1 < len)
                    i++;
                mail_buf_putc(&name, (uint8_t)t[i]);
                i++;
            }
            if (i >= len) {
                mail_buf_free(&name);
                *error_r = "unterminated quoted field name";
                return -1;
            }
            i++;
            add_name(s, name.data ? name.data : (const uint8_t *)"", name.len, &cap);
            mail_buf_free(&name);
        } else {
            size_t n0 = i;
            while (i < len && is_astring_char((uint8_t)t[i]))
                i++;
            if (i == n0) {
                *error_r = "bad character in field name list";
                return -1;
            }
            add_name(s, (const uint8_t *)t + n0, i - n0, &cap);
        }
    }
    if (s->n_names == 0) {
        *error_r = "empty field name list";
        return -1;
    }
    if (i != len) {
        *error_r = "junk after field name list";
        return -1;
    }
    return 0;
}

int mail_section_parse(const char *t, size_t len, struct mail_section *s, const char **error_r)
{
    memset(s, 0, sizeof(*s));
    size_t i = 0;
    while (i < len && t[i] >= '0' && t[i] <= '9') {
        uint64_t num = 0;
        if (t[i] == '0') {
            *error_r = "part numbers start at 1";
            return -1;
        }
        while (i < len && t[i] >= '0' && t[i] <= '9') {
            num = num * 10 + (uint64_t)(t[i] - '0');
            if (num > UINT32_MAX) {
                *error_r = "part number too large";
                return -1;
            }
            i++;
        }
        if (s->path_len == MAIL_SECTION_MAX_PATH) {
            *error_r = "section nested too deeply";
            return -1;
        }
        s->path[s->path_len++] = (uint32_t)num;
        if (i == len)
            return 0;
        if (t[i] != '.') {
            *error_r = "bad section part";
            return -1;
        }
        i++;
        if (i == len) {
            *error_r = "section ends with '.'";
            return -1;
        }
    }
    if (i == len)
        return 0; /* "" : the whole message */
    if (take_word(t, len, &i, "HEADER.FIELDS.NOT")) {
        s->text = MAIL_SECTION_HEADER_FIELDS_NOT;
        return parse_names(s, t, len, i, error_r);
    }
    if (take_word(t, len, &i, "HEADER.FIELDS")) {
        s->text = MAIL_SECTION_HEADER_FIELDS;
        return parse_names(s, t, len, i, error_r);
    }
    if (take_word(t, len, &i, "HEADER"))
        s->text = MAIL_SECTION_HEADER;
    else if (take_word(t, len, &i, "TEXT"))
        s->text = MAIL_SECTION_TEXT;
    else if (take_word(t, len, &i, "MIME"))
        s->text = MAIL_SECTION_MIME;
    else {
        *error_r = "unknown section text";
        return -1;
    }
    if (i != len) {
        *error_r = "junk after section text";
        return -1;
    }
    if (s->text == MAIL_SECTION_MIME && s->path_len == 0) {
        *error_r = "MIME needs a part number";
        return -1;
    }
    return 0;
}

void mail_section_free(struct mail_section *s)
{
    for (size_t i = 0; i < s->n_names; i++)
        free((void *)s->names[i].data);
    free(s->names);
    s->names = NULL;
    s->n_names = 0;
}

void mail_section_render(const struct mail_section *s, struct mail_buf *out)
{
    static const char *texts[] = { "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT",
                                   "MIME" };
    for (size_t i = 0; i < s->path_len; i++) {
        if (i > 0)
            mail_buf_putc(out, '.');
        mail_buf_putu(out, s->path[i]);
    }
    if (s->text == MAIL_SECTION_ALL)
        return;
    if (s->path_len > 0)
        mail_buf_putc(out, '.');
    mail_buf_puts(out, texts[s->text]);
    if (s->text != MAIL_SECTION_HEADER_FIELDS && s->text != MAIL_SECTION_HEADER_FIELDS_NOT)
        return;
    mail_buf_puts(out, " (");
    for (size_t i = 0; i < s->n_names; i++) {
        if (i > 0)
            mail_buf_putc(out, ' ');
        bool atom = s->names[i].len > 0;
        for (size_t k = 0; k < s->names[i].len; k++)
            atom = atom && is_astring_char(s->names[i].data[k]);
        if (atom)
            mail_buf_append(out, s->names[i].data, s->names[i].len);
        else
            mail_render_nstring(out, s->names[i].data, s->names[i].len, false, 0);
    }
    mail_buf_putc(out, ')');
}

/* ---- resolving ---- */

static const struct mail_part *nth_child(const struct mail_view *v, const struct mail_part *p,
                                         uint32_t num)
{
    if (num == 0 || num > p->n_children)
        return NULL;
    uint32_t c = p->index + 1;
    for (uint32_t k = 1; k < num && c < v->n_parts; k++)
        c = v->parts[c].next_sibling;
    return c < v->n_parts ? &v->parts[c] : NULL;
}

const struct mail_part *mail_view_find_part(const struct mail_view *v, const uint32_t *path,
                                            size_t path_len)
{
    const struct mail_part *msg = &v->parts[0], *target = msg;
    for (size_t k = 0; k < path_len; k++) {
        if (msg->kind == MAIL_PART_MULTIPART)
            target = nth_child(v, msg, path[k]);
        else
            target = path[k] == 1 ? msg : NULL;
        if (target == NULL)
            return NULL;
        if (k + 1 < path_len) {
            if (target->kind == MAIL_PART_MESSAGE)
                msg = &v->parts[target->index + 1];
            else if (target->kind == MAIL_PART_MULTIPART)
                msg = target;
            else
                return NULL;
        }
    }
    return target;
}

static void add_piece(struct mail_pieces *out, uint64_t off, uint64_t size, const char *literal)
{
    if (size == 0)
        return;
    if (literal == NULL && out->count > 0) {
        struct mail_piece *last = &out->v[out->count - 1];
        if (last->literal == NULL && last->offset + last->size == off) {
            last->size += size;
            out->total += size;
            return;
        }
    }
    if (out->count == out->cap) {
        size_t cap = out->cap ? out->cap * 2 : 8;
        struct mail_piece *n = realloc(out->v, cap * sizeof(*n));
        if (n == NULL)
            abort();
        out->v = n;
        out->cap = cap;
    }
    out->v[out->count++] = (struct mail_piece){ off, size, literal };
    out->total += size;
}

static bool name_listed(const struct mail_section *s, struct mail_str name)
{
    for (size_t i = 0; i < s->n_names; i++) {
        if (mail_span_eq2(name.data, name.len, s->names[i].data, s->names[i].len))
            return true;
    }
    return false;
}

void mail_pieces_free(struct mail_pieces *pieces)
{
    free(pieces->v);
    memset(pieces, 0, sizeof(*pieces));
}

int mail_view_section(const struct mail_view *v, const struct mail_section *s,
                      struct mail_pieces *out, const char **error_r)
{
    out->count = 0;
    out->total = 0;
    out->needs_filter = false;
    const struct mail_part *t = mail_view_find_part(v, s->path, s->path_len);
    if (t == NULL) {
        *error_r = "no such body part";
        return -1;
    }
    const struct mail_part *m = t; /* the message whose HEADER/TEXT is meant */
    if (s->path_len > 0 && s->text != MAIL_SECTION_ALL && s->text != MAIL_SECTION_MIME) {
        if (t->kind != MAIL_PART_MESSAGE) {
            *error_r = "HEADER and TEXT need a message/rfc822 part";
            return -1;
        }
        m = &v->parts[t->index + 1];
    }
    switch (s->text) {
    case MAIL_SECTION_ALL:
        if (s->path_len == 0)
            add_piece(out, 0, v->size, NULL);
        else
            add_piece(out, t->body_offset, t->body_size, NULL);
        break;
    case MAIL_SECTION_MIME:
        add_piece(out, t->header_offset, t->header_size, NULL);
        break;
    case MAIL_SECTION_HEADER:
        add_piece(out, m->header_offset, m->header_size, NULL);
        break;
    case MAIL_SECTION_TEXT:
        add_piece(out, m->body_offset, m->body_size, NULL);
        break;
    case MAIL_SECTION_HEADER_FIELDS:
    case MAIL_SECTION_HEADER_FIELDS_NOT:
        if (m->fields_truncated) {
            out->needs_filter = true;
            add_piece(out, m->header_offset, m->header_size, NULL);
            break;
        }
        for (size_t i = 0; i < m->n_fields; i++) {
            bool listed = name_listed(s, m->fields[i].name);
            if (listed == (s->text == MAIL_SECTION_HEADER_FIELDS))
                add_piece(out, m->fields[i].offset, m->fields[i].size, NULL);
        }
        add_piece(out, 0, 2, "\r\n");
        break;
    }
    return 0;
}

void mail_pieces_slice(struct mail_pieces *p, uint64_t origin, uint64_t count)
{
    size_t w = 0;
    uint64_t pos = 0, total = 0;
    uint64_t end = count > UINT64_MAX - origin ? UINT64_MAX : origin + count;
    for (size_t i = 0; i < p->count; i++) {
        struct mail_piece pc = p->v[i];
        uint64_t a = pos, b = pos + pc.size;
        pos = b;
        if (b <= origin || a >= end)
            continue;
        uint64_t from = origin > a ? origin - a : 0;
        uint64_t to = (end < b ? end : b) - a;
        if (pc.literal != NULL)
            pc.literal += from;
        else
            pc.offset += from;
        pc.size = to - from;
        p->v[w++] = pc;
        total += pc.size;
    }
    p->count = w;
    p->total = total;
}

int mail_view_binary(const struct mail_view *v, const struct mail_section *s,
                     struct mail_binary *out, const char **error_r)
{
    memset(out, 0, sizeof(*out));
    if (s->text != MAIL_SECTION_ALL) {
        *error_r = "BINARY takes part numbers only";
        return -1;
    }
    const struct mail_part *t = mail_view_find_part(v, s->path, s->path_len);
    if (t == NULL) {
        *error_r = "no such body part";
        return -1;
    }
    out->part = t;
    if (s->path_len == 0) {
        out->offset = 0;
        out->size = v->size;
        out->cte = MAIL_CTE_BINARY;
        out->decoded_size_known = true;
        out->decoded_size = v->size;
        return 0;
    }
    out->offset = t->body_offset;
    out->size = t->body_size;
    if (t->kind != MAIL_PART_LEAF) {
        out->cte = MAIL_CTE_BINARY; /* composite parts are never encoded (RFC 2045 §6.4) */
        out->decoded_size_known = true;
        out->decoded_size = t->body_size;
        return 0;
    }
    out->cte = mail_cte_parse(t->encoding.data, t->encoding.len);
    out->decoded_size_known = t->decoded_size_known;
    out->decoded_size = t->decoded_size;
    return 0;
}
