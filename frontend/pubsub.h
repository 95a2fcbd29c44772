/*
 * pubsub: the front end's one Redis pub/sub connection (DESIGN.md rule 4). Sessions do not
 * subscribe themselves: the front end watches a user's channel (/ns/{<nsid>}/channel, keys_ns_channel)
 * while at least one local session needs it — SUBSCRIBE on the first watcher, UNSUBSCRIBE after the
 * last — and hands every wake-up to one callback, which fans it out to local sessions.
 *
 * Wake-ups may be lost (DESIGN.md rule 3): correctness never depends on them. So whenever the
 * connection is (re)established, every watched channel is subscribed again and the callback runs
 * once per watched user with resync = true, telling sessions to re-read their change logs.
 *
 * Reconnects with backoff; host names resolved with evdns; classic PUBLISH/SUBSCRIBE (hiredis 0.14
 * aborts on sharded-pub/sub pushes). Single-threaded: event-loop thread only.
 */
#ifndef CIMAP_PUBSUB_H
#define CIMAP_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;
struct evdns_base;
struct pubsub;

/*
 * A wake-up for user nsid (NUL-terminated, valid during the call): payload is the message
 * ("<mbxid> <modseq>", len bytes, not NUL-terminated), or NULL with resync = true after a
 * (re)subscribe. arg is the one given to pubsub_new (a long-lived object, e.g. the frontend).
 * The callback may call pubsub_watch/unwatch, but not pubsub_free.
 */
typedef void pubsub_cb(const char *nsid, const char *payload, size_t len, bool resync, void *arg);

/*
 * Creates the subscriber for url (redis://HOST:PORT[/DB]; the db does not matter to pub/sub) and
 * starts connecting. dns may be NULL for numeric hosts. NULL with *error_r on a bad url.
 */
struct pubsub *pubsub_new(struct event_base *base, struct evdns_base *dns, const char *url,
                          pubsub_cb *cb, void *arg, const char **error_r);

/* Disconnects and frees; sets *p to NULL. NULL-safe. Not from inside the callback. */
void pubsub_free(struct pubsub **p);

/*
 * One more local watcher of nsid's channel (subscribes when it is the first). When connected, the
 * callback runs once with resync = true for nsid when that SUBSCRIBE is confirmed (from then on no
 * wake-up can be missed); when not, at the next connect like every watched nsid. An nsid that is
 * not keys_nsid_valid is logged and ignored.
 */
void pubsub_watch(struct pubsub *p, const char *nsid);

/* One watcher fewer (unsubscribes after the last). Unwatching an unwatched nsid is a no-op. */
void pubsub_unwatch(struct pubsub *p, const char *nsid);

/*
 * True when connected with every watched channel subscribed (precisely: every channel watched when
 * the connection came up is confirmed; a channel watched later is subscribed in order, and its
 * watcher gets a resync call once confirmed).
 */
bool pubsub_ready(const struct pubsub *p);

struct pubsub_stats {
    uint64_t messages;   /* wake-ups received */
    uint64_t reconnects; /* connections re-established after a loss */
    size_t channels;     /* channels watched now */
    /* Extensions (pubsub.c): */
    uint64_t resyncs;            /* callback calls with resync = true */
    uint64_t keepalive_timeouts; /* connections given up for a missing keepalive answer */
    bool connected;              /* same as pubsub_ready() */
};
void pubsub_get_stats(const struct pubsub *p, struct pubsub_stats *out);

/*
 * Extension (pubsub.c): timing. The keepalive re-SUBSCRIBEs a keepalive channel every
 * keepalive_interval_ms while connected and drops the connection when no confirmation arrives
 * within keepalive_timeout_ms (so a dead peer is noticed within their sum); connect_timeout_ms
 * bounds resolution + connect + the (re)subscribe burst; reconnects back off from backoff_min_ms,
 * doubling up to backoff_max_ms, with jitter. Defaults: 3000, 2000, 3000, 100, 5000.
 */
struct pubsub_timing {
    uint32_t keepalive_interval_ms;
    uint32_t keepalive_timeout_ms;
    uint32_t connect_timeout_ms;
    uint32_t backoff_min_ms;
    uint32_t backoff_max_ms;
};
void pubsub_timing_defaults(struct pubsub_timing *t);

/* Replaces p's timing (takes effect from the next timer). Returns 0, or -1 with *error_r. */
int pubsub_set_timing(struct pubsub *p, const struct pubsub_timing *t, const char **error_r);

#endif
