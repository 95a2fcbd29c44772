/*
 * seqset: IMAP sequence sets (RFC 3501 §9 "sequence-set", RFC 5182 "$").
 *
 * Two steps, because "*" means "the largest number in use" and that is only known when the
 * command runs against the selected mailbox (message count for sequence numbers, highest UID for
 * UID commands):
 *   1. seqset_parse(): text -> struct seqset_spec, ranges as written with "*" kept symbolic;
 *   2. seqset_resolve(spec, star): -> struct seqset, sorted, merged, ready for lookups.
 * Everything is allocated from a caller-supplied arena (per-command memory, STYLE.md ownership
 * rule 2); nothing here needs freeing on its own. Pure functions, re-entrant.
 */
#ifndef CIMAP_SEQSET_H
#define CIMAP_SEQSET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"

/* In a struct seqset_spec range, an end equal to SEQSET_STAR stands for "*". (0 is never a valid
 * nz-number, so the marker cannot collide with a real number.) */
#define SEQSET_STAR UINT32_C(0)

/* Inclusive range. In a resolved set 1 <= first <= last. */
struct seqset_range {
    uint32_t first;
    uint32_t last;
};

/* A parsed, unresolved sequence set. Lives in the arena given to seqset_parse(). */
struct seqset_spec {
    bool saved;                  /* "$" (RFC 5182): refers to the saved search result; count == 0 */
    bool has_star;               /* some range end is SEQSET_STAR */
    struct seqset_range *ranges; /* in input order, as written (first may exceed last) */
    size_t count;
};

/* A resolved sequence set: ranges sorted ascending, non-overlapping and non-adjacent (so the
 * representation of a set of numbers is unique). count == 0 is the empty set. */
struct seqset {
    struct seqset_range *ranges;
    size_t count;
};

/* seqset_parse() flags */
#define SEQSET_ALLOW_SAVED 0x1u /* accept "$" (only when SEARCHRES applies to the command) */

/*
 * Parses s[0..len) (no NUL needed; a sequence set never contains one) as a sequence-set:
 * nz-numbers (no leading zero, at most 4294967295), "*", "a:b" ranges, joined by ",". With
 * SEQSET_ALLOW_SAVED, "$" alone is accepted and gives spec_r->saved = true.
 * Returns 0 and fills *spec_r (ranges in arena a), or -1 with *error_r set to a static message
 * suitable for a BAD response. On -1 *spec_r is untouched.
 */
int seqset_parse(struct arena *a, const char *s, size_t len, unsigned flags,
                 struct seqset_spec *spec_r, const char **error_r);

/*
 * Resolves spec against star (the largest number in use: message count, or highest UID) into a
 * normalised set in arena a. "a:b" with a > b is taken as "b:a" (RFC 3501 §9). When star is 0
 * (empty mailbox) a range with a "*" end denotes no number and is dropped. Numbers above star are
 * kept: the caller decides whether they are an error (sequence numbers, RFC 3501 §6.4.8) or
 * simply match nothing (UIDs).
 * Returns 0 and fills *set_r, or -1 with *error_r set if spec->saved (the caller must substitute
 * the saved result itself).
 */
int seqset_resolve(struct arena *a, const struct seqset_spec *spec, uint32_t star,
                   struct seqset *set_r, const char **error_r);

/* seqset_parse() without SEQSET_ALLOW_SAVED followed by seqset_resolve(). Same returns. */
int seqset_parse_resolve(struct arena *a, const char *s, size_t len, uint32_t star,
                         struct seqset *set_r, const char **error_r);

/*
 * Builds a normalised set from n numbers in any order (duplicates allowed), e.g. the UIDs of a
 * COPY for COPYUID. Returns 0, or -1 with *error_r set when a number is 0. The input is not
 * modified; a sorted copy is made in arena a when it is not already ascending.
 */
int seqset_from_numbers(struct arena *a, const uint32_t *nums, size_t n, struct seqset *set_r,
                        const char **error_r);

/* True when n is in set (binary search, O(log ranges)). */
bool seqset_contains(const struct seqset *set, uint32_t n);

/* How many numbers set contains (at most 4294967295, so it fits in uint64_t). */
uint64_t seqset_count(const struct seqset *set);

/*
 * Writes set compactly ("1:3,5,7:9") into buf[0..size) with a terminating NUL. *len_r is set to
 * the length of the full text (without the NUL) in every case. Returns 0 when it fit, -1 with
 * *error_r set when size was too small (buf then holds a truncated, NUL-terminated prefix if
 * size > 0; call again with *len_r + 1 bytes). The empty set formats as "" (not a valid
 * sequence-set: callers must not send it).
 */
int seqset_format(const struct seqset *set, char *buf, size_t size, size_t *len_r,
                  const char **error_r);

/* As seqset_format(), into arena a; returns the NUL-terminated text. */
char *seqset_format_arena(struct arena *a, const struct seqset *set);

#endif
