/*
 * seqset: parse, resolve, query and format IMAP sequence sets.
 *
 * A resolved set is an array of inclusive ranges kept sorted and merged (overlapping or adjacent
 * ranges become one), so membership is a binary search, counting is a sum, and formatting gives
 * the most compact text. Clients usually send ranges in ascending order; resolving then skips the
 * sort. The unresolved form keeps "*" as SEQSET_STAR because UID sets are resolved against the
 * mailbox state at the moment the command runs, not when it is parsed.
 *
 * Deliberately not here: checking numbers against the mailbox (sequence numbers past the message
 * count are the caller's BAD/NO decision) and the RFC 5182 saved result (the session owns it).
 */
#include "frontend/seqset.h"

#include <stdlib.h>
#include <string.h>

/* Reads an nz-number at s[*i..len); returns 0 and advances *i, or -1 with *error_r. */
static int parse_number(const char *s, size_t len, size_t *i, uint32_t *n_r, const char **error_r)
{
    size_t j = *i;
    if (j < len && s[j] == '*') {
        *n_r = SEQSET_STAR;
        *i = j + 1;
        return 0;
    }
    if (j >= len || s[j] < '0' || s[j] > '9') {
        *error_r = "invalid sequence set: number expected";
        return -1;
    }
    if (s[j] == '0') {
        *error_r = "invalid sequence set: numbers start at 1";
        return -1;
    }
    uint64_t v = 0;
    for (; j < len && s[j] >= '0' && s[j] <= '9'; j++) {
        v = v * 10 + (uint64_t)(s[j] - '0');
        if (v > UINT32_MAX) {
            *error_r = "invalid sequence set: number too large";
            return -1;
        }
    }
    *n_r = (uint32_t)v;
    *i = j;
    return 0;
}

int seqset_parse(struct arena *a, const char *s, size_t len, unsigned flags,
                 struct seqset_spec *spec_r, const char **error_r)
{
    if (len == 1 && s[0] == '$') {
        if ((flags & SEQSET_ALLOW_SAVED) == 0) {
            *error_r = "invalid sequence set: no saved search result here";
            return -1;
        }
        spec_r->saved = true;
        spec_r->has_star = false;
        spec_r->ranges = NULL;
        spec_r->count = 0;
        return 0;
    }
    if (len == 0) {
        *error_r = "invalid sequence set: empty";
        return -1;
    }
    /* every element takes at least one byte plus a comma: (len + 1) / 2 bounds the count */
    size_t max = (len + 1) / 2;
    struct seqset_range *r = arena_alloc(a, max * sizeof(*r));
    size_t count = 0;
    bool star = false;
    size_t i = 0;
    for (;;) {
        uint32_t first, last;
        if (parse_number(s, len, &i, &first, error_r) < 0)
            return -1;
        last = first;
        if (i < len && s[i] == ':') {
            i++;
            if (parse_number(s, len, &i, &last, error_r) < 0)
                return -1;
        }
        star = star || first == SEQSET_STAR || last == SEQSET_STAR;
        r[count].first = first;
        r[count].last = last;
        count++;
        if (i == len)
            break;
        if (s[i] != ',') {
            *error_r = s[i] == '$' ? "invalid sequence set: '$' must stand alone"
                                   : "invalid sequence set: unexpected character";
            return -1;
        }
        i++;
    }
    spec_r->saved = false;
    spec_r->has_star = star;
    spec_r->ranges = r;
    spec_r->count = count;
    return 0;
}

static int range_cmp(const void *x, const void *y)
{
    const struct seqset_range *a = x, *b = y;
    if (a->first != b->first)
        return a->first < b->first ? -1 : 1;
    if (a->last != b->last)
        return a->last < b->last ? -1 : 1;
    return 0;
}

/* Sorts r[0..n) in place if needed and merges it into itself; returns the new count. */
static size_t normalise(struct seqset_range *r, size_t n)
{
    if (n == 0)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if (r[i].first < r[i - 1].first) {
            qsort(r, n, sizeof(*r), range_cmp);
            break;
        }
    }
    size_t out = 0;
    for (size_t i = 1; i < n; i++) {
        /* merge when overlapping or adjacent; last == UINT32_MAX absorbs everything after */
        if (r[out].last == UINT32_MAX || r[i].first <= r[out].last + 1) {
            if (r[i].last > r[out].last)
                r[out].last = r[i].last;
        } else {
            r[++out] = r[i];
        }
    }
    return out + 1;
}

int seqset_resolve(struct arena *a, const struct seqset_spec *spec, uint32_t star,
                   struct seqset *set_r, const char **error_r)
{
    if (spec->saved) {
        *error_r = "saved search result must be substituted by the caller";
        return -1;
    }
    struct seqset_range *r = NULL;
    size_t n = 0;
    if (spec->count > 0) {
        r = arena_alloc(a, spec->count * sizeof(*r));
        for (size_t i = 0; i < spec->count; i++) {
            uint32_t x = spec->ranges[i].first, y = spec->ranges[i].last;
            if (x == SEQSET_STAR || y == SEQSET_STAR) {
                if (star == 0)
                    continue; /* "*" in an empty mailbox: nothing */
                if (x == SEQSET_STAR)
                    x = star;
                if (y == SEQSET_STAR)
                    y = star;
            }
            r[n].first = x < y ? x : y;
            r[n].last = x < y ? y : x;
            n++;
        }
    }
    set_r->ranges = r;
    set_r->count = normalise(r, n);
    return 0;
}

int seqset_parse_resolve(struct arena *a, const char *s, size_t len, uint32_t star,
                         struct seqset *set_r, const char **error_r)
{
    struct seqset_spec spec;
    if (seqset_parse(a, s, len, 0, &spec, error_r) < 0)
        return -1;
    return seqset_resolve(a, &spec, star, set_r, error_r);
}

static int u32_cmp(const void *x, const void *y)
{
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

int seqset_from_numbers(struct arena *a, const uint32_t *nums, size_t n, struct seqset *set_r,
                        const char **error_r)
{
    bool sorted = true;
    for (size_t i = 0; i < n; i++) {
        if (nums[i] == 0) {
            *error_r = "sequence numbers and UIDs start at 1";
            return -1;
        }
        if (i > 0 && nums[i] < nums[i - 1])
            sorted = false;
    }
    const uint32_t *v = nums;
    if (!sorted) {
        uint32_t *copy = arena_alloc(a, n * sizeof(*copy));
        memcpy(copy, nums, n * sizeof(*copy));
        qsort(copy, n, sizeof(*copy), u32_cmp);
        v = copy;
    }
    /* count runs first so the arena holds exactly the ranges needed */
    size_t runs = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || v[i] > v[i - 1] + 1)
            runs++;
    }
    struct seqset_range *r = runs > 0 ? arena_alloc(a, runs * sizeof(*r)) : NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (i == 0 || v[i] > v[i - 1] + 1) {
            r[k].first = r[k].last = v[i];
            k++;
        } else {
            r[k - 1].last = v[i]; /* equal (duplicate) or next */
        }
    }
    set_r->ranges = r;
    set_r->count = k;
    return 0;
}

bool seqset_contains(const struct seqset *set, uint32_t n)
{
    size_t lo = 0, hi = set->count;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const struct seqset_range *r = &set->ranges[mid];
        if (n < r->first)
            hi = mid;
        else if (n > r->last)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

uint64_t seqset_count(const struct seqset *set)
{
    uint64_t total = 0;
    for (size_t i = 0; i < set->count; i++)
        total += (uint64_t)set->ranges[i].last - set->ranges[i].first + 1;
    return total;
}

/* Writes n in decimal to out (at least 10 bytes); returns the digit count. */
static size_t put_u32(char *out, uint32_t n)
{
    char tmp[10];
    size_t k = 0;
    do {
        tmp[k++] = (char)('0' + n % 10);
        n /= 10;
    } while (n != 0);
    for (size_t i = 0; i < k; i++)
        out[i] = tmp[k - 1 - i];
    return k;
}

int seqset_format(const struct seqset *set, char *buf, size_t size, size_t *len_r,
                  const char **error_r)
{
    size_t total = 0;
    char item[2 * 10 + 2]; /* "first:last," */
    for (size_t i = 0; i < set->count; i++) {
        size_t k = 0;
        if (i > 0)
            item[k++] = ',';
        k += put_u32(item + k, set->ranges[i].first);
        if (set->ranges[i].last != set->ranges[i].first) {
            item[k++] = ':';
            k += put_u32(item + k, set->ranges[i].last);
        }
        if (total < size) {
            size_t room = size - total;
            memcpy(buf + total, item, k < room ? k : room);
        }
        total += k;
    }
    *len_r = total;
    if (total < size) {
        buf[total] = '\0';
        return 0;
    }
    if (size > 0)
        buf[size - 1] = '\0';
    *error_r = "buffer too small for sequence set";
    return -1;
}

char *seqset_format_arena(struct arena *a, const struct seqset *set)
{
    size_t len = 0;
    const char *error;
    char dummy[1];
    (void)seqset_format(set, dummy, sizeof(dummy), &len, &error);
    char *buf = arena_alloc(a, len + 1);
    int rc = seqset_format(set, buf, len + 1, &len, &error);
    (void)rc;
    return buf;
}
