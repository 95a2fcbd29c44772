/*
 * store: the front end's only door to Redis (DESIGN.md "Request flow"). A small fixed pool of
 * pipelined hiredis async connections on the libevent loop; never one Redis connection per client.
 *
 * - Every request gets its own timer (hiredis 0.14 has no async timeouts); a timed-out request is
 *   answered STORE_UNAVAILABLE and its connection is dropped and re-established.
 * - Host names are resolved with evdns (hiredis' own connect blocks in getaddrinfo).
 * - Reconnect with exponential backoff; on every (re)connect all lua/ scripts are loaded (SCRIPT
 *   LOAD, checked against the embedded SHA1) and maxmemory-policy is checked (loud warning unless
 *   noeviction) before the connection takes traffic.
 * - Redis errors -OOM, -LOADING, -BUSY, -READONLY, -MASTERDOWN, -TRYAGAIN, -CLUSTERDOWN, timeouts
 *   and disconnects become STORE_UNAVAILABLE with a short reason (the Redis error text, "timeout",
 *   "connection lost", "redis not connected", "store closed"); other error replies become
 *   STORE_ERROR with the text.
 * - EVALSHA answered -NOSCRIPT (someone ran SCRIPT FLUSH) is retried once as EVAL on the same
 *   connection. Evals keep their order (after a flush every EVALSHA already in the pipeline fails
 *   too and is retried in turn), but a plain command pipelined behind the failed EVALSHA runs
 *   before its retry: a read issued right behind a write may, in that rare case, see the state
 *   before the write.
 *
 * Callbacks receive a caller token (e.g. connection id + command sequence), never a pointer to a
 * client: the caller looks its object up and drops the result if it is gone (STYLE.md rule 3).
 * A callback is called exactly once per request and never from inside the call that made it.
 * Single-threaded: use from the event loop thread only.
 */
#ifndef CIMAP_STORE_H
#define CIMAP_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "lua/scripts.h"

struct event_base;
struct evdns_base;

struct store_config {
    const char *url;            /* redis://HOST:PORT[/DB]; copied */
    unsigned pool_size;         /* command connections, >= 1 */
    uint32_t timeout_ms;        /* per request */
    uint32_t connect_timeout_ms;
    uint32_t backoff_min_ms;    /* first reconnect delay, doubled up to backoff_max_ms */
    uint32_t backoff_max_ms;
};

/* Sensible defaults: pool 4, timeout 5 s, connect 2 s, backoff 100 ms .. 5 s. */
void store_config_defaults(struct store_config *cfg);

enum store_status {
    STORE_OK,          /* reply is the Redis answer (never an error reply) */
    STORE_UNAVAILABLE, /* Redis down, timed out, loading, OOM, busy, read-only: retry later */
    STORE_ERROR,       /* Redis answered an error reply (e.g. a script's validation error) */
};

struct store_result {
    enum store_status status;
    const redisReply *reply; /* STORE_OK only; borrowed, valid during the callback */
    const char *error;       /* otherwise: reason / Redis error text without '-'; borrowed */
};

typedef void store_cb(const struct store_result *res, uint64_t token);

/*
 * Parses redis://HOST:PORT[/DB] (HOST may be a name, IPv4 or [IPv6]; PORT defaults to 6379, DB to
 * 0). On success *host_r is malloc'd (caller frees). Returns 0, or -1 with *error_r (static text).
 */
int store_url_parse(const char *url, char **host_r, uint16_t *port_r, uint32_t *db_r,
                    const char **error_r);

/*
 * Creates the pool; connecting starts on the next loop turn (nothing is called back from here).
 * Returns NULL with *error_r (static text) on a bad configuration. base and dns are borrowed and
 * must outlive the store. dns may be NULL when the URL's host is a numeric IPv4/IPv6 address.
 */
struct store *store_new(struct event_base *base, struct evdns_base *dns,
                        const struct store_config *cfg, const char **error_r);

/*
 * Disconnects and frees; every pending request's callback runs with STORE_UNAVAILABLE first
 * (requests issued from those callbacks are answered STORE_UNAVAILABLE "store closed" too, before
 * this returns; *s stays valid until then). Sets *s to NULL. NULL-safe. Must not be called from
 * inside a store callback.
 * A name resolution in progress is cancelled; evdns still calls back on a later loop turn (or
 * when the evdns base is freed) to release a few bytes.
 */
void store_free(struct store **s);

/* True when at least one connection is connected with all scripts loaded. */
bool store_ready(const struct store *s);

/*
 * Sends one command (argv form, binary-safe; argv is copied before this returns). shard picks the
 * connection (shard % pool_size while it is ready, else the next ready one), so one session's
 * requests stay in order. With no ready connection the callback gets STORE_UNAVAILABLE
 * "redis not connected" on a later loop turn. Callbacks may issue new requests re-entrantly.
 * Replies nested deeper than hiredis 0.14 accepts (7 levels) drop the connection: keep them flat.
 */
void store_command(struct store *s, uint64_t shard, store_cb *cb, uint64_t token, int argc,
                   const char *const *argv, const size_t *argvlen);

/*
 * EVALSHA of an embedded script: argv holds nkeys keys followed by the script's arguments
 * (argc in total). A -NOSCRIPT answer (SCRIPT FLUSH behind our back) is retried once as EVAL
 * with the embedded body, transparently, on the same connection; the request keeps its deadline.
 * The formatted command is kept until the reply (for that retry): one extra copy of the
 * arguments per eval in flight.
 */
void store_eval(struct store *s, uint64_t shard, enum lua_script_id script, store_cb *cb,
                uint64_t token, int nkeys, int argc, const char *const *argv,
                const size_t *argvlen);

/* Counters for logs and /metrics. */
struct store_stats {
    uint64_t requests;
    uint64_t errors;       /* STORE_ERROR answers */
    uint64_t unavailable;  /* STORE_UNAVAILABLE answers */
    uint64_t timeouts;
    uint64_t reconnects;   /* connections ready again after having been lost */
    unsigned connected;    /* connections ready now */
    /* Extensions (store.c): */
    uint64_t noscript_retries; /* EVALSHA answered NOSCRIPT and re-sent as EVAL */
    bool policy_ok;        /* the last (re)connect saw maxmemory-policy noeviction */
};
void store_get_stats(const struct store *s, struct store_stats *out);

#endif
