/*
 * defaults: the mailboxes every new user gets (RFC 6154 SPECIAL-USE), created by cimap-admin
 * set-user and by --demo-data with mbx_create.lua. Header-only table.
 */
#ifndef CIMAP_DEFAULTS_H
#define CIMAP_DEFAULTS_H

#include <stddef.h>

struct default_mailbox {
    const char *name;
    const char *specialuse; /* "" for none */
};

static const struct default_mailbox default_mailboxes[] = {
    {"INBOX", ""},       {"Sent", "\\Sent"}, {"Drafts", "\\Drafts"},
    {"Trash", "\\Trash"}, {"Junk", "\\Junk"}, {"Archive", "\\Archive"},
};

#define DEFAULT_MAILBOX_COUNT (sizeof(default_mailboxes) / sizeof(default_mailboxes[0]))

#endif
