/* Pins every key format of keys/keys.c (keys/README.md is the operator's view of the same). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "keys/keys.h"

#define NSID "eacb1cf1-5d2e-4f3a-9a53-6d1f0c2b7e90"

static void assert_key(const struct key *k, const char *want)
{
    assert_string_equal(k->s, want);
    assert_int_equal(k->len, strlen(want));
}

static void test_formats(void **state)
{
    (void)state;
    struct key k;
    keys_schema(&k);
    assert_key(&k, "/schema");
    keys_frontends_keepalive(&k);
    assert_key(&k, "/frontends/keepalive");
    assert_int_equal(keys_user(&k, "demouser", 8), 0);
    assert_key(&k, "/users/demouser");
    keys_users_pattern(&k);
    assert_key(&k, "/users/*");
    assert_int_equal(keys_users_prefix_len(), strlen("/users/"));
    keys_ns_meta(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/meta");
    keys_ns_prefix(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/");
    keys_ns_pattern(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/*");
    keys_ns_channel(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/channel");
}

#define MBX "F0123456789abcdef0123456789abcdef"
#define SHA "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

static void test_mailbox_formats(void **state)
{
    (void)state;
    static const char *const want[KEYS_MBX_PART_COUNT] = {
        "/ns/{" NSID "}/mbx/" MBX,           "/ns/{" NSID "}/mbx/" MBX "/uids",
        "/ns/{" NSID "}/mbx/" MBX "/runs",   "/ns/{" NSID "}/mbx/" MBX "/msg",
        "/ns/{" NSID "}/mbx/" MBX "/flags",  "/ns/{" NSID "}/mbx/" MBX "/modseq",
        "/ns/{" NSID "}/mbx/" MBX "/unseen", "/ns/{" NSID "}/mbx/" MBX "/deleted",
        "/ns/{" NSID "}/mbx/" MBX "/log",
    };
    struct key k;
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++) {
        keys_mbx(&k, NSID, MBX, (enum keys_mbx_part)p);
        assert_key(&k, want[p]);
    }
    keys_ns_mailboxes(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/mailboxes");
    keys_ns_subscriptions(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/subscriptions");
    keys_ns_threads(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/threads");
    keys_ns_gc(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/gc");
    keys_ns_trash(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/trash");
    keys_content(&k, NSID, SHA);
    assert_key(&k, "/ns/{" NSID "}/content/" SHA);
    keys_content_raw(&k, NSID, SHA);
    assert_key(&k, "/ns/{" NSID "}/content/" SHA "/raw");
    keys_staging(&k, NSID, "0123456789abcdef0123456789abcdef");
    assert_key(&k, "/ns/{" NSID "}/staging/0123456789abcdef0123456789abcdef");
    keys_ns_copies(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/copies");
    keys_copy(&k, NSID, "0123456789abcdef0123456789abcdef");
    assert_key(&k, "/ns/{" NSID "}/copy/0123456789abcdef0123456789abcdef");
    keys_delivery(&k, NSID, SHA);
    assert_key(&k, "/ns/{" NSID "}/delivery/" SHA);
    keys_mbx_cache(&k, NSID, MBX, 'f', 0);
    assert_key(&k, "/ns/{" NSID "}/mbx/" MBX "/cache/f/0");
    keys_mbx_cache(&k, NSID, MBX, 'm', 4194303);
    assert_key(&k, "/ns/{" NSID "}/mbx/" MBX "/cache/m/4194303");
}

static void test_cache_chunks(void **state)
{
    (void)state;
    const uint32_t uids[] = {1, 2, 1023, 1024, 1025, 5000, 4294967295u, 3};
    uint32_t out[8];
    size_t n = keys_cache_chunks(uids, 8, out);
    assert_int_equal(n, 5);
    assert_int_equal(out[0], 0);
    assert_int_equal(out[1], 1);
    assert_int_equal(out[2], 4);
    assert_int_equal(out[3], 4194303);
    assert_int_equal(out[4], 0); /* not ascending: repeated, as the scripts compute it too */
    assert_int_equal(keys_cache_chunks(uids, 0, out), 0);
}

static void test_ids(void **state)
{
    (void)state;
    char a[KEYS_MBXID_LEN + 1];
    char b[KEYS_MBXID_LEN + 1];
    keys_mbxid_new(a);
    keys_mbxid_new(b);
    assert_true(keys_mbxid_valid(a, strlen(a)));
    assert_string_not_equal(a, b);
    assert_true(keys_mbxid_valid(MBX, strlen(MBX)));
    assert_false(keys_mbxid_valid("G0123456789abcdef0123456789abcdef", 33));
    assert_false(keys_mbxid_valid("F0123456789ABCDEF0123456789abcdef", 33));
    assert_false(keys_mbxid_valid(MBX, 32));
    char s[KEYS_STAGING_LEN + 1];
    keys_staging_id_new(s);
    assert_true(keys_hex_valid(s, strlen(s), KEYS_STAGING_LEN));
    assert_true(keys_hex_valid(SHA, strlen(SHA), KEYS_SHA256_LEN));
    assert_false(keys_hex_valid(SHA, strlen(SHA), KEYS_STAGING_LEN));
}

static void test_login_validation(void **state)
{
    (void)state;
    static const struct {
        const char *login;
        bool ok;
    } cases[] = {
        {"a", true}, {"john.doe@example.org", true}, {"x+tag_1-2", true},
        {"", false}, {".hidden", false}, {"-opt", false}, {"a b", false},
        {"a/b", false}, {"a*", false}, {"{x}", false}, {"\xc3\xa9", false},
    };
    struct key k;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t len = strlen(cases[i].login);
        assert_int_equal(keys_login_valid(cases[i].login, len), cases[i].ok);
        assert_int_equal(keys_user(&k, cases[i].login, len), cases[i].ok ? 0 : -1);
    }
    char longest[KEYS_LOGIN_MAX + 1];
    memset(longest, 'a', sizeof(longest));
    assert_true(keys_login_valid(longest, KEYS_LOGIN_MAX));
    assert_false(keys_login_valid(longest, KEYS_LOGIN_MAX + 1));
    assert_int_equal(keys_user(&k, longest, KEYS_LOGIN_MAX), 0);
    assert_int_equal(k.len, strlen("/users/") + KEYS_LOGIN_MAX);
    /* NUL inside the login is rejected (lengths, not strlen). */
    assert_false(keys_login_valid("ab\0c", 4));
}

static void test_nsid(void **state)
{
    (void)state;
    char id[KEYS_NSID_LEN + 1];
    char other[KEYS_NSID_LEN + 1];
    keys_nsid_new(id);
    keys_nsid_new(other);
    assert_int_equal(strlen(id), KEYS_NSID_LEN);
    assert_true(keys_nsid_valid(id, strlen(id)));
    assert_string_not_equal(id, other);
    assert_true(keys_nsid_valid(NSID, strlen(NSID)));
    assert_false(keys_nsid_valid("EACB1CF1-5D2E-4F3A-9A53-6D1F0C2B7E90", 36));
    assert_false(keys_nsid_valid("eacb1cf1x5d2e-4f3a-9a53-6d1f0c2b7e90", 36));
    assert_false(keys_nsid_valid(NSID, 35));
    assert_false(keys_nsid_valid("eacb1cf1-5d2e-4f3a-9a53-6d1f0c2b7e9}", 36));
}

static void test_fleet_formats(void **state)
{
    (void)state;
    struct key k;
    keys_frontends(&k);
    assert_key(&k, "/frontends");
    keys_frontend(&k, "fe-1732570000123-0a1b2c3d");
    assert_key(&k, "/frontends/fe-1732570000123-0a1b2c3d");
    keys_ns_conns(&k, NSID);
    assert_key(&k, "/ns/{" NSID "}/conns");
    assert_int_equal(keys_throttle_user(&k, "demouser", 8), 0);
    assert_key(&k, "/throttle/user/demouser");
    assert_int_equal(keys_throttle_user(&k, "bad user", 8), -1);
    assert_int_equal(keys_throttle_addr(&k, "192.0.2.7"), 0);
    assert_key(&k, "/throttle/addr/192.0.2.7");
    assert_int_equal(keys_throttle_addr(&k, "2001:db8:1:2::/64"), 0);
    assert_key(&k, "/throttle/addr/2001:db8:1:2::/64");
    assert_int_equal(keys_throttle_addr(&k, "x{y}"), -1);
    assert_int_equal(keys_throttle_addr(&k, ""), -1);
    assert_true(keys_frontend_id_valid("fe-1-a", 6));
    assert_false(keys_frontend_id_valid("fe/1", 4));
    assert_false(keys_frontend_id_valid("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_formats),
        cmocka_unit_test(test_mailbox_formats),
        cmocka_unit_test(test_ids),
        cmocka_unit_test(test_login_validation),
        cmocka_unit_test(test_nsid),
        cmocka_unit_test(test_fleet_formats),
        cmocka_unit_test(test_cache_chunks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
