/*
 * search_parse: SEARCH arguments to a key tree (see search_parse.h). A recursive-descent reader
 * over the parser's argument tree: one search-key at a time from a cursor over an argument array;
 * a parenthesised list is read with a fresh cursor over its children. Depth is bounded
 * (SEARCH_MAX_DEPTH) because "NOT NOT NOT ..." nests without parentheses, so the parser's own list
 * depth limit does not bound it. Strings are taken as UTF-8 bytes whatever the CHARSET said
 * (US-ASCII is a subset); no decoding happens here.
 */
#include "frontend/search_parse.h"

#include <string.h>
#include <strings.h>

#include "frontend/flags.h"
#include "frontend/imapdate.h"

struct cursor {
    const struct imap_arg *args;
    size_t argc;
    size_t pos;
};

struct pstate {
    struct arena *a;
    struct search_query *q;
    const char *error;
};

static struct search_key *new_key(struct pstate *p, enum search_op op, enum search_level level)
{
    struct search_key *k = arena_calloc(p->a, 1, sizeof(*k));
    k->op = op;
    k->level = level;
    p->q->levels |= 1u << level;
    if (level != SEARCH_LEVEL_INDEX)
        k->leaf = p->q->n_leaves++;
    return k;
}

static struct search_key *new_node(struct pstate *p, enum search_op op, size_t n)
{
    struct search_key *k = arena_calloc(p->a, 1, sizeof(*k));
    k->op = op;
    k->kids = arena_calloc(p->a, n == 0 ? 1 : n, sizeof(struct search_key *));
    k->n_kids = n;
    return k;
}

static void node_level(struct search_key *k)
{
    k->level = SEARCH_LEVEL_INDEX;
    for (size_t i = 0; i < k->n_kids; i++) {
        if (k->kids[i]->level > k->level)
            k->level = k->kids[i]->level;
    }
}

static struct search_key *negate(struct pstate *p, struct search_key *k)
{
    struct search_key *n = new_node(p, SEARCH_NOT, 1);
    n->kids[0] = k;
    node_level(n);
    return n;
}

/* The bytes of an astring argument; false for a list or a streamed literal. */
static bool arg_string(const struct imap_arg *arg, const char **s_r, size_t *len_r)
{
    switch (arg->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_QUOTED:
        *s_r = arg->str;
        *len_r = arg->len;
        return true;
    case IMAP_ARG_LITERAL:
        if (arg->streamed || arg->str == NULL)
            return false;
        *s_r = arg->str;
        *len_r = arg->len;
        return true;
    case IMAP_ARG_NIL:
        *s_r = "NIL";
        *len_r = 3;
        return true;
    case IMAP_ARG_LIST:
        break;
    }
    return false;
}

static const struct imap_arg *next_arg(struct pstate *p, struct cursor *c, const char *what)
{
    if (c->pos >= c->argc) {
        p->error = what;
        return NULL;
    }
    return &c->args[c->pos++];
}

static bool take_string(struct pstate *p, struct cursor *c, struct search_key *k)
{
    const struct imap_arg *arg = next_arg(p, c, "Missing search string");
    if (arg == NULL)
        return false;
    if (!arg_string(arg, &k->str, &k->len)) {
        p->error = "Search string expected";
        return false;
    }
    return true;
}

/* Floor division: days since the epoch of a unix time (before 1970 too). */
static int64_t day_of(int64_t t)
{
    return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

static bool take_date(struct pstate *p, struct cursor *c, struct search_key *k)
{
    const struct imap_arg *arg = next_arg(p, c, "Missing date");
    if (arg == NULL)
        return false;
    int64_t t = 0;
    if ((arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_QUOTED) ||
        imapdate_parse_day(arg->str, arg->len, &t) != 0) {
        p->error = "Invalid date (d-Mon-yyyy expected)";
        return false;
    }
    k->num = day_of(t);
    return true;
}

static bool take_number(struct pstate *p, struct cursor *c, struct search_key *k)
{
    const struct imap_arg *arg = next_arg(p, c, "Missing number");
    if (arg == NULL)
        return false;
    if (arg->type != IMAP_ARG_ATOM || arg->len == 0 || arg->len > 10) {
        p->error = "Invalid number";
        return false;
    }
    uint64_t v = 0;
    for (size_t i = 0; i < arg->len; i++) {
        if (arg->str[i] < '0' || arg->str[i] > '9') {
            p->error = "Invalid number";
            return false;
        }
        v = v * 10 + (uint64_t)(arg->str[i] - '0');
    }
    if (v > UINT32_MAX) {
        p->error = "Number too large";
        return false;
    }
    k->num = (int64_t)v;
    return true;
}

static bool take_keyword(struct pstate *p, struct cursor *c, struct search_key *k)
{
    const struct imap_arg *arg = next_arg(p, c, "Missing keyword");
    if (arg == NULL)
        return false;
    if (arg->type != IMAP_ARG_ATOM || !flags_keyword_valid(arg->str, arg->len)) {
        p->error = "Invalid keyword";
        return false;
    }
    k->str = arg->str;
    k->len = arg->len;
    return true;
}

/* RFC 8474 objectid: 1..255 of ALPHA / DIGIT / "_" / "-". */
static bool take_objectid(struct pstate *p, struct cursor *c, struct search_key *k)
{
    const struct imap_arg *arg = next_arg(p, c, "Missing object id");
    if (arg == NULL)
        return false;
    bool ok = arg->type == IMAP_ARG_ATOM && arg->len >= 1 && arg->len <= 255;
    for (size_t i = 0; ok && i < arg->len; i++) {
        char ch = arg->str[i];
        ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
             ch == '_' || ch == '-';
    }
    if (!ok) {
        p->error = "Invalid object id";
        return false;
    }
    k->str = arg->str;
    k->len = arg->len;
    return true;
}

static bool seqset_syntax(struct pstate *p, const struct imap_arg *arg)
{
    struct seqset_spec spec;
    const char *error = NULL;
    if (seqset_parse(p->a, arg->str, arg->len, 0, &spec, &error) != 0) {
        p->error = error;
        return false;
    }
    return true;
}

struct simple {
    const char *name;
    enum search_op op;
    enum search_level level;
    bool negate;
};

/* Keys without arguments. */
static const struct simple simple_keys[] = {
    {"ALL", SEARCH_ALL, SEARCH_LEVEL_INDEX, false},
    {"ANSWERED", SEARCH_ANSWERED, SEARCH_LEVEL_RECORD, false},
    {"DELETED", SEARCH_DELETED, SEARCH_LEVEL_INDEX, false},
    {"DRAFT", SEARCH_DRAFT, SEARCH_LEVEL_RECORD, false},
    {"FLAGGED", SEARCH_FLAGGED, SEARCH_LEVEL_RECORD, false},
    {"OLD", SEARCH_RECENT, SEARCH_LEVEL_INDEX, true},
    {"RECENT", SEARCH_RECENT, SEARCH_LEVEL_INDEX, false},
    {"SEEN", SEARCH_SEEN, SEARCH_LEVEL_INDEX, false},
    {"UNANSWERED", SEARCH_ANSWERED, SEARCH_LEVEL_RECORD, true},
    {"UNDELETED", SEARCH_DELETED, SEARCH_LEVEL_INDEX, true},
    {"UNDRAFT", SEARCH_DRAFT, SEARCH_LEVEL_RECORD, true},
    {"UNFLAGGED", SEARCH_FLAGGED, SEARCH_LEVEL_RECORD, true},
    {"UNSEEN", SEARCH_SEEN, SEARCH_LEVEL_INDEX, true},
};

enum argkind { ARG_STRING, ARG_DATE, ARG_NUMBER, ARG_KEYWORD, ARG_OBJECTID };

struct with_arg {
    const char *name;
    enum search_op op;
    enum search_level level;
    enum argkind kind;
    bool negate;
};

static const struct with_arg arg_keys[] = {
    {"BCC", SEARCH_BCC, SEARCH_LEVEL_PARSE, ARG_STRING, false},
    {"BEFORE", SEARCH_BEFORE, SEARCH_LEVEL_RECORD, ARG_DATE, false},
    {"BODY", SEARCH_BODY, SEARCH_LEVEL_RAW, ARG_STRING, false},
    {"CC", SEARCH_CC, SEARCH_LEVEL_PARSE, ARG_STRING, false},
    {"EMAILID", SEARCH_EMAILID, SEARCH_LEVEL_RECORD, ARG_OBJECTID, false},
    {"FROM", SEARCH_FROM, SEARCH_LEVEL_PARSE, ARG_STRING, false},
    {"KEYWORD", SEARCH_KEYWORD, SEARCH_LEVEL_RECORD, ARG_KEYWORD, false},
    {"LARGER", SEARCH_LARGER, SEARCH_LEVEL_RECORD, ARG_NUMBER, false},
    {"ON", SEARCH_ON, SEARCH_LEVEL_RECORD, ARG_DATE, false},
    {"SENTBEFORE", SEARCH_SENTBEFORE, SEARCH_LEVEL_PARSE, ARG_DATE, false},
    {"SENTON", SEARCH_SENTON, SEARCH_LEVEL_PARSE, ARG_DATE, false},
    {"SENTSINCE", SEARCH_SENTSINCE, SEARCH_LEVEL_PARSE, ARG_DATE, false},
    {"SINCE", SEARCH_SINCE, SEARCH_LEVEL_RECORD, ARG_DATE, false},
    {"SMALLER", SEARCH_SMALLER, SEARCH_LEVEL_RECORD, ARG_NUMBER, false},
    {"SUBJECT", SEARCH_SUBJECT, SEARCH_LEVEL_PARSE, ARG_STRING, false},
    {"TEXT", SEARCH_TEXT, SEARCH_LEVEL_RAW, ARG_STRING, false},
    {"THREADID", SEARCH_THREADID, SEARCH_LEVEL_RECORD, ARG_OBJECTID, false},
    {"TO", SEARCH_TO, SEARCH_LEVEL_PARSE, ARG_STRING, false},
    {"UNKEYWORD", SEARCH_KEYWORD, SEARCH_LEVEL_RECORD, ARG_KEYWORD, true},
};

static struct search_key *parse_key(struct pstate *p, struct cursor *c, unsigned depth);

static struct search_key *parse_list(struct pstate *p, const struct imap_arg *args, size_t argc,
                                     unsigned depth)
{
    if (argc == 0) {
        p->error = "Empty search key list";
        return NULL;
    }
    struct cursor c = {args, argc, 0};
    /* Count keys first: a list of n arguments holds at most n keys. */
    struct search_key *and = new_node(p, SEARCH_AND, argc);
    and->n_kids = 0;
    while (c.pos < c.argc) {
        struct search_key *k = parse_key(p, &c, depth + 1);
        if (k == NULL)
            return NULL;
        and->kids[and->n_kids++] = k;
    }
    if (and->n_kids == 1)
        return and->kids[0];
    node_level(and);
    return and;
}

static struct search_key *parse_key(struct pstate *p, struct cursor *c, unsigned depth)
{
    if (depth > SEARCH_MAX_DEPTH) {
        p->error = "Search keys nested too deeply";
        return NULL;
    }
    const struct imap_arg *arg = next_arg(p, c, "Missing search key");
    if (arg == NULL)
        return NULL;
    if (arg->type == IMAP_ARG_LIST)
        return parse_list(p, arg->list, arg->count, depth);
    if (arg->type != IMAP_ARG_ATOM) {
        p->error = "Search key expected";
        return NULL;
    }
    const char *w = arg->str;
    size_t n = arg->len;
    if (n > 0 && ((w[0] >= '0' && w[0] <= '9') || w[0] == '*')) {
        if (!seqset_syntax(p, arg))
            return NULL;
        struct search_key *k = new_key(p, SEARCH_SEQSET, SEARCH_LEVEL_INDEX);
        k->str = w;
        k->len = n;
        return k;
    }
    for (size_t i = 0; i < sizeof(simple_keys) / sizeof(simple_keys[0]); i++) {
        const struct simple *s = &simple_keys[i];
        if (strlen(s->name) == n && strncasecmp(s->name, w, n) == 0) {
            struct search_key *k = new_key(p, s->op, s->level);
            if (s->op == SEARCH_SEEN)
                p->q->uses_seen = true;
            else if (s->op == SEARCH_DELETED)
                p->q->uses_deleted = true;
            else if (s->level == SEARCH_LEVEL_RECORD)
                p->q->uses_flags = true;
            return s->negate ? negate(p, k) : k;
        }
    }
    for (size_t i = 0; i < sizeof(arg_keys) / sizeof(arg_keys[0]); i++) {
        const struct with_arg *s = &arg_keys[i];
        if (strlen(s->name) != n || strncasecmp(s->name, w, n) != 0)
            continue;
        struct search_key *k = new_key(p, s->op, s->level);
        bool ok = false;
        switch (s->kind) {
        case ARG_STRING: ok = take_string(p, c, k); break;
        case ARG_DATE: ok = take_date(p, c, k); break;
        case ARG_NUMBER: ok = take_number(p, c, k); break;
        case ARG_KEYWORD: ok = take_keyword(p, c, k); break;
        case ARG_OBJECTID: ok = take_objectid(p, c, k); break;
        }
        if (!ok)
            return NULL;
        if (s->op == SEARCH_KEYWORD)
            p->q->uses_flags = true;
        else if (s->level == SEARCH_LEVEL_RECORD)
            p->q->uses_msg = true;
        else if (s->op == SEARCH_BODY || s->op == SEARCH_TEXT)
            p->q->raw_body = true;
        else if (s->op == SEARCH_SENTBEFORE || s->op == SEARCH_SENTON || s->op == SEARCH_SENTSINCE)
            p->q->uses_sent = true;
        return s->negate ? negate(p, k) : k;
    }
    if (n == 3 && strncasecmp(w, "NEW", 3) == 0) {
        struct search_key *and = new_node(p, SEARCH_AND, 2);
        and->kids[0] = new_key(p, SEARCH_RECENT, SEARCH_LEVEL_INDEX);
        and->kids[1] = negate(p, new_key(p, SEARCH_SEEN, SEARCH_LEVEL_INDEX));
        p->q->uses_seen = true;
        node_level(and);
        return and;
    }
    if (n == 3 && strncasecmp(w, "NOT", 3) == 0) {
        struct search_key *k = parse_key(p, c, depth + 1);
        return k == NULL ? NULL : negate(p, k);
    }
    if (n == 2 && strncasecmp(w, "OR", 2) == 0) {
        struct search_key *or = new_node(p, SEARCH_OR, 2);
        if ((or->kids[0] = parse_key(p, c, depth + 1)) == NULL ||
            (or->kids[1] = parse_key(p, c, depth + 1)) == NULL)
            return NULL;
        node_level(or);
        return or;
    }
    if (n == 3 && strncasecmp(w, "UID", 3) == 0) {
        const struct imap_arg *set = next_arg(p, c, "Missing UID set");
        if (set == NULL)
            return NULL;
        if (set->type != IMAP_ARG_ATOM || !seqset_syntax(p, set)) {
            if (p->error == NULL)
                p->error = "Invalid UID set";
            return NULL;
        }
        struct search_key *k = new_key(p, SEARCH_UIDSET, SEARCH_LEVEL_INDEX);
        k->str = set->str;
        k->len = set->len;
        return k;
    }
    if (n == 6 && strncasecmp(w, "HEADER", 6) == 0) {
        struct search_key *k = new_key(p, SEARCH_HEADER, SEARCH_LEVEL_RAW);
        if (!take_string(p, c, k))
            return NULL;
        const struct imap_arg *v = next_arg(p, c, "Missing header value");
        if (v == NULL)
            return NULL;
        if (!arg_string(v, &k->value, &k->value_len)) {
            p->error = "Header value expected";
            return NULL;
        }
        if (k->len == 0) {
            p->error = "Empty header field name";
            return NULL;
        }
        return k;
    }
    p->error = "Unknown search key";
    return NULL;
}

static int parse_return(struct pstate *p, const struct imap_arg *list)
{
    p->q->esearch = true;
    if (list->type != IMAP_ARG_LIST) {
        p->error = "RETURN takes a list";
        return -1;
    }
    for (size_t i = 0; i < list->count; i++) {
        const struct imap_arg *o = &list->list[i];
        if (imap_arg_atom_eq(o, "MIN"))
            p->q->ret |= SEARCH_RET_MIN;
        else if (imap_arg_atom_eq(o, "MAX"))
            p->q->ret |= SEARCH_RET_MAX;
        else if (imap_arg_atom_eq(o, "ALL"))
            p->q->ret |= SEARCH_RET_ALL;
        else if (imap_arg_atom_eq(o, "COUNT"))
            p->q->ret |= SEARCH_RET_COUNT;
        else {
            p->error = "Unknown RETURN option";
            return -1;
        }
    }
    if (p->q->ret == 0)
        p->q->ret = SEARCH_RET_ALL; /* RFC 4731 §3.1: RETURN () means ALL */
    return 0;
}

int search_parse(struct arena *a, const struct imap_arg *args, size_t argc, struct search_query *q,
                 const char **code_r, const char **error_r)
{
    memset(q, 0, sizeof(*q));
    struct pstate p = {a, q, NULL};
    *code_r = NULL;
    size_t pos = 0;
    if (pos < argc && imap_arg_atom_eq(&args[pos], "RETURN")) {
        if (pos + 1 >= argc || parse_return(&p, &args[pos + 1]) != 0) {
            *error_r = p.error != NULL ? p.error : "RETURN takes a list";
            return -1;
        }
        pos += 2;
    }
    if (pos < argc && imap_arg_atom_eq(&args[pos], "CHARSET")) {
        const char *cs = NULL;
        size_t cs_len = 0;
        if (pos + 1 >= argc || !arg_string(&args[pos + 1], &cs, &cs_len)) {
            *error_r = "CHARSET takes a charset name";
            return -1;
        }
        if (!((cs_len == 5 && strncasecmp(cs, "UTF-8", 5) == 0) ||
              (cs_len == 8 && strncasecmp(cs, "US-ASCII", 8) == 0))) {
            *code_r = "BADCHARSET (UTF-8 US-ASCII)";
            *error_r = "Unsupported charset";
            return -1;
        }
        pos += 2;
    }
    if (pos >= argc) {
        *error_r = "Missing search key";
        return -1;
    }
    q->root = parse_list(&p, args + pos, argc - pos, 0);
    if (q->root == NULL) {
        *error_r = p.error != NULL ? p.error : "Invalid search key";
        return -1;
    }
    return 0;
}
