/*
 * fetch_render: one message's FETCH data items, from what Redis stores (fetch_render.h).
 *
 * Nothing is re-parsed (DESIGN.md rule 6): ENVELOPE and BODYSTRUCTURE are the strings rendered at
 * APPEND time, or rendered again from the stored parse by the same code when the parse is what was
 * read (the column cache holds parses, not the strings); BODY (no extension data) is rendered from
 * the stored parse, and body sections are resolved by the mail library to byte ranges of the raw
 * message. Everything is appended to a struct mail_buf: no printf-style formatting (a FETCH FLAGS
 * of a big mailbox renders ~100,000 small responses). BINARY (RFC 3516) decodes
 * base64 and quoted-printable; identity encodings are sent as bytes. A BINARY literal is sent as
 * literal8 ("~{n}") when it holds a NUL (§4.2), which this file can only know for bytes it has
 * in hand: the streaming writer in cmd_fetch.c uses literal8 for every large BINARY answer.
 * A section naming a part that does not exist answers NIL; a partial starting past the end
 * answers an empty string (RFC 3501 §6.4.5).
 */
#include "frontend/fetch_render.h"

#include <inttypes.h>
#include <string.h>

#include "frontend/imapdate.h"

void fetch_put_u64(struct mail_buf *out, uint64_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    fetch_put(out, tmp + sizeof(tmp) - n, n);
}

static void put_text(struct mail_buf *out, const char *s, size_t len)
{
    fetch_put(out, s, len);
}

#define PUT_LIT(out, lit) FETCH_PUT_LIT(out, lit)

static void render_flags(struct mail_buf *out, const struct fetch_msg *m, uint32_t recent_first)
{
    bool recent = m->uid >= recent_first;
    size_t len = m->flags != NULL ? m->flags_len : 0;
    PUT_LIT(out, "FLAGS (");
    if (len > 0)
        put_text(out, m->flags, len);
    if (recent && len > 0)
        PUT_LIT(out, " \\Recent)");
    else if (recent)
        PUT_LIT(out, "\\Recent)");
    else
        PUT_LIT(out, ")");
}

static void render_objectid(struct mail_buf *out, const char *name, const char *id)
{
    put_text(out, name, strlen(name));
    if (id == NULL || id[0] == '\0') {
        PUT_LIT(out, " NIL");
        return;
    }
    PUT_LIT(out, " (");
    put_text(out, id, strlen(id));
    PUT_LIT(out, ")");
}

int fetch_render_item(struct mail_buf *out, const struct fetch_att *att, const struct fetch_msg *m,
                      uint32_t recent_first)
{
    switch (att->kind) {
    case FETCH_ATT_UID:
        PUT_LIT(out, "UID ");
        fetch_put_u64(out, m->uid);
        return 0;
    case FETCH_ATT_FLAGS:
        render_flags(out, m, recent_first);
        return 0;
    case FETCH_ATT_INTERNALDATE: {
        char date[IMAPDATE_LEN + 1];
        imapdate_format(m->internaldate, date);
        PUT_LIT(out, "INTERNALDATE \"");
        put_text(out, date, strlen(date));
        PUT_LIT(out, "\"");
        return 0;
    }
    case FETCH_ATT_RFC822_SIZE:
        PUT_LIT(out, "RFC822.SIZE ");
        fetch_put_u64(out, m->size);
        return 0;
    case FETCH_ATT_ENVELOPE:
        PUT_LIT(out, "ENVELOPE ");
        if (m->env != NULL)
            put_text(out, m->env, m->env_len);
        else
            mail_render_envelope(m->view, mail_view_root(m->view), 0, out);
        return 0;
    case FETCH_ATT_BODYSTRUCTURE:
        PUT_LIT(out, "BODYSTRUCTURE ");
        if (m->bs != NULL)
            put_text(out, m->bs, m->bs_len);
        else
            mail_render_bodystructure(m->view, MAIL_RENDER_EXTENSIONS, out);
        return 0;
    case FETCH_ATT_BODY:
        PUT_LIT(out, "BODY ");
        mail_render_bodystructure(m->view, 0, out);
        return 0;
    case FETCH_ATT_EMAILID:
        render_objectid(out, "EMAILID", m->emailid);
        return 0;
    case FETCH_ATT_THREADID:
        render_objectid(out, "THREADID", m->threadid);
        return 0;
    case FETCH_ATT_BINARY_SIZE: {
        uint64_t size = m->size;
        if (!att->whole) {
            struct mail_binary bin;
            const char *error = NULL;
            if (mail_view_binary(m->view, &att->section, &bin, &error) != 0) {
                size = 0; /* no such part: nothing to decode */
            } else {
                if (bin.cte == MAIL_CTE_UNKNOWN || !bin.decoded_size_known)
                    return -1;
                size = bin.decoded_size;
            }
        }
        put_text(out, att->echo, att->echo_len);
        PUT_LIT(out, " ");
        fetch_put_u64(out, size);
        return 0;
    }
    case FETCH_ATT_SECTION:
        break;
    }
    return 0;
}

/* The size of the partial range <origin.count> of total bytes (RFC 3501 §6.4.5). */
static uint64_t clamp_partial(const struct fetch_att *att, uint64_t total)
{
    if (!att->partial)
        return total;
    if (att->origin >= total)
        return 0;
    uint64_t rest = total - att->origin;
    return att->count < rest ? att->count : rest;
}

static void copy_pieces(struct arena *a, const struct mail_pieces *p, struct fetch_source *src)
{
    src->count = 0;
    src->v = arena_calloc(a, p->count > 0 ? p->count : 1, sizeof(*src->v));
    src->read_size = 0;
    for (size_t i = 0; i < p->count; i++) {
        if (p->v[i].size == 0)
            continue; /* nothing to read or send */
        src->v[src->count++] = p->v[i];
        if (p->v[i].literal == NULL)
            src->read_size += p->v[i].size;
    }
}

static void single_range(struct arena *a, uint64_t offset, uint64_t origin, uint64_t out_size,
                         struct fetch_source *src)
{
    src->v = arena_calloc(a, 1, sizeof(*src->v));
    src->count = out_size > 0 ? 1 : 0;
    src->v[0].offset = offset + origin;
    src->v[0].size = out_size;
    src->read_size = out_size;
    src->out_size = out_size;
}

void fetch_source_resolve(struct arena *a, struct mail_pieces *scratch, const struct fetch_att *att,
                          const struct fetch_msg *m, struct fetch_source *src)
{
    memset(src, 0, sizeof(*src));
    const char *error = NULL;
    if (att->whole) {
        uint64_t n = clamp_partial(att, m->size);
        single_range(a, 0, att->partial ? att->origin : 0, n, src);
        src->kind = FETCH_SOURCE_BYTES;
        return;
    }
    if (att->binary) {
        struct mail_binary bin;
        if (mail_view_binary(m->view, &att->section, &bin, &error) != 0) {
            src->kind = FETCH_SOURCE_NIL;
            return;
        }
        if (bin.cte == MAIL_CTE_UNKNOWN || !bin.decoded_size_known) {
            src->kind = FETCH_SOURCE_UNKNOWN_CTE;
            return;
        }
        if (bin.cte == MAIL_CTE_BASE64 || bin.cte == MAIL_CTE_QP) {
            src->kind = FETCH_SOURCE_DECODE;
            src->cte = bin.cte;
            src->v = arena_calloc(a, 1, sizeof(*src->v));
            src->count = bin.size > 0 ? 1 : 0;
            src->v[0].offset = bin.offset;
            src->v[0].size = bin.size;
            src->read_size = bin.size;
            src->out_size = clamp_partial(att, bin.decoded_size);
            return;
        }
        uint64_t n = clamp_partial(att, bin.size);
        single_range(a, bin.offset, att->partial ? att->origin : 0, n, src);
        src->kind = FETCH_SOURCE_BYTES;
        return;
    }
    if (mail_view_section(m->view, &att->section, scratch, &error) != 0) {
        src->kind = FETCH_SOURCE_NIL;
        return;
    }
    if (scratch->needs_filter) {
        src->kind = FETCH_SOURCE_FILTER;
        copy_pieces(a, scratch, src);
        return;
    }
    if (att->partial)
        mail_pieces_slice(scratch, att->origin, att->count);
    src->kind = FETCH_SOURCE_BYTES;
    copy_pieces(a, scratch, src);
    src->out_size = scratch->total;
}

size_t fetch_source_reads(const struct fetch_source *src)
{
    size_t n = 0;
    for (size_t i = 0; i < src->count; i++) {
        if (src->v[i].literal == NULL)
            n++;
    }
    return n;
}

void fetch_literal_header(struct mail_buf *out, const struct fetch_att *att, uint64_t size,
                          bool literal8)
{
    put_text(out, att->echo, att->echo_len);
    if (literal8)
        PUT_LIT(out, " ~{");
    else
        PUT_LIT(out, " {");
    fetch_put_u64(out, size);
    PUT_LIT(out, "}\r\n");
}

/* Appends "NAME " and data as a string: "" when empty, else a literal (literal8 with a NUL). */
static void write_string(struct mail_buf *out, const struct fetch_att *att, const uint8_t *data,
                         size_t len)
{
    if (len == 0) {
        put_text(out, att->echo, att->echo_len);
        PUT_LIT(out, " \"\"");
        return;
    }
    bool nul = att->binary && memchr(data, '\0', len) != NULL;
    fetch_literal_header(out, att, len, nul);
    mail_buf_append(out, data, len);
}

int fetch_source_write(struct mail_buf *out, const struct fetch_att *att,
                       const struct fetch_source *src, redisReply *const *reads, size_t nreads,
                       struct mail_buf *scratch)
{
    if (src->kind == FETCH_SOURCE_NIL) {
        put_text(out, att->echo, att->echo_len);
        PUT_LIT(out, " NIL");
        return 0;
    }
    /* Every read must be a string of exactly its piece's size. */
    size_t r = 0;
    for (size_t i = 0; i < src->count; i++) {
        if (src->v[i].literal != NULL)
            continue;
        if (r >= nreads || reads[r]->type != REDIS_REPLY_STRING ||
            (uint64_t)reads[r]->len != src->v[i].size)
            return -1;
        r++;
    }
    mail_buf_reset(scratch);
    if (src->kind == FETCH_SOURCE_BYTES && src->count == 1 && src->v[0].literal == NULL) {
        write_string(out, att, (const uint8_t *)reads[0]->str, reads[0]->len);
        return 0;
    }
    r = 0;
    for (size_t i = 0; i < src->count; i++) {
        if (src->v[i].literal != NULL) {
            mail_buf_append(scratch, src->v[i].literal, src->v[i].size);
        } else {
            mail_buf_append(scratch, reads[r]->str, reads[r]->len);
            r++;
        }
    }
    if (src->kind == FETCH_SOURCE_BYTES) {
        write_string(out, att, scratch->data, scratch->len);
        return 0;
    }
    struct mail_buf done = {0};
    if (src->kind == FETCH_SOURCE_DECODE)
        mail_decode_all(src->cte, scratch->data, scratch->len, &done);
    else
        mail_header_filter(scratch->data, scratch->len, &att->section, &done);
    uint64_t n = clamp_partial(att, done.len);
    const uint8_t *from = n > 0 ? done.data + (att->partial ? att->origin : 0) : NULL;
    write_string(out, att, from, (size_t)n);
    mail_buf_free(&done);
    return 0;
}
