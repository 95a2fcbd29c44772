/*
 * search_cache: SEARCH's pure helpers over the column caches (see search_cache.h).
 *
 * A chunk is only ever used whole: search_chunk_load decodes every record once (the fields are
 * skipped by length) before any is believed, so a value damaged halfway never contributes its
 * first half; lookups then walk the decoded array. The flag test works on lengths, never on
 * NUL-terminated strings: chunk bytes are untrusted and may hold anything. Plausibility checks a
 * chunk against the view run by run (both ends of a run found means the whole run is, records
 * being strictly ascending), so it costs O(runs), not O(messages), on the warm path.
 */
#include "frontend/search_cache.h"

#include <string.h>

void search_cache_vpart(const struct view *v, uint32_t chunk, struct search_vpart *out)
{
    memset(out, 0, sizeof(*out));
    out->chunk = chunk;
    uint32_t first = view_seq_ceil(v, colcache_first(chunk));
    uint32_t last = view_seq_floor(v, colcache_last(chunk));
    if (first == 0 || last == 0 || first > last)
        return;
    out->first_seq = first;
    out->last_seq = last;
    out->count = last - first + 1;
    out->max_uid = view_uid(v, last);
}

bool search_cache_next_chunk(const struct view *v, uint64_t from, uint32_t *chunk_r)
{
    uint64_t first = from * COLCACHE_CHUNK;
    if (first > UINT32_MAX)
        return false;
    uint32_t seq = view_seq_ceil(v, (uint32_t)first);
    if (seq == 0 || seq > view_count(v))
        return false;
    *chunk_r = colcache_chunk(view_uid(v, seq));
    return true;
}

bool search_chunk_load(struct search_chunk *sc, const char *data, size_t len,
                       enum colcache_kind kind, uint32_t chunk)
{
    struct colcache c;
    sc->n = 0;
    sc->cursor = 0;
    if (data == NULL || !colcache_open(&c, data, len, kind, chunk))
        return false;
    sc->chunk = chunk;
    sc->modseq = c.modseq;
    sc->upto = c.upto;
    /* Records ascend inside the chunk (colcache_next checks), so there are at most
     * COLCACHE_CHUNK; a value with bytes after them is malformed. */
    while (sc->n < COLCACHE_CHUNK && colcache_next(&c, &sc->recs[sc->n]))
        sc->n++;
    return !c.bad && c.pos >= c.len;
}

/* The index of the first view run whose last UID is >= uid (view_run_count when none is). */
static size_t run_at(const struct view *v, uint32_t uid)
{
    size_t lo = 0, hi = view_run_count(v);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        uint32_t f = 0, l = 0;
        view_run(v, mid, &f, &l);
        if (l < uid)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

bool search_cache_plausible(const struct view *v, uint64_t view_modseq, bool known, uint64_t highest,
                            uint32_t chunk, uint64_t modseq, uint32_t upto,
                            const struct colcache_rec *recs, size_t n)
{
    if (!known || modseq > highest)
        return false;
    if (highest != view_modseq || upto <= colcache_first(chunk))
        return true;
    uint32_t lo = colcache_first(chunk);
    uint32_t hi = upto - 1 < colcache_last(chunk) ? upto - 1 : colcache_last(chunk);
    size_t j = 0;
    for (size_t i = run_at(v, lo); i < view_run_count(v); i++) {
        uint32_t f = 0, l = 0;
        view_run(v, i, &f, &l);
        if (f > hi)
            break;
        f = f > lo ? f : lo;
        l = l < hi ? l : hi;
        while (j < n && recs[j].uid < f)
            j++; /* a record the view does not hold */
        /* Records ascend strictly: f..l are all there exactly when both ends are, l - f apart. */
        size_t span = l - f;
        if (n - j <= span || recs[j].uid != f || recs[j + span].uid != l)
            return false;
        j += span + 1;
    }
    return true;
}

enum colcache_found search_chunk_find(struct search_chunk *sc, uint32_t uid,
                                      const struct colcache_rec **r)
{
    if (uid < colcache_first(sc->chunk) || uid >= sc->upto)
        return COLCACHE_UNKNOWN;
    if (sc->cursor > 0 && sc->recs[sc->cursor - 1].uid >= uid)
        sc->cursor = 0;
    while (sc->cursor < sc->n && sc->recs[sc->cursor].uid < uid)
        sc->cursor++;
    if (sc->cursor < sc->n && sc->recs[sc->cursor].uid == uid) {
        *r = &sc->recs[sc->cursor++];
        return COLCACHE_HIT;
    }
    return COLCACHE_ABSENT;
}

bool search_chunk_flag_members(const struct search_chunk *sc, const struct search_vpart *vp,
                               uint32_t *unseen, size_t *n_unseen, uint32_t *deleted,
                               size_t *n_deleted)
{
    *n_unseen = 0;
    *n_deleted = 0;
    if (vp->count == 0 || sc->upto <= vp->max_uid)
        return false;
    for (size_t i = 0; i < sc->n; i++) {
        const struct colcache_rec *r = &sc->recs[i];
        bool seen = false, del = false;
        search_flags_seen_deleted(r->field[0], r->len[0], &seen, &del);
        if (!seen)
            unseen[(*n_unseen)++] = r->uid;
        if (del)
            deleted[(*n_deleted)++] = r->uid;
    }
    return true;
}

static char lower(char ch)
{
    return ch >= 'A' && ch <= 'Z' ? (char)(ch - 'A' + 'a') : ch;
}

bool search_flags_has(const char *flags, size_t len, const char *want, size_t want_len)
{
    size_t i = 0;
    while (i < len) {
        while (i < len && flags[i] == ' ')
            i++;
        size_t s = i;
        while (i < len && flags[i] != ' ')
            i++;
        if (i - s != want_len)
            continue;
        size_t k = 0;
        while (k < want_len && lower(flags[s + k]) == lower(want[k]))
            k++;
        if (k == want_len)
            return true;
    }
    return false;
}

/* s[0..4) equals the lower-case letters w[0..4), either case ((c | 0x20) maps only 'X' to 'x'). */
static bool letters4(const char *s, const char *w)
{
    return ((s[0] | 0x20) == w[0]) & ((s[1] | 0x20) == w[1]) & ((s[2] | 0x20) == w[2]) &
           ((s[3] | 0x20) == w[3]);
}

void search_flags_seen_deleted(const char *flags, size_t len, bool *seen_r, bool *deleted_r)
{
    bool seen = false, del = false;
    if (len == 5 && memcmp(flags, "\\Seen", 5) == 0) {
        /* The common cases first: store.lua writes system flags in this spelling. */
        *seen_r = true;
        *deleted_r = false;
        return;
    }
    size_t i = 0;
    while (i < len) {
        if (flags[i] == ' ') {
            i++;
            continue;
        }
        size_t s = i;
        while (i < len && flags[i] != ' ')
            i++;
        if (flags[s] != '\\')
            continue;
        if (i - s == 5)
            seen |= letters4(flags + s + 1, "seen");
        else if (i - s == 8)
            del |= letters4(flags + s + 1, "dele") && letters4(flags + s + 4, "eted");
    }
    *seen_r = seen;
    *deleted_r = del;
}

size_t search_fmt_u64(char *out, uint64_t v)
{
    static const char pairs[] = "00010203040506070809101112131415161718192021222324252627282930313233"
                                "34353637383940414243444546474849505152535455565758596061626364656667"
                                "6869707172737475767778798081828384858687888990919293949596979899";
    char tmp[20];
    size_t k = sizeof(tmp);
    while (v >= 100) {
        unsigned d = (unsigned)(v % 100) * 2;
        v /= 100;
        tmp[--k] = pairs[d + 1];
        tmp[--k] = pairs[d];
    }
    if (v >= 10) {
        tmp[--k] = pairs[v * 2 + 1];
        tmp[--k] = pairs[v * 2];
    } else {
        tmp[--k] = (char)('0' + v);
    }
    memcpy(out, tmp + k, sizeof(tmp) - k);
    return sizeof(tmp) - k;
}

bool search_parse_u64(const char *s, size_t len, uint64_t *v_r)
{
    if (len == 0 || len > 20)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9' || v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *v_r = v;
    return true;
}
