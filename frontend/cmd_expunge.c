/*
 * EXPUNGE (RFC 3501 §6.4.3) and UID EXPUNGE (RFC 4315 §2.1): removes the \Deleted messages the
 * session knows of (UID EXPUNGE: only those in its UID set) through the batched expunge driver
 * (expunge.c), and reports each removed message as "* n EXPUNGE" with the sequence number it has
 * at that moment, removing it from the session's view as it is sent (RFC 3501 §7.4.1: each
 * EXPUNGE shifts the numbers of the messages after it). Messages another session appended and
 * this one has not been told of yet are left for a later EXPUNGE: they cannot be reported.
 */
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/expunge.h"
#include "frontend/reply.h"
#include "frontend/selected.h"

static void expunge_cleanup(struct cmd_ctx *ctx)
{
    expunge_release(ctx->state);
}

static enum cmd_status expunge_done(struct cmd_ctx *ctx)
{
    struct expunge_job *job = ctx->state;
    if (job->failed) {
        struct store_result res = {job->status, NULL, job->error};
        return cmd_store_failed(ctx, &res, ctx->uid ? "UID EXPUNGE" : "EXPUNGE");
    }
    reply_tagged(ctx, "OK", NULL, "%s completed", ctx->uid ? "UID EXPUNGE" : "EXPUNGE");
    return CMD_DONE;
}

enum cmd_status cmd_expunge(struct cmd_ctx *ctx)
{
    const struct selected *sel = conn_selected(ctx->conn);
    const char *name = ctx->uid ? "UID EXPUNGE" : "EXPUNGE";
    if (ctx->argc != (ctx->uid ? 1u : 0u)) {
        reply_tagged(ctx, "BAD", NULL, ctx->uid ? "UID EXPUNGE takes a UID set"
                                                : "EXPUNGE takes no arguments");
        return CMD_DONE;
    }
    struct expunge_job *job = arena_calloc(ctx->arena, 1, sizeof(*job));
    if (ctx->uid) {
        const struct imap_arg *a = &ctx->args[0];
        struct seqset *set = arena_calloc(ctx->arena, 1, sizeof(*set));
        const char *error = NULL;
        if (a->type != IMAP_ARG_ATOM ||
            seqset_parse_resolve(ctx->arena, a->str, a->len, view_max_uid(sel->view), set,
                                 &error) != 0) {
            reply_tagged(ctx, "BAD", NULL, "%s: %s", name, error != NULL ? error : "Invalid UID set");
            return CMD_DONE;
        }
        job->uids = set;
    }
    if (sel->readonly) {
        reply_tagged(ctx, "NO", "READ-ONLY", "%s: the mailbox is read-only", name);
        return CMD_DONE;
    }
    if (job->uids != NULL && job->uids->count == 0) {
        reply_tagged(ctx, "OK", NULL, "%s completed", name);
        return CMD_DONE;
    }
    job->mode = EXPUNGE_DELETED;
    job->view_only = true;
    job->removed = expunge_report;
    job->done = expunge_done;
    ctx->state = job;
    ctx->cleanup = expunge_cleanup;
    return expunge_start(ctx, job);
}
