/*
 * search_set: sets of UIDs as sorted, disjoint, non-adjacent ranges (struct seqset), the currency
 * of SEARCH's index phase: a key tree is evaluated over whole sets (the session view, the /unseen
 * and /deleted indexes, sequence and UID sets) before any message is read one by one. Everything
 * lives in the caller's arena; pure and re-entrant.
 */
#ifndef CIMAP_SEARCH_SET_H
#define CIMAP_SEARCH_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/seqset.h"

/* Builds a set from ascending additions (growing in the arena). */
struct search_set_builder {
    struct arena *a;
    struct seqset_range *r;
    size_t n, cap;
};

void search_set_builder_init(struct search_set_builder *b, struct arena *a);

/*
 * Adds first..last (first <= last), which must not start below the last range added; overlapping
 * or adjacent ranges merge. Returns 0, or -1 when out of order (nothing added).
 */
int search_set_add(struct search_set_builder *b, uint32_t first, uint32_t last);

/* The set built so far (shares the builder's storage). */
struct seqset search_set_done(const struct search_set_builder *b);

/*
 * out = x ∩ y, x ∪ y, x − y (ranges in arena a; the inputs are not modified). Sets are values
 * never written after they are made: out may share an input's ranges (an empty operand).
 */
void search_set_and(struct arena *a, const struct seqset *x, const struct seqset *y,
                    struct seqset *out);
void search_set_or(struct arena *a, const struct seqset *x, const struct seqset *y,
                   struct seqset *out);
void search_set_minus(struct arena *a, const struct seqset *x, const struct seqset *y,
                      struct seqset *out);

/* True when x and y are the same set value (the same ranges): cheap, not a comparison. */
static inline bool search_set_same(const struct seqset *x, const struct seqset *y)
{
    return x->count == y->count && (x->count == 0 || x->ranges == y->ranges);
}

#endif
