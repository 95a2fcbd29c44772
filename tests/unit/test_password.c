/*
 * Tests for frontend/password.c: round trips, known answers (computed independently with Python's
 * hashlib.pbkdf2_hmac and hard-coded), strict rejection of every malformed field, iteration bounds,
 * NUL bytes inside passwords, the dummy hash, and Dovecot's hashes kept as they are.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/password.h"

static void test_round_trip(void **state)
{
    (void)state;
    const char *error = NULL;
    char *hash = NULL;
    assert_int_equal(password_hash("hunter2", 7, 1000, &hash, &error), 0);
    assert_non_null(hash);
    assert_true(strncmp(hash, "$pbkdf2-sha256$i=1000$", 22) == 0);

    bool match = false;
    assert_int_equal(password_verify("hunter2", 7, hash, &match, &error), 0);
    assert_true(match);
    assert_int_equal(password_verify("hunter3", 7, hash, &match, &error), 0);
    assert_false(match);
    assert_int_equal(password_verify("hunter", 6, hash, &match, &error), 0);
    assert_false(match);
    assert_int_equal(password_verify("", 0, hash, &match, &error), 0);
    assert_false(match);

    /* Fresh salt each time: same password, different encodings. */
    char *again = NULL;
    assert_int_equal(password_hash("hunter2", 7, 1000, &again, &error), 0);
    assert_string_not_equal(hash, again);
    free(hash);
    free(again);
}

static void test_default_cost_round_trip(void **state)
{
    (void)state;
    const char *error = NULL;
    char *hash = NULL;
    assert_int_equal(password_hash("x", 1, PASSWORD_DEFAULT_ITERATIONS, &hash, &error), 0);
    assert_true(strncmp(hash, "$pbkdf2-sha256$i=100000$", 24) == 0);
    bool match = false;
    assert_int_equal(password_verify("x", 1, hash, &match, &error), 0);
    assert_true(match);
    free(hash);
}

struct known_answer {
    const char *password;
    size_t len;
    const char *encoded;
};

/* hashlib.pbkdf2_hmac('sha256', password, salt, iterations, 32), base64 without padding. */
static const struct known_answer known_answers[] = {
    {"password", 8,
     "$pbkdf2-sha256$i=4096$c2FsdFNBTFRzYWx0U0FMVA$kVD6NM4ljz+g9JUH5Fappxkk9oLULzZIKyYYhI/Tjlo"},
    {"pass\0word", 9,
     "$pbkdf2-sha256$i=4096$c2EAbHRzYWx0c2FsdA$MgycEo1BxszNraAHqhBbxhivK1fTx9tdi1aLrFIBOOM"},
    {"", 0, "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0c2FsdA$OFOyJWYpjsxG0FkD6pKNrUTebPCE0IC196NtgGwt3KE"},
    {"passwd", 6, "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY"},
};

static void test_known_answers(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(known_answers) / sizeof(known_answers[0]); i++) {
        const struct known_answer *ka = &known_answers[i];
        const char *error = NULL;
        bool match = false;
        assert_int_equal(password_verify(ka->password, ka->len, ka->encoded, &match, &error), 0);
        assert_true(match);
        /* One flipped byte anywhere in the password must fail. */
        for (size_t j = 0; j < ka->len; j++) {
            char buf[64];
            memcpy(buf, ka->password, ka->len);
            buf[j] ^= 1;
            assert_int_equal(password_verify(buf, ka->len, ka->encoded, &match, &error), 0);
            assert_false(match);
        }
    }
}

static void test_nul_bytes(void **state)
{
    (void)state;
    const char *error = NULL;
    char *hash = NULL;
    /* "a\0b" and "a\0c" differ only after the NUL: a strlen() anywhere would confuse them. */
    assert_int_equal(password_hash("a\0b", 3, 10, &hash, &error), 0);
    bool match = false;
    assert_int_equal(password_verify("a\0b", 3, hash, &match, &error), 0);
    assert_true(match);
    assert_int_equal(password_verify("a\0c", 3, hash, &match, &error), 0);
    assert_false(match);
    assert_int_equal(password_verify("a", 1, hash, &match, &error), 0);
    assert_false(match);
    free(hash);
}

static const char *const malformed[] = {
    "",
    "$",
    "pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    /* iterations */
    "$pbkdf2-sha256$i1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=01$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=0$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=-1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=+1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i= 1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=10000001$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=99999999999$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=1x$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$rounds=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    /* salt */
    "$pbkdf2-sha256$i=1$$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=1$c2FsdA$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",   /* 4 bytes */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0=$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=1$c2FsdHNh.HRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0c$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY", /* %4==1 */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx1$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY"
    "$extra",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0c2FsdHNhbHRzYWx0"
    "c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY", /* 72-byte salt */
    /* hash */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIR",  /* 31.x */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRYA", /* 33 */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY=",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRZ", /* bits */
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY$",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P-51gpFzPaQh_DPhnE4kRqJ4px1b/lILIYX2YUIRY",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY\n",
    "$pbkdf2-sha256$i=1$c2FsdHNhbHRzYWx0$ K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
};

static void test_malformed(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
        const char *error = NULL;
        bool match = true;
        if (password_verify("passwd", 6, malformed[i], &match, &error) != -1)
            fail_msg("accepted malformed hash #%zu: %s", i, malformed[i]);
        assert_non_null(error);
        assert_false(match);
    }
}

static void test_unknown_scheme(void **state)
{
    (void)state;
    static const char *const other[] = {
        "$pbkdf2-sha512$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
        "$pbkdf2$i=1$c2FsdHNhbHRzYWx0$K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
        "$2y$10$abcdefghijklmnopqrstuu5Rq0j1h8y6uY8rX9v1aQkqgqQ4cG5a6",
        "{SSHA}abcdef",
        "plaintext",
    };
    for (size_t i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        const char *error = NULL;
        bool match = true;
        assert_int_equal(password_verify("passwd", 6, other[i], &match, &error), -1);
        assert_false(match);
        assert_string_equal(error, "unknown password scheme");
    }
}

static void test_iteration_bounds(void **state)
{
    (void)state;
    const char *error = NULL;
    char *hash = (char *)1;
    assert_int_equal(password_hash("p", 1, 0, &hash, &error), -1);
    assert_null(hash);
    assert_int_equal(password_hash("p", 1, PASSWORD_MAX_ITERATIONS + 1, &hash, &error), -1);
    assert_null(hash);

    assert_int_equal(password_hash("p", 1, PASSWORD_MIN_ITERATIONS, &hash, &error), 0);
    assert_true(strncmp(hash, "$pbkdf2-sha256$i=1$", 19) == 0);
    bool match = false;
    assert_int_equal(password_verify("p", 1, hash, &match, &error), 0);
    assert_true(match);
    free(hash);

    /* The maximum is accepted when parsing (not computed here: 10M rounds is slow). */
    assert_int_equal(password_verify("passwd", 6,
                                     "$pbkdf2-sha256$i=10000001$c2FsdHNhbHRzYWx0$"
                                     "K7P/51gpFzPaQh/DPhnE4kRqJ4px1b/lILIYX2YUIRY",
                                     &match, &error),
                     -1);
}

static void test_length_limit(void **state)
{
    (void)state;
    char big[PASSWORD_MAX_LEN + 1];
    memset(big, 'a', sizeof(big));
    const char *error = NULL;
    char *hash = NULL;
    assert_int_equal(password_hash(big, sizeof(big), 1, &hash, &error), -1);
    assert_null(hash);
    assert_int_equal(password_hash(big, PASSWORD_MAX_LEN, 1, &hash, &error), 0);
    bool match = false;
    assert_int_equal(password_verify(big, PASSWORD_MAX_LEN, hash, &match, &error), 0);
    assert_true(match);
    assert_int_equal(password_verify(big, sizeof(big), hash, &match, &error), 0);
    assert_false(match);
    free(hash);
}

static void test_dummy_hash(void **state)
{
    (void)state;
    const char *d = password_dummy_hash();
    assert_non_null(d);
    assert_ptr_equal(d, password_dummy_hash());
    assert_true(strncmp(d, "$pbkdf2-sha256$i=100000$", 24) == 0);
    const char *error = NULL;
    bool match = true;
    assert_int_equal(password_verify("", 0, d, &match, &error), 0);
    assert_false(match);
}

/* Hashes made by Dovecot 2.3's "doveadm pw -p pass -s <scheme>", verified as stored. */
static void test_dovecot_schemes(void **state)
{
    (void)state;
    static const char *const hashes[] = {
        "{PBKDF2}$1$8A3DWhoj54XzDlPS$5000$a19aada18bda34574b44a9d094b7299fbf520170",
        ("{SHA512-CRYPT}$6$L/OVkHRDXqply7FZ$VV5/G6zEFIcqZrdfiGjdCKFyx8lZWyzOkSjZuXfAmzWalgPmt9NO7As"
         "BUzPR.U1jr4UjkDn4Mar3mZn/cmrvF/"),
        "{BLF-CRYPT}$2y$05$y8lSGJ7CNBeFXBVjaXGvf.51.QrLP6KOJbYmUVcI3VfP.ilXDigou",
        "{SHA256-CRYPT}$5$A/RXreaou8BxyN/l$0C76zWYE.7JEZbD6ovTcXkMfM8SoZtdGrVxMjKSqoI9",
        "{CRYPT}$5$A/RXreaou8BxyN/l$0C76zWYE.7JEZbD6ovTcXkMfM8SoZtdGrVxMjKSqoI9",
    };
    for (size_t i = 0; i < sizeof(hashes) / sizeof(hashes[0]); i++) {
        const char *error = NULL;
        bool match = false;
        assert_int_equal(password_verify("pass", 4, hashes[i], &match, &error), 0);
        assert_true(match);
        assert_int_equal(password_verify("pas", 3, hashes[i], &match, &error), 0);
        assert_false(match);
        assert_int_equal(password_verify("pass\0x", 6, hashes[i], &match, &error), 0);
        assert_false(match);
        assert_int_equal(password_check_encoded(hashes[i], &error), 0);
    }
    static const char *const bad[] = {
        "{SHA512-CRYPT}$5$A/RXreaou8BxyN/l$0C76zWYE.7JEZbD6ovTcXkMfM8SoZtdGrVxMjKSqoI9",
        "{SHA512-CRYPT}$6$",
        "{CRYPT}abJnggxhB/yWI", /* traditional DES: refused */
        "{PBKDF2}$1$salt$0$a19aada18bda34574b44a9d094b7299fbf520170",
        "{PBKDF2}$1$salt$5000$a19aada18bda34574b44a9d094b7299fbf52017",
        "{PBKDF2}$1$salt$5000$g19aada18bda34574b44a9d094b7299fbf520170",
        "{PLAIN}pass",
        "{SHA512-CRYPT}$6$x y",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        const char *error = NULL;
        assert_int_equal(password_check_encoded(bad[i], &error), -1);
        assert_non_null(error);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_default_cost_round_trip),
        cmocka_unit_test(test_known_answers),
        cmocka_unit_test(test_nul_bytes),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_unknown_scheme),
        cmocka_unit_test(test_iteration_bounds),
        cmocka_unit_test(test_length_limit),
        cmocka_unit_test(test_dummy_hash),
        cmocka_unit_test(test_dovecot_schemes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
