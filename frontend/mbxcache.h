/*
 * mbxcache: a session's small memory of mailbox name -> mailbox id, so STATUS can read the id and
 * the counters in one round trip (MULTI/EXEC: HGET mailboxes name + HMGET of the remembered
 * mailbox) and only falls back to a second trip when the name now maps elsewhere. Ids never
 * change under a name except by RENAME/DELETE, and every use re-checks the mapping, so a stale
 * entry costs a round trip, never a wrong answer. Fixed size, round-robin replacement. Pure.
 */
#ifndef CIMAP_MBXCACHE_H
#define CIMAP_MBXCACHE_H

#include <stddef.h>

#include "keys/keys.h"

#define MBXCACHE_ENTRIES 32
#define MBXCACHE_NAME_MAX 255 /* longer names are not remembered */

struct mbxcache {
    struct {
        char name[MBXCACHE_NAME_MAX + 1];
        char mbxid[KEYS_MBXID_LEN + 1];
    } e[MBXCACHE_ENTRIES];
    size_t next; /* replacement cursor */
};

/* The remembered id of name (NUL-terminated), or NULL. */
const char *mbxcache_get(const struct mbxcache *c, const char *name);

/* Remembers (or updates) name -> mbxid; an empty mbxid forgets the name. */
void mbxcache_put(struct mbxcache *c, const char *name, const char *mbxid);

#endif
