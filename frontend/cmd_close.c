/*
 * CLOSE (RFC 3501 §6.4.2), UNSELECT (RFC 3691) and CHECK (RFC 3501 §6.4.1).
 * CLOSE silently expunges the \Deleted messages of a read-write mailbox (expunge.c, batches of
 * 1,000, each batch its own atomic operation) and then leaves the selected state; UNSELECT only
 * leaves it. CHECK has nothing to flush — every write is durable in Redis when it is acknowledged
 * — so it behaves like NOOP, updates included.
 */
#include <string.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/expunge.h"
#include "frontend/reply.h"
#include "frontend/selected.h"

static enum cmd_status close_done(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->state;
    /* RFC 3501: CLOSE leaves the selected state even when the expunge fails. */
    conn_unselect(ctx->conn);
    if (job->failed && !(job->status == STORE_ERROR && strncmp(job->error, "NONEXISTENT", 11) == 0)) {
        struct store_result res = {job->status, NULL, job->error};
        return cmd_store_failed(ctx, &res, "CLOSE");
    }
    reply_tagged(ctx, "OK", NULL, "CLOSE completed");
    return CMD_DONE;
}

static void close_cleanup(struct cmd_ctx *ctx)
{
    expunge_release(ctx->state);
}

enum cmd_status cmd_close(struct cmd_ctx *ctx)
{
    const struct selected *sel = conn_selected(ctx->conn);
    if (!sel->readonly) {
        struct expunge_job *job = arena_calloc(ctx->arena, 1, sizeof(*job));
        job->mode = EXPUNGE_DELETED; /* every \Deleted message, silently (RFC 3501 §6.4.2) */
        job->done = close_done;
        ctx->state = job;
        ctx->cleanup = close_cleanup;
        return expunge_start(ctx, job);
    }
    conn_unselect(ctx->conn);
    reply_tagged(ctx, "OK", NULL, "CLOSE completed");
    return CMD_DONE;
}

enum cmd_status cmd_unselect(struct cmd_ctx *ctx)
{
    conn_unselect(ctx->conn);
    reply_tagged(ctx, "OK", NULL, "UNSELECT completed");
    return CMD_DONE;
}

enum cmd_status cmd_check(struct cmd_ctx *ctx)
{
    return cmd_noop(ctx); /* updates, then "CHECK completed" */
}
