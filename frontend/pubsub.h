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

/* One more local watcher of nsid's channel (subscribes when it is the first). */
void pubsub_watch(struct pubsub *p, const char *nsid);

/* One watcher fewer (unsubscribes after the last). Unwatching an unwatched nsid is a no-op. */
void pubsub_unwatch(struct pubsub *p, const char *nsid);

/* True when connected with every watched channel subscribed. */
bool pubsub_ready(const struct pubsub *p);

struct pubsub_stats {
    uint64_t messages;   /* wake-ups received */
    uint64_t reconnects; /* connections re-established after a loss */
    size_t channels;     /* channels watched now */
};
void pubsub_get_stats(const struct pubsub *p, struct pubsub_stats *out);

#endif
