/*
 * Message preparation for append.lua. The parse is done once here (at APPEND or delivery) and
 * stored; FETCH and SEARCH read only what is stored (DESIGN.md rule 6). Message-IDs are taken
 * verbatim from the "<...>" tokens of the raw header values, at most 250 printable bytes each.
 */
#include "frontend/msgprep.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

void msgprep_hex(const unsigned char md[32], char out[KEYS_SHA256_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[KEYS_SHA256_LEN] = '\0';
}

/* Appends the Message-IDs ("<...>") of a header value to out, space-separated. */
static void collect_ids(struct mail_buf *out, const struct mail_str *v)
{
    if (v->data == NULL)
        return;
    size_t i = 0;
    while (i < v->len) {
        const uint8_t *lt = memchr(v->data + i, '<', v->len - i);
        if (lt == NULL)
            break;
        size_t start = (size_t)(lt - v->data);
        const uint8_t *gt = memchr(lt, '>', v->len - start);
        if (gt == NULL)
            break;
        size_t end = (size_t)(gt - v->data) + 1;
        bool clean = end - start <= 250;
        for (size_t k = start; k < end && clean; k++)
            clean = v->data[k] > 0x20 && v->data[k] < 0x7f;
        if (clean) {
            if (out->len > 0)
                mail_buf_append(out, " ", 1);
            mail_buf_append(out, v->data + start, end - start);
        }
        i = end;
    }
}

static char *buf_string(const struct mail_buf *b)
{
    char *s = malloc(b->len + 1);
    if (s == NULL)
        abort();
    if (b->len > 0)
        memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

int msgprep_render(struct msgprep *m, const char **error_r)
{
    struct mail_view *view = NULL;
    if (mail_view_open(m->blob.data, m->blob.len, &view, error_r) != 0)
        return -1;
    const struct mail_part *root = mail_view_root(view);
    mail_buf_reset(&m->env);
    mail_buf_reset(&m->bs);
    mail_render_envelope(view, root, 0, &m->env);
    mail_render_bodystructure(view, MAIL_RENDER_EXTENSIONS, &m->bs);
    struct mail_buf ids = {0};
    collect_ids(&ids, &root->envelope[MAIL_ENV_MESSAGE_ID]);
    const uint8_t *space = ids.len > 0 ? memchr(ids.data, ' ', ids.len) : NULL;
    if (space != NULL)
        ids.len = (size_t)(space - ids.data); /* the first one is the message's own */
    free(m->message_id);
    m->message_id = buf_string(&ids);
    mail_buf_reset(&ids);
    collect_ids(&ids, &root->envelope[MAIL_ENV_IN_REPLY_TO]);
    collect_ids(&ids, &root->envelope[MAIL_ENV_REFERENCES]);
    free(m->thread_refs);
    m->thread_refs = buf_string(&ids);
    mail_buf_free(&ids);
    mail_view_free(&view);
    return 0;
}

int msgprep_bytes(struct msgprep *m, const uint8_t *data, size_t len, const char **error_r)
{
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32) {
        *error_r = "SHA-256 failed";
        return -1;
    }
    msgprep_hex(md, m->sha_hex);
    mail_buf_reset(&m->blob);
    if (mail_parse(data, len, NULL, &m->blob, error_r) != 0)
        return -1;
    return msgprep_render(m, error_r);
}

void msgprep_free(struct msgprep *m)
{
    mail_buf_free(&m->blob);
    mail_buf_free(&m->env);
    mail_buf_free(&m->bs);
    free(m->message_id);
    free(m->thread_refs);
    memset(m, 0, sizeof(*m));
}

void append_call_build(struct arena *a, const char *nsid, const char *mbxid,
                       const struct append_limits *limits, const struct append_item *items,
                       size_t n, struct append_call *out)
{
    size_t nkeys = 13 + 3 * n;
    size_t total = nkeys + 5 + 11 * n;
    struct key *keys = arena_alloc(a, nkeys * sizeof(*keys));
    const char **argv = arena_alloc(a, total * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, total * sizeof(*argvlen));
    keys_ns_meta(&keys[0], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], nsid, mbxid, (enum keys_mbx_part)p);
    keys_ns_threads(&keys[10], nsid);
    keys_ns_channel(&keys[11], nsid);
    keys_ns_gc(&keys[12], nsid);
    for (size_t i = 0; i < n; i++) {
        const struct append_item *it = &items[i];
        keys_content(&keys[13 + 3 * i], nsid, it->prep->sha_hex);
        keys_content_raw(&keys[14 + 3 * i], nsid, it->prep->sha_hex);
        if (it->raw == NULL)
            keys_staging(&keys[15 + 3 * i], nsid, it->staging_id);
        else
            keys[15 + 3 * i] = keys[14 + 3 * i];
    }
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    size_t k = nkeys;
#define ARG(s, l) (argv[k] = (s), argvlen[k] = (l), k++)
#define ARGS(s) ARG((s), strlen(s))
    ARGS(arena_strndup(a, mbxid, strlen(mbxid)));
    ARGS(arena_printf(a, "%" PRIu64, limits->quota_bytes));
    ARGS(arena_printf(a, "%" PRIu64, limits->quota_messages));
    ARGS(arena_printf(a, "%" PRIu32, limits->max_keywords));
    ARGS(arena_printf(a, "%zu", n));
    for (size_t i = 0; i < n; i++) {
        const struct append_item *it = &items[i];
        const struct msgprep *m = it->prep;
        ARGS(m->sha_hex);
        ARGS(arena_printf(a, "%" PRIu64, it->size));
        ARGS(it->date);
        ARGS(it->flags);
        if (it->raw != NULL)
            ARG(it->raw, it->raw_len);
        else
            ARG("", 0);
        ARG((const char *)m->blob.data, m->blob.len);
        ARG((const char *)m->env.data, m->env.len);
        ARG((const char *)m->bs.data, m->bs.len);
        ARGS(m->message_id);
        ARGS(m->thread_refs);
        ARGS(arena_printf(a, "M%.24s", m->sha_hex));
    }
#undef ARG
#undef ARGS
    out->nkeys = (int)nkeys;
    out->argc = (int)k;
    out->argv = argv;
    out->argvlen = argvlen;
}
