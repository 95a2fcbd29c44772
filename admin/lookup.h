/*
 * lookup: what several cimap-admin commands need before they touch a user's mail — the login's
 * namespace id, a mailbox id by name, a mailbox created on demand (with its missing parents, one
 * mbx_create.lua call) — and small helpers to read hiredis replies. Every function returns a
 * sysexits code (admin.h) and has already printed why when it is not ADMIN_EX_OK. Single-threaded.
 */
#ifndef CIMAP_ADMIN_LOOKUP_H
#define CIMAP_ADMIN_LOOKUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "keys/keys.h"

struct db;

/*
 * The namespace id of an active user into nsid. ADMIN_EX_USAGE for a login that can never exist,
 * ADMIN_EX_NOUSER when there is no such user, it is being deleted or its namespace is missing
 * (never creates anything), ADMIN_EX_TEMPFAIL / ADMIN_EX_SOFTWARE for Redis failures.
 */
int lookup_user(struct db *d, const char *login, char nsid[KEYS_NSID_LEN + 1]);

/*
 * Canonical form of a mailbox name given by an operator (INBOX in any case becomes "INBOX"; the
 * rest must be a valid stored name, modified UTF-7). Returns a malloc'd copy, or NULL after
 * printing why.
 */
char *lookup_mailbox_name(const char *name);

/* HGET of name in the user's mailboxes hash: *found_r and mbxid (when found). Exit code. */
int lookup_mailbox(struct db *d, const char *nsid, const char *name,
                   char mbxid[KEYS_MBXID_LEN + 1], bool *found_r);

/*
 * The id of mailbox name (canonical), created with every missing parent when it does not exist
 * (specialuse: "" or e.g. "\\Sent", applied only when it is created). *created_r tells which.
 * Exit code; ADMIN_EX_NOUSER when the user vanished meanwhile.
 */
int lookup_mailbox_create(struct db *d, const char *nsid, const char *name, const char *specialuse,
                          char mbxid[KEYS_MBXID_LEN + 1], bool *created_r);

/* Every mailbox of a user (HGETALL mailboxes), names sorted. Free with lookup_mailboxes_free. */
struct lookup_mailbox {
    char *name;
    char mbxid[KEYS_MBXID_LEN + 1];
};
int lookup_mailboxes(struct db *d, const char *nsid, struct lookup_mailbox **list_r, size_t *n_r);
void lookup_mailboxes_free(struct lookup_mailbox *list, size_t n);

/* An integer or a decimal string reply as int64; false for anything else (nil, junk). */
bool lookup_reply_int(const redisReply *r, int64_t *v_r);

/* HGETALL-style field lookup in a flat array reply; NULL when absent. */
const redisReply *lookup_field(const redisReply *hash, const char *name);

/* int64 of a field of a flat HGETALL reply, 0 when absent or not a number. */
int64_t lookup_field_int(const redisReply *hash, const char *name);

#endif
