/*
 * view: the selected mailbox as one session sees it — its UIDs as runs of consecutive numbers
 * (DESIGN.md rule 5: a 100,000-message mailbox with few holes is a few bytes), with sequence
 * number <-> UID mapping in O(log runs). Owned by the connection's selected state. Pure, no I/O.
 */
#ifndef CIMAP_VIEW_H
#define CIMAP_VIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct view;

/* An empty view. Aborts on OOM. */
struct view *view_new(void);

/* Frees the view; sets *v to NULL. NULL-safe. */
void view_free(struct view **v);

/* Empties the view (keeps its storage). */
void view_clear(struct view *v);

/*
 * Adds UIDs first..last (first <= last), which must all lie above every UID already present;
 * a run adjacent to the last one is merged. Returns 0, or -1 when out of order or invalid.
 */
int view_add_run(struct view *v, uint32_t first, uint32_t last);

/*
 * Adds a run as Redis keeps it in /runs, "first:last" (decimal, len bytes, no NUL needed), in
 * ascending order. A run read in a later page than the one before it may overlap the view's last
 * run (that run was split meanwhile): only its part above the view's highest UID is added.
 * Returns false when the text is not a run.
 */
bool view_add_run_text(struct view *v, const char *s, size_t len);

/* Number of messages (the session's EXISTS). */
uint32_t view_count(const struct view *v);

/* Number of runs. */
size_t view_run_count(const struct view *v);

/* The UID of sequence number seq (1-based), or 0 when seq is out of range. */
uint32_t view_uid(const struct view *v, uint32_t seq);

/* The sequence number of uid, or 0 when the view does not hold it. */
uint32_t view_seq(const struct view *v, uint32_t uid);

/* The first sequence number whose UID is >= uid, or count + 1 when none is. */
uint32_t view_seq_ceil(const struct view *v, uint32_t uid);

/* The last sequence number whose UID is <= uid, or 0 when none is. */
uint32_t view_seq_floor(const struct view *v, uint32_t uid);

/* The highest UID held, or 0 when empty. */
uint32_t view_max_uid(const struct view *v);

/* How many held UIDs are >= uid (e.g. the \Recent count from the first recent UID). */
uint32_t view_count_from(const struct view *v, uint32_t uid);

/*
 * Removes uid (an expunge). Returns its former sequence number, or 0 when it was not held.
 * O(runs) in the worst case (a run split shifts the arrays).
 */
uint32_t view_remove(struct view *v, uint32_t uid);

/* Run i (i < view_run_count): its first and last UID. */
void view_run(const struct view *v, size_t i, uint32_t *first_r, uint32_t *last_r);

/* Bytes of memory held (for limits and the per-connection memory target). */
size_t view_footprint(const struct view *v);

#endif
