/*
 * arena: a bump allocator for per-command memory (STYLE.md ownership rule 2). Everything a command
 * allocates comes from its arena and is released in one go after the tagged reply; long commands
 * call arena_reset() between batches so memory never grows with message count.
 * Allocation failure is fatal (abort): the arena is only used for bounded, limit-checked sizes.
 */
#ifndef CIMAP_ARENA_H
#define CIMAP_ARENA_H

#include <stddef.h>

struct arena;

/* Creates an arena whose first block holds at least initial bytes. Aborts on OOM. */
struct arena *arena_new(size_t initial);

/* Frees the arena and everything allocated from it; sets *a to NULL. NULL-safe. */
void arena_free(struct arena **a);

/* Returns size bytes aligned for any type; memory is not zeroed. */
void *arena_alloc(struct arena *a, size_t size);

/* Returns zeroed memory for n elements of size bytes (overflow-checked). */
void *arena_calloc(struct arena *a, size_t n, size_t size);

/* Copies len bytes and appends a NUL. */
char *arena_strndup(struct arena *a, const char *s, size_t len);

/* Formats like sprintf into arena memory. */
char *arena_printf(struct arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Releases every allocation but keeps the first block for reuse. */
void arena_reset(struct arena *a);

/* Bytes currently allocated from the system by this arena (for limits and metrics). */
size_t arena_footprint(const struct arena *a);

#endif
