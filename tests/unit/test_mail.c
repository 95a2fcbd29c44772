/*
 * test_mail: the parser and the renderers. Each case is a hand-written message with its exact
 * expected BODYSTRUCTURE, BODY and ENVELOPE (RFC 3501 §7.4.2 grammar). Every case is also fed
 * split at every byte offset and one byte at a time: the stored parse must be identical to the
 * one-shot parse. Leaks are caught by LeakSanitizer (the suite runs under ASan in CI).
 *
 * MAIL_TEST_PRINT=1 prints what the code renders (to review a new case by hand).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/mail/mail.h"

struct mcase {
    const char *name;
    const char *msg;
    const char *bodystructure; /* with extension data */
    const char *body;          /* BODY (no extension data) */
    const char *envelope;
};

#define CRLF "\r\n"

static const struct mcase cases[] = {
    {
        "simple",
        "Date: Wed, 17 Jul 1996 02:23:25 -0700 (PDT)" CRLF
        "From: Terry Gray <gray@cac.washington.edu>" CRLF
        "Subject: IMAP4rev1 WG mtg summary and minutes" CRLF
        "To: imap@cac.washington.edu" CRLF
        "cc: minutes@CNRI.Reston.VA.US, John Klensin <KLENSIN@MIT.EDU>" CRLF
        "Message-Id: <B27397-0100000@cac.washington.edu>" CRLF
        "MIME-Version: 1.0" CRLF
        "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII" CRLF
        CRLF
        "Hello" CRLF "World" CRLF,
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2 NIL NIL NIL NIL)",
        "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 14 2)",
        /* RFC 3501 §7.4.2 example */
        "(\"Wed, 17 Jul 1996 02:23:25 -0700 (PDT)\" \"IMAP4rev1 WG mtg summary and minutes\" "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((\"Terry Gray\" NIL \"gray\" \"cac.washington.edu\")) "
        "((NIL NIL \"imap\" \"cac.washington.edu\")) "
        "((NIL NIL \"minutes\" \"CNRI.Reston.VA.US\")(\"John Klensin\" NIL \"KLENSIN\" \"MIT.EDU\")) "
        "NIL NIL \"<B27397-0100000@cac.washington.edu>\")",
    },
    {
        "no-header-fields",
        "" CRLF "just a body",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1 NIL NIL NIL NIL)",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 11 1)",
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    },
    {
        "empty",
        "",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)",
        "(NIL NIL NIL NIL NIL NIL NIL NIL NIL NIL)",
    },
    {
        "header-only-no-blank-line",
        "Subject: nothing else" CRLF "From: a@b",
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0 NIL NIL NIL NIL)",
        NULL,
        "(NIL \"nothing else\" ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) ((NIL NIL \"a\" \"b\")) NIL NIL NIL NIL NIL)",
    },
    {
        "addresses",
        "From: \"Doe, John\" <john@example.com> (the boss)" CRLF
        "Sender: " CRLF
        "Reply-To: list@example.org" CRLF
        "To: undisclosed-recipients:;" CRLF
        "Cc: Friends: a@b.c, \"Q \\\"x\\\"\" <q@d.e>;, <@route1,@route2:r@f.g>, plain" CRLF
        "Bcc: jdoe@one.test (John Doe), =?utf-8?q?J=C3=B6rg?= <j@x.y>" CRLF
        "In-Reply-To: <a@b>" CRLF
        "Subject:" CRLF
        CRLF
        "x",
        NULL,
        NULL,
        "(NIL \"\" ((\"Doe, John\" NIL \"john\" \"example.com\")) "
        "((\"Doe, John\" NIL \"john\" \"example.com\")) "
        "((NIL NIL \"list\" \"example.org\")) "
        "((NIL NIL \"undisclosed-recipients\" NIL)(NIL NIL NIL NIL)) "
        "((NIL NIL \"Friends\" NIL)(NIL NIL \"a\" \"b.c\")(\"Q \\\"x\\\"\" NIL \"q\" \"d.e\")(NIL NIL NIL NIL)"
        "(NIL \"@route1,@route2\" \"r\" \"f.g\")(NIL NIL \"plain\" \"MISSING_DOMAIN\")) "
        "((\"John Doe\" NIL \"jdoe\" \"one.test\")(\"=?utf-8?q?J=C3=B6rg?=\" NIL \"j\" \"x.y\")) "
        "\"<a@b>\" NIL)",
    },
    {
        "folded-and-8bit",
        "Subject: a very" CRLF "\tlong subject" CRLF
        "From: =?iso-8859-1?q?Andr=E9?= <andre@example.fr>" CRLF
        "To: J\xc3\xb6rg <joerg@example.de>" CRLF
        CRLF
        "body" CRLF,
        NULL,
        NULL,
        "(NIL \"a very\tlong subject\" ((\"=?iso-8859-1?q?Andr=E9?=\" NIL \"andre\" \"example.fr\")) "
        "((\"=?iso-8859-1?q?Andr=E9?=\" NIL \"andre\" \"example.fr\")) "
        "((\"=?iso-8859-1?q?Andr=E9?=\" NIL \"andre\" \"example.fr\")) "
        "(({5}\r\nJ\xc3\xb6rg NIL \"joerg\" \"example.de\")) NIL NIL NIL NIL)",
    },
    {
        "alternative-related",
        "From: news@shop.example" CRLF
        "Subject: Deals" CRLF
        "Content-Type: multipart/alternative; boundary=\"alt\"" CRLF
        CRLF
        "--alt" CRLF
        "Content-Type: text/plain; charset=utf-8" CRLF
        "Content-Transfer-Encoding: quoted-printable" CRLF
        CRLF
        "Caf=C3=A9 deals" CRLF
        "--alt" CRLF
        "Content-Type: multipart/related; boundary=rel; type=\"text/html\"" CRLF
        CRLF
        "--rel" CRLF
        "Content-Type: text/html; charset=utf-8" CRLF
        "Content-Language: en, fr" CRLF
        CRLF
        "<img src=\"cid:logo\">" CRLF
        "--rel" CRLF
        "Content-Type: image/png; name=logo.png" CRLF
        "Content-ID: <logo>" CRLF
        "Content-Transfer-Encoding: base64" CRLF
        "Content-Disposition: inline; filename=\"logo.png\"" CRLF
        "Content-Location: http://shop.example/logo.png" CRLF
        "Content-MD5: Q2hlY2sgSW50ZWdyaXR5IQ==" CRLF
        CRLF
        "iVBORw0KGgo=" CRLF
        "--rel--" CRLF
        "--alt--" CRLF,
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 15 1 NIL NIL NIL NIL)"
        "((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 20 1 NIL NIL (\"en\" \"fr\") NIL)"
        "(\"image\" \"png\" (\"name\" \"logo.png\") \"<logo>\" NIL \"base64\" 12 "
        "\"Q2hlY2sgSW50ZWdyaXR5IQ==\" (\"inline\" (\"filename\" \"logo.png\")) NIL "
        "\"http://shop.example/logo.png\") \"related\" (\"boundary\" \"rel\" \"type\" \"text/html\") NIL NIL NIL) "
        "\"alternative\" (\"boundary\" \"alt\") NIL NIL NIL)",
        "((\"text\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"quoted-printable\" 15 1)"
        "((\"text\" \"html\" (\"charset\" \"utf-8\") NIL NIL \"7BIT\" 20 1)"
        "(\"image\" \"png\" (\"name\" \"logo.png\") \"<logo>\" NIL \"base64\" 12) \"related\") "
        "\"alternative\")",
        NULL,
    },
    {
        "forwarded-rfc822",
        "From: a@example.com" CRLF
        "Subject: Fwd: report" CRLF
        "Content-Type: multipart/mixed; boundary=\"outer\"" CRLF
        CRLF
        "--outer" CRLF
        "Content-Type: text/plain" CRLF
        CRLF
        "see attached" CRLF
        "--outer" CRLF
        "Content-Type: message/rfc822" CRLF
        "Content-Description: original" CRLF
        CRLF
        "From: b@example.com" CRLF
        "To: a@example.com" CRLF
        "Subject: report" CRLF
        "Message-ID: <r1@example.com>" CRLF
        "Content-Type: multipart/mixed; boundary=inner" CRLF
        CRLF
        "--inner" CRLF
        CRLF
        "numbers" CRLF
        "--inner" CRLF
        "Content-Type: application/pdf" CRLF
        "Content-Transfer-Encoding: base64" CRLF
        CRLF
        "JVBERi0=" CRLF
        "--inner--" CRLF
        CRLF
        "--outer--" CRLF,
        "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 12 1 NIL NIL NIL NIL)"
        "(\"message\" \"rfc822\" NIL NIL \"original\" \"7BIT\" 254 "
        "(NIL \"report\" ((NIL NIL \"b\" \"example.com\")) ((NIL NIL \"b\" \"example.com\")) "
        "((NIL NIL \"b\" \"example.com\")) ((NIL NIL \"a\" \"example.com\")) NIL NIL NIL \"<r1@example.com>\") "
        "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 7 1 NIL NIL NIL NIL)"
        "(\"application\" \"pdf\" NIL NIL NIL \"base64\" 8 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"inner\") NIL NIL NIL) "
        "15 NIL NIL NIL NIL) \"mixed\" (\"boundary\" \"outer\") NIL NIL NIL)",
        NULL,
        NULL,
    },
    {
        "digest",
        "Content-Type: multipart/digest; boundary=d" CRLF
        CRLF
        "--d" CRLF
        CRLF
        "Subject: one" CRLF
        CRLF
        "1" CRLF
        "--d" CRLF
        "Content-Type: text/plain" CRLF
        CRLF
        "2" CRLF
        "--d--" CRLF,
        NULL,
        "((\"message\" \"rfc822\" NIL NIL NIL \"7BIT\" 17 (NIL \"one\" NIL NIL NIL NIL NIL NIL NIL NIL) "
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 1 1) 3)"
        "(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 1 1) \"digest\")",
        NULL,
    },
    {
        "missing-final-boundary",
        "Content-Type: multipart/mixed; boundary=zz" CRLF
        CRLF
        "--zz" CRLF
        CRLF
        "first" CRLF
        "--zz" CRLF
        CRLF
        "second, never closed" CRLF,
        NULL,
        "((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 1)"
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 22 1) \"mixed\")",
        NULL,
    },
    {
        "bare-lf",
        "Subject: lf\n"
        "Content-Type: multipart/mixed; boundary=b\n"
        "\n"
        "--b\n"
        "Content-Type: text/plain\n"
        "\n"
        "one\ntwo\n"
        "--b--\n",
        NULL,
        "((\"text\" \"plain\" NIL NIL NIL \"7BIT\" 7 2) \"mixed\")",
        NULL,
    },
    {
        "boundary-garbage-and-prefix",
        "Content-Type: multipart/mixed; boundary=\"abc\"" CRLF
        CRLF
        "--abc  trailing junk" CRLF
        "Content-Type: multipart/alternative; boundary=\"abcdef\"" CRLF
        CRLF
        "--abcdef" CRLF
        CRLF
        "inner" CRLF
        "--abcdef--" CRLF
        "--abc" CRLF
        CRLF
        "--abcX is text, not a boundary? no: prefix match" CRLF
        "--abc--garbage" CRLF
        "epilogue" CRLF,
        NULL,
        "(((\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 5 1) \"alternative\")"
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0)"
        "(\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 0 0) \"mixed\")",
        NULL,
    },
    {
        "multipart-without-boundary",
        "Content-Type: multipart/mixed" CRLF
        CRLF
        "--x" CRLF
        "text" CRLF,
        NULL,
        "(\"text\" \"plain\" NIL NIL NIL \"7BIT\" 11 2)",
        NULL,
    },
    {
        "multipart-boundary-never-seen",
        "Content-Type: multipart/mixed; boundary=nope" CRLF
        CRLF
        "only preamble" CRLF,
        NULL,
        "(\"text\" \"plain\" (\"boundary\" \"nope\") NIL NIL \"7BIT\" 15 1)",
        NULL,
    },
    {
        "rfc2231",
        "Content-Type: application/x-stuff;" CRLF
        " title*0*=us-ascii'en'This%20is%20even%20more%20;" CRLF
        " title*1*=%2A%2A%2Afun%2A%2A%2A%20;" CRLF
        " title*2=\"isn't it!\"" CRLF
        "Content-Disposition: attachment; filename*=UTF-8''na%C3%AFve.txt; size=12" CRLF
        CRLF
        "data",
        "(\"application\" \"x-stuff\" (\"title*\" \"us-ascii'en'This%20is%20even%20more%20%2A%2A%2Afun%2A%2A%2A%20isn%27t%20it!\") "
        "NIL NIL \"7BIT\" 4 NIL (\"attachment\" (\"filename*\" \"UTF-8''na%C3%AFve.txt\" \"size\" \"12\")) NIL NIL)",
        NULL,
        NULL,
    },
    {
        "message-global",
        "Content-Type: multipart/mixed; boundary=g" CRLF
        CRLF
        "--g" CRLF
        "Content-Type: message/global" CRLF
        CRLF
        "Subject: \xe2\x9c\x93 ok" CRLF
        CRLF
        "hi" CRLF
        "--g--" CRLF,
        NULL,
        "((\"message\" \"global\" NIL NIL NIL \"7BIT\" 21) \"mixed\")",
        NULL,
    },
    {
        "encoded-rfc822-is-opaque",
        "Content-Type: message/rfc822" CRLF
        "Content-Transfer-Encoding: base64" CRLF
        CRLF
        "U3ViamVjdDogeA0KDQp5" CRLF,
        NULL,
        "(\"application\" \"octet-stream\" NIL NIL NIL \"base64\" 22)",
        NULL,
    },
    {
        "nul-and-binary",
        "Subject: bin\0ary" CRLF
        "Content-Type: application/octet-stream" CRLF
        "Content-Transfer-Encoding: binary" CRLF
        CRLF
        "\0\1\2\xff\r\n\0",
        NULL,
        "(\"application\" \"octet-stream\" NIL NIL NIL \"binary\" 7)",
        "(NIL \"binary\" NIL NIL NIL NIL NIL NIL NIL NIL)",
    },
};

/* Messages with embedded NUL need their real length: the literal's size minus the final NUL. */
static size_t case_len(size_t i)
{
    if (strcmp(cases[i].name, "nul-and-binary") == 0)
        return sizeof("Subject: bin\0ary" CRLF "Content-Type: application/octet-stream" CRLF
                      "Content-Transfer-Encoding: binary" CRLF CRLF "\0\1\2\xff\r\n\0") - 1;
    return strlen(cases[i].msg);
}

static struct mail_view *parse_view(const uint8_t *msg, size_t len, struct mail_buf *blob)
{
    const char *err = NULL;
    assert_int_equal(mail_parse(msg, len, NULL, blob, &err), 0);
    struct mail_view *v = NULL;
    assert_int_equal(mail_view_open(blob->data, blob->len, &v, &err), 0);
    assert_non_null(v);
    return v;
}

static void check_str(const char *what, const char *name, const struct mail_buf *got,
                      const char *want)
{
    if (getenv("MAIL_TEST_PRINT"))
        printf("%s %s: %.*s\n", name, what, (int)got->len, (const char *)got->data);
    if (want == NULL)
        return;
    if (got->len != strlen(want) || memcmp(got->data, want, got->len) != 0) {
        print_error("%s %s\n got: %.*s\nwant: %s\n", name, what, (int)got->len,
                    (const char *)got->data, want);
        fail();
    }
}

static void test_render(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_buf blob = { 0 }, out = { 0 };
        struct mail_view *v = parse_view((const uint8_t *)cases[i].msg, case_len(i), &blob);
        assert_int_equal(mail_view_size(v), case_len(i));
        mail_render_bodystructure(v, MAIL_RENDER_EXTENSIONS, &out);
        check_str("BODYSTRUCTURE", cases[i].name, &out, cases[i].bodystructure);
        mail_buf_reset(&out);
        mail_render_bodystructure(v, 0, &out);
        check_str("BODY", cases[i].name, &out, cases[i].body);
        mail_buf_reset(&out);
        mail_render_envelope(v, mail_view_root(v), 0, &out);
        check_str("ENVELOPE", cases[i].name, &out, cases[i].envelope);
        mail_buf_free(&out);
        mail_view_free(&v);
        assert_null(v);
        mail_buf_free(&blob);
    }
}

/* RFC 3501 §7.4.2's BODY example, rebuilt with bodies of exactly its sizes and line counts. */
static void test_rfc3501_body_example(void **state)
{
    (void)state;
    struct mail_buf m = { 0 }, blob = { 0 }, out = { 0 };
    const char *h0 = "Content-Type: MULTIPART/MIXED; BOUNDARY=\"x\"\r\n\r\n--x\r\n";
    mail_buf_append(&m, h0, strlen(h0));
    const char *h1 = "Content-Type: TEXT/PLAIN; CHARSET=US-ASCII\r\n\r\n";
    mail_buf_append(&m, h1, strlen(h1));
    for (int l = 0; l < 23; l++) { /* 22 lines of 48 + one of 52, 22 CRLFs: 1152 bytes */
        for (int k = 0; k < (l == 22 ? 52 : 48); k++)
            mail_buf_append(&m, "a", 1);
        if (l < 22)
            mail_buf_append(&m, "\r\n", 2);
    }
    const char *h2 = "\r\n--x\r\nContent-Type: TEXT/PLAIN; CHARSET=US-ASCII; NAME=cc.diff\r\n"
                     "Content-ID: <960723163407.20117h@cac.washington.edu>\r\n"
                     "Content-Description: Compiler diff\r\n"
                     "Content-Transfer-Encoding: BASE64\r\n\r\n";
    mail_buf_append(&m, h2, strlen(h2));
    for (int l = 0; l < 73; l++) { /* 72 lines of 60 + one of 90, 72 CRLFs: 4554 bytes */
        for (int k = 0; k < (l == 72 ? 90 : 60); k++)
            mail_buf_append(&m, "Q", 1);
        if (l < 72)
            mail_buf_append(&m, "\r\n", 2);
    }
    mail_buf_append(&m, "\r\n--x--\r\n", 9);
    struct mail_view *v = parse_view(m.data, m.len, &blob);
    mail_render_bodystructure(v, 0, &out);
    check_str("BODY", "rfc3501", &out,
              "((\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\") NIL NIL \"7BIT\" 1152 23)"
              "(\"TEXT\" \"PLAIN\" (\"CHARSET\" \"US-ASCII\" \"NAME\" \"cc.diff\") "
              "\"<960723163407.20117h@cac.washington.edu>\" \"Compiler diff\" \"BASE64\" 4554 73) "
              "\"MIXED\")");
    const struct mail_part *p2 = mail_view_part(v, 2);
    assert_true(p2->decoded_size_known);
    assert_int_equal(p2->decoded_size, 4410 / 4 * 3 + 1); /* two leftover characters: one byte */
    mail_buf_free(&out);
    mail_buf_free(&m);
    mail_buf_free(&blob);
    mail_view_free(&v);
}

static void feed_split(const uint8_t *msg, size_t len, size_t split, struct mail_buf *blob)
{
    const char *err;
    struct mail_parser *p = mail_parser_new(NULL);
    mail_parser_feed(p, msg, split);
    mail_parser_feed(p, msg + split, len - split);
    assert_int_equal(mail_parser_finish(p, blob, &err), 0);
    mail_parser_free(&p);
    assert_null(p);
}

static void test_chunked_equals_oneshot(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const uint8_t *msg = (const uint8_t *)cases[i].msg;
        size_t len = case_len(i);
        struct mail_buf ref = { 0 }, got = { 0 };
        const char *err;
        assert_int_equal(mail_parse(msg, len, NULL, &ref, &err), 0);
        for (size_t split = 0; split <= len; split++) {
            mail_buf_reset(&got);
            feed_split(msg, len, split, &got);
            if (got.len != ref.len || memcmp(got.data, ref.data, ref.len) != 0) {
                print_error("%s: split at %zu differs\n", cases[i].name, split);
                fail();
            }
        }
        /* one byte at a time */
        struct mail_parser *p = mail_parser_new(NULL);
        for (size_t k = 0; k < len; k++)
            mail_parser_feed(p, msg + k, 1);
        mail_buf_reset(&got);
        assert_int_equal(mail_parser_finish(p, &got, &err), 0);
        mail_parser_free(&p);
        if (got.len != ref.len || memcmp(got.data, ref.data, ref.len) != 0) {
            print_error("%s: byte-at-a-time differs\n", cases[i].name);
            fail();
        }
        mail_buf_free(&ref);
        mail_buf_free(&got);
    }
}

/* Corrupt stored parses must be refused or read safely, never crash. */
static void test_blob_corruption(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct mail_buf blob = { 0 }, out = { 0 };
        const char *err;
        assert_int_equal(mail_parse((const uint8_t *)cases[i].msg, case_len(i), NULL, &blob, &err), 0);
        for (size_t cut = 0; cut < blob.len; cut++) {
            struct mail_view *v = NULL;
            uint8_t *copy = malloc(cut + 1);
            memcpy(copy, blob.data, cut);
            assert_int_equal(mail_view_open(copy, cut, &v, &err), -1);
            assert_null(v);
            free(copy);
        }
        for (size_t pos = 0; pos < blob.len; pos++) {
            for (int bit = 0; bit < 8; bit += 3) {
                struct mail_view *v = NULL;
                uint8_t *copy = malloc(blob.len);
                memcpy(copy, blob.data, blob.len);
                copy[pos] ^= (uint8_t)(1 << bit);
                if (mail_view_open(copy, blob.len, &v, &err) == 0) {
                    mail_buf_reset(&out);
                    mail_render_bodystructure(v, MAIL_RENDER_EXTENSIONS, &out);
                    mail_render_envelope(v, mail_view_root(v), 0, &out);
                    mail_view_free(&v);
                }
                free(copy);
            }
        }
        struct mail_view *v = NULL;
        uint8_t bad[] = { 'C', 'M', 'P', 99 };
        assert_int_equal(mail_view_open(bad, sizeof(bad), &v, &err), -1);
        assert_string_equal(err, "unsupported stored parse version");
        mail_buf_free(&out);
        mail_buf_free(&blob);
    }
}

/* Limits degrade the tree, never fail it. */
static void test_limits(void **state)
{
    (void)state;
    struct mail_buf m = { 0 }, blob = { 0 }, out = { 0 };
    const char *err;
    /* 200 nested multiparts */
    for (int d = 0; d < 200; d++) {
        char line[128];
        int n = snprintf(line, sizeof(line), "Content-Type: multipart/mixed; boundary=b%03d\r\n\r\n--b%03d\r\n", d, d);
        mail_buf_append(&m, line, (size_t)n);
    }
    mail_buf_append(&m, "\r\ndeep\r\n", 8);
    struct mail_limits lim;
    mail_limits_default(&lim);
    lim.max_depth = 10;
    assert_int_equal(mail_parse(m.data, m.len, &lim, &blob, &err), 0);
    struct mail_view *v = NULL;
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    assert_true(mail_view_part_count(v) <= 10);
    mail_render_bodystructure(v, MAIL_RENDER_EXTENSIONS, &out);
    mail_view_free(&v);

    /* many parts, capped */
    mail_buf_reset(&m);
    mail_buf_reset(&blob);
    mail_buf_append(&m, "Content-Type: multipart/mixed; boundary=p\r\n\r\n", 45);
    for (int k = 0; k < 500; k++)
        mail_buf_append(&m, "--p\r\n\r\nx\r\n", 10);
    lim.max_parts = 100;
    assert_int_equal(mail_parse(m.data, m.len, &lim, &blob, &err), 0);
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    assert_int_equal(mail_view_part_count(v), 100);
    mail_view_free(&v);

    /* many header fields, index truncated */
    mail_buf_reset(&m);
    mail_buf_reset(&blob);
    for (int k = 0; k < 50; k++)
        mail_buf_append(&m, "X-A: 1\r\n", 8);
    mail_buf_append(&m, "\r\nbody", 6);
    lim.max_fields = 10;
    assert_int_equal(mail_parse(m.data, m.len, &lim, &blob, &err), 0);
    assert_int_equal(mail_view_open(blob.data, blob.len, &v, &err), 0);
    assert_true(mail_view_root(v)->fields_truncated);
    assert_int_equal(mail_view_root(v)->n_fields, 10);
    mail_view_free(&v);

    mail_buf_free(&m);
    mail_buf_free(&blob);
    mail_buf_free(&out);
}

static void test_render_flags(void **state)
{
    (void)state;
    const char *msg = "Content-Type: multipart/mixed; boundary=g\r\n\r\n--g\r\n"
                      "Content-Type: message/global\r\n\r\nSubject: \xe2\x9c\x93 ok\r\n\r\nhi\r\n--g--\r\n";
    struct mail_buf blob = { 0 }, out = { 0 };
    struct mail_view *v = parse_view((const uint8_t *)msg, strlen(msg), &blob);
    mail_render_bodystructure(v, MAIL_RENDER_GLOBAL | MAIL_RENDER_UTF8, &out);
    check_str("BODY rev2", "global", &out,
              "((\"message\" \"global\" NIL NIL NIL \"7BIT\" 21 (NIL \"\xe2\x9c\x93 ok\" NIL NIL NIL NIL "
              "NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 2 1) 3) "
              "\"mixed\")");
    mail_buf_reset(&out);
    mail_render_bodystructure(v, MAIL_RENDER_GLOBAL, &out);
    check_str("BODY rev2 no utf8", "global", &out,
              "((\"message\" \"global\" NIL NIL NIL \"7BIT\" 21 (NIL {6}\r\n\xe2\x9c\x93 ok NIL NIL NIL NIL "
              "NIL NIL NIL NIL) (\"text\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7BIT\" 2 1) 3) "
              "\"mixed\")");
    mail_buf_free(&out);
    mail_buf_free(&blob);
    mail_view_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_rfc3501_body_example),
        cmocka_unit_test(test_chunked_equals_oneshot),
        cmocka_unit_test(test_blob_corruption),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_render_flags),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
