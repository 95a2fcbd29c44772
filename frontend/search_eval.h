/*
 * search_eval: evaluating a SEARCH key tree (search_parse.h). Two halves:
 *   - the index phase, over whole UID sets: every INDEX-level key gets its set, and the tree as a
 *     whole gets a lower bound (must: certainly matches) and an upper bound (may) computed without
 *     reading a single message; only may − must is then examined message by message;
 *   - the per-message phase, three-valued (yes / no / not known yet), so a message is decided as
 *     soon as the data read so far allows: the record and flags first, then the stored parse,
 *     then raw bytes (search_scan.h), each stage only for the messages still undecided.
 * Pure; runs on the event loop; everything in the caller's arenas.
 */
#ifndef CIMAP_SEARCH_EVAL_H
#define CIMAP_SEARCH_EVAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/mail/mail.h"
#include "frontend/search_parse.h"
#include "frontend/seqset.h"

enum search_tri { SEARCH_NO = 0, SEARCH_YES = 1, SEARCH_UNKNOWN = 2 };

/* What the index phase works from; every set is a set of UIDs. */
struct search_index {
    const struct seqset *universe; /* messages of the session view that still exist */
    const struct seqset *unseen;   /* /unseen (may hold UIDs outside the universe) */
    const struct seqset *deleted;  /* /deleted (likewise) */
    uint32_t recent_first;         /* UIDs >= this are \Recent for the session */
};

/*
 * Index phase. SEQSET and UIDSET keys must already hold their UIDs in key->set (unrestricted);
 * fills the set of every INDEX key (restricted to the universe) and the bounds: *must_r ⊆ result
 * ⊆ *may_r, both within the universe.
 */
void search_eval_sets(struct arena *a, struct search_query *q, const struct search_index *ix,
                      struct seqset *must_r, struct seqset *may_r);

/* One message during the per-message phase. */
struct search_msg {
    uint32_t uid;
    bool gone;               /* its record has disappeared: it never matches */
    bool have_record;
    char sha[65];            /* content id (NUL-terminated) */
    int64_t internaldate;    /* unix seconds */
    uint64_t size;
    const char *emailid, *threadid; /* NUL-terminated, in an arena */
    bool have_flags;
    const char *flags;       /* space separated (may be empty); not NUL-terminated */
    size_t flags_len;
    uint8_t *leaf;           /* enum search_tri per per-message key (q->n_leaves) */
};

/*
 * Parses a /msg record "<sha256> <internaldate> <size> <emailid> <threadid>" into m (strings
 * copied into a). Returns 0, or -1 when malformed.
 */
int search_msg_record(struct arena *a, struct search_msg *m, const char *rec, size_t len);

/* Fills the RECORD-level keys of m from its record and flags (when read). */
void search_eval_record(const struct search_query *q, struct search_msg *m);

/*
 * Memory search_eval_parse reuses from message to message (so its loop allocates nothing once
 * warm): a decode buffer and one matcher per per-message key, its needle folded once. Owned by
 * the caller; zero-initialise, release with search_scratch_free.
 */
struct search_scratch {
    struct mail_buf buf;
    struct mail_matcher *matchers; /* q->n_leaves of them, made on first use */
    bool *ready;                   /* matchers[i] holds its needle */
    uint32_t n;
};

/* Frees what s holds and zeroes it. Idempotent. */
void search_scratch_free(struct search_scratch *s);

/* Fills the PARSE-level keys of m from its stored parse. */
void search_eval_parse(const struct search_query *q, struct search_msg *m,
                       const struct mail_view *view, struct search_scratch *scratch);

/* The tree's value for m with what is known so far (SEARCH_NO when m->gone). */
enum search_tri search_eval(const struct search_query *q, const struct search_msg *m);

/*
 * The RAW-level keys in tree order (HEADER, BODY, TEXT): up to max of them into keys[]; returns
 * how many there are in all.
 */
size_t search_raw_keys(const struct search_query *q, const struct search_key **keys, size_t max);

#endif
