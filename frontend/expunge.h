/*
 * expunge: the shared driver that removes messages from the selected mailbox in batches of up to
 * 1,000, each batch one atomic expunge.lua call (one modseq, one log entry, one wake-up):
 *   - CLOSE: every \Deleted message, silently;
 *   - EXPUNGE: the \Deleted messages the session knows of, each reported as it goes;
 *   - UID EXPUNGE (RFC 4315): the same, limited to a UID set;
 *   - MOVE (RFC 6851): every moved message, \Deleted or not, once the copies are committed.
 * Per batch: the candidates (ZRANGEBYSCORE deleted, or the given UIDs), their content ids
 * (HMGET msg), then the script with the content keys in KEYS; the script re-checks each candidate,
 * so a concurrent STORE -FLAGS \Deleted or EXPUNGE wins. Output backpressure is respected between
 * batches; per-batch memory comes from the job's own arena, reset each batch.
 */
#ifndef CIMAP_EXPUNGE_H
#define CIMAP_EXPUNGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/conn.h"
#include "frontend/seqset.h"

enum expunge_mode {
    EXPUNGE_DELETED, /* messages carrying \Deleted (EXPUNGE, UID EXPUNGE, CLOSE) */
    EXPUNGE_ALL,     /* every UID of job->uids (MOVE); job->uids is required */
};

/* Owned by the handler, usually in the command's arena; zero it, then fill the inputs. */
struct expunge_job {
    /* Inputs. */
    enum expunge_mode mode;
    const struct seqset *uids; /* UIDs to consider (ranges of UIDs); NULL: all (EXPUNGE_DELETED) */
    bool view_only;            /* consider only UIDs in the session's view (a session can report
                                * only messages it knows of) */
    /* Called after each batch with the UIDs removed (ascending); may be NULL (CLOSE). */
    void (*removed)(struct cmd_ctx *ctx, const uint32_t *uids, size_t n);
    cmd_step *done;            /* continued when finished or failed (ctx->helper is NULL then) */
    /* Set when done runs: */
    bool failed;
    enum store_status status;  /* of the failed request */
    const char *error;         /* copy of the failure text, in the command's arena */
    uint64_t modseq;           /* highestmodseq after the last batch that removed something */
    uint64_t total;            /* messages removed */
    /* Internal. */
    struct arena *batch_arena;
    size_t range;              /* EXPUNGE_ALL: the range of uids being walked */
    uint32_t cursor;           /* next UID to consider */
    bool exhausted;            /* no candidates beyond the current batch */
    uint32_t *batch;
    size_t batch_n;
};

/*
 * Starts the job against the selected mailbox (ctx->helper points to it while it runs). Returns
 * what the handler returns. The handler's ctx->cleanup must call expunge_release(job), so the
 * batch memory is freed however the command ends.
 */
enum cmd_status expunge_start(struct cmd_ctx *ctx, struct expunge_job *job);

/*
 * A removed callback for the commands that report (EXPUNGE, UID EXPUNGE, MOVE): "* n EXPUNGE"
 * for each UID, n being its sequence number at that moment, removing it from the session's view
 * as it is sent (RFC 3501 §7.4.1). UIDs the view does not hold are skipped.
 */
void expunge_report(struct cmd_ctx *ctx, const uint32_t *uids, size_t n);

/* Frees the job's batch memory (idempotent; safe on a zeroed job). */
void expunge_release(struct expunge_job *job);

#endif
