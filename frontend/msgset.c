/*
 * Sequence sets against a view. UID ranges become sequence ranges through the view's runs
 * (O(log runs) per range), so "UID FETCH 1:*" of a 100,000-message mailbox is one range, not
 * 100,000 numbers.
 */
#include "frontend/msgset.h"

int msgset_resolve(struct arena *a, const struct view *v, const char *text, size_t len, bool uid,
                   struct seqset *seqs_r, const char **error_r)
{
    uint32_t count = view_count(v);
    struct seqset set;
    if (seqset_parse_resolve(a, text, len, uid ? view_max_uid(v) : count, &set, error_r) != 0)
        return -1;
    if (!uid) {
        if (set.count > 0 && set.ranges[set.count - 1].last > count) {
            *error_r = "Invalid message sequence number";
            return -1;
        }
        *seqs_r = set;
        return 0;
    }
    struct seqset_range *out = arena_alloc(a, (set.count + 1) * sizeof(*out));
    size_t n = 0;
    for (size_t i = 0; i < set.count; i++) {
        uint32_t first = view_seq_ceil(v, set.ranges[i].first);
        uint32_t last = view_seq_floor(v, set.ranges[i].last);
        if (first > last)
            continue;
        if (n > 0 && out[n - 1].last + 1 >= first) {
            if (last > out[n - 1].last)
                out[n - 1].last = last;
            continue;
        }
        out[n].first = first;
        out[n].last = last;
        n++;
    }
    seqs_r->ranges = out;
    seqs_r->count = n;
    return 0;
}
