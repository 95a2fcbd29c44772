/*
 * search_scan: raw-level SEARCH keys over one message in sequential chunks (see search_scan.h).
 * The root header is buffered (bounded) and examined once complete; body text leaves are decoded
 * part by part as their bytes go by, with one matcher per needle reset at every part, so memory
 * stays bounded by the header cap plus one chunk of decoded text. Parts come in pre-order, which
 * is also the order of their body offsets, so one cursor walks them.
 * Deliberately no early stop of reading: the caller decides how much to read (search_scan_need);
 * feeding stops costing CPU once every needle is found.
 */
#include "frontend/search_scan.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

static bool all_found(const struct search_scan *s)
{
    for (size_t i = 0; i < s->n_needles; i++) {
        if (!s->found[i])
            return false;
    }
    return true;
}

int search_scan_begin(struct search_scan *s, const struct search_needle *needles, size_t n,
                      const uint8_t *blob, size_t blob_len, const char **error_r)
{
    memset(s, 0, sizeof(*s));
    s->blob = malloc(blob_len == 0 ? 1 : blob_len);
    if (s->blob == NULL)
        abort();
    memcpy(s->blob, blob, blob_len);
    if (mail_view_open(s->blob, blob_len, &s->view, error_r) != 0) {
        free(s->blob);
        s->blob = NULL;
        return -1;
    }
    s->needles = needles;
    s->n_needles = n;
    s->found = calloc(n == 0 ? 1 : n, sizeof(*s->found));
    s->matchers = calloc(n == 0 ? 1 : n, sizeof(*s->matchers));
    if (s->found == NULL || s->matchers == NULL)
        abort();
    for (size_t i = 0; i < n; i++) {
        mail_matcher_init(&s->matchers[i], needles[i].value, needles[i].value_len);
        /* An empty string is in every message (RFC 3501 substring semantics), except that
         * HEADER "" still needs the field to exist. */
        if (needles[i].value_len == 0 && needles[i].kind != SEARCH_NEEDLE_HEADER)
            s->found[i] = true;
    }
    const struct mail_part *root = mail_view_root(s->view);
    s->header_end = root->header_offset + root->header_size;
    return 0;
}

uint64_t search_scan_need(const struct search_scan *s, bool body)
{
    if (s->view == NULL)
        return 0;
    return body ? mail_view_size(s->view) : s->header_end;
}

static void scan_header(struct search_scan *s)
{
    s->header_done = true;
    const uint8_t *h = s->header.data;
    size_t len = s->header.len;
    struct mail_buf value = {0}, decoded = {0};
    size_t pos = 0;
    struct mail_header_field f;
    for (size_t i = 0; i < s->n_needles; i++) {
        if (s->needles[i].kind == SEARCH_NEEDLE_TEXT)
            mail_matcher_reset(&s->matchers[i]);
    }
    while (!all_found(s) && mail_header_next(h, len, &pos, &f)) {
        mail_buf_reset(&value);
        mail_buf_reset(&decoded);
        mail_header_unfold(f.value, f.value_len, &value);
        mail_header_decode(value.data, value.len, &decoded);
        for (size_t i = 0; i < s->n_needles; i++) {
            const struct search_needle *nd = &s->needles[i];
            if (s->found[i])
                continue;
            if (nd->kind == SEARCH_NEEDLE_HEADER) {
                if (f.name_len == nd->name_len &&
                    strncasecmp((const char *)f.name, nd->name, nd->name_len) == 0 &&
                    mail_text_contains(decoded.data, decoded.len, nd->value, nd->value_len))
                    s->found[i] = true;
            } else if (nd->kind == SEARCH_NEEDLE_TEXT) {
                /* "name: value" per field, each its own haystack. */
                struct mail_matcher *m = &s->matchers[i];
                mail_matcher_reset(m);
                if (mail_matcher_feed(m, f.name, f.name_len) || mail_matcher_feed(m, (const uint8_t *)": ", 2) ||
                    (decoded.len > 0 && mail_matcher_feed(m, decoded.data, decoded.len)))
                    s->found[i] = true;
            }
        }
    }
    mail_buf_free(&value);
    mail_buf_free(&decoded);
    mail_buf_free(&s->header);
}

static void match_text(struct search_scan *s)
{
    if (s->text.len == 0)
        return;
    for (size_t i = 0; i < s->n_needles; i++) {
        if (s->found[i] || s->needles[i].kind == SEARCH_NEEDLE_HEADER)
            continue;
        if (mail_matcher_feed(&s->matchers[i], s->text.data, s->text.len))
            s->found[i] = true;
    }
    mail_buf_reset(&s->text);
}

static void part_start(struct search_scan *s, const struct mail_part *p)
{
    mail_text_decoder_init(&s->dec, p);
    s->in_part = true;
    for (size_t i = 0; i < s->n_needles; i++) {
        if (s->needles[i].kind != SEARCH_NEEDLE_HEADER)
            mail_matcher_reset(&s->matchers[i]);
    }
}

static void part_end(struct search_scan *s)
{
    mail_text_decoder_finish(&s->dec, &s->text);
    match_text(s);
    mail_text_decoder_free(&s->dec);
    s->in_part = false;
}

static bool wants_body(const struct search_scan *s)
{
    for (size_t i = 0; i < s->n_needles; i++) {
        if (!s->found[i] && s->needles[i].kind != SEARCH_NEEDLE_HEADER)
            return true;
    }
    return false;
}

void search_scan_feed(struct search_scan *s, uint64_t offset, const uint8_t *data, size_t len)
{
    if (s->view == NULL || all_found(s))
        return;
    uint64_t end = offset + len;
    if (!s->header_done && offset < s->header_end) {
        uint64_t upto = end < s->header_end ? end : s->header_end;
        size_t room = SEARCH_SCAN_MAX_HEADER > s->header.len ? SEARCH_SCAN_MAX_HEADER - s->header.len : 0;
        size_t take = (size_t)(upto - offset);
        mail_buf_append(&s->header, data, take < room ? take : room);
        if (upto == s->header_end)
            scan_header(s);
    }
    if (!wants_body(s))
        return;
    uint32_t count = mail_view_part_count(s->view);
    while (s->part < count) {
        const struct mail_part *p = mail_view_part(s->view, s->part);
        if (!mail_part_is_searchable_text(p)) {
            s->part++;
            continue;
        }
        uint64_t ps = p->body_offset, pe = p->body_offset + p->body_size;
        if (ps > end || (ps == end && pe > ps))
            break; /* starts in a later chunk */
        if (!s->in_part)
            part_start(s, p);
        uint64_t lo = ps > offset ? ps : offset, hi = pe < end ? pe : end;
        if (lo < hi) {
            mail_text_decoder_feed(&s->dec, data + (lo - offset), (size_t)(hi - lo), &s->text);
            match_text(s);
        }
        if (pe > end)
            break; /* continues in the next chunk */
        part_end(s);
        s->part++;
    }
}

void search_scan_end(struct search_scan *s, bool *found_r)
{
    if (s->view != NULL && !s->header_done && s->header.len > 0)
        scan_header(s);
    if (s->in_part)
        part_end(s);
    for (size_t i = 0; i < s->n_needles; i++)
        found_r[i] = s->view != NULL && s->found[i];
}

void search_scan_free(struct search_scan *s)
{
    if (s->in_part)
        mail_text_decoder_free(&s->dec);
    if (s->matchers != NULL) {
        for (size_t i = 0; i < s->n_needles; i++)
            mail_matcher_free(&s->matchers[i]);
    }
    free(s->matchers);
    free(s->found);
    mail_view_free(&s->view);
    free(s->blob);
    mail_buf_free(&s->header);
    mail_buf_free(&s->text);
    memset(s, 0, sizeof(*s));
}
