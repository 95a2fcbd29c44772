/* Unit tests for frontend/arena.c: alignment, growth, reset, large blocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/arena.h"

static void test_alloc_aligned_and_distinct(void **state)
{
    (void)state;
    struct arena *a = arena_new(0);
    char *prev = NULL;
    for (size_t i = 1; i < 2000; i += 7) {
        char *p = arena_alloc(a, i);
        assert_int_equal((uintptr_t)p % _Alignof(max_align_t), 0);
        memset(p, 0xab, i);
        assert_ptr_not_equal(p, prev);
        prev = p;
    }
    arena_free(&a);
    assert_null(a);
}

static void test_strings(void **state)
{
    (void)state;
    struct arena *a = arena_new(64);
    char *s = arena_strndup(a, "ab\0cd", 5);
    assert_memory_equal(s, "ab\0cd", 6);
    char *f = arena_printf(a, "%s-%u", "x", 42u);
    assert_string_equal(f, "x-42");
    unsigned char *z = arena_calloc(a, 100, 3);
    for (size_t i = 0; i < 300; i++)
        assert_int_equal(z[i], 0);
    arena_free(&a);
}

static void test_reset_keeps_first_block(void **state)
{
    (void)state;
    struct arena *a = arena_new(1024);
    size_t base = arena_footprint(a);
    for (int i = 0; i < 100; i++)
        (void)arena_alloc(a, 4096);
    assert_true(arena_footprint(a) > base + 100 * 4096);
    arena_reset(a);
    assert_int_equal(arena_footprint(a), base);
    (void)arena_alloc(a, 10);
    arena_free(&a);
    arena_free(&a); /* NULL-safe */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alloc_aligned_and_distinct),
        cmocka_unit_test(test_strings),
        cmocka_unit_test(test_reset_keeps_first_block),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
