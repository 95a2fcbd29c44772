/*
 * expunge: the shared driver that removes \Deleted messages from the selected mailbox in batches
 * (CLOSE silently; EXPUNGE and UID EXPUNGE report each removed message). Per batch of up to 1,000:
 * ZRANGE deleted, HMGET msg (content ids), expunge.lua — each batch one atomic operation.
 */
#ifndef CIMAP_EXPUNGE_H
#define CIMAP_EXPUNGE_H

#include <stddef.h>
#include <stdint.h>

#include "frontend/conn.h"

struct expunge_job {
    /* Called after each batch with the UIDs removed (ascending); may be NULL. */
    void (*removed)(struct cmd_ctx *ctx, const uint32_t *uids, size_t n);
    cmd_step *done;        /* continued when finished or failed */
    /* Set when done runs: */
    bool failed;
    enum store_status status; /* of the failed request */
    const char *error;        /* arena copy of the failure text */
    uint64_t modseq;          /* highestmodseq after the last batch */
    uint64_t total;           /* messages removed */
    /* internal */
    uint32_t *batch;
    size_t batch_n;
};

/*
 * Starts removing every \Deleted message of the selected mailbox; job lives in the command's
 * arena (ctx->helper points to it while it runs). Returns what the handler returns.
 */
enum cmd_status expunge_start(struct cmd_ctx *ctx, struct expunge_job *job);

#endif
