/* frontend/view.c against a plain sorted-array model, with random appends and expunges. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/view.h"

static void check_against(const struct view *v, const uint32_t *model, uint32_t n)
{
    assert_int_equal(view_count(v), n);
    for (uint32_t s = 1; s <= n; s++) {
        assert_int_equal(view_uid(v, s), model[s - 1]);
        assert_int_equal(view_seq(v, model[s - 1]), s);
    }
    assert_int_equal(view_uid(v, 0), 0);
    assert_int_equal(view_uid(v, n + 1), 0);
    assert_int_equal(view_max_uid(v), n ? model[n - 1] : 0);
    uint32_t top = n ? model[n - 1] + 2 : 3;
    for (uint32_t u = 0; u <= top; u++) {
        uint32_t from = 0;
        bool held = false;
        for (uint32_t i = 0; i < n; i++) {
            from += model[i] >= u;
            held |= model[i] == u;
        }
        assert_int_equal(view_count_from(v, u), from);
        uint32_t ceil = n + 1, floor = 0;
        for (uint32_t i = 0; i < n; i++) {
            if (model[i] >= u && ceil == n + 1)
                ceil = i + 1;
            if (model[i] <= u)
                floor = i + 1;
        }
        assert_int_equal(view_seq_ceil(v, u), ceil);
        assert_int_equal(view_seq_floor(v, u), floor);
        if (!held)
            assert_int_equal(view_seq(v, u), 0);
    }
}

static void test_basic(void **state)
{
    (void)state;
    struct view *v = view_new();
    assert_int_equal(view_count(v), 0);
    assert_int_equal(view_add_run(v, 1, 3), 0);
    assert_int_equal(view_add_run(v, 4, 4), 0); /* merged */
    assert_int_equal(view_run_count(v), 1);
    assert_int_equal(view_add_run(v, 10, 12), 0);
    assert_int_equal(view_add_run(v, 12, 13), -1);
    assert_int_equal(view_add_run(v, 20, 19), -1);
    assert_int_equal(view_add_run(v, 0, 0), -1);
    uint32_t model[] = {1, 2, 3, 4, 10, 11, 12};
    check_against(v, model, 7);
    assert_int_equal(view_remove(v, 11), 6); /* split */
    assert_int_equal(view_run_count(v), 3);
    assert_int_equal(view_remove(v, 11), 0);
    assert_int_equal(view_remove(v, 1), 1);
    uint32_t model2[] = {2, 3, 4, 10, 12};
    check_against(v, model2, 5);
    view_clear(v);
    assert_int_equal(view_count(v), 0);
    view_free(&v);
    assert_null(v);
}

static void test_run_text(void **state)
{
    (void)state;
    struct view *v = view_new();
    assert_true(view_add_run_text(v, "1:5", 3));
    assert_true(view_add_run_text(v, "8:8", 3));
    /* A later page overlapping the last run (it was split meanwhile): only the new part counts. */
    assert_true(view_add_run_text(v, "7:12", 4));
    assert_true(view_add_run_text(v, "3:4", 3)); /* entirely inside: nothing */
    assert_int_equal(view_count(v), 5 + 1 + 4);
    assert_int_equal(view_max_uid(v), 12);
    assert_int_equal(view_seq(v, 9), 7);
    assert_int_equal(view_seq(v, 7), 0);
    assert_true(view_add_run_text(v, "4294967295:4294967295", 21));
    const char *const bad[] = {"", ":", "1:", ":2", "0:3", "5:4", "1:2x", "x1:2", " 1:2", "+1:2",
                               "1:-2", "1:4294967296", "12345678901:12345678902", "1:2:3"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(view_add_run_text(v, bad[i], strlen(bad[i])));
    /* Not NUL-terminated: only len bytes are read. */
    assert_false(view_add_run_text(v, "20:21", 4));
    view_free(&v);
}

static void test_random_model(void **state)
{
    (void)state;
    srand(12345);
    struct view *v = view_new();
    uint32_t *model = calloc(4000, sizeof(uint32_t));
    uint32_t n = 0, next = 1;
    for (int round = 0; round < 600; round++) {
        if (rand() % 3 != 0 || n == 0) {
            uint32_t gap = (uint32_t)(rand() % 3);
            uint32_t len = 1 + (uint32_t)(rand() % 5);
            uint32_t first = next + gap;
            assert_int_equal(view_add_run(v, first, first + len - 1), 0);
            for (uint32_t u = first; u < first + len; u++)
                model[n++] = u;
            next = first + len;
        } else {
            uint32_t idx = (uint32_t)rand() % n;
            assert_int_equal(view_remove(v, model[idx]), idx + 1);
            memmove(model + idx, model + idx + 1, (n - idx - 1) * sizeof(uint32_t));
            n--;
        }
        if (round % 50 == 0)
            check_against(v, model, n);
    }
    check_against(v, model, n);
    free(model);
    view_free(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),
        cmocka_unit_test(test_random_model),
        cmocka_unit_test(test_run_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
