/*
 * search_set: UID range-set algebra for SEARCH (see search_set.h). Linear merges over the two
 * sorted range arrays; results are normalised (disjoint, non-adjacent) so equal sets compare equal
 * and formatting needs no further pass.
 */
#include "frontend/search_set.h"

#include <string.h>

void search_set_builder_init(struct search_set_builder *b, struct arena *a)
{
    memset(b, 0, sizeof(*b));
    b->a = a;
}

int search_set_add(struct search_set_builder *b, uint32_t first, uint32_t last)
{
    if (first > last)
        return -1;
    if (b->n > 0) {
        struct seqset_range *t = &b->r[b->n - 1];
        if (first < t->first)
            return -1;
        if (t->last == UINT32_MAX || first <= t->last + 1) {
            if (last > t->last)
                t->last = last;
            return 0;
        }
    }
    if (b->n == b->cap) {
        size_t cap = b->cap == 0 ? 16 : b->cap * 2;
        struct seqset_range *r = arena_alloc(b->a, cap * sizeof(*r)); /* read up to n only */
        if (b->n > 0)
            memcpy(r, b->r, b->n * sizeof(*r));
        b->r = r;
        b->cap = cap;
    }
    b->r[b->n].first = first;
    b->r[b->n].last = last;
    b->n++;
    return 0;
}

struct seqset search_set_done(const struct search_set_builder *b)
{
    struct seqset s = {b->r, b->n};
    return s;
}

/* Room for n ranges, not zeroed: results are written front to back and read up to count. */
static struct seqset_range *alloc_ranges(struct arena *a, size_t n)
{
    return arena_alloc(a, (n == 0 ? 1 : n) * sizeof(struct seqset_range));
}

/* Appends to a result array sized for the worst case, merging adjacent ranges. */
static void put(struct seqset *out, uint32_t first, uint32_t last)
{
    if (out->count > 0) {
        struct seqset_range *t = &out->ranges[out->count - 1];
        if (t->last != UINT32_MAX && first <= t->last + 1) {
            if (last > t->last)
                t->last = last;
            return;
        }
    }
    out->ranges[out->count].first = first;
    out->ranges[out->count].last = last;
    out->count++;
}

void search_set_and(struct arena *a, const struct seqset *x, const struct seqset *y,
                    struct seqset *out)
{
    if (x->count == 0 || y->count == 0) {
        *out = x->count == 0 ? *x : *y;
        return;
    }
    struct seqset r = {alloc_ranges(a, x->count + y->count), 0};
    size_t i = 0, j = 0;
    while (i < x->count && j < y->count) {
        uint32_t lo = x->ranges[i].first > y->ranges[j].first ? x->ranges[i].first
                                                              : y->ranges[j].first;
        uint32_t hi = x->ranges[i].last < y->ranges[j].last ? x->ranges[i].last : y->ranges[j].last;
        if (lo <= hi)
            put(&r, lo, hi);
        if (x->ranges[i].last < y->ranges[j].last)
            i++;
        else
            j++;
    }
    *out = r;
}

void search_set_or(struct arena *a, const struct seqset *x, const struct seqset *y,
                   struct seqset *out)
{
    if (x->count == 0 || y->count == 0) {
        *out = x->count == 0 ? *y : *x;
        return;
    }
    struct seqset r = {alloc_ranges(a, x->count + y->count), 0};
    size_t i = 0, j = 0;
    while (i < x->count || j < y->count) {
        const struct seqset_range *next;
        if (j >= y->count || (i < x->count && x->ranges[i].first <= y->ranges[j].first))
            next = &x->ranges[i++];
        else
            next = &y->ranges[j++];
        put(&r, next->first, next->last);
    }
    *out = r;
}

void search_set_minus(struct arena *a, const struct seqset *x, const struct seqset *y,
                      struct seqset *out)
{
    if (x->count == 0 || y->count == 0) {
        *out = *x;
        return;
    }
    struct seqset r = {alloc_ranges(a, x->count + y->count), 0};
    size_t j = 0;
    for (size_t i = 0; i < x->count; i++) {
        uint32_t lo = x->ranges[i].first, hi = x->ranges[i].last;
        while (j < y->count && y->ranges[j].last < lo)
            j++;
        size_t k = j;
        bool empty = false;
        while (k < y->count && y->ranges[k].first <= hi) {
            if (y->ranges[k].first > lo)
                put(&r, lo, y->ranges[k].first - 1);
            if (y->ranges[k].last >= hi) {
                empty = true;
                break;
            }
            lo = y->ranges[k].last + 1;
            k++;
        }
        if (!empty)
            put(&r, lo, hi);
    }
    *out = r;
}
