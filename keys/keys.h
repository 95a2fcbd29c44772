/*
 * keys: the only code that builds Redis key and channel names (DESIGN.md rule 10, STYLE.md).
 * One function per key family; keys/README.md documents each family, its Redis type and its writer;
 * tests/unit/test_keys.c pins every format.
 *
 * Keys are returned in a caller-owned fixed buffer (no allocation). Every key of one user's mail
 * carries the user's namespace id in braces, "/ns/{<nsid>}/...", the Redis Cluster hash tag that puts
 * them all in one slot (DESIGN.md rule 2).
 */
#ifndef CIMAP_KEYS_H
#define CIMAP_KEYS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KEYS_MAX_LEN 320     /* longest key any family can produce, incl. NUL */
#define KEYS_NSID_LEN 36     /* textual UUID, lowercase: 8-4-4-4-12 */
#define KEYS_LOGIN_MAX 255   /* longest login name accepted anywhere */
#define KEYS_SCHEMA_VERSION 1 /* keyspace version this build reads and writes */

struct key {
    size_t len;              /* strlen(s) */
    char s[KEYS_MAX_LEN];    /* NUL-terminated */
};

/* True when s (len bytes) is a lowercase textual UUID as made by keys_nsid_new(). */
bool keys_nsid_valid(const char *s, size_t len);

/* Writes a fresh random namespace id (libuuid, lowercase) and its NUL into out. */
void keys_nsid_new(char out[KEYS_NSID_LEN + 1]);

/*
 * True when login (len bytes) is an acceptable login name: 1..KEYS_LOGIN_MAX bytes of
 * [A-Za-z0-9._@+-], not starting with '.' or '-'. Everything that takes a login validates with this.
 */
bool keys_login_valid(const char *login, size_t len);

/* "/schema": string, the keyspace version (decimal). */
void keys_schema(struct key *k);

/* "/users/<login>": hash, the login record. Returns -1 when the login is not keys_login_valid(). */
int keys_user(struct key *k, const char *login, size_t len);

/* SCAN pattern over every login record: "/users/" followed by a star. */
void keys_users_pattern(struct key *k);

/* Length of the "/users/" prefix, to strip it from a SCAN result. */
size_t keys_users_prefix_len(void);

/* The nsid functions below require keys_nsid_valid(nsid) (asserted). */

/* "/ns/{<nsid>}/meta": hash, the namespace record (login, created, counters). */
void keys_ns_meta(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/": the prefix every key of one namespace starts with (ns_sweep.lua checks it). */
void keys_ns_prefix(struct key *k, const char *nsid);

/* SCAN pattern over every key of one namespace: "/ns/{<nsid>}/" followed by a star. */
void keys_ns_pattern(struct key *k, const char *nsid);

/* "/frontends/keepalive": pub/sub channel every front end's subscriber re-subscribes to as its
 * keepalive (PUBSUB NUMSUB on it counts the live front ends). */
void keys_frontends_keepalive(struct key *k);

/* "/ns/{<nsid>}/channel": pub/sub channel that wakes the user's sessions. */
void keys_ns_channel(struct key *k, const char *nsid);

/* --- mailboxes and messages (keys/README.md "Mailboxes") --- */

#define KEYS_MBXID_LEN 33   /* "F" + 32 lowercase hex digits */
#define KEYS_SHA256_LEN 64  /* content id: SHA-256 of the raw message, lowercase hex */
#define KEYS_STAGING_LEN 32 /* staging id: 32 lowercase hex digits */

/* True when s is a mailbox id as made by keys_mbxid_new(). */
bool keys_mbxid_valid(const char *s, size_t len);

/* Writes a fresh random mailbox id and its NUL into out. */
void keys_mbxid_new(char out[KEYS_MBXID_LEN + 1]);

/* True when s is KEYS_SHA256_LEN lowercase hex digits (also used for staging ids of 32). */
bool keys_hex_valid(const char *s, size_t len, size_t want);

/* Writes a fresh random staging id (32 hex digits) and its NUL into out. */
void keys_staging_id_new(char out[KEYS_STAGING_LEN + 1]);

/* "/ns/{<nsid>}/mailboxes": hash, mailbox name (modified UTF-7, INBOX upper case) -> mailbox id. */
void keys_ns_mailboxes(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/subscriptions": set of subscribed mailbox names. */
void keys_ns_subscriptions(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/threads": hash, Message-ID -> THREADID. */
void keys_ns_threads(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/gc": sorted set, content id -> unix time its last reference went. */
void keys_ns_gc(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/trash": set, ids of deleted mailboxes whose messages are still being released. */
void keys_ns_trash(struct key *k, const char *nsid);

/* "/ns/{<nsid>}/staging/<id>": string with a TTL, an APPEND literal being uploaded. */
void keys_staging(struct key *k, const char *nsid, const char *staging_id);

/* "/ns/{<nsid>}/content/<sha256>": hash, the stored parse of one message content. */
void keys_content(struct key *k, const char *nsid, const char *sha256);

/* "/ns/{<nsid>}/content/<sha256>/raw": string, the message bytes (GETRANGE for partial reads). */
void keys_content_raw(struct key *k, const char *nsid, const char *sha256);

/* The keys of one mailbox, "/ns/{<nsid>}/mbx/<mbxid>" followed by the part's suffix. */
enum keys_mbx_part {
    KEYS_MBX,         /* ""          hash: name, uidvalidity, uidnext, highestmodseq, counters */
    KEYS_MBX_UIDS,    /* "/uids"     sorted set: uid -> uid (ZRANK = sequence number - 1) */
    KEYS_MBX_RUNS,    /* "/runs"     sorted set: "first:last" -> first, runs of consecutive uids */
    KEYS_MBX_MSG,     /* "/msg"      hash: uid -> "<sha256> <internaldate> <size> <emailid> <threadid>" */
    KEYS_MBX_FLAGS,   /* "/flags"    hash: uid -> flags, space separated (absent: none) */
    KEYS_MBX_MODSEQ,  /* "/modseq"   sorted set: uid -> modseq of its last change */
    KEYS_MBX_UNSEEN,  /* "/unseen"   sorted set: uid -> uid, messages without \Seen */
    KEYS_MBX_DELETED, /* "/deleted"  sorted set: uid -> uid, messages with \Deleted */
    KEYS_MBX_LOG,     /* "/log"      stream: the change log, entry id "<modseq>-1" */
    KEYS_MBX_PART_COUNT
};

/* Builds the key of one part of a mailbox. mbxid must be keys_mbxid_valid (asserted). */
void keys_mbx(struct key *k, const char *nsid, const char *mbxid, enum keys_mbx_part part);

/*
 * Column caches (frontend/colcache.h): "/ns/{<nsid>}/mbx/<mbxid>/cache/<kind>/<chunk>", string, the
 * kind's column ('f' flags, 'm' record + parse) of the messages with UIDs in
 * [chunk * KEYS_CACHE_CHUNK, (chunk + 1) * KEYS_CACHE_CHUNK). Written by cache_put.lua, deleted by
 * store.lua ('f'), expunge.lua and mbx_purge.lua (both), which get the keys of the chunks of their
 * UIDs in KEYS, in the order keys_cache_chunks gives.
 */
#define KEYS_CACHE_CHUNK 1024u
void keys_mbx_cache(struct key *k, const char *nsid, const char *mbxid, char kind, uint32_t chunk);

/*
 * The chunks of uids (each uid / KEYS_CACHE_CHUNK), a chunk repeated by consecutive uids written
 * once (ascending uids give distinct ascending chunks); out holds at least n. Returns how many.
 */
size_t keys_cache_chunks(const uint32_t *uids, size_t n, uint32_t *out);

/*
 * "/ns/{<nsid>}/copies": sorted set, id of each COPY/MOVE being staged -> unix time of its last
 * stage call (lua/copy.lua), so copies abandoned by a killed front end can be found and released.
 */
void keys_ns_copies(struct key *k, const char *nsid);

/*
 * "/ns/{<nsid>}/copy/<id>": list, the records a COPY/MOVE larger than one batch has staged
 * (lua/copy.lua); id as made by keys_staging_id_new() (asserted).
 */
void keys_copy(struct key *k, const char *nsid, const char *copy_id);

/*
 * "/ns/{<nsid>}/delivery/<id>": string with a TTL, "<uidvalidity> <first_uid> <last_uid> <modseq>"
 * of a delivery already stored (append.lua's optional delivery key: a retried delivery is answered
 * from it instead of stored twice). id: KEYS_SHA256_LEN lowercase hex digits (asserted), the
 * SHA-256 of the MTA's queue id or of the message with its envelope (cimap-admin append).
 */
void keys_delivery(struct key *k, const char *nsid, const char *id);

/* --- the fleet of front ends (keys/README.md "Front ends and limits"; frontend/fleet.h) --- */

#define KEYS_FRONTEND_ID_MAX 64

/* True when id is a front-end id: 1..KEYS_FRONTEND_ID_MAX bytes of [A-Za-z0-9._-]. */
bool keys_frontend_id_valid(const char *id, size_t len);

/* "/frontends": sorted set, front-end id -> lease expiry (unix milliseconds). */
void keys_frontends(struct key *k);

/* "/frontends/<id>": hash with a TTL, one live front end's details. id must be valid (asserted). */
void keys_frontend(struct key *k, const char *id);

/* "/ns/{<nsid>}/conns": hash, front-end id -> that front end's connections of the user. */
void keys_ns_conns(struct key *k, const char *nsid);

/* "/throttle/user/<login>": hash with a TTL, the user's failed-login token bucket. -1 when the
 * login is not keys_login_valid(). */
int keys_throttle_user(struct key *k, const char *login, size_t len);

/* "/throttle/addr/<address>": hash with a TTL, one client address's failed-login token bucket.
 * address: an IPv4 address or an IPv6 /64 ("2001:db8:1:2::/64"), at most 64 bytes of
 * [0-9a-fA-F.:/]. -1 otherwise. */
int keys_throttle_addr(struct key *k, const char *address);

#endif
