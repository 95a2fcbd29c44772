/*
 * Bump allocator: a chain of blocks, each carved front to back. Large requests get a block of
 * their own. Reset keeps the first block so a connection's steady state allocates nothing.
 */
#include "frontend/arena.h"

#include <stdalign.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arena_block {
    struct arena_block *next;
    size_t size; /* usable bytes in data */
    size_t used;
    alignas(max_align_t) unsigned char data[];
};

struct arena {
    struct arena_block *head; /* current block; older blocks follow through next */
    struct arena_block *first; /* the oldest block, kept by arena_reset */
    size_t block_size;
    size_t footprint;
};

static struct arena_block *block_new(size_t size)
{
    struct arena_block *b = malloc(sizeof(*b) + size);
    if (b == NULL)
        abort();
    b->next = NULL;
    b->size = size;
    b->used = 0;
    return b;
}

struct arena *arena_new(size_t initial)
{
    struct arena *a = malloc(sizeof(*a));
    if (a == NULL)
        abort();
    if (initial < 256)
        initial = 256;
    a->block_size = initial;
    a->first = a->head = block_new(initial);
    a->footprint = sizeof(*a) + sizeof(struct arena_block) + initial;
    return a;
}

static void free_chain(struct arena_block *b, const struct arena_block *stop)
{
    while (b != NULL && b != stop) {
        struct arena_block *next = b->next;
        free(b);
        b = next;
    }
}

void arena_free(struct arena **ap)
{
    if (ap == NULL || *ap == NULL)
        return;
    free_chain((*ap)->head, NULL);
    free(*ap);
    *ap = NULL;
}

void *arena_alloc(struct arena *a, size_t size)
{
    const size_t align = alignof(max_align_t);
    if (size > SIZE_MAX - align)
        abort();
    size = (size + align - 1) & ~(align - 1);
    struct arena_block *b = a->head;
    if (b->size - b->used < size) {
        size_t want = size > a->block_size ? size : a->block_size;
        if (a->block_size < 64 * 1024)
            a->block_size *= 2; /* grow geometrically for commands that allocate a lot */
        b = block_new(want);
        b->next = a->head;
        a->head = b;
        a->footprint += sizeof(*b) + want;
    }
    void *p = b->data + b->used;
    b->used += size;
    return p;
}

void *arena_calloc(struct arena *a, size_t n, size_t size)
{
    if (size != 0 && n > SIZE_MAX / size)
        abort();
    void *p = arena_alloc(a, n * size);
    memset(p, 0, n * size);
    return p;
}

char *arena_strndup(struct arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    if (len > 0)
        memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

char *arena_printf(struct arena *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        abort();
    char *p = arena_alloc(a, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void arena_reset(struct arena *a)
{
    free_chain(a->head, a->first);
    a->head = a->first;
    a->first->used = 0;
    a->first->next = NULL;
    a->footprint = sizeof(*a) + sizeof(struct arena_block) + a->first->size;
}

size_t arena_footprint(const struct arena *a)
{
    return a->footprint;
}
