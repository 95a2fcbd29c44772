/*
 * proxy: the PROXY protocol header a load balancer (HAProxy, a cloud LB) puts in front of a
 * client's bytes to tell us the client's address — version 1 (a text line) and version 2
 * (binary), as specified in haproxy's doc/proxy-protocol.txt. Pure: no I/O, no allocation.
 *
 * The parser is resumable: feed it whatever arrived, as often as needed; it consumes exactly the
 * header's bytes and nothing after them (the TLS ClientHello or IMAP bytes that follow stay with
 * the caller). It decides as early as possible: the first byte that cannot begin or continue a
 * header is an error, so a client that is not a proxy fails at once. TLVs of v2 are skipped
 * unread; the header's length is bounded (v1: 107 bytes; v2: 16 + 65,535).
 *
 * Also here: CIDR lists (--proxy-trusted), since only trusted peers may send a header.
 */
#ifndef CIMAP_PROXY_H
#define CIMAP_PROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define PROXY_V1_MAX 107 /* "PROXY TCP6 <39> <39> <5> <5>\r\n" */
#define PROXY_V2_KEEP 232 /* 16-byte header + the largest address block (AF_UNIX, 216) */

enum proxy_result {
    PROXY_NEED_MORE, /* everything given was consumed; the header is not complete yet */
    PROXY_DONE,      /* the header is complete; *used_r bytes of this call belonged to it */
    PROXY_ERROR,     /* not a valid header; the connection must be closed */
};

/* What the header said. */
struct proxy_info {
    int version;                  /* 1 or 2 */
    bool local;                   /* no addresses to use (v2 LOCAL, v1 UNKNOWN, v2 UNSPEC or
                                   * AF_UNIX): keep the socket's own addresses */
    struct sockaddr_storage src;  /* the client (when !local) */
    struct sockaddr_storage dst;  /* the address the client connected to (when !local) */
    socklen_t src_len, dst_len;
};

/* Parser state. Owned by the caller (no heap); set up with proxy_parser_init. */
struct proxy_parser {
    uint8_t buf[PROXY_V2_KEEP > PROXY_V1_MAX ? PROXY_V2_KEEP : PROXY_V1_MAX];
    size_t len;       /* bytes kept in buf */
    int version;      /* 0 until the first byte decided */
    size_t v2_total;  /* v2: 16 + the length field, once known */
    size_t v2_seen;   /* v2: bytes consumed so far (kept or skipped) */
    bool failed;
    const char *error;
};

/* Starts (or restarts) a parser. */
void proxy_parser_init(struct proxy_parser *p);

/*
 * Feeds len bytes. Returns PROXY_NEED_MORE (all consumed: *used_r == len), PROXY_DONE (*used_r
 * bytes consumed, the rest is not ours; *info filled) or PROXY_ERROR (*error_r: static text;
 * feeding again keeps answering the error). Feeding after PROXY_DONE is a caller bug (asserted).
 */
enum proxy_result proxy_feed(struct proxy_parser *p, const uint8_t *data, size_t len,
                             size_t *used_r, struct proxy_info *info, const char **error_r);

/* One CIDR block: an IPv4 or IPv6 network. */
struct proxy_cidr {
    int family;      /* AF_INET or AF_INET6 */
    uint8_t addr[16];/* network address, host bits zero (IPv4: first 4 bytes) */
    unsigned prefix; /* 0..32 or 0..128 */
};

/*
 * Parses "ADDR/PREFIX" or a bare address (a host: /32 or /128), IPv4 or IPv6. Host bits set
 * in ADDR are an error (a typo would otherwise trust a different network). Returns 0, or -1
 * with *error_r (static text).
 */
int proxy_cidr_parse(const char *text, struct proxy_cidr *out, const char **error_r);

/*
 * True when sa is inside one of the n blocks. An IPv4-mapped IPv6 address (::ffff:a.b.c.d)
 * matches IPv4 blocks.
 */
bool proxy_cidr_match(const struct proxy_cidr *list, size_t n, const struct sockaddr *sa);

#endif
