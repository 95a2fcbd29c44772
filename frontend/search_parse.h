/*
 * search_parse: the SEARCH command's arguments (RFC 3501 §6.4.4 search-key grammar, RFC 4731
 * RETURN options, RFC 8474 EMAILID/THREADID) as a tree of keys. Pure: no I/O, everything in the
 * caller's arena.
 *
 * The tree is normalised so evaluation has few cases: every UN* key, OLD and UNKEYWORD become NOT
 * of their positive key, NEW becomes AND(RECENT, NOT SEEN), a parenthesised list and the top-level
 * key list become AND. Each key has a cost level that says what evaluating it needs:
 *   SEARCH_LEVEL_INDEX  the session view and the script-maintained indexes (sets of UIDs)
 *   SEARCH_LEVEL_RECORD the message's /msg record or /flags entry
 *   SEARCH_LEVEL_PARSE  the stored MIME parse (envelope header values)
 *   SEARCH_LEVEL_RAW    raw message bytes (HEADER, BODY, TEXT)
 * Per-message keys (levels RECORD and above) are numbered 0..n_leaves-1 so an evaluator can keep
 * one result per key and message.
 */
#ifndef CIMAP_SEARCH_PARSE_H
#define CIMAP_SEARCH_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/parser.h"
#include "frontend/seqset.h"

#define SEARCH_MAX_DEPTH 64 /* nesting of NOT / OR / lists (deeper: BAD) */

enum search_op {
    SEARCH_AND, SEARCH_OR, SEARCH_NOT,
    /* level INDEX */
    SEARCH_ALL, SEARCH_SEQSET, SEARCH_UIDSET, SEARCH_SEEN, SEARCH_DELETED, SEARCH_RECENT,
    /* level RECORD: /flags */
    SEARCH_ANSWERED, SEARCH_FLAGGED, SEARCH_DRAFT, SEARCH_KEYWORD,
    /* level RECORD: /msg */
    SEARCH_BEFORE, SEARCH_ON, SEARCH_SINCE, SEARCH_LARGER, SEARCH_SMALLER, SEARCH_EMAILID,
    SEARCH_THREADID,
    /* level PARSE */
    SEARCH_SENTBEFORE, SEARCH_SENTON, SEARCH_SENTSINCE, SEARCH_FROM, SEARCH_TO, SEARCH_CC,
    SEARCH_BCC, SEARCH_SUBJECT,
    /* level RAW */
    SEARCH_HEADER, SEARCH_BODY, SEARCH_TEXT,
};

enum search_level {
    SEARCH_LEVEL_INDEX = 0,
    SEARCH_LEVEL_RECORD = 1,
    SEARCH_LEVEL_PARSE = 2,
    SEARCH_LEVEL_RAW = 3,
};

/* One key of the tree. Lives in the arena given to search_parse. */
struct search_key {
    enum search_op op;
    enum search_level level;     /* of this key; for AND/OR/NOT the highest of its children */
    struct search_key **kids;    /* AND (n_kids >= 1), OR (2), NOT (1) */
    size_t n_kids;
    const char *str;             /* SEQSET/UIDSET text, KEYWORD, EMAILID, THREADID, address and
                                  * SUBJECT strings, HEADER field name, BODY/TEXT string */
    size_t len;
    const char *value;           /* HEADER: the string to find */
    size_t value_len;
    int64_t num;                 /* dates: day number (days since 1970-01-01); LARGER/SMALLER */
    uint32_t leaf;               /* per-message keys: index 0..n_leaves-1 */
    struct seqset set;           /* level INDEX: UIDs matching, filled by the evaluator */
};

/* RETURN options (RFC 4731). */
#define SEARCH_RET_MIN 0x1u
#define SEARCH_RET_MAX 0x2u
#define SEARCH_RET_ALL 0x4u
#define SEARCH_RET_COUNT 0x8u

struct search_query {
    bool esearch;             /* RETURN (...) was given: answer "* ESEARCH" */
    unsigned ret;             /* SEARCH_RET_* (RETURN () means ALL) */
    struct search_key *root;
    uint32_t n_leaves;        /* per-message keys */
    unsigned levels;          /* bit (1 << level) for every level used */
    bool uses_seen;           /* the SEEN index (/unseen) is needed */
    bool uses_deleted;        /* the DELETED index (/deleted) is needed */
    bool uses_flags;          /* a /flags key (ANSWERED, FLAGGED, DRAFT, KEYWORD) */
    bool uses_msg;            /* a /msg key (dates, sizes, ids) */
    bool raw_body;            /* BODY or TEXT: the whole raw message (else HEADER: header only) */
    bool uses_sent;           /* a SENT* key: the Date header must be parsed */
};

/*
 * Parses the arguments of SEARCH / UID SEARCH (after the command name) into *q. Returns 0, or -1
 * with *error_r (static text) and *code_r: NULL for a syntax error (answer BAD), or an IMAP
 * response code for NO (e.g. "BADCHARSET (UTF-8 US-ASCII)" for an unsupported CHARSET).
 * Sequence sets are only checked for syntax here; they are resolved against the view later.
 */
int search_parse(struct arena *a, const struct imap_arg *args, size_t argc, struct search_query *q,
                 const char **code_r, const char **error_r);

#endif
