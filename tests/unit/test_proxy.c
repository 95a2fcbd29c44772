/*
 * PROXY protocol parser (frontend/proxy.c): a table of v1 and v2 headers, valid and not, each fed
 * whole, split at every byte offset, and one byte at a time, always followed by bytes that are not
 * the header's (a TLS ClientHello, an IMAP line) which must be left unconsumed. Plus CIDR parsing
 * and matching.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#include "frontend/proxy.h"

struct pcase {
    const char *name;
    const uint8_t *data;
    size_t len;
    bool ok;
    bool local;
    int version;
    const char *src; /* "addr port" when !local */
    const char *dst;
};

#define S(lit) (const uint8_t *)(lit), sizeof(lit) - 1

static const uint8_t v2_tcp4[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A, /* signature */
    0x21, 0x11, 0x00, 0x0C,                                                 /* PROXY, TCP4, 12 */
    192, 0, 2, 7, 10, 0, 0, 1, 0xC3, 0x50, 0x00, 0x8F};                      /* 50000 -> 143 */

static const uint8_t v2_tcp6_tlv[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x21, 0x21, 0x00, 0x2B, /* PROXY, TCP6, 36 + 7 bytes of TLV */
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x05,
    0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
    0x04, 0xD2, 0x03, 0xE1,                 /* 1234 -> 993 */
    0x04, 0x00, 0x04, 'a', 'b', 'c', 'd'};  /* PP2_TYPE_NOOP, 4 bytes */

static const uint8_t v2_local[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x20, 0x00, 0x00, 0x00};

static const uint8_t v2_local_with_addr[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x20, 0x11, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

static const uint8_t v2_unspec[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x21, 0x00, 0x00, 0x03, 9, 9, 9};

static const uint8_t v2_short_tcp4[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x21, 0x11, 0x00, 0x08, 1, 2, 3, 4, 5, 6, 7, 8};

static const uint8_t v2_udp[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x21, 0x12, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

static const uint8_t v2_version1[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x11, 0x11, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

static const uint8_t v2_cmd2[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A,
    0x22, 0x11, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

static const uint8_t v2_badsig[] = {
    0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x55, 0x0A,
    0x21, 0x11, 0x00, 0x0C, 1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};

static const struct pcase cases[] = {
    {"v1 tcp4", S("PROXY TCP4 192.0.2.7 10.0.0.1 50000 143\r\n"), true, false, 1,
     "192.0.2.7 50000", "10.0.0.1 143"},
    {"v1 tcp6", S("PROXY TCP6 2001:db8::5 2001:db8::1 1234 993\r\n"), true, false, 1,
     "2001:db8::5 1234", "2001:db8::1 993"},
    {"v1 unknown", S("PROXY UNKNOWN\r\n"), true, true, 1, NULL, NULL},
    {"v1 unknown with junk", S("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), true, true, 1, NULL, NULL},
    {"v1 longest", S("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff "
                     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
     true, false, 1, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535",
     "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535"},
    {"v2 tcp4", v2_tcp4, sizeof(v2_tcp4), true, false, 2, "192.0.2.7 50000", "10.0.0.1 143"},
    {"v2 tcp6 tlv", v2_tcp6_tlv, sizeof(v2_tcp6_tlv), true, false, 2, "2001:db8::5 1234",
     "2001:db8::1 993"},
    {"v2 local", v2_local, sizeof(v2_local), true, true, 2, NULL, NULL},
    {"v2 local with addresses", v2_local_with_addr, sizeof(v2_local_with_addr), true, true, 2,
     NULL, NULL},
    {"v2 unspec", v2_unspec, sizeof(v2_unspec), true, true, 2, NULL, NULL},
    /* errors */
    {"plain imap", S("a1 LOGIN x y\r\n"), false, false, 0, NULL, NULL},
    {"tls hello", S("\x16\x03\x01\x02\x00"), false, false, 0, NULL, NULL},
    {"v1 lowercase", S("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 bad prefix", S("PROXZ TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 tcp5", S("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 family mismatch", S("PROXY TCP4 ::1 ::1 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 double space", S("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 port too big", S("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 port not a number", S("PROXY TCP4 1.2.3.4 5.6.7.8 1x 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 extra field", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), false, false, 0, NULL, NULL},
    {"v1 missing field", S("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), false, false, 0, NULL, NULL},
    {"v1 lf only", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), false, false, 0, NULL, NULL},
    {"v1 cr junk", S("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX\n"), false, false, 0, NULL, NULL},
    {"v1 nul", S("PROXY TCP4 1.2.3.4\0 5.6.7.8 1 2\r\n"), false, false, 0, NULL, NULL},
    {"v1 too long", S("PROXY UNKNOWN aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n"),
     false, false, 0, NULL, NULL},
    {"v2 short tcp4", v2_short_tcp4, sizeof(v2_short_tcp4), false, false, 0, NULL, NULL},
    {"v2 udp", v2_udp, sizeof(v2_udp), false, false, 0, NULL, NULL},
    {"v2 version 1", v2_version1, sizeof(v2_version1), false, false, 0, NULL, NULL},
    {"v2 command 2", v2_cmd2, sizeof(v2_cmd2), false, false, 0, NULL, NULL},
    {"v2 bad signature", v2_badsig, sizeof(v2_badsig), false, false, 0, NULL, NULL},
};

static const uint8_t tail[] = "\x16\x03\x01 rest of the stream\r\n";

static void format_addr(const struct sockaddr_storage *ss, char *out, size_t size)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)ss;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
    } else if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)ss;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, size, "%s %u", host, port);
}

/* Feeds buf in pieces cut at the given offsets (ascending, ending with len). */
static enum proxy_result feed_pieces(struct proxy_parser *p, const uint8_t *buf, size_t len,
                                     const size_t *cuts, size_t ncuts, size_t *consumed_r,
                                     struct proxy_info *info)
{
    size_t at = 0;
    *consumed_r = 0;
    for (size_t i = 0; i < ncuts && at < len; i++) {
        size_t end = cuts[i] < len ? cuts[i] : len;
        if (end <= at)
            continue;
        size_t used = 0;
        const char *err = NULL;
        enum proxy_result r = proxy_feed(p, buf + at, end - at, &used, info, &err);
        *consumed_r += used;
        if (r == PROXY_ERROR)
            assert_non_null(err);
        if (r != PROXY_NEED_MORE)
            return r;
        assert_int_equal(used, end - at);
        at = end;
    }
    return PROXY_NEED_MORE;
}

static void check_case(const struct pcase *c, const size_t *cuts, size_t ncuts)
{
    uint8_t buf[512];
    assert_true(c->len + sizeof(tail) <= sizeof(buf));
    memcpy(buf, c->data, c->len);
    memcpy(buf + c->len, tail, sizeof(tail) - 1);
    size_t total = c->len + sizeof(tail) - 1;
    struct proxy_parser p;
    struct proxy_info info;
    proxy_parser_init(&p);
    size_t consumed = 0;
    enum proxy_result r = feed_pieces(&p, buf, total, cuts, ncuts, &consumed, &info);
    if (!c->ok) {
        if (r != PROXY_ERROR)
            fail_msg("%s: expected an error, got %d", c->name, (int)r);
        assert_true(consumed <= c->len); /* never past the bad header */
        return;
    }
    if (r != PROXY_DONE)
        fail_msg("%s: expected done, got %d", c->name, (int)r);
    assert_int_equal(consumed, c->len); /* exactly the header, nothing of the tail */
    assert_int_equal(info.version, c->version);
    assert_int_equal(info.local, c->local);
    if (!c->local) {
        char got[80];
        format_addr(&info.src, got, sizeof(got));
        assert_string_equal(got, c->src);
        format_addr(&info.dst, got, sizeof(got));
        assert_string_equal(got, c->dst);
    }
}

static void test_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        size_t cut = 100000;
        check_case(&cases[i], &cut, 1);
    }
}

static void test_every_split(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        for (size_t k = 1; k < cases[i].len + 3; k++) {
            size_t cuts[2] = {k, 100000};
            check_case(&cases[i], cuts, 2);
        }
    }
}

static void test_byte_at_a_time(void **state)
{
    (void)state;
    size_t cuts[600];
    for (size_t k = 0; k < 600; k++)
        cuts[k] = k + 1;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        check_case(&cases[i], cuts, 600);
}

static void test_error_sticks(void **state)
{
    (void)state;
    struct proxy_parser p;
    struct proxy_info info;
    proxy_parser_init(&p);
    size_t used = 0;
    const char *err = NULL;
    assert_int_equal(proxy_feed(&p, (const uint8_t *)"X", 1, &used, &info, &err), PROXY_ERROR);
    err = NULL;
    assert_int_equal(proxy_feed(&p, (const uint8_t *)"PROXY", 5, &used, &info, &err), PROXY_ERROR);
    assert_non_null(err);
    assert_int_equal(used, 0);
}

static void test_v2_large_tlv(void **state)
{
    (void)state;
    /* A header with 60,000 bytes of TLV: skipped without being kept. */
    static uint8_t big[16 + 12 + 60000 + 4];
    memcpy(big, v2_tcp4, 16);
    size_t alen = 12 + 60000;
    big[14] = (uint8_t)(alen >> 8);
    big[15] = (uint8_t)(alen & 0xFF);
    memcpy(big + 16, v2_tcp4 + 16, 12);
    memset(big + 28, 0x04, 60000);
    memcpy(big + 28 + 60000, "a1 N", 4);
    struct proxy_parser p;
    struct proxy_info info;
    proxy_parser_init(&p);
    size_t used = 0;
    const char *err = NULL;
    assert_int_equal(proxy_feed(&p, big, 1000, &used, &info, &err), PROXY_NEED_MORE);
    size_t off = used;
    assert_int_equal(proxy_feed(&p, big + off, sizeof(big) - off, &used, &info, &err), PROXY_DONE);
    assert_int_equal(off + used, 16 + alen);
    char got[80];
    format_addr(&info.src, got, sizeof(got));
    assert_string_equal(got, "192.0.2.7 50000");
}

static void test_cidr(void **state)
{
    (void)state;
    struct proxy_cidr list[4];
    const char *err = NULL;
    assert_int_equal(proxy_cidr_parse("127.0.0.0/8", &list[0], &err), 0);
    assert_int_equal(proxy_cidr_parse("::1", &list[1], &err), 0);
    assert_int_equal(list[1].prefix, 128);
    assert_int_equal(proxy_cidr_parse("10.1.0.0/16", &list[2], &err), 0);
    assert_int_equal(proxy_cidr_parse("2001:db8::/33", &list[3], &err), 0);
    const char *bad[] = {"", "/8", "10.0.0.1/8", "10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/a",
                         "host.example/8", "10.0.0.0/0008"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct proxy_cidr c;
        err = NULL;
        if (proxy_cidr_parse(bad[i], &c, &err) == 0)
            fail_msg("accepted %s", bad[i]);
        assert_non_null(err);
    }
    struct {
        const char *addr;
        bool match;
    } probes[] = {
        {"127.0.0.1", true},   {"127.255.1.1", true}, {"128.0.0.1", false}, {"10.1.200.3", true},
        {"10.2.0.1", false},   {"::1", true},         {"::2", false},       {"::ffff:127.0.0.9", true},
        {"::ffff:10.1.0.1", true}, {"2001:db8:7fff::1", true}, {"2001:db8:8000::1", false},
    };
    for (size_t i = 0; i < sizeof(probes) / sizeof(probes[0]); i++) {
        struct sockaddr_storage ss;
        memset(&ss, 0, sizeof(ss));
        struct sockaddr_in *in = (struct sockaddr_in *)(void *)&ss;
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)&ss;
        if (inet_pton(AF_INET, probes[i].addr, &in->sin_addr) == 1)
            in->sin_family = AF_INET;
        else if (inet_pton(AF_INET6, probes[i].addr, &in6->sin6_addr) == 1)
            in6->sin6_family = AF_INET6;
        else
            fail_msg("bad probe %s", probes[i].addr);
        if (proxy_cidr_match(list, 4, (const struct sockaddr *)&ss) != probes[i].match)
            fail_msg("%s: expected match=%d", probes[i].addr, probes[i].match);
    }
    struct proxy_cidr any;
    assert_int_equal(proxy_cidr_parse("0.0.0.0/0", &any, &err), 0);
    struct sockaddr_in x = {.sin_family = AF_INET};
    inet_pton(AF_INET, "203.0.113.9", &x.sin_addr);
    assert_true(proxy_cidr_match(&any, 1, (const struct sockaddr *)&x));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole),        cmocka_unit_test(test_every_split),
        cmocka_unit_test(test_byte_at_a_time), cmocka_unit_test(test_error_sticks),
        cmocka_unit_test(test_v2_large_tlv), cmocka_unit_test(test_cidr),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
