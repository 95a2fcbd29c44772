/*
 * The embedded scripts match lua/ (every .lua file) byte for byte (SHA1 computed independently here with
 * OpenSSL). That Redis agrees with the SHA1 is proven against a real Redis in test_store.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "lua/scripts.h"

#ifndef CIMAP_LUA_DIR
#error CIMAP_LUA_DIR must name the lua/ source directory
#endif

static void test_scripts_match_files(void **state)
{
    (void)state;
    assert_true(LUA_SCRIPT_COUNT > 0);
    for (size_t i = 0; i < LUA_SCRIPT_COUNT; i++) {
        const struct lua_script *s = &lua_scripts[i];
        char path[512];
        snprintf(path, sizeof(path), "%s/%s.lua", CIMAP_LUA_DIR, s->name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *buf = malloc(s->len + 2);
        assert_non_null(buf);
        size_t n = fread(buf, 1, s->len + 1, f);
        fclose(f);
        assert_int_equal(n, s->len);
        assert_memory_equal(buf, s->body, s->len);
        assert_int_equal(s->body[s->len], '\0');
        unsigned char md[SHA_DIGEST_LENGTH];
        SHA1((const unsigned char *)buf, n, md);
        char hex[2 * SHA_DIGEST_LENGTH + 1];
        for (size_t j = 0; j < SHA_DIGEST_LENGTH; j++)
            snprintf(hex + 2 * j, 3, "%02x", md[j]);
        assert_string_equal(hex, s->sha1);
        assert_ptr_equal(lua_script_find(s->name), s);
        free(buf);
    }
    assert_null(lua_script_find("no-such-script"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scripts_match_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
