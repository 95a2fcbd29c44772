/*
 * fetch_att: FETCH data items (RFC 3501 §6.4.5, RFC 3516 BINARY, RFC 8474 OBJECTID) parsed into a
 * plan: the list of items to answer for every message and what each message needs from Redis
 * (columns, content fields, raw bytes). Pure, no I/O; the plan lives in the command's arena except
 * for section field names (mail_section), which fetch_plan_free releases.
 */
#ifndef CIMAP_FETCH_ATT_H
#define CIMAP_FETCH_ATT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/mail/mail.h"
#include "frontend/parser.h"

enum fetch_att_kind {
    FETCH_ATT_UID,
    FETCH_ATT_FLAGS,
    FETCH_ATT_INTERNALDATE,
    FETCH_ATT_RFC822_SIZE,
    FETCH_ATT_ENVELOPE,
    FETCH_ATT_BODY,          /* BODY without a section: BODYSTRUCTURE minus extension data */
    FETCH_ATT_BODYSTRUCTURE,
    FETCH_ATT_SECTION,       /* BODY[..], BODY.PEEK[..], BINARY[..], BINARY.PEEK[..], RFC822* */
    FETCH_ATT_BINARY_SIZE,
    FETCH_ATT_EMAILID,
    FETCH_ATT_THREADID,
};

/* One data item of the plan. */
struct fetch_att {
    enum fetch_att_kind kind;
    /* FETCH_ATT_SECTION and FETCH_ATT_BINARY_SIZE: */
    struct mail_section section; /* names malloc'd (fetch_plan_free) */
    bool binary;                 /* BINARY[...] / BINARY.PEEK[...]: decoded content */
    bool peek;                   /* does not set \Seen */
    bool whole;                  /* the whole raw message (BODY[], RFC822, BINARY[]): no parse needed */
    bool partial;                /* <origin.count> given */
    uint64_t origin, count;
    const char *echo;            /* the name the response carries, e.g. "BODY[1.MIME]<0>" (arena) */
    size_t echo_len;
};

struct fetch_plan {
    struct fetch_att *atts; /* in the order answered (arena) */
    size_t n;
    bool has_uid;           /* UID is among atts */
    bool has_flags;         /* FLAGS is among atts */
    bool need_msg;          /* the msg column: content id, internaldate, size, object ids */
    bool need_flags;        /* the flags column */
    bool need_env;          /* content field env */
    bool need_bs;           /* content field bs */
    bool need_parse;        /* content field parse */
    bool need_raw;          /* some item reads message bytes */
    bool sets_seen;         /* a non-PEEK body item: \Seen is set (read-write sessions) */
};

/*
 * Parses the FETCH item argument (an atom such as ALL, FAST, FULL, FLAGS or
 * "BODY.PEEK[HEADER.FIELDS (A B)]<0.10>", or a parenthesised list of items) into *plan, all in a.
 * uid (UID FETCH) puts UID first when it was not asked for (RFC 3501 §6.4.8). Returns 0, or -1
 * with *error_r (a static text for BAD); call fetch_plan_free either way.
 */
int fetch_plan_parse(struct arena *a, const struct imap_arg *arg, bool uid, struct fetch_plan *plan,
                     const char **error_r);

/* Frees what the plan holds outside the arena (section field names). NULL-safe, idempotent. */
void fetch_plan_free(struct fetch_plan *plan);

#endif
