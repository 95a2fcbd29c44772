/*
 * test_mail_search: SEARCH and threading helpers — RFC 2047 header decoding, charsets, the
 * case-insensitive matcher (also across chunk edges), body text decoding, Date parsing, message
 * ids and RFC 5256 base subjects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/mail/mail.h"

static void expect_buf(const struct mail_buf *b, const char *want, const char *what)
{
    if (b->len != strlen(want) || (b->len > 0 && memcmp(b->data, want, b->len) != 0)) {
        print_error("%s\n got: [%.*s]\nwant: [%s]\n", what, (int)b->len, (const char *)b->data, want);
        fail();
    }
}

static void test_header_decode(void **state)
{
    (void)state;
    static const struct {
        const char *in, *out;
    } cases[] = {
        { "=?utf-8?q?J=C3=B6rg?=", "J\xc3\xb6rg" },
        { "=?ISO-8859-1?Q?Andr=E9?= Pirard", "Andr\xc3\xa9 Pirard" },
        { "=?iso-8859-1?q?a?= =?iso-8859-1?q?b?=", "ab" },
        { "=?iso-8859-1?q?a?=  \t =?iso-8859-1?q?_b?=", "a b" },
        { "=?UTF-8?B?0J/RgNC40LLQtdGC?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
        /* a UTF-8 character split over two encoded words */
        { "=?utf-8?b?w6k=?= =?utf-8?b?w6k=?=", "\xc3\xa9\xc3\xa9" },
        { "=?windows-1251?B?0/Dw4A==?=", "\xd0\xa3\xd1\x80\xd1\x80\xd0\xb0" },
        { "=?iso-8859-2?q?=A3=F3d=BC?=", "\xc5\x81\xc3\xb3\x64\xc5\xba" },
        { "=?koi8-r?b?8NLJ18XU?=", "\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82" },
        { "=?iso-8859-15?q?=A4uro?=", "\xe2\x82\xac" "uro" },
        { "=?utf-8*en?q?lang?=", "lang" },
        { "plain =?bad", "plain =?bad" },
        { "=?utf-8?x?nope?=", "=?utf-8?x?nope?=" },
        { "a =?utf-8?q?b?= c", "a b c" },
        { "raw latin1 caf\xe9", "raw latin1 caf\xc3\xa9" },
        { "raw utf8 caf\xc3\xa9", "raw utf8 caf\xc3\xa9" },
        { "=?unknown-cs?q?x=41?=", "xA" },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_buf out = { 0 };
        mail_header_decode((const uint8_t *)cases[i].in, strlen(cases[i].in), &out);
        expect_buf(&out, cases[i].out, cases[i].in);
        mail_buf_free(&out);
    }
}

static void test_params(void **state)
{
    (void)state;
    struct mail_param p[] = {
        { { (const uint8_t *)"charset", 7 }, { (const uint8_t *)"utf-8", 5 } },
        { { (const uint8_t *)"filename*", 9 }, { (const uint8_t *)"UTF-8''na%C3%AFve.txt", 21 } },
        { { (const uint8_t *)"name", 4 }, { (const uint8_t *)"=?utf-8?q?r=C3=A9sum=C3=A9?=", 28 } },
    };
    struct mail_buf out = { 0 };
    assert_true(mail_param_get(p, 3, "FILENAME", &out));
    expect_buf(&out, "na\xc3\xafve.txt", "2231");
    mail_buf_reset(&out);
    assert_true(mail_param_get(p, 3, "name", &out));
    expect_buf(&out, "r\xc3\xa9sum\xc3\xa9", "2047 in param");
    assert_false(mail_param_get(p, 3, "size", &out));
    mail_buf_reset(&out);
    mail_param_decode_2231((const uint8_t *)"iso-8859-1'fr'caf%E9", 20, &out);
    expect_buf(&out, "caf\xc3\xa9", "2231 latin1");
    mail_buf_free(&out);
}

static void test_matcher(void **state)
{
    (void)state;
    static const struct {
        const char *hay, *needle;
        bool found;
    } cases[] = {
        { "Hello World", "world", true },
        { "Hello World", "WORLDS", false },
        { "\xc3\x89t\xc3\xa9", "\xc3\xa9t\xc3\x89", true },       /* Été / éTÉ */
        { "\xd0\x9f\xd0\xa0\xd0\x98", "\xd0\xbf\xd1\x80\xd0\xb8", true }, /* ПРИ / при */
        { "\xce\xa3\xce\x9f\xce\xa6", "\xcf\x83\xce\xbf\xcf\x86", true }, /* ΣΟΦ / σοφ */
        { "\xc5\x81\xc3\xb3\x64\xc5\xba", "\xc5\x82\xc3\x93\x44\xc5\xb9", true }, /* Łódź / łÓDŹ */
        { "abc", "", true },
        { "", "a", false },
        { "a\0b", "A\0B", true },
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t hl = strlen(cases[i].hay), nl = strlen(cases[i].needle);
        if (i == sizeof(cases) / sizeof(cases[0]) - 1)
            hl = nl = 3;
        assert_int_equal(mail_text_contains((const uint8_t *)cases[i].hay, hl,
                                            (const uint8_t *)cases[i].needle, nl),
                         cases[i].found);
        /* split the haystack at every offset, also inside UTF-8 sequences */
        for (size_t split = 0; split <= hl; split++) {
            struct mail_matcher m;
            mail_matcher_init(&m, (const uint8_t *)cases[i].needle, nl);
            bool f = mail_matcher_feed(&m, (const uint8_t *)cases[i].hay, split);
            f = mail_matcher_feed(&m, (const uint8_t *)cases[i].hay + split, hl - split) || f;
            if (f != cases[i].found) {
                print_error("matcher case %zu split %zu\n", i, split);
                fail();
            }
            mail_matcher_free(&m);
        }
    }
    /* byte at a time over a long text */
    struct mail_matcher m;
    mail_matcher_init(&m, (const uint8_t *)"NEEDLE \xc3\x89", 9);
    const char *text = "lots of hay, hay, more hay... and then a needle \xc3\xa9 here";
    bool found = false;
    for (size_t k = 0; text[k]; k++)
        found = mail_matcher_feed(&m, (const uint8_t *)text + k, 1);
    assert_true(found);
    mail_matcher_reset(&m);
    assert_false(mail_matcher_feed(&m, (const uint8_t *)"needle", 6));
    mail_matcher_free(&m);
}

static void test_body_text(void **state)
{
    (void)state;
    const char *msg = "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n"
                      "Content-Type: text/plain; charset=windows-1252\r\n"
                      "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                      "Caf=E9 =80 price\r\n--b\r\n"
                      "Content-Type: text/html; charset=\"utf-8\"\r\n"
                      "Content-Transfer-Encoding: base64\r\n\r\n"
                      "PHA+xZ7DtmxlPC9wPg==\r\n--b\r\n"
                      "Content-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBO\r\n--b--\r\n";
    struct mail_buf blob = { 0 }, text = { 0 };
    const char *err;
    struct mail_view *v;
    assert_int_equal(mail_parse((const uint8_t *)msg, strlen(msg), NULL, &blob, &err), 0);
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    size_t searchable = 0;
    for (uint32_t i = 0; i < mail_view_part_count(v); i++) {
        const struct mail_part *p = mail_view_part(v, i);
        if (!mail_part_is_searchable_text(p))
            continue;
        searchable++;
        for (size_t split = 0; split <= p->body_size; split++) {
            struct mail_text_decoder t;
            mail_buf_reset(&text);
            mail_text_decoder_init(&t, p);
            mail_text_decoder_feed(&t, (const uint8_t *)msg + p->body_offset, split, &text);
            mail_text_decoder_feed(&t, (const uint8_t *)msg + p->body_offset + split,
                                   p->body_size - split, &text);
            mail_text_decoder_finish(&t, &text);
            mail_text_decoder_free(&t);
            if (i == 1)
                expect_buf(&text, "Caf\xc3\xa9 \xe2\x82\xac price", "cp1252 qp");
            else
                expect_buf(&text, "<p>\xc5\x9e\xc3\xb6le</p>", "utf-8 base64");
        }
    }
    assert_int_equal(searchable, 2);
    mail_view_free(&v);
    mail_buf_free(&blob);
    mail_buf_free(&text);
}

static void test_headers(void **state)
{
    (void)state;
    const char *h = "Received: from x\r\n\tby y\r\nsubject : =?utf-8?q?Caf=C3=A9?=\r\n"
                    "junk line\r\nX-Empty:\r\n\r\nBody: not a header\r\n";
    struct mail_buf out = { 0 };
    assert_true(mail_header_find((const uint8_t *)h, strlen(h), "SUBJECT", true, &out));
    expect_buf(&out, "Caf\xc3\xa9", "decoded subject");
    mail_buf_reset(&out);
    assert_true(mail_header_find((const uint8_t *)h, strlen(h), "received", false, &out));
    expect_buf(&out, "from x\tby y", "unfolded");
    mail_buf_reset(&out);
    assert_true(mail_header_find((const uint8_t *)h, strlen(h), "x-empty", false, &out));
    assert_int_equal(out.len, 0);
    assert_false(mail_header_find((const uint8_t *)h, strlen(h), "body", false, &out));
    size_t pos = 0, n = 0;
    struct mail_header_field f;
    while (mail_header_next((const uint8_t *)h, strlen(h), &pos, &f))
        n++;
    assert_int_equal(n, 3);

    struct mail_section s;
    const char *err;
    const char *spec = "HEADER.FIELDS.NOT (Subject)";
    assert_int_equal(mail_section_parse(spec, strlen(spec), &s, &err), 0);
    mail_buf_reset(&out);
    mail_header_filter((const uint8_t *)h, strlen(h), &s, &out);
    expect_buf(&out, "Received: from x\r\n\tby y\r\njunk line\r\nX-Empty:\r\n\r\n", "filter not");
    mail_section_free(&s);
    mail_buf_free(&out);
}

static void test_dates(void **state)
{
    (void)state;
    static const struct {
        const char *in;
        int64_t t;
        int tz;
    } cases[] = {
        { "Wed, 17 Jul 1996 02:23:25 -0700 (PDT)", 837595405, -420 },
        { "17 Jul 1996 02:23:25 -0700", 837595405, -420 },
        { "Wed, 17 Jul 96 09:23 +0000", 837595380, 0 },
        { "Wed, 17 Jul 1996 09:23:25 GMT", 837595405, 0 },
        { "Wed, 17 Jul 1996 02:23:25 PDT", 837595405, -420 },
        { "Wed Jul 17 09:23:25 1996", 837595405, 0 },
        { "1996-07-17T09:23:25Z", 837595405, 0 },
        { "1996-07-17 11:23:25 +02:00", 837595405, 120 },
        { "Wed,17 Jul 1996 09:23:25", 837595405, 0 },
        { "Mon, 1 Jan 2024 00:00:00 +0100", 1704063600, 60 },
        { "29 Feb 2000 12:00:00 +0000", 951825600, 0 },
    };
    const char *err;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t;
        int tz;
        if (mail_date_parse((const uint8_t *)cases[i].in, strlen(cases[i].in), &t, &tz, &err) != 0 ||
            t != cases[i].t || tz != cases[i].tz) {
            print_error("date '%s'\n", cases[i].in);
            fail();
        }
    }
    static const char *bad[] = { "", "yesterday", "32 Jan 2020 00:00:00", "1 Foo 2020", "12:00" };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int64_t t;
        int tz;
        assert_int_equal(mail_date_parse((const uint8_t *)bad[i], strlen(bad[i]), &t, &tz, &err), -1);
    }
}

static void test_threading(void **state)
{
    (void)state;
    const char *refs = "<a@x> (comment <no@x>) <b@y>\r\n <c@z> <<d@w> junk <>";
    const char *want[] = { "<a@x>", "<b@y>", "<c@z>", "<d@w>" };
    size_t pos = 0, n = 0;
    const uint8_t *id;
    size_t id_len;
    while (mail_msgid_next((const uint8_t *)refs, strlen(refs), &pos, &id, &id_len)) {
        assert_true(n < 4);
        assert_int_equal(id_len, strlen(want[n]));
        assert_memory_equal(id, want[n], id_len);
        n++;
    }
    assert_int_equal(n, 4);

    static const struct {
        const char *in, *out;
    } subj[] = {
        { "Re: hello", "hello" },
        { "RE: Fwd: re: hello (fwd)", "hello" },
        { "[list] Re: [other] hello", "hello" },
        { "Re[2]: hello", "hello" },
        { "[Fwd: Re: hello]", "hello" },
        { "  spaced\t\tout  ", "spaced out" },
        { "[only a blob]", "[only a blob]" },
        { "=?utf-8?q?Re=3A_caf=C3=A9?=", "caf\xc3\xa9" },
        { "Fw: hello (fwd) (fwd)", "hello" },
        { "Re:", "" },
        { "Reply to this", "Reply to this" },
    };
    for (size_t i = 0; i < sizeof(subj) / sizeof(subj[0]); i++) {
        struct mail_buf out = { 0 };
        mail_base_subject((const uint8_t *)subj[i].in, strlen(subj[i].in), &out);
        expect_buf(&out, subj[i].out, subj[i].in);
        mail_buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_decode), cmocka_unit_test(test_params),
        cmocka_unit_test(test_matcher),       cmocka_unit_test(test_body_text),
        cmocka_unit_test(test_headers),       cmocka_unit_test(test_dates),
        cmocka_unit_test(test_threading),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
