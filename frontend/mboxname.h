/*
 * mboxname: IMAP mailbox names (RFC 3501 §5.1). Pure functions, no I/O, no allocation.
 *
 * Nothing here allocates except mboxname_normalize(), which copies into the caller's arena.
 *
 * A name as stored (keys/README.md, the mailboxes hash) is the modified UTF-7 form the client sent
 * (RFC 3501 §5.1.3), in its one canonical spelling, with "INBOX" upper case (also as the first level
 * of "INBOX/child", §5.1: INBOX is case-insensitive) and "/" as the hierarchy delimiter. Canonical
 * means one name has one byte string, so one hash field: a base64 run never encodes a character that
 * can stand for itself, two runs are never adjacent, padding bits are zero.
 */
#ifndef CIMAP_MBOXNAME_H
#define CIMAP_MBOXNAME_H

#include <stdbool.h>
#include <stddef.h>

#define MBOXNAME_DELIM '/'
#define MBOXNAME_DELIM_STR "/"

/* Hard caps on any stored name, whatever a user's limits (the lua/ scripts refuse longer names). */
#define MBOXNAME_MAX_LEN 1024
#define MBOXNAME_MAX_DEPTH 512

struct arena;

/* Per-user limits on names (frontend/limits.h has the defaults). */
struct mboxname_limits {
    size_t max_len;    /* bytes of the encoded name */
    size_t max_depth;  /* levels: "a/b/c" has 3 */
};

/*
 * Validates name (len bytes, binary: may contain NUL) and writes its normalised form (INBOX upper
 * case) into out, which must hold len + 1 bytes (normalising never changes the length; out gets a
 * NUL). out may equal name.
 * Returns 0, or -1 with *code_r the RFC 5530 response code for the tagged NO ("CANNOT" for a name
 * that can never exist: empty, empty level, leading or trailing "/", control or 8-bit bytes, "*" or
 * "%", malformed modified UTF-7; "LIMIT" for one over max_len or max_depth) and *error_r a short
 * static text for the client.
 */
int mboxname_validate(const char *name, size_t len, const struct mboxname_limits *limits,
                      char *out, const char **code_r, const char **error_r);

/*
 * For names that should exist (SELECT, STATUS, DELETE...): validates name (len bytes) against the
 * hard caps only, so a mailbox created under larger per-user limits stays reachable, and returns
 * its normalised form as a NUL-terminated copy in arena. NULL with *error_r (static text) when the
 * name can never exist.
 */
const char *mboxname_normalize(struct arena *arena, const char *name, size_t len,
                               const char **error_r);

/*
 * True when name (len bytes) is valid modified UTF-7 in canonical form: printable US-ASCII except
 * "&" stands for itself, "&-" is "&", "&<modified base64>-" is UTF-16BE of at least one character
 * that is not printable US-ASCII and not a control character (surrogates paired).
 */
bool mboxname_utf7_valid(const char *name, size_t len);

/* True when name (len bytes) is "INBOX" or starts with "INBOX/" (exact case: a stored name). */
bool mboxname_is_inbox(const char *name, size_t len);

/*
 * The ancestors of name ("a/b/c" -> "a", "a/b"), top down, as prefix lengths written to lens
 * (at most max of them). Returns how many ancestors there are (may exceed max: then only the
 * first max were written).
 */
size_t mboxname_parents(const char *name, size_t len, size_t *lens, size_t max);

/* True when child (clen bytes) is a descendant of parent (plen bytes): "parent/...". */
bool mboxname_is_child(const char *parent, size_t plen, const char *child, size_t clen);

/*
 * LIST / LSUB pattern matching (RFC 3501 §6.3.8): "*" matches any run of characters, "%" any run
 * without the delimiter, every other byte itself. Case-sensitive, except that the INBOX prefix of
 * a stored name ("INBOX", "INBOX/…") matches case-insensitively ("inbox", "Inbox/%", "in*").
 * Cost O(pattern × name) at worst, with an early exit; patterns of any length are safe. Names
 * longer than 4,096 bytes (far above any limit) never match.
 */
bool mboxname_match(const char *pattern, size_t plen, const char *name, size_t nlen);

/*
 * Rewrites pattern (len bytes) in place into its shortest equivalent for mboxname_match: every
 * run of wildcards becomes "*" when it holds a "*", else "%". Returns the new length. Matching
 * many names against one pattern then costs nothing for wildcard floods.
 */
size_t mboxname_pattern_compact(char *pattern, size_t len);

#endif
