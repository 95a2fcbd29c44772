/*
 * limits: default per-user limits on mailboxes (issue 5). The scripts enforce what they are given
 * (keys/README.md "Scripts"), so concurrent front ends cannot overshoot; these are the values a
 * front end passes today. Per-user overrides (`param:*` fields of /users/<login>, set with
 * `cimap-admin set-user --param`) are not read yet.
 */
#ifndef CIMAP_LIMITS_H
#define CIMAP_LIMITS_H

#define LIMITS_MAX_MAILBOXES 1000  /* mailboxes per user (mbx_create, mbx_rename) */
#define LIMITS_MAX_NAME_LEN 255    /* bytes of a mailbox name, modified UTF-7 */
#define LIMITS_MAX_DEPTH 16        /* hierarchy levels of a mailbox name */
#define LIMITS_MAX_KEYWORDS 256     /* distinct keywords per mailbox (append.lua, store) */
#define LIMITS_PURGE_BATCH 1000    /* messages released per mbx_purge call (the script's maximum) */

#endif
