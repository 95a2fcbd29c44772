/*
 * msgset: a command's sequence set (RFC 3501 §9) resolved against the session's view of the
 * selected mailbox, as ranges of message sequence numbers. For message sequence numbers "*" is the
 * message count and a number beyond it is an error (BAD); for UIDs (UID FETCH, UID STORE, ...)
 * "*" is the highest UID and UIDs that do not exist simply match nothing (RFC 3501 §6.4.8).
 * Pure; results in the command's arena.
 */
#ifndef CIMAP_MSGSET_H
#define CIMAP_MSGSET_H

#include <stdbool.h>
#include <stddef.h>

#include "frontend/arena.h"
#include "frontend/seqset.h"
#include "frontend/view.h"

/*
 * Resolves text (len bytes) against v into *seqs_r: normalised ranges of sequence numbers, all
 * within 1..view_count(v). Returns 0, or -1 with *error_r (a static text for BAD).
 */
int msgset_resolve(struct arena *a, const struct view *v, const char *text, size_t len, bool uid,
                   struct seqset *seqs_r, const char **error_r);

#endif
