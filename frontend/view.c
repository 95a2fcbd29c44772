/*
 * Runs of consecutive UIDs in three parallel arrays: first[i], last[i] and before[i] (messages in
 * runs 0..i-1). Sequence number -> UID is a binary search over before[]; UID -> sequence number a
 * binary search over first[]. Appends touch only the tail; an expunge shifts the arrays after the
 * run it changes and fixes before[] from there (O(runs), done once per expunged message).
 */
#include "frontend/view.h"

#include <stdlib.h>
#include <string.h>

struct view {
    uint32_t *first;
    uint32_t *last;
    uint32_t *before;
    size_t n;
    size_t cap;
    uint32_t count;
};

struct view *view_new(void)
{
    struct view *v = calloc(1, sizeof(*v));
    if (v == NULL)
        abort();
    return v;
}

void view_free(struct view **vp)
{
    if (vp == NULL || *vp == NULL)
        return;
    struct view *v = *vp;
    free(v->first);
    free(v->last);
    free(v->before);
    free(v);
    *vp = NULL;
}

void view_clear(struct view *v)
{
    v->n = 0;
    v->count = 0;
}

static void reserve(struct view *v, size_t want)
{
    if (want <= v->cap)
        return;
    size_t ncap = v->cap == 0 ? 4 : v->cap;
    while (ncap < want)
        ncap *= 2;
    uint32_t *f = realloc(v->first, ncap * sizeof(*f));
    if (f == NULL)
        abort();
    v->first = f;
    uint32_t *l = realloc(v->last, ncap * sizeof(*l));
    if (l == NULL)
        abort();
    v->last = l;
    uint32_t *b = realloc(v->before, ncap * sizeof(*b));
    if (b == NULL)
        abort();
    v->before = b;
    v->cap = ncap;
}

int view_add_run(struct view *v, uint32_t first, uint32_t last)
{
    if (first == 0 || first > last)
        return -1;
    if (v->n > 0) {
        uint32_t top = v->last[v->n - 1];
        if (first <= top)
            return -1;
        if (first == top + 1) {
            v->last[v->n - 1] = last;
            v->count += last - first + 1;
            return 0;
        }
    }
    reserve(v, v->n + 1);
    v->first[v->n] = first;
    v->last[v->n] = last;
    v->before[v->n] = v->count;
    v->n++;
    v->count += last - first + 1;
    return 0;
}

/* A decimal UID of 1..10 digits at s[*p], up to UINT32_MAX. */
static bool take_uid(const char *s, size_t len, size_t *p, uint32_t *out)
{
    size_t i = *p;
    uint64_t v = 0;
    while (i < len && i - *p < 10 && s[i] >= '0' && s[i] <= '9')
        v = v * 10 + (uint64_t)(s[i++] - '0');
    if (i == *p || v > UINT32_MAX || (i < len && s[i] >= '0' && s[i] <= '9'))
        return false;
    *p = i;
    *out = (uint32_t)v;
    return true;
}

bool view_add_run_text(struct view *v, const char *s, size_t len)
{
    size_t p = 0;
    uint32_t first = 0, last = 0;
    if (!take_uid(s, len, &p, &first) || p >= len || s[p++] != ':' || !take_uid(s, len, &p, &last) ||
        p != len || first == 0 || first > last)
        return false;
    uint32_t top = view_max_uid(v);
    if (last <= top)
        return true;
    if (first <= top)
        first = top + 1;
    return view_add_run(v, first, last) == 0;
}

uint32_t view_count(const struct view *v)
{
    return v->count;
}

size_t view_run_count(const struct view *v)
{
    return v->n;
}

uint32_t view_uid(const struct view *v, uint32_t seq)
{
    if (seq == 0 || seq > v->count)
        return 0;
    /* the last run whose before[] < seq */
    size_t lo = 0, hi = v->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->before[mid] < seq)
            lo = mid;
        else
            hi = mid;
    }
    return v->first[lo] + (seq - v->before[lo] - 1);
}

/* Index of the run holding uid, or SIZE_MAX. */
static size_t find_run(const struct view *v, uint32_t uid)
{
    if (v->n == 0 || uid < v->first[0])
        return SIZE_MAX;
    size_t lo = 0, hi = v->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->first[mid] <= uid)
            lo = mid;
        else
            hi = mid;
    }
    return uid <= v->last[lo] ? lo : SIZE_MAX;
}

uint32_t view_seq(const struct view *v, uint32_t uid)
{
    size_t i = find_run(v, uid);
    if (i == SIZE_MAX)
        return 0;
    return v->before[i] + (uid - v->first[i]) + 1;
}

uint32_t view_seq_ceil(const struct view *v, uint32_t uid)
{
    return v->count - view_count_from(v, uid) + 1;
}

uint32_t view_seq_floor(const struct view *v, uint32_t uid)
{
    if (uid == UINT32_MAX)
        return v->count;
    return v->count - view_count_from(v, uid + 1);
}

uint32_t view_max_uid(const struct view *v)
{
    return v->n == 0 ? 0 : v->last[v->n - 1];
}

uint32_t view_count_from(const struct view *v, uint32_t uid)
{
    if (v->n == 0 || uid > v->last[v->n - 1])
        return 0;
    if (uid <= v->first[0])
        return v->count;
    /* the last run with first <= uid */
    size_t lo = 0, hi = v->n;
    while (hi - lo > 1) {
        size_t mid = lo + (hi - lo) / 2;
        if (v->first[mid] <= uid)
            lo = mid;
        else
            hi = mid;
    }
    uint32_t below = v->before[lo];
    if (uid <= v->last[lo])
        below += uid - v->first[lo];
    else
        below += v->last[lo] - v->first[lo] + 1;
    return v->count - below;
}

uint32_t view_remove(struct view *v, uint32_t uid)
{
    size_t i = find_run(v, uid);
    if (i == SIZE_MAX)
        return 0;
    uint32_t seq = v->before[i] + (uid - v->first[i]) + 1;
    size_t from; /* before[] is recomputed from this run on */
    if (v->first[i] == v->last[i]) {
        memmove(v->first + i, v->first + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        memmove(v->last + i, v->last + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        memmove(v->before + i, v->before + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        v->n--;
        from = i;
    } else if (uid == v->first[i]) {
        v->first[i]++;
        from = i + 1;
    } else if (uid == v->last[i]) {
        v->last[i]--;
        from = i + 1;
    } else {
        reserve(v, v->n + 1);
        memmove(v->first + i + 2, v->first + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        memmove(v->last + i + 2, v->last + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        memmove(v->before + i + 2, v->before + i + 1, (v->n - i - 1) * sizeof(uint32_t));
        v->first[i + 1] = uid + 1;
        v->last[i + 1] = v->last[i];
        v->last[i] = uid - 1;
        v->before[i + 1] = v->before[i] + (uid - v->first[i]); /* fixed below anyway */
        v->n++;
        from = i + 1;
    }
    v->count--;
    for (size_t j = from; j < v->n; j++)
        v->before[j] = j == 0 ? 0 : v->before[j - 1] + (v->last[j - 1] - v->first[j - 1] + 1);
    return seq;
}

void view_run(const struct view *v, size_t i, uint32_t *first_r, uint32_t *last_r)
{
    *first_r = v->first[i];
    *last_r = v->last[i];
}

size_t view_footprint(const struct view *v)
{
    return sizeof(*v) + v->cap * 3 * sizeof(uint32_t);
}
