/*
 * RENAME (RFC 3501 §6.3.5): one mbx_rename.lua call, O(1) in messages — mailboxes are keyed by
 * id, so only names move: the mailbox and every "old/…" child get their new names in one step, and
 * ids, UIDVALIDITY and MAILBOXID stay (RFC 8474 §4.2). Renaming INBOX moves INBOX's id (and so its
 * messages) to the new name and leaves a fresh, empty INBOX with a new id and UIDVALIDITY; INBOX's
 * children stay where they are. The new name is checked against the user's limits here; the
 * script checks the mailbox limit and the children's new names.
 *
 * Superior levels of the new name are not created: a missing parent is listed as \Noselect, which
 * is what §6.3.5's "SHOULD create any superior hierarchical names" gives a client in practice.
 */
#include <string.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/user_limits.h"
#include "frontend/limits.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"


static enum cmd_status rename_done(struct cmd_ctx *ctx)
{
    if (!cmd_reply_is_array(ctx->store, 1))
        return cmd_store_failed(ctx, ctx->store, "RENAME");
    reply_tagged(ctx, "OK", NULL, "RENAME completed");
    return CMD_DONE;
}

enum cmd_status cmd_rename(struct cmd_ctx *ctx)
{
    size_t old_len = 0;
    size_t new_len = 0;
    const char *old = mailbox_arg_name(ctx, &ctx->args[0], MAILBOX_ARG_EXISTING, false, &old_len);
    if (old == NULL)
        return CMD_DONE;
    const char *new = mailbox_arg_name(ctx, &ctx->args[1], MAILBOX_ARG_NEW, false, &new_len);
    if (new == NULL)
        return CMD_DONE;
    if (strcmp(new, "INBOX") == 0) {
        reply_tagged(ctx, "NO", "ALREADYEXISTS", "INBOX always exists");
        return CMD_DONE;
    }
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, mailboxes, inbox;
    keys_ns_meta(&meta, nsid);
    keys_ns_mailboxes(&mailboxes, nsid);
    bool is_inbox = strcmp(old, "INBOX") == 0;
    char inbox_id[KEYS_MBXID_LEN + 1] = "";
    if (is_inbox) {
        keys_mbxid_new(inbox_id);
        keys_mbx(&inbox, nsid, inbox_id, KEYS_MBX);
    }
    const char *max = arena_printf(ctx->arena, "%u",
                                   (unsigned)conn_user_limits(ctx->conn)->max_mailboxes);
    if (is_inbox) {
        const char *argv[] = {meta.s, mailboxes.s, inbox.s, old, new, inbox_id, max};
        const size_t argvlen[] = {meta.len, mailboxes.len, inbox.len, old_len,
                                  new_len,  KEYS_MBXID_LEN, strlen(max)};
        return conn_eval(ctx, rename_done, LUA_SCRIPT_MBX_RENAME, 3, 7, argv, argvlen);
    }
    const char *argv[] = {meta.s, mailboxes.s, old, new, "", max};
    const size_t argvlen[] = {meta.len, mailboxes.len, old_len, new_len, 0, strlen(max)};
    return conn_eval(ctx, rename_done, LUA_SCRIPT_MBX_RENAME, 2, 6, argv, argvlen);
}
