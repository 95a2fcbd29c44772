/*
 * Key-name builders. Formats are fixed by keys/README.md; changing one is a schema change
 * (bump KEYS_SCHEMA_VERSION and write a migration). Names use snprintf into a bounded buffer and
 * assert on truncation: every input is validated before it gets here.
 */
#include "keys/keys.h"

#include <assert.h>
#include <inttypes.h>
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

void keys_frontends_keepalive(struct key *k)
{
    key_fmt(k, "/frontends/keepalive");
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

bool keys_hex_valid(const char *s, size_t len, size_t want)
{
    if (len != want)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

bool keys_mbxid_valid(const char *s, size_t len)
{
    return len == KEYS_MBXID_LEN && s[0] == 'F' && keys_hex_valid(s + 1, len - 1, len - 1);
}

static void random_hex(char *out, size_t digits)
{
    static const char hex[] = "0123456789abcdef";
    size_t done = 0;
    while (done < digits) {
        uuid_t u;
        uuid_generate_random(u); /* 122 random bits; use 15 bytes of it */
        for (size_t i = 1; i < 16 && done < digits; i++) {
            if (i == 6 || i == 8)
                continue; /* the version and variant bytes are not random */
            out[done++] = hex[u[i] >> 4];
            if (done < digits)
                out[done++] = hex[u[i] & 15];
        }
    }
    out[digits] = '\0';
}

void keys_mbxid_new(char out[KEYS_MBXID_LEN + 1])
{
    out[0] = 'F';
    random_hex(out + 1, KEYS_MBXID_LEN - 1);
}

void keys_staging_id_new(char out[KEYS_STAGING_LEN + 1])
{
    random_hex(out, KEYS_STAGING_LEN);
}

void keys_ns_mailboxes(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "mailboxes");
}

void keys_ns_subscriptions(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "subscriptions");
}

void keys_ns_threads(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "threads");
}

void keys_ns_gc(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "gc");
}

void keys_ns_trash(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "trash");
}

void keys_staging(struct key *k, const char *nsid, const char *staging_id)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_hex_valid(staging_id, strlen(staging_id), KEYS_STAGING_LEN));
    key_fmt(k, "/ns/{%s}/staging/%s", nsid, staging_id);
}

void keys_content(struct key *k, const char *nsid, const char *sha256)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_hex_valid(sha256, strlen(sha256), KEYS_SHA256_LEN));
    key_fmt(k, "/ns/{%s}/content/%s", nsid, sha256);
}

void keys_content_raw(struct key *k, const char *nsid, const char *sha256)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_hex_valid(sha256, strlen(sha256), KEYS_SHA256_LEN));
    key_fmt(k, "/ns/{%s}/content/%s/raw", nsid, sha256);
}

void keys_mbx(struct key *k, const char *nsid, const char *mbxid, enum keys_mbx_part part)
{
    static const char *const suffix[KEYS_MBX_PART_COUNT] = {
        [KEYS_MBX] = "",           [KEYS_MBX_UIDS] = "/uids",       [KEYS_MBX_RUNS] = "/runs",
        [KEYS_MBX_MSG] = "/msg",   [KEYS_MBX_FLAGS] = "/flags",     [KEYS_MBX_MODSEQ] = "/modseq",
        [KEYS_MBX_UNSEEN] = "/unseen", [KEYS_MBX_DELETED] = "/deleted", [KEYS_MBX_LOG] = "/log",
    };
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_mbxid_valid(mbxid, strlen(mbxid)));
    assert(part < KEYS_MBX_PART_COUNT);
    key_fmt(k, "/ns/{%s}/mbx/%s%s", nsid, mbxid, suffix[part]);
}

void keys_mbx_cache(struct key *k, const char *nsid, const char *mbxid, char kind, uint32_t chunk)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_mbxid_valid(mbxid, strlen(mbxid)));
    assert(kind == 'f' || kind == 'm');
    key_fmt(k, "/ns/{%s}/mbx/%s/cache/%c/%" PRIu32, nsid, mbxid, kind, chunk);
}

size_t keys_cache_chunks(const uint32_t *uids, size_t n, uint32_t *out)
{
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t c = uids[i] / KEYS_CACHE_CHUNK;
        if (m == 0 || out[m - 1] != c)
            out[m++] = c;
    }
    return m;
}

void keys_ns_copies(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "copies");
}

void keys_copy(struct key *k, const char *nsid, const char *copy_id)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_hex_valid(copy_id, strlen(copy_id), KEYS_STAGING_LEN));
    key_fmt(k, "/ns/{%s}/copy/%s", nsid, copy_id);
}

void keys_delivery(struct key *k, const char *nsid, const char *id)
{
    assert(keys_nsid_valid(nsid, strlen(nsid)));
    assert(keys_hex_valid(id, strlen(id), KEYS_SHA256_LEN));
    key_fmt(k, "/ns/{%s}/delivery/%s", nsid, id);
}

bool keys_frontend_id_valid(const char *id, size_t len)
{
    if (len == 0 || len > KEYS_FRONTEND_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = id[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  c == '.' || c == '_' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

void keys_frontends(struct key *k)
{
    key_fmt(k, "/frontends");
}

void keys_frontend(struct key *k, const char *id)
{
    assert(keys_frontend_id_valid(id, strlen(id)));
    key_fmt(k, "/frontends/%s", id);
}

void keys_ns_conns(struct key *k, const char *nsid)
{
    ns_key(k, nsid, "conns");
}

int keys_throttle_user(struct key *k, const char *login, size_t len)
{
    if (!keys_login_valid(login, len))
        return -1;
    key_fmt(k, "/throttle/user/%.*s", (int)len, login);
    return 0;
}

int keys_throttle_addr(struct key *k, const char *address)
{
    size_t len = strlen(address);
    if (len == 0 || len > 64)
        return -1;
    for (size_t i = 0; i < len; i++) {
        char c = address[i];
        bool ok = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
                  c == '.' || c == ':' || c == '/';
        if (!ok)
            return -1;
    }
    key_fmt(k, "/throttle/addr/%s", address);
    return 0;
}
