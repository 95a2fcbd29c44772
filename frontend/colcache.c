/*
 * colcache: the chunk codec and the fire-and-forget put (colcache.h has the contract).
 */
#include "frontend/colcache.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/frontend.h"
#include "frontend/log.h"
#include "frontend/store.h"
#include "lua/scripts.h"

/* ------------------------------------------------------------------ reading */

/* Parses a decimal of 1..19 digits (cannot overflow) at *p and advances *p past it. */
static inline bool take_u64(const char *s, size_t len, size_t *p, uint64_t *out)
{
    size_t i = *p;
    size_t end = len - i > 19 ? i + 19 : len;
    uint64_t v = 0;
    while (i < end && (unsigned char)(s[i] - '0') < 10)
        v = v * 10 + (uint64_t)(s[i++] - '0');
    if (i == *p || (i < len && (unsigned char)(s[i] - '0') < 10))
        return false; /* no digit, or a 20th */
    *p = i;
    *out = v;
    return true;
}

static inline bool take_byte(const char *s, size_t len, size_t *p, char c)
{
    if (*p >= len || s[*p] != c)
        return false;
    (*p)++;
    return true;
}

bool colcache_open(struct colcache *c, const char *data, size_t len, enum colcache_kind kind,
                   uint32_t chunk)
{
    memset(c, 0, sizeof(*c));
    size_t p = 0;
    uint64_t ch = 0, modseq = 0, upto = 0;
    if (data == NULL || len < 4 || memcmp(data, "c1 ", 3) != 0)
        return false;
    p = 3;
    if (!take_byte(data, len, &p, (char)kind) || !take_byte(data, len, &p, ' ') ||
        !take_u64(data, len, &p, &ch) || !take_byte(data, len, &p, ' ') ||
        !take_u64(data, len, &p, &modseq) || !take_byte(data, len, &p, ' ') ||
        !take_u64(data, len, &p, &upto) || !take_byte(data, len, &p, '\n'))
        return false;
    if (ch != chunk || upto < colcache_first(chunk) || upto > (uint64_t)colcache_last(chunk) + 1)
        return false;
    c->kind = kind;
    c->chunk = chunk;
    c->modseq = modseq;
    c->upto = (uint32_t)(upto > UINT32_MAX ? UINT32_MAX : upto);
    c->data = data;
    c->len = len;
    c->pos = p;
    return true;
}

bool colcache_next(struct colcache *c, struct colcache_rec *r)
{
    if (c->bad || c->pos >= c->len)
        return false;
    size_t p = c->pos;
    uint64_t uid = 0, l1 = 0, l2 = 0;
    bool two = c->kind == COLCACHE_MSG;
    if (!take_u64(c->data, c->len, &p, &uid) || !take_byte(c->data, c->len, &p, ' ') ||
        !take_u64(c->data, c->len, &p, &l1))
        goto bad;
    if (two && (!take_byte(c->data, c->len, &p, ' ') || !take_u64(c->data, c->len, &p, &l2)))
        goto bad;
    if (!take_byte(c->data, c->len, &p, '\n'))
        goto bad;
    /* Ascending, inside the chunk, below upto; the fields fit in the value. */
    if (uid < colcache_first(c->chunk) || uid >= c->upto || uid <= c->last_uid)
        goto bad;
    if (l1 > c->len - p || l2 > c->len - p - l1)
        goto bad;
    r->uid = (uint32_t)uid;
    r->field[0] = c->data + p;
    r->len[0] = (size_t)l1;
    r->field[1] = c->data + p + l1;
    r->len[1] = (size_t)l2;
    c->pos = p + (size_t)l1 + (size_t)l2;
    c->last_uid = (uint32_t)uid;
    return true;
bad:
    c->bad = true;
    return false;
}

enum colcache_found colcache_find(struct colcache *c, uint32_t uid, struct colcache_rec *r)
{
    if (c->bad || uid < colcache_first(c->chunk) || uid >= c->upto)
        return COLCACHE_UNKNOWN;
    if (uid <= c->last_uid) {
        /* Restart (a repeated or earlier UID): the header ends at the first '\n'. */
        const char *nl = memchr(c->data, '\n', c->len);
        c->pos = (size_t)(nl - c->data) + 1;
        c->last_uid = 0;
    }
    for (;;) {
        size_t before = c->pos;
        uint32_t before_uid = c->last_uid;
        struct colcache_rec cur;
        if (!colcache_next(c, &cur))
            return c->bad ? COLCACHE_UNKNOWN : COLCACHE_ABSENT;
        if (cur.uid == uid) {
            *r = cur;
            return COLCACHE_HIT;
        }
        if (cur.uid > uid) {
            /* Not there; step back so the next (larger) lookup sees this record again. */
            c->pos = before;
            c->last_uid = before_uid;
            return COLCACHE_ABSENT;
        }
    }
}

/* ------------------------------------------------------------------ building */

static void put_bytes(struct colcache_builder *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (n > COLCACHE_MAX_VALUE || b->len + n > COLCACHE_MAX_VALUE) {
        b->failed = true;
        return;
    }
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 4096;
        while (cap < b->len + n)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (nb == NULL) {
            b->failed = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, p, n);
    b->len += n;
}

/* Appends v in decimal. */
static void put_u64(struct colcache_builder *b, uint64_t v)
{
    char tmp[24];
    size_t i = sizeof(tmp);
    do {
        tmp[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    put_bytes(b, tmp + i, sizeof(tmp) - i);
}

void colcache_build_begin(struct colcache_builder *b, enum colcache_kind kind, uint32_t chunk,
                          uint64_t modseq, uint32_t upto)
{
    memset(b, 0, sizeof(*b));
    b->kind = kind;
    b->chunk = chunk;
    b->modseq = modseq;
    b->upto = upto;
    if (upto < colcache_first(chunk) || (uint64_t)upto > (uint64_t)colcache_last(chunk) + 1) {
        b->failed = true;
        return;
    }
    char k = (char)kind;
    put_bytes(b, "c1 ", 3);
    put_bytes(b, &k, 1);
    put_bytes(b, " ", 1);
    put_u64(b, chunk);
    put_bytes(b, " ", 1);
    put_u64(b, modseq);
    put_bytes(b, " ", 1);
    put_u64(b, upto);
    put_bytes(b, "\n", 1);
}

void colcache_build_add(struct colcache_builder *b, uint32_t uid, const char *f1, size_t l1,
                        const char *f2, size_t l2)
{
    if (b->failed)
        return;
    if (uid < colcache_first(b->chunk) || uid >= b->upto || (b->last_uid != 0 && uid <= b->last_uid)) {
        b->failed = true;
        return;
    }
    if (b->kind != COLCACHE_MSG)
        l2 = 0;
    b->last_uid = uid;
    put_u64(b, uid);
    put_bytes(b, " ", 1);
    put_u64(b, l1);
    if (b->kind == COLCACHE_MSG) {
        put_bytes(b, " ", 1);
        put_u64(b, l2);
    }
    put_bytes(b, "\n", 1);
    if (l1 > 0)
        put_bytes(b, f1, l1);
    if (l2 > 0)
        put_bytes(b, f2, l2);
}

void colcache_builder_free(struct colcache_builder *b)
{
    free(b->buf);
    b->buf = NULL;
    b->len = b->cap = 0;
}

/* ------------------------------------------------------------------ storing */

bool colcache_enabled(const struct frontend *fe)
{
    return fe != NULL && fe->cfg != NULL && fe->cfg->cache_ttl_s > 0;
}

static void put_done(const struct store_result *res, uint64_t token)
{
    (void)token;
    if (res->status != STORE_OK)
        log_write(LOG_DEBUG, "colcache.put_failed", "error=%s",
                  res->error != NULL ? res->error : "?");
}

void colcache_put_shard(struct frontend *fe, uint64_t shard, const char *nsid, const char *mbxid,
                        const struct colcache_builder *b)
{
    if (b->failed || b->buf == NULL || b->len > COLCACHE_MAX_VALUE || !colcache_enabled(fe))
        return;
    struct key meta, mbx, cache;
    keys_ns_meta(&meta, nsid);
    keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
    keys_mbx_cache(&cache, nsid, mbxid, (char)b->kind, b->chunk);
    char modseq[24], ttl[16];
    snprintf(modseq, sizeof(modseq), "%" PRIu64, b->modseq);
    snprintf(ttl, sizeof(ttl), "%" PRIu32, fe->cfg->cache_ttl_s);
    const char *argv[] = {meta.s, mbx.s, cache.s, mbxid, modseq, ttl, b->buf};
    const size_t argvlen[] = {meta.len, mbx.len, cache.len, strlen(mbxid), strlen(modseq),
                              strlen(ttl), b->len};
    store_eval(fe->store, shard, LUA_SCRIPT_CACHE_PUT, put_done, 0, 3, 7, argv, argvlen);
}
