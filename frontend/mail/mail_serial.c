/*
 * mail_serial: the stored form of a parse and the view over it.
 *
 * Format (version 1), all integers unsigned LEB128 varints, strings as varint (len + 1) then the
 * bytes, with 0 meaning NIL (so NIL and "" differ and any byte, NUL included, is allowed):
 *
 *   "CMP" version(1 byte)
 *   size n_parts n_params n_strs n_fields            totals, so a view is one allocation
 *   per part, in pre-order:
 *     flags(1 byte: kind | message_header<<2 | global<<3 | fields_truncated<<4 | decoded_known<<5)
 *     n_children header_offset header_size body_offset body_size body_lines [decoded_size]
 *     type subtype n_params (name value)*  id description encoding md5 location
 *     disposition [n_dparams (name value)*]  n_languages language*
 *     [11 envelope strings when message_header]
 *     n_fields (name offset-from-header size)*
 *
 * The reader trusts nothing: every varint, string, count, offset and the tree shape are checked,
 * so a corrupt or truncated value from Redis gives an error, never an out-of-bounds read. A new
 * field means a new version byte; readers refuse versions they do not know (the server then
 * re-parses the raw message, which is always possible).
 */
#include <stdlib.h>
#include <string.h>

#include "frontend/mail/mail_private.h"

enum {
    F_KIND_MASK = 3,
    F_MESSAGE_HEADER = 1 << 2,
    F_GLOBAL = 1 << 3,
    F_FIELDS_TRUNCATED = 1 << 4,
    F_DECODED_KNOWN = 1 << 5,
};

/* ---- writer ---- */

static void put_str(struct mail_buf *b, const struct mp_model *m, struct mp_str s)
{
    if (s.len == MAIL_NONE) {
        mail_put_varint(b, 0);
        return;
    }
    mail_put_varint(b, (uint64_t)s.len + 1);
    mail_buf_append(b, m->pool + s.off, s.len);
}

static void put_cstr(struct mail_buf *b, const char *s)
{
    mail_put_varint(b, strlen(s) + 1);
    mail_buf_puts(b, s);
}

static void put_params(struct mail_buf *b, const struct mp_model *m, uint32_t first, uint32_t n)
{
    mail_put_varint(b, n);
    for (uint32_t i = 0; i < n; i++) {
        put_str(b, m, m->params[first + i].name);
        put_str(b, m, m->params[first + i].value);
    }
}

int mail_serial_write(const struct mp_model *m, struct mail_buf *out, const char **error_r)
{
    uint32_t n_params = 0, n_strs = 0;
    for (uint32_t i = 0; i < m->n_parts; i++) {
        const struct mp_part *p = &m->parts[i];
        n_params += p->param_count + (p->disposition.len != MAIL_NONE ? p->dparam_count : 0);
        n_strs += p->lang_count + (p->is_message_header ? MAIL_ENV_COUNT : 0);
    }
    if (m->size >= ((uint64_t)1 << 48)) {
        *error_r = "message too large for the stored parse format";
        return -1;
    }
    static const uint8_t magic[4] = { MAIL_BLOB_MAGIC0, MAIL_BLOB_MAGIC1, MAIL_BLOB_MAGIC2,
                                      MAIL_BLOB_VERSION };
    mail_buf_append(out, magic, 4);
    mail_put_varint(out, m->size);
    mail_put_varint(out, m->n_parts);
    mail_put_varint(out, n_params);
    mail_put_varint(out, n_strs);
    mail_put_varint(out, m->n_fields);
    for (uint32_t i = 0; i < m->n_parts; i++) {
        const struct mp_part *p = &m->parts[i];
        uint8_t flags = (uint8_t)p->kind;
        if (p->is_message_header)
            flags |= F_MESSAGE_HEADER;
        if (p->global)
            flags |= F_GLOBAL;
        if (p->fields_truncated)
            flags |= F_FIELDS_TRUNCATED;
        if (p->decoded_size_known)
            flags |= F_DECODED_KNOWN;
        mail_buf_putc(out, flags);
        mail_put_varint(out, p->n_children);
        mail_put_varint(out, p->header_offset);
        mail_put_varint(out, p->header_size);
        mail_put_varint(out, p->body_offset);
        mail_put_varint(out, p->body_size);
        mail_put_varint(out, p->body_lines);
        if (p->decoded_size_known)
            mail_put_varint(out, p->decoded_size);
        put_str(out, m, p->type);
        put_str(out, m, p->subtype);
        put_params(out, m, p->param_first, p->param_count);
        put_str(out, m, p->slot[MP_SLOT_ID]);
        put_str(out, m, p->slot[MP_SLOT_DESCRIPTION]);
        if (p->slot[MP_SLOT_CTE].len == MAIL_NONE)
            put_cstr(out, "7BIT");
        else
            put_str(out, m, p->slot[MP_SLOT_CTE]);
        put_str(out, m, p->slot[MP_SLOT_MD5]);
        put_str(out, m, p->slot[MP_SLOT_LOCATION]);
        put_str(out, m, p->disposition);
        if (p->disposition.len != MAIL_NONE)
            put_params(out, m, p->dparam_first, p->dparam_count);
        mail_put_varint(out, p->lang_count);
        for (uint32_t k = 0; k < p->lang_count; k++)
            put_str(out, m, m->strs[p->lang_first + k]);
        if (p->is_message_header) {
            for (int k = 0; k < MAIL_ENV_COUNT; k++)
                put_str(out, m, p->slot[k]);
        }
        mail_put_varint(out, p->field_count);
        for (uint32_t k = 0; k < p->field_count; k++) {
            const struct mp_field *f = &m->fields[p->field_first + k];
            put_str(out, m, f->name);
            mail_put_varint(out, f->offset - p->header_offset);
            mail_put_varint(out, f->size);
        }
    }
    return 0;
}

/* ---- reader ---- */

struct reader {
    const uint8_t *p, *end;
    bool bad;
};

static uint64_t get_varint(struct reader *r)
{
    uint64_t v = 0;
    for (unsigned shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) {
            r->bad = true;
            return 0;
        }
        uint8_t c = *r->p++;
        v |= (uint64_t)(c & 0x7f) << shift;
        if ((c & 0x80) == 0)
            return v;
    }
    r->bad = true;
    return 0;
}

static struct mail_str get_str(struct reader *r)
{
    struct mail_str s = { NULL, 0 };
    uint64_t n = get_varint(r);
    if (n == 0 || r->bad)
        return s;
    n--;
    if (n > (uint64_t)(r->end - r->p)) {
        r->bad = true;
        return s;
    }
    s.data = r->p;
    s.len = (size_t)n;
    r->p += n;
    return s;
}

static uint8_t get_byte(struct reader *r)
{
    if (r->p >= r->end) {
        r->bad = true;
        return 0;
    }
    return *r->p++;
}

/* Reads a parameter list into params[*used...], bounded by cap. */
static const struct mail_param *get_params(struct reader *r, struct mail_param *params, size_t cap,
                                           size_t *used, size_t *n_r)
{
    uint64_t n = get_varint(r);
    *n_r = 0;
    if (r->bad || n > cap - *used) {
        r->bad = true;
        return NULL;
    }
    struct mail_param *first = params + *used;
    for (uint64_t i = 0; i < n && !r->bad; i++) {
        first[i].name = get_str(r);
        first[i].value = get_str(r);
        if (first[i].name.data == NULL)
            r->bad = true;
    }
    *used += (size_t)n;
    *n_r = (size_t)n;
    return first;
}

static bool range_ok(uint64_t off, uint64_t len, uint64_t size)
{
    return off <= size && len <= size - off;
}

int mail_view_open(const uint8_t *blob, size_t len, struct mail_view **view_r, const char **error_r)
{
    *view_r = NULL;
    if (len < 4 || blob[0] != MAIL_BLOB_MAGIC0 || blob[1] != MAIL_BLOB_MAGIC1 ||
        blob[2] != MAIL_BLOB_MAGIC2) {
        *error_r = "not a stored message parse";
        return -1;
    }
    if (blob[3] != MAIL_BLOB_VERSION) {
        *error_r = "unsupported stored parse version";
        return -1;
    }
    struct reader r = { blob + 4, blob + len, false };
    uint64_t size = get_varint(&r);
    uint64_t n_parts = get_varint(&r), n_params = get_varint(&r), n_strs = get_varint(&r),
             n_fields = get_varint(&r);
    /* every element costs at least one byte of blob: bounds the allocation */
    if (r.bad || n_parts == 0 || n_parts > len || n_params > len || n_strs > len ||
        n_fields > len) {
        *error_r = "corrupt stored parse header";
        return -1;
    }
    /* one allocation: the view, its tables and the tree-walk scratch */
    size_t sz_parts = (size_t)n_parts * sizeof(struct mail_part);
    size_t sz_params = (size_t)n_params * sizeof(struct mail_param);
    size_t sz_strs = (size_t)n_strs * sizeof(struct mail_str);
    size_t sz_fields = (size_t)n_fields * sizeof(struct mail_field);
    size_t sz_walk = (size_t)n_parts * sizeof(uint32_t);
    uint8_t *mem = calloc(1, sizeof(struct mail_view) + sz_parts + sz_params + sz_strs + sz_fields +
                                 2 * sz_walk);
    if (mem == NULL)
        abort();
    struct mail_view *v = (struct mail_view *)mem;
    uint8_t *q = mem + sizeof(*v);
    v->parts = (struct mail_part *)q;
    q += sz_parts;
    v->params = (struct mail_param *)q;
    q += sz_params;
    v->strs = (struct mail_str *)q;
    q += sz_strs;
    v->fields = (struct mail_field *)q;
    q += sz_fields;
    uint32_t *stack = (uint32_t *)q;
    uint32_t *left = stack + n_parts;
    v->blob = blob;
    v->blob_len = len;
    v->size = size;
    v->n_parts = (uint32_t)n_parts;

    size_t used_params = 0, used_strs = 0, used_fields = 0, sp = 0;
    for (uint32_t i = 0; i < n_parts && !r.bad; i++) {
        struct mail_part *p = &v->parts[i];
        uint8_t flags = get_byte(&r);
        p->index = i;
        p->kind = (enum mail_part_kind)(flags & F_KIND_MASK);
        if ((flags & F_KIND_MASK) > MAIL_PART_MESSAGE || (flags & 0xc0) != 0)
            r.bad = true;
        p->global = (flags & F_GLOBAL) != 0;
        p->fields_truncated = (flags & F_FIELDS_TRUNCATED) != 0;
        p->decoded_size_known = (flags & F_DECODED_KNOWN) != 0;
        uint64_t n_children = get_varint(&r);
        p->header_offset = get_varint(&r);
        p->header_size = get_varint(&r);
        p->body_offset = get_varint(&r);
        p->body_size = get_varint(&r);
        p->body_lines = get_varint(&r);
        if (p->decoded_size_known)
            p->decoded_size = get_varint(&r);
        if (n_children > n_parts || !range_ok(p->header_offset, p->header_size, size) ||
            !range_ok(p->body_offset, p->body_size, size) ||
            (p->kind == MAIL_PART_LEAF && n_children != 0) ||
            (p->kind == MAIL_PART_MESSAGE && n_children != 1) ||
            (p->kind == MAIL_PART_MULTIPART && n_children == 0))
            r.bad = true;
        p->n_children = (uint32_t)n_children;
        p->type = get_str(&r);
        p->subtype = get_str(&r);
        p->params = get_params(&r, v->params, (size_t)n_params, &used_params, &p->n_params);
        p->id = get_str(&r);
        p->description = get_str(&r);
        p->encoding = get_str(&r);
        p->md5 = get_str(&r);
        p->location = get_str(&r);
        p->disposition = get_str(&r);
        if (p->disposition.data != NULL)
            p->disposition_params = get_params(&r, v->params, (size_t)n_params, &used_params,
                                               &p->n_disposition_params);
        if (p->type.data == NULL || p->subtype.data == NULL || p->encoding.data == NULL)
            r.bad = true;
        uint64_t n_lang = get_varint(&r);
        if (n_lang > n_strs - used_strs) {
            r.bad = true;
            break;
        }
        p->languages = v->strs + used_strs;
        p->n_languages = (size_t)n_lang;
        for (uint64_t k = 0; k < n_lang; k++)
            v->strs[used_strs++] = get_str(&r);
        if (flags & F_MESSAGE_HEADER) {
            if (MAIL_ENV_COUNT > n_strs - used_strs) {
                r.bad = true;
                break;
            }
            p->envelope = v->strs + used_strs;
            for (int k = 0; k < MAIL_ENV_COUNT; k++)
                v->strs[used_strs++] = get_str(&r);
        }
        uint64_t nf = get_varint(&r);
        if (nf > n_fields - used_fields) {
            r.bad = true;
            break;
        }
        p->fields = v->fields + used_fields;
        p->n_fields = (size_t)nf;
        for (uint64_t k = 0; k < nf && !r.bad; k++) {
            struct mail_field *f = &v->fields[used_fields++];
            f->name = get_str(&r);
            uint64_t rel = get_varint(&r);
            f->size = get_varint(&r);
            f->offset = p->header_offset + rel;
            if (f->name.data == NULL || rel > size || !range_ok(f->offset, f->size, size))
                r.bad = true;
        }

        /* tree shape: pre-order with child counts */
        if (i == 0) {
            p->parent = UINT32_MAX;
            if (!p->envelope)
                r.bad = true;
        } else {
            while (sp > 0 && left[sp - 1] == 0) {
                v->parts[stack[sp - 1]].next_sibling = i;
                sp--;
            }
            if (sp == 0) {
                r.bad = true; /* a second root */
                break;
            }
            p->parent = stack[sp - 1];
            left[sp - 1]--;
            if (v->parts[p->parent].kind == MAIL_PART_MESSAGE && !p->envelope)
                r.bad = true;
        }
        stack[sp] = i;
        left[sp] = p->n_children;
        sp++;
    }
    while (sp > 0 && !r.bad) {
        if (left[sp - 1] != 0)
            r.bad = true; /* children promised but missing */
        v->parts[stack[sp - 1]].next_sibling = v->n_parts;
        sp--;
    }
    if (r.bad || r.p != r.end || used_params != n_params || used_strs != n_strs ||
        used_fields != n_fields) {
        mail_view_free(&v);
        *error_r = "corrupt stored parse";
        return -1;
    }
    *view_r = v;
    return 0;
}

void mail_view_free(struct mail_view **view)
{
    struct mail_view *v = *view;
    if (v == NULL)
        return;
    free(v); /* one block, see mail_view_open */
    *view = NULL;
}

uint64_t mail_view_size(const struct mail_view *view)
{
    return view->size;
}

uint32_t mail_view_part_count(const struct mail_view *view)
{
    return view->n_parts;
}

const struct mail_part *mail_view_part(const struct mail_view *view, uint32_t index)
{
    return index < view->n_parts ? &view->parts[index] : NULL;
}

const struct mail_part *mail_view_root(const struct mail_view *view)
{
    return &view->parts[0];
}
