/* Mailbox names: validation, modified UTF-7, INBOX normalisation, hierarchy, LIST patterns. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/arena.h"
#include "frontend/mboxname.h"

static const struct mboxname_limits limits = {255, 16};

struct validate_case {
    const char *in;
    size_t len;        /* 0: strlen(in) */
    const char *want;  /* normalised form, or NULL when refused */
    const char *code;  /* when refused */
};

static const struct validate_case validate_cases[] = {
    {"INBOX", 0, "INBOX", NULL},
    {"inbox", 0, "INBOX", NULL},
    {"InBoX", 0, "INBOX", NULL},
    {"inbox/Sub", 0, "INBOX/Sub", NULL},
    {"inbox/inbox", 0, "INBOX/inbox", NULL},
    {"inboxes", 0, "inboxes", NULL},
    {"Inbox2/x", 0, "Inbox2/x", NULL},
    {"Sent", 0, "Sent", NULL},
    {"a/b/c", 0, "a/b/c", NULL},
    {"with space", 0, "with space", NULL},
    {"quote\"back\\slash", 0, "quote\"back\\slash", NULL},
    {"&AOk-t&AOk-", 0, "&AOk-t&AOk-", NULL},  /* été */
    {"&-", 0, "&-", NULL},                    /* & */
    {"a&-b&-", 0, "a&-b&-", NULL},
    {"&AOk-&-", 0, "&AOk-&-", NULL},          /* é& : a run then "&-" is fine */
    {"&ZeVnLIqe-", 0, "&ZeVnLIqe-", NULL},    /* 日本語 */
    {"&2D3eAA-", 0, "&2D3eAA-", NULL},        /* U+1F600, a surrogate pair */
    {"~peter/mail/&U,BTFw-/&ZeVnLIqe-", 0, "~peter/mail/&U,BTFw-/&ZeVnLIqe-", NULL},
    {"", 0, NULL, "CANNOT"},
    {"/a", 0, NULL, "CANNOT"},
    {"a/", 0, NULL, "CANNOT"},
    {"a//b", 0, NULL, "CANNOT"},
    {"/", 0, NULL, "CANNOT"},
    {"a*", 0, NULL, "CANNOT"},
    {"a%b", 0, NULL, "CANNOT"},
    {"tab\there", 0, NULL, "CANNOT"},
    {"del\x7f", 0, NULL, "CANNOT"},
    {"nul\0x", 5, NULL, "CANNOT"},
    {"\xc3\xa9t\xc3\xa9", 0, NULL, "CANNOT"}, /* raw UTF-8 */
    {"&", 0, NULL, "CANNOT"},                  /* unterminated */
    {"a&b", 0, NULL, "CANNOT"},
    {"&AOk", 0, NULL, "CANNOT"},               /* unterminated run */
    {"&AOk-&AOk-", 0, NULL, "CANNOT"},         /* adjacent runs: &AOkA6Q- is the spelling */
    {"&AOkA6Q-", 0, "&AOkA6Q-", NULL},
    {"&AGE-", 0, NULL, "CANNOT"},              /* "a" encoded */
    {"&AC8-", 0, NULL, "CANNOT"},              /* "/" encoded */
    {"&ACY-", 0, NULL, "CANNOT"},              /* "&" encoded */
    {"&AAk-", 0, NULL, "CANNOT"},              /* TAB encoded */
    {"&AIU-", 0, NULL, "CANNOT"},              /* C1 control encoded */
    {"&AOl-", 0, NULL, "CANNOT"},              /* non-zero padding bits */
    {"&AOkA-", 0, NULL, "CANNOT"},             /* a wasted base64 character */
    {"&AO-", 0, NULL, "CANNOT"},               /* 12 bits: no whole unit */
    {"&AOk/-", 0, NULL, "CANNOT"},             /* "/" is not modified base64 */
    {"&AOk=-", 0, NULL, "CANNOT"},
    {"&2D0-", 0, NULL, "CANNOT"},              /* lone high surrogate */
    {"&3gA-", 0, NULL, "CANNOT"},              /* lone low surrogate */
    {"&2D3YPQ-", 0, NULL, "CANNOT"},           /* high surrogate followed by a high one */
    {"+AOk-", 0, "+AOk-", NULL},               /* plain characters, not UTF-7 */
};

static void test_validate(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(validate_cases) / sizeof(validate_cases[0]); i++) {
        const struct validate_case *tc = &validate_cases[i];
        size_t len = tc->len != 0 ? tc->len : strlen(tc->in);
        char out[300];
        const char *code = "unset";
        const char *error = NULL;
        int r = mboxname_validate(tc->in, len, &limits, out, &code, &error);
        if (tc->want != NULL) {
            if (r != 0)
                fail_msg("case %zu \"%s\": refused: %s", i, tc->in, error);
            assert_string_equal(out, tc->want);
            assert_null(code);
        } else {
            if (r != -1)
                fail_msg("case %zu \"%s\": accepted", i, tc->in);
            assert_string_equal(code, tc->code);
            assert_non_null(error);
        }
    }
}

static void test_validate_in_place(void **state)
{
    (void)state;
    char buf[] = "Inbox/x";
    const char *code;
    const char *error;
    assert_int_equal(mboxname_validate(buf, 7, &limits, buf, &code, &error), 0);
    assert_string_equal(buf, "INBOX/x");
}

static void test_limits(void **state)
{
    (void)state;
    char name[600];
    char out[601];
    const char *code;
    const char *error;
    memset(name, 'a', sizeof(name));
    assert_int_equal(mboxname_validate(name, 255, &limits, out, &code, &error), 0);
    assert_int_equal(mboxname_validate(name, 256, &limits, out, &code, &error), -1);
    assert_string_equal(code, "LIMIT");
    /* 16 levels pass, 17 do not */
    size_t n = 0;
    for (int level = 0; level < 17; level++) {
        if (level > 0)
            name[n++] = '/';
        name[n++] = 'x';
        const char *want = level < 16 ? NULL : "LIMIT";
        int r = mboxname_validate(name, n, &limits, out, &code, &error);
        assert_int_equal(r, want == NULL ? 0 : -1);
        if (want != NULL)
            assert_string_equal(code, want);
    }
    const struct mboxname_limits small = {10, 2};
    assert_int_equal(mboxname_validate("a/b", 3, &small, out, &code, &error), 0);
    assert_int_equal(mboxname_validate("a/b/c", 5, &small, out, &code, &error), -1);
    assert_string_equal(code, "LIMIT");
    assert_int_equal(mboxname_validate("abcdefghijk", 11, &small, out, &code, &error), -1);
    assert_string_equal(code, "LIMIT");
}

static void test_parents(void **state)
{
    (void)state;
    size_t lens[4];
    assert_int_equal(mboxname_parents("a", 1, lens, 4), 0);
    assert_int_equal(mboxname_parents("a/bc/d", 6, lens, 4), 2);
    assert_int_equal(lens[0], 1);
    assert_int_equal(lens[1], 4);
    assert_int_equal(mboxname_parents("a/b/c/d/e/f", 11, lens, 2), 5);
    assert_int_equal(lens[1], 3);
    assert_true(mboxname_is_child("a", 1, "a/b", 3));
    assert_true(mboxname_is_child("a", 1, "a/b/c", 5));
    assert_false(mboxname_is_child("a", 1, "ab", 2));
    assert_false(mboxname_is_child("a", 1, "a", 1));
    assert_false(mboxname_is_child("a", 1, "a/", 2));
    assert_false(mboxname_is_child("a/b", 3, "a", 1));
    assert_true(mboxname_is_inbox("INBOX", 5));
    assert_true(mboxname_is_inbox("INBOX/a", 7));
    assert_false(mboxname_is_inbox("inbox", 5));
    assert_false(mboxname_is_inbox("INBOXES", 7));
}

struct match_case {
    const char *pattern;
    const char *name;
    bool want;
};

static const struct match_case match_cases[] = {
    {"*", "a", true},
    {"*", "a/b/c", true},
    {"%", "a", true},
    {"%", "a/b", false},
    {"", "", true},
    {"", "a", false},
    {"a", "a", true},
    {"a", "A", false},
    {"a/%", "a/b", true},
    {"a/%", "a/b/c", false},
    {"a/*", "a/b/c", true},
    {"a/*", "a", false},
    {"a*", "a", true},
    {"a*", "abc/d", true},
    {"a%", "abc", true},
    {"a%", "abc/d", false},
    {"%/%", "a/b", true},
    {"%/%", "a/b/c", false},
    {"%/%/%", "a/b/c", true},
    {"*/c", "a/b/c", true},
    {"%/c", "a/b/c", false},
    {"*b*", "abc", true},
    {"*x*", "abc", false},
    {"a*%*c", "abc", true},
    {"a%%c", "a/c", false},
    {"a%*c", "a/c", true},
    {"a*%c", "a/c", true},
    {"**", "a/b", true},
    {"S%", "Sent", true},
    {"s%", "Sent", false},
    {"inbox", "INBOX", true},
    {"Inbox", "INBOX", true},
    {"INBOX", "INBOX", true},
    {"in*", "INBOX", true},
    {"in*", "INBOX/x", true},
    {"in%", "INBOX/x", false},
    {"inbox/%", "INBOX/Sub", true},
    {"inbox/sub", "INBOX/Sub", false},   /* only the INBOX level folds */
    {"inbox", "Inbox", false},           /* a stored "Inbox" would not be INBOX: exact */
    {"inboxes", "INBOXES", false},       /* INBOXES is not INBOX: case-sensitive */
    {"%", "INBOX", true},
    {"&AOk-t&AOk-", "&AOk-t&AOk-", true},
    {"&aok-*", "&AOk-t&AOk-", false},
    {"a?", "a?", true},
};

static void test_match(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *tc = &match_cases[i];
        bool got = mboxname_match(tc->pattern, strlen(tc->pattern), tc->name, strlen(tc->name));
        if (got != tc->want)
            fail_msg("case %zu: \"%s\" vs \"%s\": got %d", i, tc->pattern, tc->name, got);
    }
}

/* A hostile pattern costs pattern × name at worst: this must return at once. */
static void test_match_hostile(void **state)
{
    (void)state;
    static char pattern[60001];
    for (size_t i = 0; i < 60000; i++)
        pattern[i] = (i % 2 == 0) ? '*' : (i % 4 == 1 ? 'a' : '%');
    char name[256];
    memset(name, 'a', 255);
    name[255] = '\0';
    assert_false(mboxname_match(pattern, 60000, name, 255));
    memset(pattern, '*', 60000);
    assert_true(mboxname_match(pattern, 60000, name, 255));
    pattern[59999] = 'b';
    assert_false(mboxname_match(pattern, 60000, name, 255));
}

static void test_pattern_compact(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"", ""},           {"a", "a"},         {"*", "*"},       {"%%", "%"},
        {"%*%", "*"},       {"a**b%%c", "a*b%c"}, {"**%%**", "*"}, {"a/%/%", "a/%/%"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char buf[32];
        size_t len = strlen(cases[i][0]);
        memcpy(buf, cases[i][0], len);
        size_t n = mboxname_pattern_compact(buf, len);
        assert_int_equal(n, strlen(cases[i][1]));
        assert_memory_equal(buf, cases[i][1], n);
    }
    /* compacting never changes what matches */
    const char *names[] = {"a", "a/b", "ab/c", "abc", "a/b/c"};
    const char *patterns[] = {"a%*", "a*%", "a%%/%", "%*/%*%", "a%%c"};
    for (size_t p = 0; p < 5; p++) {
        char buf[32];
        size_t len = strlen(patterns[p]);
        memcpy(buf, patterns[p], len);
        size_t n = mboxname_pattern_compact(buf, len);
        for (size_t k = 0; k < 5; k++)
            assert_int_equal(mboxname_match(buf, n, names[k], strlen(names[k])),
                             mboxname_match(patterns[p], len, names[k], strlen(names[k])));
    }
}

/* Every prefix of a valid name is either valid or cut inside a run: never a crash. */
static void test_utf7_prefixes(void **state)
{
    (void)state;
    const char *name = "&ZeVnLIqe-/&2D3eAA-x&-";
    size_t len = strlen(name);
    assert_true(mboxname_utf7_valid(name, len));
    for (size_t i = 0; i < len; i++)
        (void)mboxname_utf7_valid(name, i);
    assert_false(mboxname_utf7_valid(name, 3));
}

/* Lookups of existing names use the hard caps only, and copy into the arena. */
static void test_normalize(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    const char *error = NULL;
    const char *n = mboxname_normalize(a, "inbox/X", 7, &error);
    assert_non_null(n);
    assert_string_equal(n, "INBOX/X");
    static char longname[1100];
    memset(longname, 'a', sizeof(longname));
    assert_non_null(mboxname_normalize(a, longname, MBOXNAME_MAX_LEN, &error));
    assert_null(mboxname_normalize(a, longname, MBOXNAME_MAX_LEN + 1, &error));
    assert_non_null(error);
    assert_null(mboxname_normalize(a, "a//b", 4, &error));
    assert_null(mboxname_normalize(a, "&AOk", 4, &error));
    arena_free(&a);
    assert_null(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_validate),         cmocka_unit_test(test_validate_in_place),
        cmocka_unit_test(test_limits),           cmocka_unit_test(test_parents),
        cmocka_unit_test(test_match),            cmocka_unit_test(test_match_hostile),
        cmocka_unit_test(test_utf7_prefixes),    cmocka_unit_test(test_normalize),
        cmocka_unit_test(test_pattern_compact),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
