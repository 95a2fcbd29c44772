/*
 * flags: message flags and keywords as IMAP clients send them (RFC 3501 §2.3.2, flag-list):
 * validation and the canonical stored form, space-separated with system flags in canonical case
 * (keys/README.md "flags"). Pure; results live in the caller's arena.
 */
#ifndef CIMAP_FLAGS_H
#define CIMAP_FLAGS_H

#include <stdbool.h>
#include <stddef.h>

#include "frontend/arena.h"
#include "frontend/parser.h"

#define FLAGS_MAX_KEYWORD_LEN 128 /* longest keyword accepted */

/*
 * Validates a parenthesised flag list (or a single flag atom when list is an atom) and returns its
 * canonical form: system flags (\Seen \Answered \Flagged \Deleted \Draft, any case) spelled
 * canonically, keywords as sent, duplicates removed, order kept. \Recent is accepted and dropped
 * when allow_recent (STORE ignores it), refused otherwise. Returns the string (possibly ""), or
 * NULL with *error_r for an invalid flag.
 */
const char *flags_canonical(struct arena *a, const struct imap_arg *list, bool allow_recent,
                            const char **error_r);

/* True when s (len bytes) is a valid keyword: 1..FLAGS_MAX_KEYWORD_LEN atom characters, no '\'. */
bool flags_keyword_valid(const char *s, size_t len);

#endif
