/*
 * search_cache: what SEARCH needs from the column caches (colcache.h), kept pure so the command
 * files only sequence Redis reads: which chunks a session view touches and which of its UIDs each
 * holds, whether a chunk value is usable as a whole and plausible (a rule FETCH applies too), the
 * \Seen / \Deleted members of an 'f' chunk, and the small formatters the per-message loops use
 * instead of printf. No I/O, no allocation
 * except from the caller's arena.
 */
#ifndef CIMAP_SEARCH_CACHE_H
#define CIMAP_SEARCH_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/colcache.h"
#include "frontend/view.h"

/* The part of a view that lies in one chunk: sequence numbers first..last (count 0: none). */
struct search_vpart {
    uint32_t chunk;
    uint32_t first_seq, last_seq;
    uint32_t count;
    uint32_t max_uid;        /* highest view UID in the chunk (0 when count is 0) */
};

/* The view's part in chunk. */
void search_cache_vpart(const struct view *v, uint32_t chunk, struct search_vpart *out);

/*
 * The first chunk >= from that holds a UID of the view, into *chunk_r. False when there is none.
 * from may be one past the last chunk (then false).
 */
bool search_cache_next_chunk(const struct view *v, uint64_t from, uint32_t *chunk_r);

/*
 * A chunk value decoded once: every record (at most COLCACHE_CHUNK) in recs[], ascending, the
 * fields pointing into the value. A malformed chunk is absent as a whole, never partly used.
 */
struct search_chunk {
    uint32_t chunk;
    uint64_t modseq;           /* the mailbox modseq the value was built at */
    uint32_t upto;             /* UIDs in [chunk first, upto) are known */
    struct colcache_rec *recs; /* the caller's array of COLCACHE_CHUNK */
    size_t n;
    size_t cursor;             /* search_chunk_find moves it forward */
};

/*
 * Decodes value data[0..len) (NULL: the key was missing) of (kind, chunk) into sc, whose recs
 * the caller provides (room for COLCACHE_CHUNK). False when the value cannot be used.
 */
bool search_chunk_load(struct search_chunk *sc, const char *data, size_t len,
                       enum colcache_kind kind, uint32_t chunk);

/*
 * The rule every reader of the caches (FETCH and SEARCH) applies to a well-formed chunk value
 * read in one MULTI/EXEC with HGET highestmodseq (highest; known false when that gave no number):
 * a value is unusable when the mailbox's modseq is unknown or below the value's (impossible for a
 * value built from a snapshot of that mailbox), and, when highest equals view_modseq (the view
 * is exact: every view UID exists), when it says a view UID in [chunk first, upto) is absent (a
 * value cut at a record boundary, or built from a view that lacked a message). recs[0..n): the
 * value's records, strictly ascending inside the chunk (as colcache_next gives them); records of
 * UIDs outside the view are allowed (a view may lack messages). O(view runs in the chunk + such
 * records): each run of the view is checked by its two ends. False: treat the value as absent.
 */
bool search_cache_plausible(const struct view *v, uint64_t view_modseq, bool known, uint64_t highest,
                            uint32_t chunk, uint64_t modseq, uint32_t upto,
                            const struct colcache_rec *recs, size_t n);

/*
 * Looks uid up (ascending lookups cost O(records) in all; a smaller uid restarts): HIT with *r,
 * ABSENT (below upto and not there: the message does not exist), UNKNOWN (outside what the chunk
 * knows).
 */
enum colcache_found search_chunk_find(struct search_chunk *sc, uint32_t uid,
                                      const struct colcache_rec **r);

/*
 * The messages of a loaded 'f' chunk that lack \Seen into unseen[] and that have \Deleted into
 * deleted[] (each of room COLCACHE_CHUNK), ascending; their counts into *n_unseen / *n_deleted.
 * Returns false (nothing usable) when the chunk does not cover the view's part (its upto <=
 * vp->max_uid).
 */
bool search_chunk_flag_members(const struct search_chunk *sc, const struct search_vpart *vp,
                               uint32_t *unseen, size_t *n_unseen, uint32_t *deleted,
                               size_t *n_deleted);

/* Whether the flag list flags[0..len) holds \Seen and \Deleted (case-insensitive). */
void search_flags_seen_deleted(const char *flags, size_t len, bool *seen_r, bool *deleted_r);

/* True when the space-separated flag list flags[0..len) holds want (case-insensitive). */
bool search_flags_has(const char *flags, size_t len, const char *want, size_t want_len);

/* Writes v in decimal at out (room for 20 bytes); returns the number of bytes written. */
size_t search_fmt_u64(char *out, uint64_t v);

/* Parses a whole decimal reply value (at most 20 digits) into *v_r; false when it is not one. */
bool search_parse_u64(const char *s, size_t len, uint64_t *v_r);

#endif
