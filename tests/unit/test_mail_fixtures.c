/*
 * test_mail_fixtures: every message in tests/fixtures/mail (real-world shapes written for this
 * project) goes through the whole model: one-shot and chunked parses must agree byte for byte,
 * the view must open, ENVELOPE/BODYSTRUCTURE/BODY render with balanced parentheses, every part's
 * sections resolve inside the message, BINARY sizes match a full decode, body text decodes.
 * A few fixtures also have their own specific checks.
 */
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/mail/mail.h"

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    struct mail_buf b = { 0 };
    uint8_t tmp[65536];
    size_t n;
    while ((n = fread(tmp, 1, sizeof(tmp), f)) > 0)
        mail_buf_append(&b, tmp, n);
    fclose(f);
    *len = b.len;
    return b.data; /* NULL for an empty file */
}

/* Parentheses balance outside quoted strings and literals. */
static void check_balanced(const struct mail_buf *b, const char *name)
{
    int depth = 0;
    for (size_t i = 0; i < b->len; i++) {
        uint8_t c = b->data[i];
        if (c == '"') {
            for (i++; i < b->len && b->data[i] != '"'; i++) {
                if (b->data[i] == '\\')
                    i++;
            }
        } else if (c == '{') {
            size_t n = 0;
            for (i++; i < b->len && b->data[i] != '}'; i++)
                n = n * 10 + (size_t)(b->data[i] - '0');
            i += 2 + n; /* "}\r\n" then the bytes */
        } else if (c == '(') {
            depth++;
        } else if (c == ')') {
            depth--;
            if (depth < 0)
                break;
        }
    }
    if (depth != 0) {
        print_error("%s: unbalanced rendering %.*s\n", name, (int)b->len, (const char *)b->data);
        fail();
    }
}

/*
 * Builds the section path of part idx (RFC 3501 numbering): a child of a multipart is numbered by
 * its position; a non-multipart message (the root or an encapsulated one) has its body as "1".
 */
static size_t path_of(const struct mail_view *v, uint32_t idx, uint32_t *path)
{
    uint32_t rev[MAIL_SECTION_MAX_PATH];
    size_t n = 0;
    uint32_t cur = idx;
    for (;;) {
        const struct mail_part *p = mail_view_part(v, cur);
        if (p->parent == UINT32_MAX) {
            if (p->kind != MAIL_PART_MULTIPART)
                rev[n++] = 1;
            break;
        }
        const struct mail_part *par = mail_view_part(v, p->parent);
        if (par->kind == MAIL_PART_MULTIPART) {
            uint32_t num = 1;
            for (uint32_t c = par->index + 1; c != p->index; c = mail_view_part(v, c)->next_sibling)
                num++;
            rev[n++] = num;
        } else if (p->kind != MAIL_PART_MULTIPART) {
            rev[n++] = 1;
        }
        cur = par->index;
    }
    for (size_t k = 0; k < n; k++)
        path[k] = rev[n - 1 - k];
    return n;
}

static size_t checked;

static void check_message(const char *name, const uint8_t *msg, size_t len)
{
    struct mail_buf ref = { 0 }, got = { 0 }, out = { 0 };
    const char *err;
    assert_int_equal(mail_parse(msg, len, NULL, &ref, &err), 0);
    static const size_t chunks[] = { 1, 2, 7, 64, 1000, 4096 };
    for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
        struct mail_parser *p = mail_parser_new(NULL);
        for (size_t off = 0; off < len; off += chunks[c])
            mail_parser_feed(p, msg + off, len - off < chunks[c] ? len - off : chunks[c]);
        mail_buf_reset(&got);
        assert_int_equal(mail_parser_finish(p, &got, &err), 0);
        mail_parser_free(&p);
        if (got.len != ref.len || memcmp(got.data, ref.data, ref.len) != 0) {
            print_error("%s: chunks of %zu differ from one-shot\n", name, chunks[c]);
            fail();
        }
    }
    struct mail_view *v;
    assert_int_equal(mail_view_open(ref.data, ref.len, &v, &err), 0);
    assert_int_equal(mail_view_size(v), len);
    static const unsigned flag_sets[] = { 0, MAIL_RENDER_EXTENSIONS,
                                          MAIL_RENDER_EXTENSIONS | MAIL_RENDER_GLOBAL | MAIL_RENDER_UTF8 };
    for (size_t f = 0; f < 3; f++) {
        mail_buf_reset(&out);
        mail_render_bodystructure(v, flag_sets[f], &out);
        check_balanced(&out, name);
        mail_buf_reset(&out);
        mail_render_envelope(v, mail_view_root(v), flag_sets[f], &out);
        check_balanced(&out, name);
    }
    for (uint32_t i = 0; i < mail_view_part_count(v); i++) {
        const struct mail_part *p = mail_view_part(v, i);
        assert_true(p->header_offset + p->header_size <= len);
        assert_true(p->body_offset + p->body_size <= len);
        assert_true(p->header_offset + p->header_size <= p->body_offset);
        if (p->parent != UINT32_MAX) {
            const struct mail_part *par = mail_view_part(v, p->parent);
            assert_true(p->header_offset >= par->body_offset);
            assert_true(p->body_offset + p->body_size <= par->body_offset + par->body_size);
        }
        for (size_t k = 0; k < p->n_fields; k++)
            assert_true(p->fields[k].offset + p->fields[k].size <= p->body_offset);
        if (p->envelope != NULL && i != 0) {
            mail_buf_reset(&out);
            mail_render_envelope(v, p, 0, &out);
            check_balanced(&out, name);
        }
        /* the part is reachable by its path, and BINARY agrees with a full decode */
        uint32_t path[MAIL_SECTION_MAX_PATH];
        size_t n = path_of(v, i, path);
        if (p->kind == MAIL_PART_MULTIPART &&
            (p->parent == UINT32_MAX || mail_view_part(v, p->parent)->kind == MAIL_PART_MESSAGE))
            continue; /* a multipart message body has no number of its own */
        const struct mail_part *found = mail_view_find_part(v, path, n);
        assert_ptr_equal(found, p);
        struct mail_section s = { .path_len = n };
        memcpy(s.path, path, n * sizeof(path[0]));
        struct mail_binary bin;
        assert_int_equal(mail_view_binary(v, &s, &bin, &err), 0);
        if (bin.cte != MAIL_CTE_UNKNOWN) {
            assert_true(bin.decoded_size_known);
            mail_buf_reset(&out);
            mail_decode_all(bin.cte, msg + bin.offset, bin.size, &out);
            if (out.len != bin.decoded_size) {
                print_error("%s part %u: decoded %zu, BINARY.SIZE %llu\n", name, i, out.len,
                            (unsigned long long)bin.decoded_size);
                fail();
            }
        }
        s.text = MAIL_SECTION_MIME;
        struct mail_pieces pc = { 0 };
        assert_int_equal(mail_view_section(v, &s, &pc, &err), 0);
        mail_pieces_free(&pc);
        if (mail_part_is_searchable_text(p)) {
            struct mail_text_decoder t;
            mail_buf_reset(&out);
            mail_text_decoder_init(&t, p);
            mail_text_decoder_feed(&t, msg + p->body_offset, p->body_size, &out);
            mail_text_decoder_finish(&t, &out);
            mail_text_decoder_free(&t);
        }
    }
    mail_view_free(&v);
    mail_buf_free(&ref);
    mail_buf_free(&got);
    mail_buf_free(&out);
    checked++;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void test_all_fixtures(void **state)
{
    (void)state;
    DIR *d = opendir(MAIL_FIXTURE_DIR);
    assert_non_null(d);
    char *names[256];
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if (l > 4 && strcmp(e->d_name + l - 4, ".eml") == 0)
            names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), cmp_names);
    assert_true(n >= 40);
    for (size_t i = 0; i < n; i++) {
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", MAIL_FIXTURE_DIR, names[i]);
        size_t len;
        uint8_t *msg = read_file(path, &len);
        check_message(names[i], msg ? msg : (const uint8_t *)"", len);
        free(msg);
        free(names[i]);
    }
    assert_int_equal(checked, n);
}

static struct mail_view *open_fixture(const char *name, uint8_t **msg, size_t *len, struct mail_buf *blob)
{
    char path[1024];
    const char *err;
    snprintf(path, sizeof(path), "%s/%s", MAIL_FIXTURE_DIR, name);
    *msg = read_file(path, len);
    assert_int_equal(mail_parse(*msg, *len, NULL, blob, &err), 0);
    struct mail_view *v;
    assert_int_equal(mail_view_open(blob->data, blob->len, &v, &err), 0);
    return v;
}

static void test_fixture_specifics(void **state)
{
    (void)state;
    uint8_t *msg;
    size_t len;
    struct mail_buf blob = { 0 }, out = { 0 };

    struct mail_view *v = open_fixture("43-many-parts.eml", &msg, &len, &blob);
    assert_int_equal(mail_view_part_count(v), 301);
    mail_view_free(&v);
    free(msg);
    mail_buf_reset(&blob);

    v = open_fixture("22-deep-nesting.eml", &msg, &len, &blob);
    assert_int_equal(mail_view_part_count(v), 50); /* default max_depth */
    mail_view_free(&v);
    free(msg);
    mail_buf_reset(&blob);

    v = open_fixture("12-subject-windows1252.eml", &msg, &len, &blob);
    const struct mail_str *subj = &mail_view_root(v)->envelope[MAIL_ENV_SUBJECT];
    mail_header_decode(subj->data, subj->len, &out);
    assert_true(mail_text_contains(out.data, out.len, (const uint8_t *)"\xe2\x80\x9cquoted\xe2\x80\x9d \xe2\x82\xac", 11));
    mail_view_free(&v);
    free(msg);
    mail_buf_reset(&blob);
    mail_buf_reset(&out);

    v = open_fixture("40-reply-thread.eml", &msg, &len, &blob);
    subj = &mail_view_root(v)->envelope[MAIL_ENV_SUBJECT];
    mail_base_subject(subj->data, subj->len, &out);
    assert_int_equal(out.len, strlen("Lunch tomorrow?"));
    assert_memory_equal(out.data, "Lunch tomorrow?", out.len);
    const struct mail_str *refs = &mail_view_root(v)->envelope[MAIL_ENV_REFERENCES];
    size_t pos = 0, ids = 0, id_len;
    const uint8_t *id;
    while (mail_msgid_next(refs->data, refs->len, &pos, &id, &id_len))
        ids++;
    assert_int_equal(ids, 3);
    mail_view_free(&v);
    free(msg);
    mail_buf_reset(&blob);
    mail_buf_reset(&out);

    v = open_fixture("42-windows1250-body.eml", &msg, &len, &blob);
    struct mail_text_decoder t;
    mail_text_decoder_init(&t, mail_view_root(v));
    mail_text_decoder_feed(&t, msg + mail_view_root(v)->body_offset, mail_view_root(v)->body_size, &out);
    mail_text_decoder_finish(&t, &out);
    mail_text_decoder_free(&t);
    const char *word = "\xc5\xbdLU\xc5\xa4OU\xc4\x8cK\xc3\x9d"; /* ŽLUŤOUČKÝ */
    assert_true(mail_text_contains(out.data, out.len, (const uint8_t *)word, strlen(word)));
    mail_view_free(&v);
    free(msg);

    mail_buf_free(&blob);
    mail_buf_free(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_fixtures),
        cmocka_unit_test(test_fixture_specifics),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
