/* A linear scan over 32 entries: cheaper than hashing at this size, and obviously correct. */
#include "frontend/mbxcache.h"

#include <string.h>

const char *mbxcache_get(const struct mbxcache *c, const char *name)
{
    for (size_t i = 0; i < MBXCACHE_ENTRIES; i++) {
        if (c->e[i].mbxid[0] != '\0' && strcmp(c->e[i].name, name) == 0)
            return c->e[i].mbxid;
    }
    return NULL;
}

void mbxcache_put(struct mbxcache *c, const char *name, const char *mbxid)
{
    size_t len = strlen(name);
    if (len > MBXCACHE_NAME_MAX)
        return;
    size_t slot = MBXCACHE_ENTRIES;
    for (size_t i = 0; i < MBXCACHE_ENTRIES; i++) {
        if (c->e[i].mbxid[0] != '\0' && strcmp(c->e[i].name, name) == 0)
            slot = i;
    }
    if (mbxid[0] == '\0') {
        if (slot < MBXCACHE_ENTRIES)
            c->e[slot].mbxid[0] = '\0';
        return;
    }
    if (strlen(mbxid) != KEYS_MBXID_LEN)
        return;
    if (slot == MBXCACHE_ENTRIES) {
        slot = c->next;
        c->next = (c->next + 1) % MBXCACHE_ENTRIES;
    }
    memcpy(c->e[slot].name, name, len + 1);
    memcpy(c->e[slot].mbxid, mbxid, KEYS_MBXID_LEN + 1);
}
