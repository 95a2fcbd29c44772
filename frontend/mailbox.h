/*
 * mailbox: small steps shared by the commands that name a mailbox (CREATE, DELETE, RENAME, LIST,
 * STATUS, SELECT, APPEND...): reading a mailbox-name argument, the user's name limits, and
 * looking a name up in the user's mailboxes hash, creating INBOX on the fly when it is missing
 * (RFC 3501 §5.1: INBOX always exists for a logged-in user).
 *
 * The lookups are sub-steps of the calling command: they borrow ctx->state while they run and
 * give it back before continuing the caller's next step, which runs with ctx->store == NULL.
 * On a Redis failure they answer the command themselves (NO [UNAVAILABLE] ...) and end it
 * (CMD_DONE) without calling next.
 */
#ifndef CIMAP_MAILBOX_H
#define CIMAP_MAILBOX_H

#include <stdbool.h>
#include <stddef.h>

#include "frontend/conn.h"
#include "frontend/mboxname.h"
#include "keys/keys.h"

/* The user's limits on new mailbox names (defaults of frontend/limits.h; per-user later). */
void mailbox_limits(const struct cmd_ctx *ctx, struct mboxname_limits *out);

/* Which limits mailbox_arg_name applies. */
enum mailbox_arg_use {
    MAILBOX_ARG_EXISTING, /* a name that should exist: hard caps only (mboxname_normalize) */
    MAILBOX_ARG_NEW,      /* a name about to be created: the user's limits */
};

/*
 * Reads arg as a mailbox name (astring: atom, quoted or literal) and returns its normalised form,
 * NUL-terminated, in the command's arena (*len_r its length). When the argument is not an astring
 * answers BAD, when the name is invalid answers NO [CANNOT] / NO [LIMIT] (RFC 5530), and returns
 * NULL: the handler then returns CMD_DONE. strip_delim drops one trailing "/" first (CREATE,
 * RFC 3501 §6.3.3).
 */
const char *mailbox_arg_name(struct cmd_ctx *ctx, const struct imap_arg *arg,
                             enum mailbox_arg_use use, bool strip_delim, size_t *len_r);

/*
 * Looks name (normalised, NUL-terminated, must stay valid until next runs) up in the mailboxes
 * hash and writes its id with a NUL into mbxid_r (KEYS_MBXID_LEN + 1 bytes), or "" when there is
 * no such mailbox; INBOX is created when missing. Then continues next. One round trip (two or
 * three when INBOX has to be created).
 */
enum cmd_status mailbox_lookup(struct cmd_ctx *ctx, const char *name, char *mbxid_r,
                               cmd_step *next);

/* mailbox_lookup of INBOX: INBOX's id (never "") in mbxid_r, then next. */
enum cmd_status mailbox_ensure_inbox(struct cmd_ctx *ctx, char *mbxid_r, cmd_step *next);

/*
 * Creates INBOX (mbx_create, no mailbox limit: INBOX must exist) for a caller that already knows
 * it is missing; if another session created it first, reads that one's id. INBOX's id in mbxid_r,
 * then next.
 */
enum cmd_status mailbox_create_inbox(struct cmd_ctx *ctx, char *mbxid_r, cmd_step *next);

#endif
