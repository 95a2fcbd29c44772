/*
 * Sequence set tests: table-driven parse + resolve + format round trips, errors, "*" and "$",
 * membership and counting against a brute-force model, and building from number lists.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/seqset.h"

struct scase {
    const char *input;
    uint32_t star;
    const char *expect; /* formatted resolved set, or NULL when parsing must fail */
    uint64_t count;
};

static const struct scase cases[] = {
    { "1", 10, "1", 1 },
    { "1,3:5,7:*,*", 10, "1,3:5,7:10", 8 },
    { "5:3", 10, "3:5", 3 },
    { "*:3", 10, "3:10", 8 },
    { "3:*", 2, "2:3", 2 },         /* n:* with n > star: swapped (RFC 3501 §9) */
    { "*", 1, "1", 1 },
    { "*:*", 7, "7", 1 },
    { "1:*", 0, "", 0 },            /* empty mailbox: "*" denotes nothing */
    { "2,1:*", 0, "2", 1 },
    { "1,2,3,4", 10, "1:4", 4 },    /* adjacent numbers merge */
    { "4,3,2,1", 10, "1:4", 4 },    /* unsorted input */
    { "1:5,3:9,20,10", 100, "1:10,20", 11 },
    { "10:20,1:3,5:5,4", 100, "1:5,10:20", 16 },
    { "1:4294967295", 5, "1:4294967295", 4294967295u },
    { "4294967295,1", 5, "1,4294967295", 2 },
    { "4294967294:4294967295,4294967295,1:2", 0, "1:2,4294967294:4294967295", 4 },
    { "7,7,7", 10, "7", 1 },
    { "100", 5, "100", 1 },          /* above star: kept, the caller decides */
    /* errors */
    { "", 10, NULL, 0 },
    { "0", 10, NULL, 0 },
    { "0:5", 10, NULL, 0 },
    { "01", 10, NULL, 0 },
    { "4294967296", 10, NULL, 0 },
    { "99999999999999999999", 10, NULL, 0 },
    { "1,", 10, NULL, 0 },
    { ",1", 10, NULL, 0 },
    { "1,,2", 10, NULL, 0 },
    { "1:", 10, NULL, 0 },
    { ":1", 10, NULL, 0 },
    { "1:2:3", 10, NULL, 0 },
    { "**", 10, NULL, 0 },
    { "1 2", 10, NULL, 0 },
    { "-1", 10, NULL, 0 },
    { "a", 10, NULL, 0 },
    { "$", 10, NULL, 0 },           /* not allowed without the flag */
    { "1,$", 10, NULL, 0 },
    { "1:$", 10, NULL, 0 },
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct scase *c = &cases[i];
        struct arena *a = arena_new(256);
        struct seqset set;
        const char *error = NULL;
        int rc = seqset_parse_resolve(a, c->input, strlen(c->input), c->star, &set, &error);
        if (c->expect == NULL) {
            if (rc != -1)
                print_error("\"%s\" parsed but must fail\n", c->input);
            assert_int_equal(rc, -1);
            assert_non_null(error);
        } else {
            if (rc != 0)
                print_error("\"%s\": %s\n", c->input, error);
            assert_int_equal(rc, 0);
            char *text = seqset_format_arena(a, &set);
            if (strcmp(text, c->expect) != 0)
                print_error("\"%s\" -> \"%s\", expected \"%s\"\n", c->input, text, c->expect);
            assert_string_equal(text, c->expect);
            assert_true(seqset_count(&set) == c->count);
            /* invariants of a resolved set */
            for (size_t k = 0; k < set.count; k++) {
                assert_true(set.ranges[k].first >= 1);
                assert_true(set.ranges[k].first <= set.ranges[k].last);
                if (k > 0)
                    assert_true((uint64_t)set.ranges[k - 1].last + 1 < set.ranges[k].first);
            }
            /* formatting is canonical: parsing the text again gives the same text */
            if (set.count > 0) {
                struct seqset again;
                assert_int_equal(seqset_parse_resolve(a, text, strlen(text), c->star, &again, &error), 0);
                assert_string_equal(seqset_format_arena(a, &again), text);
            }
        }
        arena_free(&a);
    }
}

static void test_symbolic_star(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    struct seqset_spec spec;
    const char *error;
    assert_int_equal(seqset_parse(a, "5:*,2", 5, 0, &spec, &error), 0);
    assert_false(spec.saved);
    assert_true(spec.has_star);
    assert_int_equal(spec.count, 2);
    assert_int_equal(spec.ranges[0].first, 5);
    assert_int_equal(spec.ranges[0].last, SEQSET_STAR);
    assert_int_equal(spec.ranges[1].first, 2);
    assert_int_equal(spec.ranges[1].last, 2);
    /* the same spec resolves differently as the mailbox changes */
    struct seqset set;
    assert_int_equal(seqset_resolve(a, &spec, 9, &set, &error), 0);
    assert_string_equal(seqset_format_arena(a, &set), "2,5:9");
    assert_int_equal(seqset_resolve(a, &spec, 3, &set, &error), 0);
    assert_string_equal(seqset_format_arena(a, &set), "2:5");
    assert_int_equal(seqset_resolve(a, &spec, 0, &set, &error), 0);
    assert_string_equal(seqset_format_arena(a, &set), "2");
    /* the spec is not modified by resolving */
    assert_int_equal(spec.ranges[0].last, SEQSET_STAR);

    assert_int_equal(seqset_parse(a, "1:3", 3, 0, &spec, &error), 0);
    assert_false(spec.has_star);
    /* only len bytes are read: no NUL needed */
    assert_int_equal(seqset_parse(a, "12,garbage", 2, 0, &spec, &error), 0);
    assert_int_equal(spec.count, 1);
    assert_int_equal(spec.ranges[0].first, 12);
    arena_free(&a);
}

static void test_saved(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    struct seqset_spec spec;
    const char *error = NULL;
    assert_int_equal(seqset_parse(a, "$", 1, 0, &spec, &error), -1);
    assert_non_null(error);
    assert_int_equal(seqset_parse(a, "$", 1, SEQSET_ALLOW_SAVED, &spec, &error), 0);
    assert_true(spec.saved);
    assert_int_equal(spec.count, 0);
    struct seqset set;
    error = NULL;
    assert_int_equal(seqset_resolve(a, &spec, 10, &set, &error), -1);
    assert_non_null(error);
    assert_int_equal(seqset_parse(a, "1,$", 3, SEQSET_ALLOW_SAVED, &spec, &error), -1);
    assert_int_equal(seqset_parse(a, "$$", 2, SEQSET_ALLOW_SAVED, &spec, &error), -1);
    arena_free(&a);
}

/* Random sets against a bitmap model: contains, count and format agree. */
static void test_random_model(void **state)
{
    (void)state;
    enum { MAXN = 300 };
    unsigned seed = 42;
    for (int round = 0; round < 2000; round++) {
        struct arena *a = arena_new(256);
        bool model[MAXN + 2] = { false };
        char text[4096];
        size_t len = 0;
        seed = seed * 1103515245u + 12345u;
        uint32_t star = (seed >> 16) % 50;
        int items = 1 + (int)((seed >> 8) % 8);
        for (int i = 0; i < items; i++) {
            seed = seed * 1103515245u + 12345u;
            uint32_t x = 1 + (seed >> 16) % 60, y = 1 + (seed >> 4) % 60;
            bool xs = (seed & 7) == 0, ys = (seed & 7) == 1, range = (seed & 8) != 0;
            len += (size_t)snprintf(text + len, sizeof(text) - len, "%s", i ? "," : "");
            if (xs)
                len += (size_t)snprintf(text + len, sizeof(text) - len, "*");
            else
                len += (size_t)snprintf(text + len, sizeof(text) - len, "%u", x);
            if (range) {
                if (ys)
                    len += (size_t)snprintf(text + len, sizeof(text) - len, ":*");
                else
                    len += (size_t)snprintf(text + len, sizeof(text) - len, ":%u", y);
            }
            uint32_t lo = xs ? star : x, hi = range ? (ys ? star : y) : lo;
            if ((xs || (range && ys)) && star == 0)
                continue;
            if (lo > hi) {
                uint32_t t = lo;
                lo = hi;
                hi = t;
            }
            for (uint32_t n = lo; n <= hi; n++)
                model[n] = true;
        }
        struct seqset set;
        const char *error;
        assert_int_equal(seqset_parse_resolve(a, text, len, star, &set, &error), 0);
        uint64_t count = 0;
        for (uint32_t n = 0; n <= MAXN; n++) {
            count += model[n];
            assert_int_equal(seqset_contains(&set, n), model[n]);
        }
        assert_true(seqset_count(&set) == count);
        assert_false(seqset_contains(&set, UINT32_MAX));
        /* the same numbers through seqset_from_numbers give the same set */
        uint32_t nums[MAXN];
        size_t nn = 0;
        for (uint32_t n = MAXN; n >= 1; n--) /* descending: forces the sort */
            if (model[n])
                nums[nn++] = n;
        struct seqset built;
        assert_int_equal(seqset_from_numbers(a, nums, nn, &built, &error), 0);
        assert_string_equal(seqset_format_arena(a, &built), seqset_format_arena(a, &set));
        arena_free(&a);
    }
}

static void test_from_numbers(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    struct seqset set;
    const char *error = NULL;
    const uint32_t sorted[] = { 1, 2, 3, 5, 7, 8, 4294967295u };
    assert_int_equal(seqset_from_numbers(a, sorted, 7, &set, &error), 0);
    assert_string_equal(seqset_format_arena(a, &set), "1:3,5,7:8,4294967295");
    const uint32_t dups[] = { 9, 3, 3, 4, 9, 10 };
    assert_int_equal(seqset_from_numbers(a, dups, 6, &set, &error), 0);
    assert_string_equal(seqset_format_arena(a, &set), "3:4,9:10");
    assert_int_equal(dups[0], 9); /* input untouched */
    assert_int_equal(seqset_from_numbers(a, NULL, 0, &set, &error), 0);
    assert_int_equal(set.count, 0);
    assert_false(seqset_contains(&set, 1));
    assert_true(seqset_count(&set) == 0);
    const uint32_t zero[] = { 1, 0 };
    assert_int_equal(seqset_from_numbers(a, zero, 2, &set, &error), -1);
    assert_non_null(error);
    arena_free(&a);
}

static void test_format_buffer(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    struct seqset set;
    const char *error = NULL;
    assert_int_equal(seqset_parse_resolve(a, "1:3,5,4000000000:4000000001", 27, 0, &set, &error), 0);
    const char *full = "1:3,5,4000000000:4000000001";
    size_t full_len = strlen(full);
    for (size_t size = 0; size <= full_len + 2; size++) {
        char buf[64];
        memset(buf, 'X', sizeof(buf));
        size_t len = 0;
        error = NULL;
        int rc = seqset_format(&set, buf, size, &len, &error);
        assert_int_equal(len, full_len);
        if (size > full_len) {
            assert_int_equal(rc, 0);
            assert_string_equal(buf, full);
        } else {
            assert_int_equal(rc, -1);
            assert_non_null(error);
            if (size > 0) {
                assert_int_equal(strlen(buf), size - 1);
                assert_memory_equal(buf, full, size - 1);
            } else {
                assert_int_equal(buf[0], 'X'); /* nothing written */
            }
        }
        assert_int_equal(buf[size + 1], 'X'); /* never past size */
    }
    struct seqset empty = { NULL, 0 };
    char buf[4];
    size_t len = 9;
    assert_int_equal(seqset_format(&empty, buf, sizeof(buf), &len, &error), 0);
    assert_int_equal(len, 0);
    assert_string_equal(buf, "");
    arena_free(&a);
}

/* A long set in a small arena: the arena grows, nothing leaks. */
static void test_long_input(void **state)
{
    (void)state;
    struct arena *a = arena_new(256);
    size_t cap = 200000;
    char *text = malloc(cap);
    size_t len = 0;
    for (uint32_t n = 20000; n >= 1; n -= 2)
        len += (size_t)snprintf(text + len, cap - len, "%s%u", len ? "," : "", n);
    struct seqset set;
    const char *error;
    assert_int_equal(seqset_parse_resolve(a, text, len, 0, &set, &error), 0);
    assert_int_equal(set.count, 10000);
    assert_true(seqset_count(&set) == 10000);
    assert_true(seqset_contains(&set, 2));
    assert_false(seqset_contains(&set, 3));
    assert_true(seqset_contains(&set, 20000));
    free(text);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_symbolic_star),
        cmocka_unit_test(test_saved),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_from_numbers),
        cmocka_unit_test(test_format_buffer),
        cmocka_unit_test(test_long_input),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
