/*
 * Key-name builders. Formats are fixed by keys/README.md; changing one is a schema change
 * (bump KEYS_SCHEMA_VERSION and write a migration). Names use snprintf into a bounded buffer and
 * assert on truncation: every input is validated before it gets here.
 */
#include "keys/keys.h"

#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <uuid/uuid.h>

static void key_fmt(struct key *k, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void key_fmt(struct key *k, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(k->s, sizeof(k->s), fmt, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof(k->s));
    k->len = (size_t)n;
}

bool keys_nsid_valid(const char *s, size_t len)
{
    if (len != KEYS_NSID_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}

void keys_nsid_new(char out[KEYS_NSID_LEN + 1])
{
    uuid_t u;
    uuid_generate_random(u);
    uuid_unparse_lower(u, out);
}

bool keys_login_valid(const char *login, size_t len)
{
    if (len == 0 || len > KEYS_LOGIN_MAX || login[0] == '.' || login[0] == '-')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = login[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '@' || c == '+' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void keys_schema(struct key *k)
{
    key_fmt(k, "/schema");
}

int keys_user(struct key *k, const char *login, size_t len)
{
    if (!keys_login_valid(login, len))
        return -1;
    key_fmt(k, "/users/%.*s", (int)len, login);
    return 0;
}

void keys_users_pattern(struct key *k)
{
    key_fmt(k, "/users/*");
}

size_t keys_users_prefix_len(void)
{
    return strlen("/users/");
}

static void ns_key(struct key *k, const char *nsid, const char *suffix)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    key_fmt(k, "/ns/{%s}/%s", nsid, suffix);
}

void keys_ns_meta(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "meta");
}

void keys_ns_prefix(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "");
}

void keys_ns_pattern(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "*");
}

void keys_ns_channel(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "channel");
}
