/*
 * watchers: which local sessions watch which user's wake-up channel (DESIGN.md rule 4): nsid ->
 * session tokens. The pub/sub callback fans a wake-up out through it; the pubsub module is told
 * when a user's first session starts watching and after the last one stops. Event-loop thread only.
 */
#ifndef CIMAP_WATCHERS_H
#define CIMAP_WATCHERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct watchers;

/* An empty index. Aborts on OOM. */
struct watchers *watchers_new(void);

/* Frees it; sets *w to NULL. NULL-safe. */
void watchers_free(struct watchers **w);

/* Adds token under nsid; returns true when it is nsid's first watcher. */
bool watchers_add(struct watchers *w, const char *nsid, uint64_t token);

/* Removes token from nsid; returns true when nsid has no watcher left (false if it was absent). */
bool watchers_remove(struct watchers *w, const char *nsid, uint64_t token);

/*
 * Calls fn(token, arg) for each watcher of nsid. fn may remove watchers (the tokens are copied
 * first) but must not add any for nsid.
 */
void watchers_each(struct watchers *w, const char *nsid, void (*fn)(uint64_t token, void *arg),
                   void *arg);

/* Number of nsids watched. */
size_t watchers_count(const struct watchers *w);

#endif
