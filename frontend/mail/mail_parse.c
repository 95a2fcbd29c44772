/*
 * mail_parse: the streaming MIME parser (RFC 5322, RFC 2045-2049). Bytes arrive in chunks of any
 * size; the parser walks them once, line by line, and records for every part where its header and
 * body are, its structured header values and its header field index. It never keeps body bytes: it
 * holds at most one header line (bounded by max_field_value) and, at a body line start, just enough
 * bytes to recognise a boundary. Memory is therefore proportional to parts and header fields.
 *
 * The tree is built in pre-order on a stack of open parts. A boundary line closes every part above
 * the multipart it belongs to; the longest matching boundary of any open multipart wins, so a
 * boundary that is a prefix of another one is not confused with it, and text after the boundary on
 * the same line is ignored (broken mailers). The CRLF before a boundary belongs to the boundary
 * (RFC 2046 §5.1.1). A missing close delimiter simply ends the parts at the end of the message.
 * Limits (depth, parts, fields) degrade the tree, never fail it: an unparseable multipart or an
 * encoded message/rfc822 becomes a leaf.
 *
 * Not done here: rendering and serialising (mail_bodystructure.c, mail_serial.c), or any
 * interpretation of envelope values beyond capturing them raw.
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/mail/mail_private.h"

enum parser_state { ST_HEADER, ST_BODY, ST_SKIP_LINE, ST_DONE };

struct frame {
    uint32_t part;
    uint32_t bnd_off, bnd_len; /* multipart: boundary in the parser's bnd buffer */
    bool bnd_active;           /* false after its close delimiter (epilogue) or for non-multiparts */
};

/* Owned by its creator (mail_parser_new); everything below is freed by mail_parser_free. */
struct mail_parser {
    struct mail_limits lim;
    struct mail_buf pool; /* captured strings */
    struct mp_part *parts;
    uint32_t n_parts, cap_parts;
    struct mp_param *params;
    uint32_t n_params, cap_params;
    struct mp_str *strs;
    uint32_t n_strs, cap_strs;
    struct mp_field *fields;
    uint32_t n_fields, cap_fields;

    struct frame *stack;
    uint32_t depth; /* frames in use */
    struct mail_buf bnd;
    uint32_t n_bnd_active, max_bnd_len;

    enum parser_state state;
    bool skip_then_child;   /* ST_SKIP_LINE: open a child of stack[skip_level] at the next line */
    uint32_t skip_level;

    uint64_t base;          /* absolute offset of the chunk being fed */
    uint64_t lf_count;
    uint64_t line_start;
    uint64_t prev_eol;
    bool prev_line_empty;
    uint8_t last_byte;

    struct mail_buf line;   /* header line split across chunks */
    struct mail_buf val;    /* value of the field being read */
    int cur_slot;           /* slot of that field, or -1 */
    uint32_t cur_field;     /* index of that field, or MAIL_NONE */
    bool bol;               /* body: at a line start not yet checked for a boundary */
    struct mail_buf pend;   /* body: start of a line that may be a boundary */

    bool counting;          /* current leaf's body goes through dec for its decoded size */
    struct mail_decoder dec;
    uint8_t held[2];        /* line end held back from dec until the next line is known */
    uint8_t held_len;
    bool held_partial;      /* held is a CR that may start a CRLF */

    struct mail_buf tmp, scratch, bndtmp;
    bool finished;
};

#define GROW(arr, n, cap)                                                        \
    do {                                                                         \
        if ((n) == (cap)) {                                                      \
            uint32_t c_ = (cap) ? (cap) * 2 : 16;                                \
            void *p_ = realloc((arr), (size_t)c_ * sizeof(*(arr)));              \
            if (p_ == NULL)                                                      \
                abort();                                                         \
            (arr) = p_;                                                          \
            (cap) = c_;                                                          \
        }                                                                        \
    } while (0)

static const struct {
    const char *name;
    int slot;
    bool envelope; /* captured only in message headers */
} slot_names[] = {
    { "date", MAIL_ENV_DATE, true },
    { "subject", MAIL_ENV_SUBJECT, true },
    { "from", MAIL_ENV_FROM, true },
    { "sender", MAIL_ENV_SENDER, true },
    { "reply-to", MAIL_ENV_REPLY_TO, true },
    { "to", MAIL_ENV_TO, true },
    { "cc", MAIL_ENV_CC, true },
    { "bcc", MAIL_ENV_BCC, true },
    { "in-reply-to", MAIL_ENV_IN_REPLY_TO, true },
    { "message-id", MAIL_ENV_MESSAGE_ID, true },
    { "references", MAIL_ENV_REFERENCES, true },
    { "content-type", MP_SLOT_CONTENT_TYPE, false },
    { "content-transfer-encoding", MP_SLOT_CTE, false },
    { "content-id", MP_SLOT_ID, false },
    { "content-description", MP_SLOT_DESCRIPTION, false },
    { "content-md5", MP_SLOT_MD5, false },
    { "content-disposition", MP_SLOT_DISPOSITION, false },
    { "content-language", MP_SLOT_LANGUAGE, false },
    { "content-location", MP_SLOT_LOCATION, false },
};

static const struct mp_str nil_str = { 0, MAIL_NONE };

static struct mp_str pool_add(struct mail_parser *p, const uint8_t *s, size_t len)
{
    if (p->pool.len + len >= MAIL_NONE || len >= MAIL_NONE)
        return nil_str; /* beyond 4 GiB of captured text: drop (never in practice) */
    struct mp_str r = { (uint32_t)p->pool.len, (uint32_t)len };
    mail_buf_append(&p->pool, s, len);
    return r;
}

static struct mp_str pool_add_cstr(struct mail_parser *p, const char *s)
{
    return pool_add(p, (const uint8_t *)s, strlen(s));
}

static const uint8_t *pool_ptr(const struct mail_parser *p, struct mp_str s)
{
    return p->pool.data + s.off;
}

static struct mp_part *cur_part(struct mail_parser *p)
{
    return &p->parts[p->stack[p->depth - 1].part];
}

static void push_part(struct mail_parser *p, uint64_t header_offset, bool message_header)
{
    GROW(p->parts, p->n_parts, p->cap_parts);
    uint32_t idx = p->n_parts++;
    struct mp_part *m = &p->parts[idx];
    memset(m, 0, sizeof(*m));
    for (int i = 0; i < MP_SLOT_COUNT; i++)
        m->slot[i] = nil_str;
    m->type = m->subtype = m->disposition = nil_str;
    m->kind = MAIL_PART_LEAF;
    m->parent = p->depth ? p->stack[p->depth - 1].part : MAIL_NONE;
    m->depth = p->depth;
    m->is_message_header = message_header;
    m->header_offset = header_offset;
    m->field_first = p->n_fields;
    if (m->parent != MAIL_NONE)
        p->parts[m->parent].n_children++;
    p->stack[p->depth++] = (struct frame){ .part = idx };
    p->state = ST_HEADER;
    p->cur_slot = -1;
    p->cur_field = MAIL_NONE;
    mail_buf_reset(&p->line);
}

static void recompute_boundaries(struct mail_parser *p)
{
    p->n_bnd_active = 0;
    p->max_bnd_len = 0;
    for (uint32_t i = 0; i < p->depth; i++) {
        if (!p->stack[i].bnd_active)
            continue;
        p->n_bnd_active++;
        if (p->stack[i].bnd_len > p->max_bnd_len)
            p->max_bnd_len = p->stack[i].bnd_len;
    }
}

/* ---- decoded size of the current leaf ---- */

static void count_feed(struct mail_parser *p, const uint8_t *s, size_t len)
{
    uint8_t out[4096 + MAIL_DECODE_SLACK];
    while (len > 0) {
        size_t n = len < 4096 ? len : 4096;
        (void)mail_decoder_feed(&p->dec, s, n, out);
        s += n;
        len -= n;
    }
}

static void count_flush_held(struct mail_parser *p)
{
    if (p->held_len > 0)
        count_feed(p, p->held, p->held_len);
    p->held_len = 0;
    p->held_partial = false;
}

/* ---- closing parts ---- */

static void finish_field(struct mail_parser *p)
{
    if (p->cur_slot >= 0) {
        struct mp_part *m = cur_part(p);
        const uint8_t *v = p->val.data;
        size_t n = p->val.len;
        while (n > 0 && mail_is_wsp(v[0])) {
            v++;
            n--;
        }
        while (n > 0 && mail_is_wsp(v[n - 1]))
            n--;
        m->slot[p->cur_slot] = pool_add(p, v, n);
    }
    p->cur_slot = -1;
    p->cur_field = MAIL_NONE;
    mail_buf_reset(&p->val);
}

/* Sets the body end of part idx (the body ends at end, with lf LFs inside and last_lf telling
 * whether its last byte is a LF). */
static void set_body_end(struct mail_parser *p, struct mp_part *m, uint64_t end, uint64_t lfs,
                         bool last_lf)
{
    if (end < m->body_offset)
        end = m->body_offset;
    m->body_size = end - m->body_offset;
    m->body_lines = m->body_size == 0 ? 0 : lfs + (last_lf ? 0 : 1);
    if (p->counting && &p->parts[p->stack[p->depth - 1].part] == m) {
        uint8_t out[MAIL_DECODE_SLACK];
        (void)mail_decoder_finish(&p->dec, out);
        m->decoded_size = p->dec.total;
        m->decoded_size_known = true;
        p->counting = false;
    } else if (m->kind == MAIL_PART_LEAF && m->decoded_size_known) {
        m->decoded_size = m->body_size; /* identity encodings */
    }
    p->held_len = 0;
    p->held_partial = false;
}

static void end_header(struct mail_parser *p, uint64_t body_offset, bool has_body);

/* Closes the top part at a boundary line that starts at line_start. */
static void close_top_at_boundary(struct mail_parser *p, uint64_t line_start)
{
    struct mp_part *m = cur_part(p);
    if (p->state == ST_HEADER) {
        finish_field(p);
        m->header_size = line_start - m->header_offset;
        end_header(p, line_start, false);
        m = cur_part(p);
        m->body_offset = line_start;
    }
    if (m->body_offset >= line_start) {
        set_body_end(p, m, m->body_offset, 0, true);
    } else {
        uint64_t lfs = p->lf_count - 1 - m->lf_at_body;
        set_body_end(p, m, p->prev_eol, lfs, p->prev_line_empty);
    }
    if (m->kind == MAIL_PART_MULTIPART && m->n_children == 0) {
        m->kind = MAIL_PART_LEAF; /* no boundary ever seen: the whole body was preamble */
        m->type = pool_add_cstr(p, "text");
        m->subtype = pool_add_cstr(p, "plain");
    }
    p->depth--;
    p->state = ST_BODY; /* the parent continues in its body */
}

static void close_top_at_eof(struct mail_parser *p, uint64_t end)
{
    struct mp_part *m = cur_part(p);
    if (p->state == ST_HEADER) {
        finish_field(p);
        m->header_size = end - m->header_offset;
        end_header(p, end, false);
        m = cur_part(p);
        m->body_offset = end;
        m->lf_at_body = p->lf_count;
    }
    if (p->counting && &p->parts[p->stack[p->depth - 1].part] == m)
        count_flush_held(p);
    set_body_end(p, m, end, p->lf_count - m->lf_at_body, p->last_byte == '\n');
    if (m->kind == MAIL_PART_MULTIPART && m->n_children == 0) {
        m->kind = MAIL_PART_LEAF;
        m->type = pool_add_cstr(p, "text");
        m->subtype = pool_add_cstr(p, "plain");
    }
    p->depth--;
    p->state = ST_BODY; /* the parent continues in its body */
}

/* ---- header end: decide what the part is ---- */

static void add_lang(void *ctx, const uint8_t *tok, size_t tok_len)
{
    struct mail_parser *p = ctx;
    GROW(p->strs, p->n_strs, p->cap_strs);
    p->strs[p->n_strs++] = pool_add(p, tok, tok_len);
}

static uint32_t add_params(struct mail_parser *p, const struct mail_param *params, size_t n)
{
    uint32_t first = p->n_params;
    for (size_t i = 0; i < n; i++) {
        GROW(p->params, p->n_params, p->cap_params);
        struct mp_param *q = &p->params[p->n_params++];
        q->name = pool_add(p, params[i].name.data, params[i].name.len);
        q->value = pool_add(p, params[i].value.data, params[i].value.len);
    }
    return first;
}

/* Copies a captured slot into p->tmp (the pool may move while we add to it). */
static const uint8_t *slot_copy(struct mail_parser *p, struct mp_str s, size_t *len_r)
{
    mail_buf_reset(&p->tmp);
    *len_r = 0;
    if (s.len == MAIL_NONE)
        return NULL;
    mail_buf_append(&p->tmp, pool_ptr(p, s), s.len);
    *len_r = s.len;
    return p->tmp.len ? p->tmp.data : (const uint8_t *)"";
}

static bool parent_is_digest(const struct mail_parser *p, const struct mp_part *m)
{
    if (m->parent == MAIL_NONE)
        return false;
    const struct mp_part *par = &p->parts[m->parent];
    return par->kind == MAIL_PART_MULTIPART && par->subtype.len != MAIL_NONE &&
           mail_span_eq(pool_ptr(p, par->subtype), par->subtype.len, "digest");
}

/*
 * The header of the top part ended; its body starts at body_offset. has_body is false when the
 * header was cut short by a boundary or the end of the message.
 */
static void end_header(struct mail_parser *p, uint64_t body_offset, bool has_body)
{
    uint32_t idx = p->stack[p->depth - 1].part;
    struct mp_part *m = &p->parts[idx];
    struct mail_param params[MAIL_MAX_PARAMS];
    struct mail_ctype ct;
    size_t vlen;
    const uint8_t *v;

    m->body_offset = body_offset;
    m->lf_at_body = p->lf_count;

    v = slot_copy(p, m->slot[MP_SLOT_CONTENT_TYPE], &vlen);
    mail_ctype_parse(v, vlen, true, &ct, params, &p->scratch);
    bool is_multipart = false, is_message = false;
    const uint8_t *boundary = NULL;
    size_t boundary_len = 0;
    if (ct.type_len > 0) {
        m->type = pool_add(p, ct.type, ct.type_len);
        m->subtype = pool_add(p, ct.subtype, ct.subtype_len);
        m->param_first = add_params(p, ct.params, ct.n_params);
        m->param_count = (uint32_t)ct.n_params;
        is_multipart = mail_span_eq(ct.type, ct.type_len, "multipart");
        is_message = mail_span_eq(ct.type, ct.type_len, "message") &&
                     (mail_span_eq(ct.subtype, ct.subtype_len, "rfc822") ||
                      mail_span_eq(ct.subtype, ct.subtype_len, "global"));
        m->global = is_message && mail_span_eq(ct.subtype, ct.subtype_len, "global");
        for (size_t i = 0; i < ct.n_params; i++) {
            if (mail_span_eq(ct.params[i].name.data, ct.params[i].name.len, "boundary")) {
                boundary = ct.params[i].value.data;
                boundary_len = ct.params[i].value.len;
            }
        }
        if (is_multipart && boundary_len > 0) {
            mail_buf_reset(&p->bndtmp); /* scratch and tmp are reused below */
            mail_buf_append(&p->bndtmp, boundary, boundary_len);
            boundary = p->bndtmp.data;
        }
    } else if (parent_is_digest(p, m)) {
        m->type = pool_add_cstr(p, "message");
        m->subtype = pool_add_cstr(p, "rfc822");
        is_message = true;
    } else {
        struct mail_param cs = { { (const uint8_t *)"charset", 7 },
                                 { (const uint8_t *)"us-ascii", 8 } };
        m->type = pool_add_cstr(p, "text");
        m->subtype = pool_add_cstr(p, "plain");
        m->param_first = add_params(p, &cs, 1);
        m->param_count = 1;
    }

    v = slot_copy(p, m->slot[MP_SLOT_DISPOSITION], &vlen);
    if (v != NULL) {
        mail_ctype_parse(v, vlen, false, &ct, params, &p->scratch);
        if (ct.type_len > 0) {
            m->disposition = pool_add(p, ct.type, ct.type_len);
            m->dparam_first = add_params(p, ct.params, ct.n_params);
            m->dparam_count = (uint32_t)ct.n_params;
        }
    }
    v = slot_copy(p, m->slot[MP_SLOT_LANGUAGE], &vlen);
    if (v != NULL) {
        m->lang_first = p->n_strs;
        mail_language_split(v, vlen, add_lang, p);
        m->lang_count = p->n_strs - m->lang_first;
    }

    const uint8_t *cte_raw = NULL;
    size_t cte_len = 0;
    if (m->slot[MP_SLOT_CTE].len != MAIL_NONE) {
        cte_raw = pool_ptr(p, m->slot[MP_SLOT_CTE]);
        cte_len = m->slot[MP_SLOT_CTE].len;
    }
    enum mail_cte cte = mail_cte_parse(cte_raw, cte_len);
    bool identity = cte == MAIL_CTE_7BIT || cte == MAIL_CTE_8BIT || cte == MAIL_CTE_BINARY;
    bool room = m->depth + 1 < p->lim.max_depth && has_body;

    if (is_multipart) {
        if (room && boundary_len > 0 && boundary_len <= p->lim.max_boundary) {
            m->kind = MAIL_PART_MULTIPART;
            struct frame *f = &p->stack[p->depth - 1];
            f->bnd_off = (uint32_t)p->bnd.len;
            f->bnd_len = (uint32_t)boundary_len;
            f->bnd_active = true;
            mail_buf_append(&p->bnd, boundary, boundary_len);
            recompute_boundaries(p);
        } else {
            m->type = pool_add_cstr(p, "text");
            m->subtype = pool_add_cstr(p, "plain");
        }
    } else if (is_message) {
        if (room && identity && p->n_parts < p->lim.max_parts) {
            m->kind = MAIL_PART_MESSAGE;
            p->state = ST_BODY;
            push_part(p, body_offset, true);
            return;
        }
        if (!identity && !m->global) {
            m->type = pool_add_cstr(p, "application");
            m->subtype = pool_add_cstr(p, "octet-stream");
        }
    }
    if (m->kind == MAIL_PART_LEAF && cte != MAIL_CTE_UNKNOWN) {
        m->decoded_size_known = true;
        if (cte == MAIL_CTE_BASE64 || cte == MAIL_CTE_QP) {
            p->counting = true;
            mail_decoder_init(&p->dec, cte);
            p->held_len = 0;
            p->held_partial = false;
        }
    }
    p->state = ST_BODY;
    p->bol = true;
}

/* ---- boundaries ---- */

/* Returns the stack level whose boundary starts line s[0..n), or -1; *close_r for "--b--". */
static int match_boundary(const struct mail_parser *p, const uint8_t *s, size_t n, bool *close_r)
{
    int best = -1;
    uint32_t best_len = 0;
    if (n < 2 || s[0] != '-' || s[1] != '-')
        return -1;
    for (int i = (int)p->depth - 1; i >= 0; i--) {
        const struct frame *f = &p->stack[i];
        if (!f->bnd_active || f->bnd_len + 2 > n || (best >= 0 && f->bnd_len <= best_len))
            continue;
        if (memcmp(s + 2, p->bnd.data + f->bnd_off, f->bnd_len) == 0) {
            best = i;
            best_len = f->bnd_len;
        }
    }
    if (best >= 0)
        *close_r = n >= best_len + 4 && s[best_len + 2] == '-' && s[best_len + 3] == '-';
    return best;
}

/* A boundary of stack[level] starts the line at line_start: close everything above it. */
static void boundary_hit(struct mail_parser *p, int level, bool close, uint64_t line_start)
{
    while (p->depth > (uint32_t)level + 1)
        close_top_at_boundary(p, line_start);
    struct frame *f = &p->stack[level];
    if (close) {
        f->bnd_active = false;
        recompute_boundaries(p);
        p->skip_then_child = false;
    } else {
        p->skip_then_child = p->n_parts < p->lim.max_parts;
        p->skip_level = (uint32_t)level;
    }
    p->counting = false;
    p->held_len = 0;
    p->held_partial = false;
}

/* The boundary line has ended; the next line starts at p->line_start. */
static void after_boundary_line(struct mail_parser *p)
{
    if (p->skip_then_child) {
        p->skip_then_child = false;
        push_part(p, p->line_start, false);
    } else {
        p->state = ST_BODY;
        p->bol = true;
    }
}

/* ---- line bookkeeping ---- */

/* An LF at data[x]: records the line end and starts the next line. */
static void on_lf(struct mail_parser *p, const uint8_t *data, size_t x)
{
    uint64_t a = p->base + x;
    uint8_t prev = x > 0 ? data[x - 1] : p->last_byte;
    uint64_t eol = (a > p->line_start && prev == '\r') ? a - 1 : a;
    p->prev_line_empty = eol == p->line_start;
    p->prev_eol = eol;
    p->lf_count++;
    p->line_start = a + 1;
}

/* ---- header lines ---- */

static int slot_of(const uint8_t *name, size_t len, bool message_header)
{
    if (len < 2 || len > 25)
        return -1;
    for (size_t i = 0; i < sizeof(slot_names) / sizeof(slot_names[0]); i++) {
        if ((!slot_names[i].envelope || message_header) && mail_span_eq(name, len, slot_names[i].name))
            return slot_names[i].slot;
    }
    return -1;
}

static void val_append(struct mail_parser *p, const uint8_t *s, size_t len)
{
    size_t room = p->lim.max_field_value > p->val.len ? p->lim.max_field_value - p->val.len : 0;
    if (len > room)
        len = room;
    mail_buf_reserve(&p->val, len);
    for (size_t i = 0; i < len; i++) {
        if (s[i] != '\0' && s[i] != '\r' && s[i] != '\n')
            p->val.data[p->val.len++] = s[i];
    }
}

/* A complete header line s[0..n) (LF and a CR before it removed) that started at lstart. */
static void header_line(struct mail_parser *p, const uint8_t *s, size_t n, uint64_t lstart)
{
    struct mp_part *m = cur_part(p);
    if (p->n_bnd_active > 0 && n >= 2 && s[0] == '-' && s[1] == '-') {
        bool close;
        int level = match_boundary(p, s, n, &close);
        if (level >= 0) {
            boundary_hit(p, level, close, lstart);
            after_boundary_line(p);
            return;
        }
    }
    if (n == 0) {
        finish_field(p);
        m->header_size = p->line_start - m->header_offset;
        end_header(p, p->line_start, true);
        return;
    }
    if (mail_is_wsp(s[0]) && p->cur_field != MAIL_NONE) {
        p->fields[p->cur_field].size = p->line_start - p->fields[p->cur_field].offset;
        if (p->cur_slot >= 0)
            val_append(p, s, n);
        return;
    }
    finish_field(p);
    const uint8_t *colon = memchr(s, ':', n);
    size_t name_len = colon ? (size_t)(colon - s) : 0;
    while (name_len > 0 && mail_is_wsp(s[name_len - 1]))
        name_len--;
    if (name_len > 255)
        name_len = 255;
    if (m->field_count < p->lim.max_fields) {
        GROW(p->fields, p->n_fields, p->cap_fields);
        p->cur_field = p->n_fields++;
        struct mp_field *f = &p->fields[p->cur_field];
        f->name = pool_add(p, s, name_len);
        f->offset = lstart;
        f->size = p->line_start - lstart;
        m->field_count++;
    } else {
        m->fields_truncated = true;
    }
    if (colon != NULL) {
        int slot = slot_of(s, name_len, m->is_message_header);
        if (slot >= 0 && m->slot[slot].len == MAIL_NONE) {
            p->cur_slot = slot;
            val_append(p, colon + 1, n - (size_t)(colon + 1 - s));
        }
    }
}

static size_t feed_header(struct mail_parser *p, const uint8_t *data, size_t len, size_t i)
{
    const uint8_t *nl = memchr(data + i, '\n', len - i);
    size_t end = nl ? (size_t)(nl - data) : len;
    size_t cap = (size_t)p->lim.max_field_value + 1024;
    if (nl == NULL || p->line.len > 0) {
        size_t room = cap > p->line.len ? cap - p->line.len : 0;
        size_t take = end - i < room ? end - i : room;
        mail_buf_append(&p->line, data + i, take);
        if (nl == NULL)
            return len;
    }
    uint64_t lstart = p->line_start;
    on_lf(p, data, end);
    const uint8_t *s;
    size_t n;
    if (p->line.len > 0) {
        s = p->line.data;
        n = p->line.len;
    } else {
        s = data + i;
        n = end - i;
        if (n > cap)
            n = cap;
    }
    if (n > 0 && s[n - 1] == '\r' && p->line_start - 1 - lstart == n)
        n--;
    header_line(p, s, n, lstart);
    mail_buf_reset(&p->line);
    return end + 1;
}

/* ---- body lines ---- */

static size_t count_lf(const uint8_t *s, size_t n)
{
    size_t c = 0;
    const uint8_t *end = s + n;
    while (s < end) {
        const uint8_t *nl = memchr(s, '\n', (size_t)(end - s));
        if (nl == NULL)
            break;
        c++;
        s = nl + 1;
    }
    return c;
}

static size_t feed_body(struct mail_parser *p, const uint8_t *data, size_t len, size_t i)
{
    if (p->n_bnd_active == 0 && !p->counting) {
        /* nothing can end this body but the end of the message */
        p->lf_count += count_lf(data + i, len - i);
        p->bol = false;
        return len;
    }
    if (p->held_partial && p->counting && data[i] != '\n') {
        count_flush_held(p); /* the held CR was text, not a line end */
    }
    while (i < len) {
        if (p->bol) {
            if (p->n_bnd_active > 0 && (p->pend.len > 0 || data[i] == '-')) {
                size_t need = (size_t)p->max_bnd_len + 4;
                size_t have = p->pend.len;
                size_t want = need > have ? need - have : 0;
                size_t avail = len - i < want ? len - i : want;
                const uint8_t *nl = memchr(data + i, '\n', avail);
                size_t take = nl ? (size_t)(nl - (data + i)) : avail;
                mail_buf_append(&p->pend, data + i, take);
                if (nl == NULL && p->pend.len < need)
                    return len; /* wait for more of this line */
                size_t n = p->pend.len;
                if (nl != NULL && n > 0 && p->pend.data[n - 1] == '\r')
                    n--;
                bool close;
                int level = match_boundary(p, p->pend.data, n, &close);
                if (level >= 0) {
                    mail_buf_reset(&p->pend);
                    boundary_hit(p, level, close, p->line_start);
                    p->bol = false;
                    p->state = ST_SKIP_LINE;
                    return i + take;
                }
                if (p->counting) {
                    /* bytes of this line from earlier chunks; a CR just before the LF at data[i]
                     * is the line end, which the scan below holds back itself */
                    size_t earlier = have;
                    if (nl != NULL && take == 0 && earlier > 0 && p->pend.data[earlier - 1] == '\r')
                        earlier--;
                    count_flush_held(p);
                    count_feed(p, p->pend.data, earlier);
                }
                mail_buf_reset(&p->pend);
            } else if (p->counting) {
                count_flush_held(p);
            }
            p->bol = false;
        }
        const uint8_t *nl = memchr(data + i, '\n', len - i);
        if (nl == NULL) {
            if (p->counting) {
                if (data[len - 1] == '\r') {
                    count_feed(p, data + i, len - 1 - i);
                    p->held[0] = '\r';
                    p->held_len = 1;
                    p->held_partial = true;
                } else {
                    count_feed(p, data + i, len - i);
                }
            }
            return len;
        }
        size_t x = (size_t)(nl - data);
        on_lf(p, data, x);
        if (p->counting) {
            uint64_t eol = p->prev_eol;
            if (eol >= p->base + i)
                count_feed(p, data + i, (size_t)(eol - p->base) - i);
            if (eol < p->base + x) {
                p->held[0] = '\r';
                p->held[1] = '\n';
                p->held_len = 2;
            } else {
                p->held[0] = '\n';
                p->held_len = 1;
            }
            p->held_partial = false;
        }
        i = x + 1;
        p->bol = true;
        if (p->n_bnd_active == 0 && !p->counting)
            break;
    }
    return i;
}

static size_t feed_skip(struct mail_parser *p, const uint8_t *data, size_t len, size_t i)
{
    const uint8_t *nl = memchr(data + i, '\n', len - i);
    if (nl == NULL)
        return len;
    size_t x = (size_t)(nl - data);
    on_lf(p, data, x);
    after_boundary_line(p);
    return x + 1;
}

/* ---- public ---- */

struct mail_parser *mail_parser_new(const struct mail_limits *limits)
{
    struct mail_parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    if (limits != NULL)
        p->lim = *limits;
    else
        mail_limits_default(&p->lim);
    if (p->lim.max_depth < 1)
        p->lim.max_depth = 1;
    if (p->lim.max_parts < 1)
        p->lim.max_parts = 1;
    p->stack = calloc((size_t)p->lim.max_depth + 2, sizeof(*p->stack));
    if (p->stack == NULL)
        abort();
    push_part(p, 0, true);
    return p;
}

void mail_parser_feed(struct mail_parser *p, const uint8_t *data, size_t len)
{
    if (p->finished || len == 0)
        return;
    size_t i = 0;
    while (i < len) {
        switch (p->state) {
        case ST_HEADER:
            i = feed_header(p, data, len, i);
            break;
        case ST_BODY:
            i = feed_body(p, data, len, i);
            break;
        case ST_SKIP_LINE:
            i = feed_skip(p, data, len, i);
            break;
        case ST_DONE:
            i = len;
            break;
        }
    }
    p->base += len;
    p->last_byte = data[len - 1];
}

int mail_parser_finish(struct mail_parser *p, struct mail_buf *blob_r, const char **error_r)
{
    if (p->finished) {
        *error_r = "parser already finished";
        return -1;
    }
    p->finished = true;
    uint64_t end = p->base;
    if (p->state == ST_HEADER && p->line.len > 0) {
        /* a last header line without LF */
        uint64_t lstart = p->line_start;
        p->line_start = end;
        size_t n = p->line.len;
        header_line(p, p->line.data, n, lstart);
        mail_buf_reset(&p->line);
        if (p->state == ST_HEADER && p->cur_field != MAIL_NONE)
            p->fields[p->cur_field].size = end - p->fields[p->cur_field].offset;
    } else if (p->state == ST_BODY && p->pend.len > 0) {
        /* a last body line without LF that may be a boundary */
        bool close;
        int level = match_boundary(p, p->pend.data, p->pend.len, &close);
        if (level >= 0) {
            boundary_hit(p, level, close, p->line_start);
            p->skip_then_child = false;
        } else if (p->counting) {
            count_flush_held(p);
            count_feed(p, p->pend.data, p->pend.len);
        }
        mail_buf_reset(&p->pend);
    } else if (p->state == ST_BODY && p->counting && p->bol) {
        count_flush_held(p);
    }
    while (p->depth > 0)
        close_top_at_eof(p, end);
    p->state = ST_DONE;

    struct mp_model m = {
        .size = end,
        .parts = p->parts,
        .n_parts = p->n_parts,
        .params = p->params,
        .n_params = p->n_params,
        .strs = p->strs,
        .n_strs = p->n_strs,
        .fields = p->fields,
        .n_fields = p->n_fields,
        .pool = p->pool.data,
        .pool_len = p->pool.len,
    };
    return mail_serial_write(&m, blob_r, error_r);
}

void mail_parser_free(struct mail_parser **pp)
{
    struct mail_parser *p = *pp;
    if (p == NULL)
        return;
    mail_buf_free(&p->pool);
    free(p->parts);
    free(p->params);
    free(p->strs);
    free(p->fields);
    free(p->stack);
    mail_buf_free(&p->bnd);
    mail_buf_free(&p->line);
    mail_buf_free(&p->val);
    mail_buf_free(&p->pend);
    mail_buf_free(&p->tmp);
    mail_buf_free(&p->scratch);
    mail_buf_free(&p->bndtmp);
    free(p);
    *pp = NULL;
}

int mail_parse(const uint8_t *msg, size_t len, const struct mail_limits *limits,
               struct mail_buf *blob_r, const char **error_r)
{
    struct mail_parser *p = mail_parser_new(limits);
    mail_parser_feed(p, msg, len);
    int ret = mail_parser_finish(p, blob_r, error_r);
    mail_parser_free(&p);
    return ret;
}
