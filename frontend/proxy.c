/*
 * PROXY protocol v1/v2 parser and CIDR lists (proxy.h). The parser looks at one byte at a time
 * until it knows the header's length, so a split anywhere behaves exactly like the whole header
 * in one piece (tests/unit/test_proxy.c feeds every split). Strict where the specification is:
 * v1 needs the exact "PROXY " prefix, single spaces, decimal ports up to 65535 and CRLF within
 * 107 bytes; v2 needs the 12-byte signature, version 2, command LOCAL or PROXY, and an address
 * block as long as its family requires. Not here: reading sockets, trust decisions (conn.c).
 */
#include "frontend/proxy.h"

#include <arpa/inet.h>
#include <assert.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v1_prefix[6] = {'P', 'R', 'O', 'X', 'Y', ' '};
static const uint8_t v2_sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                   0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

void proxy_parser_init(struct proxy_parser *p)
{
    memset(p, 0, sizeof(*p));
}

static enum proxy_result fail(struct proxy_parser *p, const char *why, const char **error_r)
{
    p->failed = true;
    p->error = why;
    *error_r = why;
    return PROXY_ERROR;
}

/* Parses a decimal port: 1-5 digits, at most 65535. */
static int parse_port(const char *s, uint16_t *out)
{
    size_t n = strlen(s);
    if (n < 1 || n > 5)
        return -1;
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    if (v > 65535)
        return -1;
    *out = (uint16_t)v;
    return 0;
}

static void set_in4(struct sockaddr_storage *ss, socklen_t *len, const void *addr, uint16_t port)
{
    struct sockaddr_in *in = (struct sockaddr_in *)(void *)ss;
    memset(ss, 0, sizeof(*ss));
    in->sin_family = AF_INET;
    memcpy(&in->sin_addr, addr, 4);
    in->sin_port = htons(port);
    *len = sizeof(*in);
}

static void set_in6(struct sockaddr_storage *ss, socklen_t *len, const void *addr, uint16_t port)
{
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
    memset(ss, 0, sizeof(*ss));
    in6->sin6_family = AF_INET6;
    memcpy(&in6->sin6_addr, addr, 16);
    in6->sin6_port = htons(port);
    *len = sizeof(*in6);
}

/* The whole v1 line is in p->buf (CRLF included). */
static enum proxy_result parse_v1(struct proxy_parser *p, struct proxy_info *info,
                                  const char **error_r)
{
    char line[PROXY_V1_MAX + 1];
    size_t n = p->len - 2; /* without CRLF */
    memcpy(line, p->buf, n);
    line[n] = '\0';
    if (memchr(line, '\0', n) != NULL)
        return fail(p, "v1: NUL byte in header", error_r);
    char *fields[7];
    size_t nf = 0;
    char *s = line;
    while (nf < 7) {
        fields[nf++] = s;
        char *sp = strchr(s, ' ');
        if (sp == NULL)
            break;
        *sp = '\0';
        s = sp + 1;
    }
    memset(info, 0, sizeof(*info));
    info->version = 1;
    if (nf >= 2 && strcmp(fields[1], "UNKNOWN") == 0) {
        info->local = true; /* the rest of the line is to be ignored (spec §2.1) */
        return PROXY_DONE;
    }
    if (nf != 6)
        return fail(p, "v1: expected PROXY TCP4|TCP6 SRC DST SPORT DPORT", error_r);
    for (size_t i = 0; i < nf; i++) {
        if (fields[i][0] == '\0')
            return fail(p, "v1: empty field (single spaces only)", error_r);
    }
    int family;
    if (strcmp(fields[1], "TCP4") == 0)
        family = AF_INET;
    else if (strcmp(fields[1], "TCP6") == 0)
        family = AF_INET6;
    else
        return fail(p, "v1: protocol is not TCP4, TCP6 or UNKNOWN", error_r);
    uint8_t src[16], dst[16];
    uint16_t sport = 0, dport = 0;
    if (inet_pton(family, fields[2], src) != 1 || inet_pton(family, fields[3], dst) != 1)
        return fail(p, "v1: bad address for the protocol", error_r);
    if (parse_port(fields[4], &sport) != 0 || parse_port(fields[5], &dport) != 0)
        return fail(p, "v1: bad port", error_r);
    if (family == AF_INET) {
        set_in4(&info->src, &info->src_len, src, sport);
        set_in4(&info->dst, &info->dst_len, dst, dport);
    } else {
        set_in6(&info->src, &info->src_len, src, sport);
        set_in6(&info->dst, &info->dst_len, dst, dport);
    }
    return PROXY_DONE;
}

/* The v2 header is complete: p->buf holds its first min(total, PROXY_V2_KEEP) bytes. */
static enum proxy_result parse_v2(struct proxy_parser *p, struct proxy_info *info,
                                  const char **error_r)
{
    const uint8_t *b = p->buf;
    size_t alen = p->v2_total - 16; /* address block + TLVs */
    memset(info, 0, sizeof(*info));
    info->version = 2;
    if ((b[12] & 0x0F) == 0x0) {
        info->local = true; /* LOCAL: health check or the proxy's own connection */
        return PROXY_DONE;
    }
    uint16_t sport, dport;
    switch (b[13]) {
    case 0x00: /* UNSPEC: use the real connection's addresses (spec §2.2) */
        info->local = true;
        return PROXY_DONE;
    case 0x11: /* TCP over IPv4 */
        if (alen < 12)
            return fail(p, "v2: address block too short for TCP4", error_r);
        sport = (uint16_t)(b[24] << 8 | b[25]);
        dport = (uint16_t)(b[26] << 8 | b[27]);
        set_in4(&info->src, &info->src_len, b + 16, sport);
        set_in4(&info->dst, &info->dst_len, b + 20, dport);
        return PROXY_DONE;
    case 0x21: /* TCP over IPv6 */
        if (alen < 36)
            return fail(p, "v2: address block too short for TCP6", error_r);
        sport = (uint16_t)(b[48] << 8 | b[49]);
        dport = (uint16_t)(b[50] << 8 | b[51]);
        set_in6(&info->src, &info->src_len, b + 16, sport);
        set_in6(&info->dst, &info->dst_len, b + 32, dport);
        return PROXY_DONE;
    case 0x31: /* a unix stream socket: no network address to log or trust */
        if (alen < 216)
            return fail(p, "v2: address block too short for UNIX", error_r);
        info->local = true;
        return PROXY_DONE;
    default:
        return fail(p, "v2: not a stream protocol over INET, INET6, UNIX or UNSPEC", error_r);
    }
}

/* One byte of a v1 header; *done when the line is complete. */
static enum proxy_result v1_byte(struct proxy_parser *p, uint8_t ch, bool *done,
                                 struct proxy_info *info, const char **error_r)
{
    if (p->len < sizeof(v1_prefix) && ch != v1_prefix[p->len])
        return fail(p, "v1: header does not start with \"PROXY \"", error_r);
    if (p->len > 0 && p->buf[p->len - 1] == '\r' && ch != '\n')
        return fail(p, "v1: CR not followed by LF", error_r);
    if (ch == '\n' && (p->len == 0 || p->buf[p->len - 1] != '\r'))
        return fail(p, "v1: LF without CR", error_r);
    if (p->len >= PROXY_V1_MAX)
        return fail(p, "v1: header longer than 107 bytes", error_r);
    p->buf[p->len++] = ch;
    if (ch != '\n')
        return PROXY_NEED_MORE;
    *done = true;
    return parse_v1(p, info, error_r);
}

/* One byte of a v2 header; *done when its last byte (TLVs included) is in. */
static enum proxy_result v2_byte(struct proxy_parser *p, uint8_t ch, bool *done,
                                 struct proxy_info *info, const char **error_r)
{
    size_t at = p->v2_seen++;
    if (at < sizeof(v2_sig) && ch != v2_sig[at])
        return fail(p, "v2: bad signature", error_r);
    if (at == 12 && ((ch & 0xF0) != 0x20 || (ch & 0x0F) > 1))
        return fail(p, "v2: version is not 2 or command not LOCAL/PROXY", error_r);
    if (at < sizeof(p->buf) && at < PROXY_V2_KEEP)
        p->buf[p->len++] = ch;
    if (at == 15)
        p->v2_total = 16 + ((size_t)p->buf[14] << 8 | p->buf[15]);
    if (at < 15 || p->v2_seen < p->v2_total)
        return PROXY_NEED_MORE;
    *done = true;
    return parse_v2(p, info, error_r);
}

enum proxy_result proxy_feed(struct proxy_parser *p, const uint8_t *data, size_t len,
                             size_t *used_r, struct proxy_info *info, const char **error_r)
{
    *used_r = 0;
    if (p->failed) {
        *error_r = p->error;
        return PROXY_ERROR;
    }
    assert(p->version >= 0);
    for (size_t i = 0; i < len; i++) {
        uint8_t ch = data[i];
        if (p->version == 0) {
            if (ch == 'P')
                p->version = 1;
            else if (ch == 0x0D)
                p->version = 2;
            else
                return fail(p, "not a PROXY protocol header", error_r);
        }
        bool done = false;
        enum proxy_result r = p->version == 1 ? v1_byte(p, ch, &done, info, error_r)
                                              : v2_byte(p, ch, &done, info, error_r);
        *used_r = i + 1;
        if (r == PROXY_ERROR)
            return r;
        if (done) {
            p->version = -1; /* finished: feeding again is a bug */
            return PROXY_DONE;
        }
    }
    return PROXY_NEED_MORE;
}

/* ------------------------------------------------------------------ CIDR */

int proxy_cidr_parse(const char *text, struct proxy_cidr *out, const char **error_r)
{
    char host[64];
    const char *slash = strchr(text, '/');
    size_t hlen = slash != NULL ? (size_t)(slash - text) : strlen(text);
    if (hlen == 0 || hlen >= sizeof(host)) {
        *error_r = "expected ADDR/PREFIX";
        return -1;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(out, 0, sizeof(*out));
    unsigned max;
    if (inet_pton(AF_INET, host, out->addr) == 1) {
        out->family = AF_INET;
        max = 32;
    } else if (inet_pton(AF_INET6, host, out->addr) == 1) {
        out->family = AF_INET6;
        max = 128;
    } else {
        *error_r = "not a numeric IPv4 or IPv6 address";
        return -1;
    }
    out->prefix = max;
    if (slash != NULL) {
        const char *d = slash + 1;
        size_t n = strlen(d);
        unsigned v = 0;
        if (n < 1 || n > 3) {
            *error_r = "bad prefix length";
            return -1;
        }
        for (size_t i = 0; i < n; i++) {
            if (d[i] < '0' || d[i] > '9') {
                *error_r = "bad prefix length";
                return -1;
            }
            v = v * 10 + (unsigned)(d[i] - '0');
        }
        if (v > max) {
            *error_r = "prefix length too large for the address family";
            return -1;
        }
        out->prefix = v;
    }
    for (unsigned bit = out->prefix; bit < max; bit++) {
        if (out->addr[bit / 8] & (0x80u >> (bit % 8))) {
            *error_r = "address has bits set beyond the prefix";
            return -1;
        }
    }
    return 0;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned full = prefix / 8;
    if (memcmp(a, b, full) != 0)
        return false;
    unsigned rest = prefix % 8;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFFu << (8 - rest));
    return (a[full] & mask) == (b[full] & mask);
}

bool proxy_cidr_match(const struct proxy_cidr *list, size_t n, const struct sockaddr *sa)
{
    uint8_t v4[4];
    const uint8_t *v6 = NULL;
    bool have_v4 = false;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        memcpy(v4, &in->sin_addr, 4);
        have_v4 = true;
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        v6 = in6->sin6_addr.s6_addr;
        if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
            memcpy(v4, v6 + 12, 4);
            have_v4 = true;
        }
    } else {
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const struct proxy_cidr *c = &list[i];
        if (c->family == AF_INET && have_v4 && prefix_equal(c->addr, v4, c->prefix))
            return true;
        if (c->family == AF_INET6 && v6 != NULL && prefix_equal(c->addr, v6, c->prefix))
            return true;
    }
    return false;
}
