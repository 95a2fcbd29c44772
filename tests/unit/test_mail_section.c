/*
 * test_mail_section: section specs resolved to bytes (every RFC 3501 §6.4.5 form, nested
 * message/rfc822 parts, partial ranges), BINARY decoding (base64, quoted-printable, unknown CTE)
 * and the streaming decoders fed at every split offset.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/mail/mail.h"

#define CRLF "\r\n"

static const char msg[] =
    "From: a@example.com" CRLF
    "Subject: sections" CRLF
    "X-Long: one" CRLF
    "  two" CRLF
    "Content-Type: multipart/mixed; boundary=\"o\"" CRLF
    CRLF
    "preamble" CRLF
    "--o" CRLF
    "Content-Type: text/plain; charset=iso-8859-1" CRLF
    "Content-Transfer-Encoding: quoted-printable" CRLF
    CRLF
    "Caf=E9 au lait=" CRLF
    " soft=3D" CRLF
    "--o" CRLF
    "Content-Type: message/rfc822" CRLF
    CRLF
    "Subject: inner" CRLF
    "From: b@example.com" CRLF
    "Content-Type: multipart/alternative; boundary=i" CRLF
    CRLF
    "--i" CRLF
    "Content-Type: text/plain" CRLF
    CRLF
    "plain inner" CRLF
    "--i" CRLF
    "Content-Type: application/octet-stream" CRLF
    "Content-Transfer-Encoding: base64" CRLF
    CRLF
    "aGVsbG8g" CRLF
    "d29ybGQ=" CRLF
    "--i--" CRLF
    "--o" CRLF
    "Content-Type: message/rfc822" CRLF
    CRLF
    "Subject: single" CRLF
    CRLF
    "single body" CRLF
    "--o" CRLF
    "Content-Type: application/x-thing" CRLF
    "Content-Transfer-Encoding: x-uuencode" CRLF
    CRLF
    "begin 644 x" CRLF
    "--o--" CRLF
    "epilogue" CRLF;

struct scase {
    const char *section;
    const char *want; /* NULL: resolving must fail */
};

static const struct scase scases[] = {
    { "HEADER", "From: a@example.com" CRLF "Subject: sections" CRLF "X-Long: one" CRLF "  two" CRLF
                "Content-Type: multipart/mixed; boundary=\"o\"" CRLF CRLF },
    { "HEADER.FIELDS (SUBJECT x-long)", "Subject: sections" CRLF "X-Long: one" CRLF "  two" CRLF CRLF },
    { "header.fields (\"From\")", "From: a@example.com" CRLF CRLF },
    { "HEADER.FIELDS (Nope)", CRLF },
    { "HEADER.FIELDS.NOT (Subject X-Long)",
      "From: a@example.com" CRLF "Content-Type: multipart/mixed; boundary=\"o\"" CRLF CRLF },
    { "1", "Caf=E9 au lait=" CRLF " soft=3D" },
    { "1.MIME", "Content-Type: text/plain; charset=iso-8859-1" CRLF
                "Content-Transfer-Encoding: quoted-printable" CRLF CRLF },
    { "2.HEADER", "Subject: inner" CRLF "From: b@example.com" CRLF
                  "Content-Type: multipart/alternative; boundary=i" CRLF CRLF },
    { "2.HEADER.FIELDS (from)", "From: b@example.com" CRLF CRLF },
    { "2.MIME", "Content-Type: message/rfc822" CRLF CRLF },
    { "2.1", "plain inner" },
    { "2.1.MIME", "Content-Type: text/plain" CRLF CRLF },
    { "2.2", "aGVsbG8g" CRLF "d29ybGQ=" },
    { "2.TEXT", "--i" CRLF "Content-Type: text/plain" CRLF CRLF "plain inner" CRLF "--i" CRLF
                "Content-Type: application/octet-stream" CRLF "Content-Transfer-Encoding: base64" CRLF
                CRLF "aGVsbG8g" CRLF "d29ybGQ=" CRLF "--i--" },
    { "3.1", "single body" },
    { "3.TEXT", "single body" },
    { "3.HEADER", "Subject: single" CRLF CRLF },
    { "4", "begin 644 x" },
    { "5", NULL },
    { "2.3", NULL },
    { "1.1", NULL },
    { "1.HEADER", NULL },
    { "2.1.1", NULL },
};

static void test_sections(void **state)
{
    (void)state;
    struct mail_buf blob = { 0 }, got = { 0 };
    const char *err;
    struct mail_view *v;
    assert_int_equal(mail_parse((const uint8_t *)msg, sizeof(msg) - 1, NULL, &blob, &err), 0);
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    for (size_t i = 0; i < sizeof(scases) / sizeof(scases[0]); i++) {
        struct mail_section s;
        struct mail_pieces pieces = { 0 };
        assert_int_equal(mail_section_parse(scases[i].section, strlen(scases[i].section), &s, &err), 0);
        int ret = mail_view_section(v, &s, &pieces, &err);
        if (scases[i].want == NULL) {
            if (ret != -1) {
                print_error("section %s should not resolve\n", scases[i].section);
                fail();
            }
        } else {
            assert_int_equal(ret, 0);
            mail_buf_reset(&got);
            for (size_t k = 0; k < pieces.count; k++) {
                const char *src = pieces.v[k].literal ? pieces.v[k].literal : msg + pieces.v[k].offset;
                mail_buf_append(&got, src, pieces.v[k].size);
            }
            assert_int_equal(pieces.total, got.len);
            if (got.len != strlen(scases[i].want) || memcmp(got.data, scases[i].want, got.len) != 0) {
                print_error("section %s\n got: [%.*s]\nwant: [%s]\n", scases[i].section, (int)got.len,
                            (const char *)got.data, scases[i].want);
                fail();
            }
            /* every partial range of the result equals the same slice of the bytes */
            for (uint64_t o = 0; o <= got.len + 1; o += 3) {
                for (uint64_t c = 0; c <= 7; c += 2) {
                    struct mail_pieces sl = { 0 };
                    assert_int_equal(mail_view_section(v, &s, &sl, &err), 0);
                    mail_pieces_slice(&sl, o, c);
                    struct mail_buf part = { 0 };
                    for (size_t k = 0; k < sl.count; k++) {
                        const char *src = sl.v[k].literal ? sl.v[k].literal : msg + sl.v[k].offset;
                        mail_buf_append(&part, src, sl.v[k].size);
                    }
                    size_t exp = o >= got.len ? 0 : (got.len - o < c ? got.len - o : c);
                    assert_int_equal(part.len, exp);
                    assert_int_equal(sl.total, exp);
                    if (exp)
                        assert_memory_equal(part.data, got.data + o, exp);
                    mail_buf_free(&part);
                    mail_pieces_free(&sl);
                }
            }
        }
        mail_pieces_free(&pieces);
        mail_section_free(&s);
    }
    /* whole message */
    struct mail_section s;
    struct mail_pieces pieces = { 0 };
    assert_int_equal(mail_section_parse("", 0, &s, &err), 0);
    assert_int_equal(mail_view_section(v, &s, &pieces, &err), 0);
    assert_int_equal(pieces.count, 1);
    assert_int_equal(pieces.total, sizeof(msg) - 1);
    mail_pieces_free(&pieces);
    mail_section_free(&s);
    mail_view_free(&v);
    mail_buf_free(&blob);
    mail_buf_free(&got);
}

static void test_section_syntax(void **state)
{
    (void)state;
    static const char *bad[] = { "0", "1.", ".1", "1..2", "HEADER.FIELDS", "HEADER.FIELDS ()",
                                 "HEADER.FIELDS (a", "MIME", "TEXTX", "1.BODY", "99999999999",
                                 "HEADER.FIELDS (a) x", "1.2a", "HEADER.FIELDS (\"a)" };
    const char *err;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct mail_section s;
        if (mail_section_parse(bad[i], strlen(bad[i]), &s, &err) != -1) {
            print_error("section '%s' should be refused\n", bad[i]);
            fail();
        }
        mail_section_free(&s);
    }
    static const struct {
        const char *in, *out;
    } good[] = {
        { "1.2.3", "1.2.3" },
        { "header.fields (a \"b c\")", "HEADER.FIELDS (a \"b c\")" },
        { "4.2.HEADER.FIELDS.NOT (Subject)", "4.2.HEADER.FIELDS.NOT (Subject)" },
        { "3.mime", "3.MIME" },
        { "TEXT", "TEXT" },
    };
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        struct mail_section s;
        struct mail_buf out = { 0 };
        assert_int_equal(mail_section_parse(good[i].in, strlen(good[i].in), &s, &err), 0);
        mail_section_render(&s, &out);
        assert_int_equal(out.len, strlen(good[i].out));
        assert_memory_equal(out.data, good[i].out, out.len);
        mail_buf_free(&out);
        mail_section_free(&s);
    }
}

static void binary_of(struct mail_view *v, const char *sec, struct mail_binary *b)
{
    struct mail_section s;
    const char *err;
    assert_int_equal(mail_section_parse(sec, strlen(sec), &s, &err), 0);
    assert_int_equal(mail_view_binary(v, &s, b, &err), 0);
    mail_section_free(&s);
}

static void test_binary(void **state)
{
    (void)state;
    struct mail_buf blob = { 0 }, out = { 0 };
    const char *err;
    struct mail_view *v;
    assert_int_equal(mail_parse((const uint8_t *)msg, sizeof(msg) - 1, NULL, &blob, &err), 0);
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    struct mail_binary b;

    binary_of(v, "1", &b);
    assert_int_equal(b.cte, MAIL_CTE_QP);
    mail_decode_all(b.cte, (const uint8_t *)msg + b.offset, b.size, &out);
    assert_int_equal(out.len, strlen("Caf\xe9 au lait soft="));
    assert_memory_equal(out.data, "Caf\xe9 au lait soft=", out.len);
    assert_true(b.decoded_size_known);
    assert_int_equal(b.decoded_size, out.len);

    binary_of(v, "2.2", &b);
    assert_int_equal(b.cte, MAIL_CTE_BASE64);
    mail_buf_reset(&out);
    mail_decode_all(b.cte, (const uint8_t *)msg + b.offset, b.size, &out);
    assert_int_equal(out.len, 11);
    assert_memory_equal(out.data, "hello world", 11);
    assert_int_equal(b.decoded_size, 11);

    binary_of(v, "2.1", &b);
    assert_int_equal(b.cte, MAIL_CTE_7BIT);
    assert_int_equal(b.decoded_size, 11);

    binary_of(v, "4", &b);
    assert_int_equal(b.cte, MAIL_CTE_UNKNOWN); /* NO [UNKNOWN-CTE] */
    assert_false(b.decoded_size_known);

    binary_of(v, "", &b);
    assert_int_equal(b.size, sizeof(msg) - 1);

    struct mail_section s;
    assert_int_equal(mail_section_parse("1.MIME", 6, &s, &err), 0);
    assert_int_equal(mail_view_binary(v, &s, &b, &err), -1);
    mail_section_free(&s);
    assert_int_equal(mail_section_parse("9", 1, &s, &err), 0);
    assert_int_equal(mail_view_binary(v, &s, &b, &err), -1);
    mail_section_free(&s);

    mail_view_free(&v);
    mail_buf_free(&blob);
    mail_buf_free(&out);
}

static const struct {
    enum mail_cte cte;
    const char *in, *out;
} decode_cases[] = {
    { MAIL_CTE_BASE64, "SGVsbG8sIFdvcmxkIQ==", "Hello, World!" },
    { MAIL_CTE_BASE64, "SGVs\r\nbG8s IFdv*cmxk\r\nIQ", "Hello, World!" },
    { MAIL_CTE_BASE64, "YQ==YWJj", "a" },
    { MAIL_CTE_QP, "a=3Db=\r\nc   \r\nd\t=\r\n", "a=bc\r\nd\t" },
    { MAIL_CTE_QP, "bad =ZZ =4 end=", "bad =ZZ =4 end=" },
    { MAIL_CTE_QP, "soft = \t \r\nnext", "soft next" },
    { MAIL_CTE_QP, "=c3=a9=C3=A9", "\xc3\xa9\xc3\xa9" },
    { MAIL_CTE_QP, "lf only=\nnext  \nend", "lf onlynext\nend" },
    { MAIL_CTE_8BIT, "as\0is", "as" },
};

static void test_decoders_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(decode_cases) / sizeof(decode_cases[0]); i++) {
        const uint8_t *in = (const uint8_t *)decode_cases[i].in;
        size_t len = strlen(decode_cases[i].in), want_len = strlen(decode_cases[i].out);
        for (size_t split = 0; split <= len; split++) {
            uint8_t out[512];
            struct mail_decoder d;
            mail_decoder_init(&d, decode_cases[i].cte);
            size_t n = mail_decoder_feed(&d, in, split, out);
            n += mail_decoder_feed(&d, in + split, len - split, out + n);
            n += mail_decoder_finish(&d, out + n);
            if (n != want_len || memcmp(out, decode_cases[i].out, n) != 0) {
                print_error("decode case %zu split %zu: got [%.*s]\n", i, split, (int)n, out);
                fail();
            }
            assert_int_equal(d.total, want_len);
        }
    }
    assert_int_equal(mail_cte_parse((const uint8_t *)" Base64 (x)", 11), MAIL_CTE_BASE64);
    assert_int_equal(mail_cte_parse((const uint8_t *)"Quoted-Printable", 16), MAIL_CTE_QP);
    assert_int_equal(mail_cte_parse(NULL, 0), MAIL_CTE_7BIT);
    assert_int_equal(mail_cte_parse((const uint8_t *)"x-uue", 5), MAIL_CTE_UNKNOWN);
}

/* The parser's BINARY.SIZE for base64 / QP parts equals the decoded length, at any chunking. */
static void test_decoded_size_chunked(void **state)
{
    (void)state;
    /* a long boundary and a short "--" line inside the QP part: the line is held as a possible
     * boundary across the split, and its CR must be counted once */
    const char *m = "Content-Type: multipart/mixed; boundary=bbbbbbbbbbbbbbbbbbbb\r\n\r\n"
                    "--bbbbbbbbbbbbbbbbbbbb\r\n"
                    "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
                    "line one=\r\nstill one  \r\n--x\r\ntwo=3D\r\n\r\n--bbbbbbbbbbbbbbbbbbbb\r\n"
                    "Content-Transfer-Encoding: base64\r\n\r\naGVsbG8=\r\n--bbbbbbbbbbbbbbbbbbbb--\r\n";
    size_t len = strlen(m);
    const char *err;
    for (size_t split = 0; split <= len; split++) {
        struct mail_buf blob = { 0 };
        struct mail_parser *p = mail_parser_new(NULL);
        mail_parser_feed(p, (const uint8_t *)m, split);
        mail_parser_feed(p, (const uint8_t *)m + split, len - split);
        assert_int_equal(mail_parser_finish(p, &blob, &err), 0);
        mail_parser_free(&p);
        struct mail_view *v;
        assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
        const struct mail_part *q = mail_view_part(v, 1), *b = mail_view_part(v, 2);
        struct mail_buf dec = { 0 };
        mail_decode_all(MAIL_CTE_QP, (const uint8_t *)m + q->body_offset, q->body_size, &dec);
        assert_int_equal(q->decoded_size, dec.len);
        assert_int_equal(dec.len, strlen("line onestill one\r\n--x\r\ntwo=\r\n"));
        assert_int_equal(b->decoded_size, 5);
        mail_buf_free(&dec);
        mail_view_free(&v);
        mail_buf_free(&blob);
    }
}

static void test_crlf_normaliser(void **state)
{
    (void)state;
    const char *in = "a\nb\r\nc\rd\n\n";
    const char *want = "a\r\nb\r\nc\rd\r\n\r\n";
    size_t len = strlen(in);
    for (size_t split = 0; split <= len; split++) {
        struct mail_crlf_normaliser n = { false };
        struct mail_buf out = { 0 };
        mail_crlf_normalise(&n, (const uint8_t *)in, split, &out);
        mail_crlf_normalise(&n, (const uint8_t *)in + split, len - split, &out);
        assert_int_equal(out.len, strlen(want));
        assert_memory_equal(out.data, want, out.len);
        mail_buf_free(&out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sections),
        cmocka_unit_test(test_section_syntax),
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_decoders_split),
        cmocka_unit_test(test_decoded_size_chunked),
        cmocka_unit_test(test_crlf_normaliser),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
