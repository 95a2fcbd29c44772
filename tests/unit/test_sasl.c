/*
 * Unit tests for sasl.c (strict base64, the mechanism table) and the PLAIN and LOGIN mechanisms:
 * table-driven, no network. The IMAP side (AUTHENTICATE framing, auth.c) is covered by
 * tests/integration/test_tls.py.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/arena.h"
#include "frontend/sasl.h"

struct b64_case {
    const char *in;
    const char *out; /* NULL: must be rejected */
    size_t out_len;
};

static const struct b64_case b64_cases[] = {
    {"", "", 0},
    {"Zg==", "f", 1},
    {"Zm8=", "fo", 2},
    {"Zm9v", "foo", 3},
    {"Zm9vYg==", "foob", 4},
    {"Zm9vYmE=", "fooba", 5},
    {"Zm9vYmFy", "foobar", 6},
    {"AGRlbW91c2VyAGRlbW9wYXNz", "\0demouser\0demopass", 18},
    {"+/+/", "\xfb\xff\xbf", 3},
    {"Zg", NULL, 0},          /* unpadded */
    {"Zg=", NULL, 0},         /* short padding */
    {"Zg===", NULL, 0},       /* not a multiple of 4 */
    {"Z===", NULL, 0},        /* padding too early */
    {"====", NULL, 0},
    {"Zh==", NULL, 0},        /* non-zero unused bits */
    {"Zm9=", NULL, 0},        /* non-zero unused bits */
    {"Zg==Zg==", NULL, 0},    /* padding in the middle */
    {"Zm=v", NULL, 0},        /* digit after padding */
    {"Zm9v\r\n", NULL, 0},    /* whitespace */
    {"Zm 9", NULL, 0},
    {"Zm9-", NULL, 0},        /* base64url alphabet */
    {"Zm9_", NULL, 0},
    {"=", NULL, 0},           /* SASL-IR's empty response is the command's business */
};

static void test_base64(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(b64_cases) / sizeof(b64_cases[0]); i++) {
        const struct b64_case *c = &b64_cases[i];
        size_t len = strlen(c->in);
        unsigned char out[64];
        size_t out_len = 12345;
        int r = sasl_base64_decode(c->in, len, out, &out_len);
        if (c->out == NULL) {
            if (r != -1)
                fail_msg("accepted %s", c->in);
            continue;
        }
        if (r != 0)
            fail_msg("rejected %s", c->in);
        assert_int_equal(out_len, c->out_len);
        assert_true(out_len <= SASL_BASE64_DECODED_MAX(len));
        assert_memory_equal(out, c->out, out_len);
    }
}

static void test_table(void **state)
{
    (void)state;
    assert_int_equal(sasl_mech_count(), 2);
    assert_string_equal(sasl_mech_at(0)->name, "PLAIN");
    assert_string_equal(sasl_mech_at(1)->name, "LOGIN");
    assert_null(sasl_mech_at(2));
    assert_ptr_equal(sasl_find("plain", 5), &sasl_mech_plain);
    assert_ptr_equal(sasl_find("LoGiN", 5), &sasl_mech_login);
    assert_null(sasl_find("PLAI", 4));
    assert_null(sasl_find("PLAINX", 6));
    assert_null(sasl_find("CRAM-MD5", 8));
}

struct plain_case {
    const char *msg;
    size_t len;
    enum sasl_status want;
    const char *user;
    const char *pass;
};

#define M(s) s, sizeof(s) - 1

static const struct plain_case plain_cases[] = {
    {M("\0demouser\0demopass"), SASL_CREDENTIALS, "demouser", "demopass"},
    {M("demouser\0demouser\0demopass"), SASL_CREDENTIALS, "demouser", "demopass"},
    {M("other\0demouser\0demopass"), SASL_FAILED, NULL, NULL},   /* authzid != authcid */
    {M("demouse\0demouser\0demopass"), SASL_FAILED, NULL, NULL},
    {M("demouserx\0demouser\0demopass"), SASL_FAILED, NULL, NULL},
    {M(""), SASL_FAILED, NULL, NULL},
    {M("demouser"), SASL_FAILED, NULL, NULL},
    {M("\0demouser"), SASL_FAILED, NULL, NULL},
    {M("\0demouser\0"), SASL_FAILED, NULL, NULL},                /* empty password */
    {M("\0\0demopass"), SASL_FAILED, NULL, NULL},                /* empty authcid */
    {M("\0demouser\0demo\0pass"), SASL_FAILED, NULL, NULL},      /* third NUL */
};

static void test_plain(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    struct sasl_output out = {0};
    assert_int_equal(sasl_mech_plain.step(NULL, a, NULL, 0, &out), SASL_CHALLENGE);
    assert_string_equal(out.challenge, "");
    for (size_t i = 0; i < sizeof(plain_cases) / sizeof(plain_cases[0]); i++) {
        const struct plain_case *c = &plain_cases[i];
        memset(&out, 0, sizeof(out));
        enum sasl_status st =
            sasl_mech_plain.step(NULL, a, (const unsigned char *)c->msg, c->len, &out);
        if (st != c->want)
            fail_msg("case %zu: status %d", i, (int)st);
        if (st == SASL_FAILED) {
            assert_non_null(out.error);
            continue;
        }
        assert_int_equal(out.authcid_len, strlen(c->user));
        assert_memory_equal(out.authcid, c->user, out.authcid_len);
        assert_int_equal(out.password_len, strlen(c->pass));
        assert_memory_equal(out.password, c->pass, out.password_len);
    }
    arena_free(&a);
}

static void run_login(const unsigned char *initial, size_t initial_len)
{
    struct arena *a = arena_new(256);
    void *st = arena_calloc(a, 1, sasl_mech_login.state_size);
    struct sasl_output out = {0};
    if (initial == NULL) {
        assert_int_equal(sasl_mech_login.step(st, a, NULL, 0, &out), SASL_CHALLENGE);
        assert_string_equal(out.challenge, "VXNlcm5hbWU6");
        unsigned char user[] = "demouser";
        assert_int_equal(sasl_mech_login.step(st, a, user, 8, &out), SASL_CHALLENGE);
        memset(user, 'x', 8); /* the mechanism keeps its own copy */
    } else {
        assert_int_equal(sasl_mech_login.step(st, a, initial, initial_len, &out), SASL_CHALLENGE);
    }
    assert_string_equal(out.challenge, "UGFzc3dvcmQ6");
    memset(&out, 0, sizeof(out));
    assert_int_equal(sasl_mech_login.step(st, a, (const unsigned char *)"demopass", 8, &out),
                     SASL_CREDENTIALS);
    assert_int_equal(out.authcid_len, 8);
    assert_memory_equal(out.authcid, "demouser", 8);
    assert_int_equal(out.password_len, 8);
    assert_memory_equal(out.password, "demopass", 8);
    arena_free(&a);
}

static void test_login(void **state)
{
    (void)state;
    run_login(NULL, 0);
    run_login((const unsigned char *)"demouser", 8);
    struct arena *a = arena_new(256);
    void *st = arena_calloc(a, 1, sasl_mech_login.state_size);
    struct sasl_output out = {0};
    assert_int_equal(sasl_mech_login.step(st, a, (const unsigned char *)"", 0, &out), SASL_FAILED);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_base64),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_plain),
        cmocka_unit_test(test_login),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
