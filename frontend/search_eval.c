/*
 * search_eval: the SEARCH key tree over UID sets and over single messages (see search_eval.h).
 *
 * Why bounds: for "SEARCH UNSEEN SUBJECT x" the AND's upper bound is the unseen set, so only unseen
 * messages are read; for "SEARCH UNSEEN" alone must == may and nothing is read at all — the cost
 * is the index and the answer (DESIGN.md rule 5). NOT swaps the bounds (U − may ⊆ NOT ⊆ U − must).
 *
 * Dates follow RFC 3501 §6.4.4: day granularity, time and zone disregarded. INTERNALDATE is
 * stored in unix seconds, so its day is taken in UTC; a Date header's day is the one written in it
 * (its own zone). A message without a parseable Date header matches no SENT* key.
 */
#include "frontend/search_eval.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "frontend/search_cache.h"
#include "frontend/search_set.h"

static int64_t day_of(int64_t t)
{
    return t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
}

static void one_range(struct arena *a, uint32_t first, uint32_t last, struct seqset *out)
{
    out->ranges = arena_calloc(a, 1, sizeof(*out->ranges));
    out->ranges[0].first = first;
    out->ranges[0].last = last;
    out->count = 1;
}

static void sets(struct arena *a, struct search_key *k, const struct search_index *ix,
                 struct seqset *must, struct seqset *may)
{
    const struct seqset *u = ix->universe;
    struct seqset empty = {NULL, 0};
    struct seqset tmp;
    switch (k->op) {
    case SEARCH_AND:
    case SEARCH_OR: {
        bool and = k->op == SEARCH_AND;
        *must = and ? *u : empty;
        *may = and ? *u : empty;
        for (size_t i = 0; i < k->n_kids; i++) {
            struct seqset m1, m2;
            sets(a, k->kids[i], ix, &m1, &m2);
            /* Bounds that agree (index keys) stay one set: computed once. */
            bool same = search_set_same(must, may) && search_set_same(&m1, &m2);
            if (and)
                search_set_and(a, must, &m1, must);
            else
                search_set_or(a, must, &m1, must);
            if (same)
                *may = *must;
            else if (and)
                search_set_and(a, may, &m2, may);
            else
                search_set_or(a, may, &m2, may);
        }
        return;
    }
    case SEARCH_NOT: {
        struct seqset m1, m2;
        sets(a, k->kids[0], ix, &m1, &m2);
        search_set_minus(a, u, &m2, must);
        if (search_set_same(&m1, &m2))
            *may = *must; /* an index key: decided, one set */
        else
            search_set_minus(a, u, &m1, may);
        return;
    }
    case SEARCH_ALL:
        k->set = *u;
        break;
    case SEARCH_SEQSET:
    case SEARCH_UIDSET:
        search_set_and(a, &k->set, u, &k->set);
        break;
    case SEARCH_SEEN:
        search_set_minus(a, u, ix->unseen, &k->set);
        break;
    case SEARCH_DELETED:
        search_set_and(a, u, ix->deleted, &k->set);
        break;
    case SEARCH_RECENT:
        if (ix->recent_first == 0)
            k->set = *u;
        else {
            one_range(a, ix->recent_first, UINT32_MAX, &tmp);
            search_set_and(a, u, &tmp, &k->set);
        }
        break;
    default:
        *must = empty;
        *may = *u;
        return;
    }
    *must = k->set;
    *may = k->set;
}

void search_eval_sets(struct arena *a, struct search_query *q, const struct search_index *ix,
                      struct seqset *must_r, struct seqset *may_r)
{
    sets(a, q->root, ix, must_r, may_r);
}

static bool field(const char **p, const char *end, const char **s_r, size_t *len_r)
{
    const char *s = *p;
    while (s < end && *s == ' ')
        s++;
    const char *e = s;
    while (e < end && *e != ' ')
        e++;
    if (e == s)
        return false;
    *s_r = s;
    *len_r = (size_t)(e - s);
    *p = e;
    return true;
}

static bool number(const char *s, size_t len, uint64_t *v_r, bool allow_minus)
{
    bool neg = false;
    if (allow_minus && len > 0 && s[0] == '-') {
        neg = true;
        s++;
        len--;
    }
    if (len == 0 || len > 19)
        return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    *v_r = neg ? (uint64_t)(-(int64_t)v) : v;
    return true;
}

int search_msg_record(struct arena *a, struct search_msg *m, const char *rec, size_t len)
{
    const char *p = rec, *end = rec + len;
    const char *f[5];
    size_t fl[5];
    for (int i = 0; i < 5; i++) {
        if (!field(&p, end, &f[i], &fl[i]))
            return -1;
    }
    uint64_t t = 0, size = 0;
    if (fl[0] != 64 || !number(f[1], fl[1], &t, true) || !number(f[2], fl[2], &size, false))
        return -1;
    memcpy(m->sha, f[0], 64);
    m->sha[64] = '\0';
    m->internaldate = (int64_t)t;
    m->size = size;
    m->emailid = arena_strndup(a, f[3], fl[3]);
    m->threadid = arena_strndup(a, f[4], fl[4]);
    m->have_record = true;
    return 0;
}

static void record_leaves(const struct search_key *k, struct search_msg *m)
{
    if (k->op == SEARCH_AND || k->op == SEARCH_OR || k->op == SEARCH_NOT) {
        for (size_t i = 0; i < k->n_kids; i++) {
            if (k->kids[i]->level >= SEARCH_LEVEL_RECORD)
                record_leaves(k->kids[i], m);
        }
        return;
    }
    if (k->level != SEARCH_LEVEL_RECORD)
        return;
    int r = -1;
    const char *fl = NULL;
    switch (k->op) {
    case SEARCH_ANSWERED: fl = "\\Answered"; break;
    case SEARCH_FLAGGED: fl = "\\Flagged"; break;
    case SEARCH_DRAFT: fl = "\\Draft"; break;
    case SEARCH_KEYWORD:
        if (m->have_flags)
            r = search_flags_has(m->flags, m->flags_len, k->str, k->len);
        break;
    default:
        break;
    }
    if (fl != NULL && m->have_flags)
        r = search_flags_has(m->flags, m->flags_len, fl, strlen(fl));
    if (m->have_record) {
        int64_t day = day_of(m->internaldate);
        switch (k->op) {
        case SEARCH_BEFORE: r = day < k->num; break;
        case SEARCH_ON: r = day == k->num; break;
        case SEARCH_SINCE: r = day >= k->num; break;
        case SEARCH_LARGER: r = m->size > (uint64_t)k->num; break;
        case SEARCH_SMALLER: r = m->size < (uint64_t)k->num; break;
        case SEARCH_EMAILID:
            r = strlen(m->emailid) == k->len && memcmp(m->emailid, k->str, k->len) == 0;
            break;
        case SEARCH_THREADID:
            r = strlen(m->threadid) == k->len && memcmp(m->threadid, k->str, k->len) == 0;
            break;
        default: break;
        }
    }
    if (r >= 0)
        m->leaf[k->leaf] = r ? SEARCH_YES : SEARCH_NO;
}

void search_eval_record(const struct search_query *q, struct search_msg *m)
{
    if (q->root->level >= SEARCH_LEVEL_RECORD)
        record_leaves(q->root, m);
}

void search_scratch_free(struct search_scratch *s)
{
    for (uint32_t i = 0; i < s->n; i++) {
        if (s->ready[i])
            mail_matcher_free(&s->matchers[i]);
    }
    free(s->matchers);
    free(s->ready);
    mail_buf_free(&s->buf);
    memset(s, 0, sizeof(*s));
}

static bool env_contains(const struct search_key *k, const struct mail_part *root,
                         enum mail_env_field f, struct search_scratch *s)
{
    if (k->len == 0)
        return true;
    const struct mail_str *v = &root->envelope[f];
    if (v->data == NULL)
        return false;
    mail_buf_reset(&s->buf);
    mail_header_decode(v->data, v->len, &s->buf);
    struct mail_matcher *m = &s->matchers[k->leaf];
    if (!s->ready[k->leaf]) {
        mail_matcher_init(m, (const uint8_t *)k->str, k->len);
        s->ready[k->leaf] = true;
    } else {
        mail_matcher_reset(m);
    }
    return mail_matcher_feed(m, s->buf.data, s->buf.len);
}

static void parse_leaves(const struct search_key *k, struct search_msg *m,
                         const struct mail_part *root, struct search_scratch *s, int64_t sent_day,
                         bool have_sent)
{
    if (k->op == SEARCH_AND || k->op == SEARCH_OR || k->op == SEARCH_NOT) {
        for (size_t i = 0; i < k->n_kids; i++) {
            if (k->kids[i]->level >= SEARCH_LEVEL_PARSE)
                parse_leaves(k->kids[i], m, root, s, sent_day, have_sent);
        }
        return;
    }
    if (k->level != SEARCH_LEVEL_PARSE)
        return;
    bool r = false;
    switch (k->op) {
    case SEARCH_SENTBEFORE: r = have_sent && sent_day < k->num; break;
    case SEARCH_SENTON: r = have_sent && sent_day == k->num; break;
    case SEARCH_SENTSINCE: r = have_sent && sent_day >= k->num; break;
    case SEARCH_FROM: r = env_contains(k, root, MAIL_ENV_FROM, s); break;
    case SEARCH_TO: r = env_contains(k, root, MAIL_ENV_TO, s); break;
    case SEARCH_CC: r = env_contains(k, root, MAIL_ENV_CC, s); break;
    case SEARCH_BCC: r = env_contains(k, root, MAIL_ENV_BCC, s); break;
    case SEARCH_SUBJECT: r = env_contains(k, root, MAIL_ENV_SUBJECT, s); break;
    default: break;
    }
    m->leaf[k->leaf] = r ? SEARCH_YES : SEARCH_NO;
}

void search_eval_parse(const struct search_query *q, struct search_msg *m,
                       const struct mail_view *view, struct search_scratch *scratch)
{
    if (q->root->level < SEARCH_LEVEL_PARSE)
        return;
    if (scratch->matchers == NULL && q->n_leaves > 0) {
        scratch->matchers = calloc(q->n_leaves, sizeof(*scratch->matchers));
        scratch->ready = calloc(q->n_leaves, sizeof(*scratch->ready));
        if (scratch->matchers == NULL || scratch->ready == NULL)
            abort();
        scratch->n = q->n_leaves;
    }
    const struct mail_part *root = mail_view_root(view);
    int64_t sent_day = 0;
    bool have_sent = false;
    const struct mail_str *date = &root->envelope[MAIL_ENV_DATE];
    if (q->uses_sent && date->data != NULL) {
        int64_t t = 0;
        int tz = 0;
        const char *error = NULL;
        if (mail_date_parse(date->data, date->len, &t, &tz, &error) == 0) {
            sent_day = day_of(t + (int64_t)tz * 60);
            have_sent = true;
        }
    }
    parse_leaves(q->root, m, root, scratch, sent_day, have_sent);
}

static enum search_tri eval(const struct search_key *k, const struct search_msg *m)
{
    switch (k->op) {
    case SEARCH_AND:
    case SEARCH_OR: {
        bool and = k->op == SEARCH_AND;
        enum search_tri r = and ? SEARCH_YES : SEARCH_NO;
        for (size_t i = 0; i < k->n_kids; i++) {
            enum search_tri t = eval(k->kids[i], m);
            if (t == (and ? SEARCH_NO : SEARCH_YES))
                return t;
            if (t == SEARCH_UNKNOWN)
                r = SEARCH_UNKNOWN;
        }
        return r;
    }
    case SEARCH_NOT: {
        enum search_tri t = eval(k->kids[0], m);
        return t == SEARCH_UNKNOWN ? t : t == SEARCH_YES ? SEARCH_NO : SEARCH_YES;
    }
    default:
        break;
    }
    if (k->level == SEARCH_LEVEL_INDEX)
        return seqset_contains(&k->set, m->uid) ? SEARCH_YES : SEARCH_NO;
    return (enum search_tri)m->leaf[k->leaf];
}

enum search_tri search_eval(const struct search_query *q, const struct search_msg *m)
{
    if (m->gone)
        return SEARCH_NO;
    return eval(q->root, m);
}

static void raw_keys(const struct search_key *k, const struct search_key **keys, size_t max,
                     size_t *n)
{
    if (k->op == SEARCH_AND || k->op == SEARCH_OR || k->op == SEARCH_NOT) {
        for (size_t i = 0; i < k->n_kids; i++) {
            if (k->kids[i]->level == SEARCH_LEVEL_RAW)
                raw_keys(k->kids[i], keys, max, n);
        }
        return;
    }
    if (k->level != SEARCH_LEVEL_RAW)
        return;
    if (*n < max)
        keys[*n] = k;
    (*n)++;
}

size_t search_raw_keys(const struct search_query *q, const struct search_key **keys, size_t max)
{
    size_t n = 0;
    raw_keys(q->root, keys, max, &n);
    return n;
}
