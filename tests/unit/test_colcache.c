/* Unit tests of the column-cache codec (frontend/colcache.h): build/read round trips, lookups in
 * order and out of order, and every kind of malformed value treated as absent. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/colcache.h"

static void test_round_trip_flags(void **state)
{
    (void)state;
    struct colcache_builder b;
    colcache_build_begin(&b, COLCACHE_FLAGS, 1, 77, 1030);
    colcache_build_add(&b, 1024, "\\Seen", 5, NULL, 0);
    colcache_build_add(&b, 1025, "", 0, NULL, 0);
    colcache_build_add(&b, 1029, "\\Seen $Work", 11, NULL, 0);
    assert_false(b.failed);
    const char want[] = "c1 f 1 77 1030\n1024 5\n\\Seen1025 0\n1029 11\n\\Seen $Work";
    assert_int_equal(b.len, sizeof(want) - 1);
    assert_memory_equal(b.buf, want, b.len);

    struct colcache c;
    assert_true(colcache_open(&c, b.buf, b.len, COLCACHE_FLAGS, 1));
    assert_int_equal(c.modseq, 77);
    assert_int_equal(c.upto, 1030);
    struct colcache_rec r;
    assert_int_equal(colcache_find(&c, 1023, &r), COLCACHE_UNKNOWN); /* other chunk */
    assert_int_equal(colcache_find(&c, 1024, &r), COLCACHE_HIT);
    assert_int_equal(r.len[0], 5);
    assert_memory_equal(r.field[0], "\\Seen", 5);
    assert_int_equal(colcache_find(&c, 1025, &r), COLCACHE_HIT);
    assert_int_equal(r.len[0], 0);
    assert_int_equal(colcache_find(&c, 1026, &r), COLCACHE_ABSENT);
    assert_int_equal(colcache_find(&c, 1028, &r), COLCACHE_ABSENT);
    assert_int_equal(colcache_find(&c, 1029, &r), COLCACHE_HIT);
    assert_memory_equal(r.field[0], "\\Seen $Work", 11);
    assert_int_equal(colcache_find(&c, 1030, &r), COLCACHE_UNKNOWN); /* at upto */
    /* Backwards restarts from the top. */
    assert_int_equal(colcache_find(&c, 1025, &r), COLCACHE_HIT);
    assert_int_equal(colcache_find(&c, 1024, &r), COLCACHE_HIT);
    assert_false(c.bad);
    /* The same value is not a chunk of another kind or number. */
    assert_false(colcache_open(&c, b.buf, b.len, COLCACHE_MSG, 1));
    assert_false(colcache_open(&c, b.buf, b.len, COLCACHE_FLAGS, 2));
    colcache_builder_free(&b);
}

static void test_round_trip_msg(void **state)
{
    (void)state;
    struct colcache_builder b;
    colcache_build_begin(&b, COLCACHE_MSG, 0, 5, 10);
    const char bin[] = {'\n', '\0', ' ', '9', '\n'};
    colcache_build_add(&b, 3, "rec three", 9, bin, sizeof(bin));
    colcache_build_add(&b, 9, "r9", 2, "", 0);
    assert_false(b.failed);
    struct colcache c;
    assert_true(colcache_open(&c, b.buf, b.len, COLCACHE_MSG, 0));
    struct colcache_rec r;
    assert_true(colcache_next(&c, &r));
    assert_int_equal(r.uid, 3);
    assert_memory_equal(r.field[0], "rec three", 9);
    assert_int_equal(r.len[1], sizeof(bin));
    assert_memory_equal(r.field[1], bin, sizeof(bin));
    assert_true(colcache_next(&c, &r));
    assert_int_equal(r.uid, 9);
    assert_int_equal(r.len[1], 0);
    assert_false(colcache_next(&c, &r));
    assert_false(c.bad);
    assert_int_equal(colcache_find(&c, 1, &r), COLCACHE_ABSENT);
    assert_int_equal(colcache_find(&c, 9, &r), COLCACHE_HIT);
    colcache_builder_free(&b);
}

static void test_builder_refuses(void **state)
{
    (void)state;
    struct colcache_builder b;
    colcache_build_begin(&b, COLCACHE_FLAGS, 0, 1, 2000); /* upto past the chunk */
    assert_true(b.failed);
    colcache_builder_free(&b);
    colcache_build_begin(&b, COLCACHE_FLAGS, 0, 1, 100);
    colcache_build_add(&b, 5, "", 0, NULL, 0);
    colcache_build_add(&b, 5, "", 0, NULL, 0); /* not ascending */
    assert_true(b.failed);
    colcache_builder_free(&b);
    colcache_build_begin(&b, COLCACHE_FLAGS, 0, 1, 100);
    colcache_build_add(&b, 100, "", 0, NULL, 0); /* at upto */
    assert_true(b.failed);
    colcache_builder_free(&b);
    /* The last chunk ends at UINT32_MAX. */
    colcache_build_begin(&b, COLCACHE_FLAGS, 4194303, 1, 0);
    assert_true(b.failed); /* upto 0 wrapped: refused */
    colcache_builder_free(&b);
}

static void assert_bad(const char *v, enum colcache_kind kind, uint32_t chunk)
{
    struct colcache c;
    if (!colcache_open(&c, v, strlen(v), kind, chunk))
        return;
    struct colcache_rec r;
    while (colcache_next(&c, &r))
        ;
    assert_true(c.bad);
    /* A bad chunk answers UNKNOWN for everything. */
    assert_int_equal(colcache_find(&c, chunk * COLCACHE_CHUNK + 1, &r), COLCACHE_UNKNOWN);
}

static void test_malformed(void **state)
{
    (void)state;
    const char *const headers[] = {
        "", "c", "c1 f", "c1 f 0 1 5", "c2 f 0 1 5\n", "c1 x 0 1 5\n", "c1 f 0 1 2000\n",
        "c1 f 00000000000000000000000000 1 5\n", "c1 f 0 99999999999999999999999 5\n",
        "c1 f -1 1 5\n", "c1 f 0 1 5 \n",
    };
    struct colcache c;
    for (size_t i = 0; i < sizeof(headers) / sizeof(headers[0]); i++)
        assert_false(colcache_open(&c, headers[i], strlen(headers[i]), COLCACHE_FLAGS, 0));
    assert_false(colcache_open(&c, NULL, 0, COLCACHE_FLAGS, 0));
    assert_bad("c1 f 0 1 10\n3 5\nab", COLCACHE_FLAGS, 0);            /* field past the end */
    assert_bad("c1 f 0 1 10\n3 0\n3 0\n", COLCACHE_FLAGS, 0);         /* repeated UID */
    assert_bad("c1 f 0 1 10\n4 0\n3 0\n", COLCACHE_FLAGS, 0);         /* descending */
    assert_bad("c1 f 0 1 10\n10 0\n", COLCACHE_FLAGS, 0);             /* at upto */
    assert_bad("c1 f 1 1 1030\n5 0\n", COLCACHE_FLAGS, 1);            /* below the chunk */
    assert_bad("c1 f 0 1 10\n3 x\n", COLCACHE_FLAGS, 0);
    assert_bad("c1 f 0 1 10\n3 1", COLCACHE_FLAGS, 0);
    assert_bad("c1 m 0 1 10\n3 1\nx", COLCACHE_MSG, 0);               /* one length for 'm' */
    assert_bad("c1 m 0 1 10\n3 1 99999999999999999999\nx", COLCACHE_MSG, 0);
    assert_bad("c1 m 0 1 10\n3 18446744073709551615 2\nx", COLCACHE_MSG, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_flags),
        cmocka_unit_test(test_round_trip_msg),
        cmocka_unit_test(test_builder_refuses),
        cmocka_unit_test(test_malformed),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
