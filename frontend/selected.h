/*
 * selected: what a session knows about its selected mailbox (DESIGN.md "Session view"): the
 * mailbox id, the numbers SELECT reported, and the UID view. Owned by the connection
 * (conn_select / conn_unselect); freed with it.
 */
#ifndef CIMAP_SELECTED_H
#define CIMAP_SELECTED_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/view.h"
#include "keys/keys.h"

struct selected {
    char mbxid[KEYS_MBXID_LEN + 1];
    char *name;             /* the mailbox name as selected (malloc'd) */
    bool readonly;          /* EXAMINE, or SELECT of a read-only mailbox */
    uint32_t uidvalidity;
    uint32_t uidnext;
    uint64_t highestmodseq; /* the modseq the view reflects */
    uint32_t recent_first;  /* UIDs >= this are \Recent for this session */
    char *keywords;         /* space-separated keywords of the mailbox (malloc'd, may be "") */
    struct view *view;
    struct arena *upd_arena; /* scratch of updates_run, reset at each run (NULL until the first) */
};

/* A zeroed selected state with an empty view. Aborts on OOM. */
struct selected *selected_new(void);

/* Frees it and everything it owns; sets *s to NULL. NULL-safe. */
void selected_free(struct selected **s);

#endif
