/*
 * colcache: per-mailbox column caches, one Redis string per 1,024 UIDs (keys/README.md "Column
 * caches"). Reading a column of a big mailbox per message (HMGET flags, HGET content parse) costs
 * Redis about a microsecond per message; a cache chunk answers 1,024 messages with one GET.
 *
 * Kinds:
 *   COLCACHE_FLAGS ('f'): one field per message, its flags as in /flags ("" = none);
 *   COLCACHE_MSG   ('m'): two fields, the /msg record and the stored parse (content hash `parse`).
 *
 * A chunk value is
 *     "c1 <kind> <chunk> <modseq> <upto>\n"  then per message, ascending UID:
 *     "<uid> <len1>[ <len2>]\n" <field1 bytes> [<field2 bytes>]
 * and means: at mailbox modseq <modseq>, the messages with UIDs in [chunk * 1024, upto) were
 * exactly these, with these fields. The scripts keep that true afterwards: a flag change
 * (store.lua) deletes the 'f' chunks it touches, an expunge (expunge.lua, mbx_purge.lua) deletes
 * both kinds of the chunks it touches, and new messages always get UIDs >= uidnext >= upto. So a
 * present chunk is exact for every UID below upto, for any reader, at any later time; a UID at or
 * above upto is unknown to it (read the column itself).
 *
 * Chunks are built by readers (FETCH, SEARCH) from what they read anyway, and stored with
 * cache_put.lua, which refuses when the mailbox's highestmodseq moved since the read (so a put can
 * never resurrect an expunged message or old flags). Build only from a snapshot that holds every
 * message of the chunk below upto: a read of all of the session's view in the chunk, done in one
 * MULTI/EXEC together with HGET highestmodseq, when that highestmodseq equals the view's (the view
 * is then exact: no message below the view's highest UID is missing from it) and a ZCOUNT of
 * /uids over [chunk first, upto) read in the same MULTI equals the number of records (a guard that
 * does not trust the view: a bug or an operator's repair could make it wrong at an equal modseq).
 * Readers check a chunk's plausibility before trusting it (search_cache_plausible).
 */
#ifndef CIMAP_COLCACHE_H
#define CIMAP_COLCACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "keys/keys.h"

struct frontend;

enum colcache_kind {
    COLCACHE_FLAGS = 'f',
    COLCACHE_MSG = 'm',
};

#define COLCACHE_CHUNK KEYS_CACHE_CHUNK     /* UIDs per chunk */
#define COLCACHE_MAX_VALUE (8u * 1024 * 1024) /* a chunk larger than this is not stored */

static inline uint32_t colcache_chunk(uint32_t uid) { return uid / COLCACHE_CHUNK; }
static inline uint32_t colcache_first(uint32_t chunk) { return chunk * COLCACHE_CHUNK; }
/* Last UID of a chunk (chunk 4194303 ends at UINT32_MAX). */
static inline uint32_t colcache_last(uint32_t chunk) { return chunk * COLCACHE_CHUNK + (COLCACHE_CHUNK - 1); }

/* A chunk being read. Points into the caller's value (the Redis reply): no allocation. */
struct colcache {
    enum colcache_kind kind;
    uint32_t chunk;
    uint64_t modseq;
    uint32_t upto;           /* UIDs below this (and >= the chunk's first) are known */
    const char *data;        /* the value */
    size_t len;
    size_t pos;              /* next record */
    uint32_t last_uid;       /* UID of the record before pos (0 = none yet) */
    bool bad;                /* a malformed record was met: treat the chunk as absent */
};

struct colcache_rec {
    uint32_t uid;
    const char *field[2];
    size_t len[2];           /* len[1] = 0 for COLCACHE_FLAGS */
};

/*
 * Opens a value read from the chunk key of (kind, chunk). False when it is not such a value
 * (malformed, other version, other kind or chunk): treat it as absent.
 */
bool colcache_open(struct colcache *c, const char *data, size_t len, enum colcache_kind kind,
                   uint32_t chunk);

/* The next record, ascending. False at the end, or with c->bad set on a malformed record. */
bool colcache_next(struct colcache *c, struct colcache_rec *r);

enum colcache_found {
    COLCACHE_HIT,            /* *r is the message */
    COLCACHE_ABSENT,         /* below upto and not there: the message did not exist */
    COLCACHE_UNKNOWN,        /* at or above upto (or outside the chunk, or c->bad): read it */
};

/*
 * Looks uid up, moving forward from the last lookup (lookups in ascending UID order cost
 * O(records) in all). A uid below the previous lookup's restarts from the beginning.
 */
enum colcache_found colcache_find(struct colcache *c, uint32_t uid, struct colcache_rec *r);

/* Builds a chunk value in memory (malloc'd; the caller frees with colcache_builder_free). */
struct colcache_builder {
    enum colcache_kind kind;
    uint32_t chunk;
    uint64_t modseq;
    uint32_t upto;
    uint32_t last_uid;
    char *buf;
    size_t len, cap;
    bool failed;             /* out of memory, a UID out of order or outside the chunk, too large */
};

/* Starts a value for (kind, chunk) at modseq whose records cover [chunk first, upto). */
void colcache_build_begin(struct colcache_builder *b, enum colcache_kind kind, uint32_t chunk,
                          uint64_t modseq, uint32_t upto);

/* Adds one message (ascending UIDs inside the chunk, below upto); f2/l2 only for COLCACHE_MSG. */
void colcache_build_add(struct colcache_builder *b, uint32_t uid, const char *f1, size_t l1,
                        const char *f2, size_t l2);

void colcache_builder_free(struct colcache_builder *b);

/*
 * Stores a built value with cache_put.lua, fire and forget (a refused or failed put only costs a
 * later rebuild; failures are logged at debug level), on the pool connection `shard` picks: pass
 * conn_id of the session that built it, so a session's puts queue behind its own reads, not in
 * front of everyone's. Does nothing when b->failed, when the value is over COLCACHE_MAX_VALUE or
 * when the caches are off (--cache-ttl 0). The value is copied before this returns; b is left to
 * the caller.
 */
void colcache_put_shard(struct frontend *fe, uint64_t shard, const char *nsid, const char *mbxid,
                        const struct colcache_builder *b);

/* True when this front end uses the caches (--cache-ttl > 0). */
bool colcache_enabled(const struct frontend *fe);

#endif
