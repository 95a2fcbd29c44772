/*
 * A chained hash table keyed by nsid (a 36-byte UUID, so FNV-1a is plenty), each entry holding a
 * small array of session tokens. Entries disappear with their last watcher, so memory follows the
 * number of watched users, not history.
 */
#include "frontend/watchers.h"

#include <stdlib.h>
#include <string.h>

#include "keys/keys.h"

struct entry {
    struct entry *next;
    char nsid[KEYS_NSID_LEN + 1];
    uint64_t *tokens;
    size_t n, cap;
};

struct watchers {
    struct entry **buckets;
    size_t nbuckets; /* power of two */
    size_t count;
};

static uint64_t hash(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

struct watchers *watchers_new(void)
{
    struct watchers *w = calloc(1, sizeof(*w));
    if (w == NULL)
        abort();
    w->nbuckets = 64;
    w->buckets = calloc(w->nbuckets, sizeof(*w->buckets));
    if (w->buckets == NULL)
        abort();
    return w;
}

void watchers_free(struct watchers **wp)
{
    if (wp == NULL || *wp == NULL)
        return;
    struct watchers *w = *wp;
    for (size_t i = 0; i < w->nbuckets; i++) {
        struct entry *e = w->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            free(e->tokens);
            free(e);
            e = next;
        }
    }
    free(w->buckets);
    free(w);
    *wp = NULL;
}

static struct entry **slot(struct watchers *w, const char *nsid)
{
    struct entry **p = &w->buckets[hash(nsid) & (w->nbuckets - 1)];
    while (*p != NULL && strcmp((*p)->nsid, nsid) != 0)
        p = &(*p)->next;
    return p;
}

static void grow(struct watchers *w)
{
    size_t n = w->nbuckets * 2;
    struct entry **b = calloc(n, sizeof(*b));
    if (b == NULL)
        abort();
    for (size_t i = 0; i < w->nbuckets; i++) {
        struct entry *e = w->buckets[i];
        while (e != NULL) {
            struct entry *next = e->next;
            size_t j = hash(e->nsid) & (n - 1);
            e->next = b[j];
            b[j] = e;
            e = next;
        }
    }
    free(w->buckets);
    w->buckets = b;
    w->nbuckets = n;
}

bool watchers_add(struct watchers *w, const char *nsid, uint64_t token)
{
    struct entry **p = slot(w, nsid);
    bool first = *p == NULL;
    if (first) {
        struct entry *e = calloc(1, sizeof(*e));
        if (e == NULL)
            abort();
        strncpy(e->nsid, nsid, KEYS_NSID_LEN);
        *p = e;
        w->count++;
    }
    struct entry *e = *p;
    if (e->n == e->cap) {
        size_t ncap = e->cap == 0 ? 2 : e->cap * 2;
        uint64_t *t = realloc(e->tokens, ncap * sizeof(*t));
        if (t == NULL)
            abort();
        e->tokens = t;
        e->cap = ncap;
    }
    e->tokens[e->n++] = token;
    if (first && w->count > w->nbuckets)
        grow(w);
    return first;
}

bool watchers_remove(struct watchers *w, const char *nsid, uint64_t token)
{
    struct entry **p = slot(w, nsid);
    struct entry *e = *p;
    if (e == NULL)
        return false;
    for (size_t i = 0; i < e->n; i++) {
        if (e->tokens[i] == token) {
            e->tokens[i] = e->tokens[--e->n];
            break;
        }
    }
    if (e->n > 0)
        return false;
    *p = e->next;
    free(e->tokens);
    free(e);
    w->count--;
    return true;
}

void watchers_each(struct watchers *w, const char *nsid, void (*fn)(uint64_t token, void *arg),
                   void *arg)
{
    struct entry *e = *slot(w, nsid);
    if (e == NULL || e->n == 0)
        return;
    uint64_t small[16];
    uint64_t *copy = e->n <= 16 ? small : malloc(e->n * sizeof(*copy));
    if (copy == NULL)
        abort();
    size_t n = e->n;
    memcpy(copy, e->tokens, n * sizeof(*copy));
    for (size_t i = 0; i < n; i++)
        fn(copy[i], arg);
    if (copy != small)
        free(copy);
}

size_t watchers_count(const struct watchers *w)
{
    return w->count;
}
