/* IMAP date-time parsing and formatting, checked against values computed with Python. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/imapdate.h"

static void test_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int ok;
        int64_t t;
    } cases[] = {
        {"17-Jul-1996 02:44:25 -0700", 1, 837596665},
        {" 1-Jan-2024 00:00:00 +0000", 1, 1704067200},
        {"01-jan-2024 00:00:00 +0100", 1, 1704063600},
        {"29-Feb-2024 23:59:59 +0000", 1, 1709251199},
        {"29-Feb-2023 23:59:59 +0000", 0, 0},
        {"32-Jan-2024 00:00:00 +0000", 0, 0},
        {"01-Foo-2024 00:00:00 +0000", 0, 0},
        {"01-Jan-2024 24:00:00 +0000", 0, 0},
        {"01-Jan-2024 00:00:00 0000", 0, 0},
        {"01-Jan-2024 00:00:00 +00000", 0, 0},
        {"1-Jan-2024 00:00:00 +0000", 0, 0}, /* date-time needs two day characters */
        {"", 0, 0},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int64_t t = 0;
        int rc = imapdate_parse(cases[i].text, strlen(cases[i].text), &t);
        assert_int_equal(rc == 0, cases[i].ok);
        if (cases[i].ok)
            assert_int_equal(t, cases[i].t);
    }
}

static void test_day_and_format(void **state)
{
    (void)state;
    int64_t t = 0;
    assert_int_equal(imapdate_parse_day("1-Feb-1994", 10, &t), 0);
    assert_int_equal(t, 760060800);
    assert_int_equal(imapdate_parse_day("01-Feb-1994", 11, &t), 0);
    assert_int_equal(t, 760060800);
    assert_int_equal(imapdate_parse_day("1-Feb-1994x", 11, &t), -1);
    char out[IMAPDATE_LEN + 1];
    imapdate_format(837596665, out);
    assert_string_equal(out, "17-Jul-1996 09:44:25 +0000");
    imapdate_format(0, out);
    assert_string_equal(out, "01-Jan-1970 00:00:00 +0000");
    int64_t back = 0;
    assert_int_equal(imapdate_parse(out, strlen(out), &back), 0);
    assert_int_equal(back, 0);
    for (int64_t x = -86400 * 3; x < 4102444800; x += 86400 * 37 + 3607) {
        imapdate_format(x, out);
        assert_int_equal(imapdate_parse(out, strlen(out), &back), 0);
        assert_int_equal(back, x);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_day_and_format),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
