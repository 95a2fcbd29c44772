/*
 * user_limits: one user's limits, from the defaults of frontend/limits.h overridden by the
 * user record's `param:<name>` fields (`cimap-admin set-user --param name=value`), read at login
 * and kept by the connection. The scripts enforce them atomically (quota, mailbox count,
 * keywords); the front end checks names. Pure.
 *
 * Parameters: quota_bytes, quota_messages (0 = none), max_mailboxes, max_name_len, max_depth,
 * max_keywords.
 */
#ifndef CIMAP_USER_LIMITS_H
#define CIMAP_USER_LIMITS_H

#include <stddef.h>
#include <stdint.h>

struct user_limits {
    uint64_t quota_bytes;    /* sum of message sizes; 0 = none */
    uint64_t quota_messages; /* messages; 0 = none */
    uint32_t max_mailboxes;
    uint32_t max_name_len;
    uint32_t max_depth;
    uint32_t max_keywords;   /* distinct keywords per mailbox */
};

/* The names of the parameters, in the order user_limits_set() takes them by index. */
#define USER_LIMITS_COUNT 6
extern const char *const user_limits_params[USER_LIMITS_COUNT]; /* "param:quota_bytes", ... */

/* Fills the defaults (frontend/limits.h; no quota). */
void user_limits_default(struct user_limits *l);

/*
 * Sets parameter index i (0..USER_LIMITS_COUNT-1) from its decimal text (len bytes). A value that
 * is not a number, or 0 for a maximum other than the quotas, keeps the default. Returns 0, or -1
 * when the value was ignored.
 */
int user_limits_set(struct user_limits *l, size_t i, const char *value, size_t len);

#endif
