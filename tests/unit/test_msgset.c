/* Sequence sets against a view: sequence numbers (BAD beyond EXISTS) and UIDs (no match). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/msgset.h"

static const char *render(struct arena *a, const struct seqset *s)
{
    return s->count == 0 ? "" : seqset_format_arena(a, s);
}

static void test_msgset(void **state)
{
    (void)state;
    struct arena *a = arena_new(0);
    struct view *v = view_new();
    /* UIDs 3..5, 10, 20..21: sequence numbers 1..6 */
    assert_int_equal(view_add_run(v, 3, 5), 0);
    assert_int_equal(view_add_run(v, 10, 10), 0);
    assert_int_equal(view_add_run(v, 20, 21), 0);
    static const struct {
        const char *text;
        bool uid;
        int rc;
        const char *want;
    } cases[] = {
        {"1:*", false, 0, "1:6"},   {"2,4:5", false, 0, "2,4:5"}, {"*", false, 0, "6"},
        {"7", false, -1, NULL},     {"5:7", false, -1, NULL},     {"1:*", true, 0, "1:6"},
        {"4:10", true, 0, "2:4"},   {"6:9", true, 0, ""},         {"11:*", true, 0, "5:6"},
        {"100:*", true, 0, "6"},    {"1,2,21", true, 0, "6"},     {"x", true, -1, NULL},
        {"0", false, -1, NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct seqset s;
        const char *error = NULL;
        int rc = msgset_resolve(a, v, cases[i].text, strlen(cases[i].text), cases[i].uid, &s, &error);
        assert_int_equal(rc, cases[i].rc);
        if (rc == 0)
            assert_string_equal(render(a, &s), cases[i].want);
        else
            assert_non_null(error);
    }
    struct view *empty = view_new();
    struct seqset s;
    const char *error = NULL;
    assert_int_equal(msgset_resolve(a, empty, "1:*", 3, false, &s, &error), 0);
    assert_int_equal(s.count, 0);
    assert_int_equal(msgset_resolve(a, empty, "1", 1, false, &s, &error), -1);
    assert_int_equal(msgset_resolve(a, empty, "1:*", 3, true, &s, &error), 0);
    assert_int_equal(s.count, 0);
    view_free(&empty);
    view_free(&v);
    arena_free(&a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_msgset)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
