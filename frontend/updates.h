/*
 * updates: bringing a selected session up to date from its mailbox's change log (DESIGN.md rule 3,
 * "Session view"; RFC 3501 §7, RFC 2180). Wake-ups only say "look"; this reads the log from the
 * session's last modseq, in order, and turns each entry into untagged responses exactly once:
 * `append` → EXISTS (and RECENT for the session that claims them), `flags` → FETCH (FLAGS),
 * `expunge` → EXPUNGE with the sequence number the message has at that moment, `mailbox deleted`
 * → BYE. Applying an entry is idempotent (the session may already reflect its own changes).
 * A session that fell behind the trimmed log, or whose mailbox's modseq went backwards (Redis lost
 * data), resynchronises from the UID set instead and reports the difference.
 *
 * Only commands where RFC 3501 allows EXPUNGE responses run it: NOOP, CHECK, IDLE (never inside a
 * FETCH/STORE/SEARCH).
 */
#ifndef CIMAP_UPDATES_H
#define CIMAP_UPDATES_H

#include "frontend/conn.h"

/*
 * Applies every change logged since the session's modseq, writing untagged responses, then
 * continues next (unless the mailbox went away: then BYE is written, the connection closes and
 * the command ends). Must run with a mailbox selected. Uses ctx->helper while it runs.
 */
enum cmd_status updates_run(struct cmd_ctx *ctx, cmd_step *next);

#endif
