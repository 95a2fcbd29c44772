/*
 * LIST and LSUB (RFC 3501 §6.3.8, §6.3.9; RFC 3348 child attributes; RFC 6154 SPECIAL-USE).
 *
 * LIST reads the user's mailboxes hash once (HGETALL: bounded by the mailbox limit), adds every
 * missing ancestor of an existing name as an implied \Noselect entry, sorts the lot in hierarchy
 * order ("/" sorts before every other byte, so a mailbox's children directly follow it and
 * \HasChildren is a look at the next entry), and matches reference + pattern with mboxname_match.
 * The special-use attributes of the matching mailboxes come from their hashes' `specialuse`
 * fields, one HGET each, all pipelined: one more round trip whatever their number. A user without
 * INBOX gets one first (mailbox_create_inbox).
 *
 * LSUB reads the subscriptions set and the mailbox names in one pipelined round trip. A subscribed
 * name that does not exist is shown \Noselect (§6.3.9); so is an unsubscribed ancestor that matches
 * the pattern when none of its subscribed descendants does (the "%" case of §6.3.9).
 *
 * Not done: LIST-EXTENDED selection/return options (RFC 5258), LIST-STATUS, \Subscribed.
 * Pipelined replies are matched to requests by order: store.c keeps one session's requests on one
 * connection, in order, and every request is answered exactly once, so all of them are always
 * consumed before the command ends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/mailbox.h"
#include "frontend/reply.h"

#define SPECIALUSE_MAX 64 /* longest specialuse value shown, e.g. "\Drafts \Archive" */

struct entry {
    const char *name;
    size_t len;
    const char *mbxid;      /* LIST: the id of an existing mailbox; NULL for an implied one */
    const char *specialuse; /* LIST: fetched value, NULL when none */
    size_t specialuse_len;
    bool exists;            /* a mailbox of that name exists */
    bool subscribed;        /* LSUB: the name is in the subscriptions set */
    bool implied;           /* only an ancestor of another entry */
    bool matched;
};

struct list_state {
    const char *pattern; /* reference + mailbox pattern */
    size_t plen;
    struct entry *e;
    size_t n;
    size_t cap;
    char inbox_id[KEYS_MBXID_LEN + 1];
    size_t *fetch;       /* indexes of the entries whose specialuse is being read */
    size_t nfetch;
    size_t got;          /* replies received so far */
    bool failed;
    const char *fail_error;
    /* LSUB: the mailbox names, sorted, for the existence test */
    struct entry *names;
    size_t nnames;
};

static int hier_cmp(const char *a, size_t alen, const char *b, size_t blen)
{
    size_t n = alen < blen ? alen : blen;
    for (size_t i = 0; i < n; i++) {
        int ca = a[i] == '/' ? 0 : (unsigned char)a[i] + 1;
        int cb = b[i] == '/' ? 0 : (unsigned char)b[i] + 1;
        if (ca != cb)
            return ca - cb;
    }
    return alen < blen ? -1 : alen > blen ? 1 : 0;
}

static int entry_cmp(const void *x, const void *y)
{
    const struct entry *a = x;
    const struct entry *b = y;
    int r = hier_cmp(a->name, a->len, b->name, b->len);
    if (r != 0)
        return r;
    return (int)a->implied - (int)b->implied; /* the real entry first, for dedup */
}

static struct entry *entry_add(struct cmd_ctx *ctx, struct list_state *st)
{
    if (st->n == st->cap) {
        size_t ncap = st->cap == 0 ? 64 : st->cap * 2;
        struct entry *ne = arena_alloc(ctx->arena, ncap * sizeof(*ne));
        if (st->n > 0)
            memcpy(ne, st->e, st->n * sizeof(*ne));
        st->e = ne;
        st->cap = ncap;
    }
    struct entry *e = &st->e[st->n++];
    memset(e, 0, sizeof(*e));
    return e;
}

static bool entry_find(const struct entry *v, size_t n, const char *name, size_t len)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int r = hier_cmp(v[mid].name, v[mid].len, name, len);
        if (r == 0)
            return true;
        if (r < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return false;
}

/* Adds the missing ancestors of the first n0 entries (sorted) as implied ones, sorts, dedups. */
static void add_ancestors(struct cmd_ctx *ctx, struct list_state *st)
{
    size_t n0 = st->n;
    if (n0 == 0)
        return;
    qsort(st->e, n0, sizeof(*st->e), entry_cmp);
    for (size_t i = 0; i < n0; i++) {
        const char *name = st->e[i].name;
        size_t len = st->e[i].len;
        size_t np = mboxname_parents(name, len, NULL, 0);
        if (np == 0)
            continue;
        size_t *lens = arena_alloc(ctx->arena, np * sizeof(*lens));
        mboxname_parents(name, len, lens, np);
        for (size_t p = 0; p < np; p++) {
            if (entry_find(st->e, n0, name, lens[p]))
                continue;
            struct entry *e = entry_add(ctx, st);
            e->name = name;
            e->len = lens[p];
            e->implied = true;
        }
    }
    qsort(st->e, st->n, sizeof(*st->e), entry_cmp);
    size_t w = 0;
    for (size_t r = 0; r < st->n; r++) {
        if (w > 0 && hier_cmp(st->e[w - 1].name, st->e[w - 1].len, st->e[r].name, st->e[r].len) == 0)
            continue;
        st->e[w++] = st->e[r];
    }
    st->n = w;
}

static bool has_children(const struct list_state *st, size_t i)
{
    return i + 1 < st->n &&
           mboxname_is_child(st->e[i].name, st->e[i].len, st->e[i + 1].name, st->e[i + 1].len);
}

/* Only well-formed attribute words ("\Sent", "\Drafts \Archive") go to the client. */
static bool specialuse_ok(const char *s, size_t len)
{
    if (len == 0 || len > SPECIALUSE_MAX || s[0] != '\\')
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '\\' || c == ' '))
            return false;
    }
    return true;
}

static void send_entry(struct cmd_ctx *ctx, const char *verb, const struct entry *e,
                       const char *attrs)
{
    struct evbuffer *line = evbuffer_new();
    if (line == NULL)
        return;
    evbuffer_add_printf(line, "* %s (%s) \"/\" ", verb, attrs);
    reply_string(line, e->name, e->len);
    reply_line(ctx->conn, line);
    evbuffer_free(line);
}

static enum cmd_status list_answer(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    if (st->failed) {
        reply_tagged(ctx, "NO", "UNAVAILABLE", "LIST failed: %s, try again later",
                     st->fail_error != NULL ? st->fail_error : "error");
        return CMD_DONE;
    }
    for (size_t i = 0; i < st->n; i++) {
        const struct entry *e = &st->e[i];
        if (!e->matched)
            continue;
        char attrs[128];
        size_t a = 0;
        attrs[0] = '\0';
        if (!e->exists)
            a += (size_t)snprintf(attrs + a, sizeof(attrs) - a, "\\Noselect ");
        a += (size_t)snprintf(attrs + a, sizeof(attrs) - a, "%s",
                              has_children(st, i) ? "\\HasChildren" : "\\HasNoChildren");
        if (e->specialuse != NULL)
            snprintf(attrs + a, sizeof(attrs) - a, " %.*s", (int)e->specialuse_len, e->specialuse);
        send_entry(ctx, "LIST", e, attrs);
    }
    reply_tagged(ctx, "OK", NULL, "LIST completed");
    return CMD_DONE;
}

static enum cmd_status list_got_specialuse(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    struct entry *e = &st->e[st->fetch[st->got++]];
    if (res->status != STORE_OK) {
        if (!st->failed)
            st->fail_error = arena_strndup(ctx->arena, res->error, strlen(res->error));
        st->failed = true;
    } else if (res->reply->type == REDIS_REPLY_STRING &&
               specialuse_ok(res->reply->str, res->reply->len)) {
        e->specialuse = arena_strndup(ctx->arena, res->reply->str, res->reply->len);
        e->specialuse_len = res->reply->len;
    }
    if (st->got < st->nfetch) {
        ctx->next = list_got_specialuse; /* more pipelined replies to come */
        return CMD_WAIT;
    }
    return list_answer(ctx);
}

static enum cmd_status list_match(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    add_ancestors(ctx, st);
    st->fetch = arena_alloc(ctx->arena, (st->n + 1) * sizeof(*st->fetch));
    for (size_t i = 0; i < st->n; i++) {
        struct entry *e = &st->e[i];
        e->exists = !e->implied;
        e->matched = mboxname_match(st->pattern, st->plen, e->name, e->len);
        if (e->matched && e->exists)
            st->fetch[st->nfetch++] = i;
    }
    if (st->nfetch == 0)
        return list_answer(ctx);
    const char *nsid = conn_nsid(ctx->conn);
    enum cmd_status status = CMD_WAIT;
    for (size_t f = 0; f < st->nfetch; f++) {
        struct key k;
        keys_mbx(&k, nsid, st->e[st->fetch[f]].mbxid, KEYS_MBX);
        const char *argv[] = {"HGET", k.s, "specialuse"};
        const size_t argvlen[] = {4, k.len, 10};
        status = conn_redis(ctx, list_got_specialuse, 3, argv, argvlen);
    }
    return status;
}

static enum cmd_status list_inbox_created(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    struct entry *e = entry_add(ctx, st);
    e->name = "INBOX";
    e->len = 5;
    e->mbxid = st->inbox_id;
    return list_match(ctx);
}

static enum cmd_status list_got_mailboxes(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (!cmd_reply_is_array(res, 0))
        return cmd_store_failed(ctx, res, "LIST");
    const redisReply *r = res->reply;
    bool inbox = false;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        const redisReply *name = r->element[i];
        const redisReply *id = r->element[i + 1];
        if (name->type != REDIS_REPLY_STRING || name->len == 0 || id->type != REDIS_REPLY_STRING ||
            !keys_mbxid_valid(id->str, id->len))
            continue; /* not ours to show */
        struct entry *e = entry_add(ctx, st);
        e->name = arena_strndup(ctx->arena, name->str, name->len);
        e->len = name->len;
        e->mbxid = arena_strndup(ctx->arena, id->str, id->len);
        inbox = inbox || (name->len == 5 && memcmp(name->str, "INBOX", 5) == 0);
    }
    if (!inbox)
        return mailbox_create_inbox(ctx, st->inbox_id, list_inbox_created);
    return list_match(ctx);
}

/* ---------------------------------------------------------------- LSUB */

static enum cmd_status lsub_answer(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    add_ancestors(ctx, st);
    for (size_t i = 0; i < st->n; i++) {
        struct entry *e = &st->e[i];
        e->subscribed = !e->implied;
        e->exists = entry_find(st->names, st->nnames, e->name, e->len);
        e->matched = mboxname_match(st->pattern, st->plen, e->name, e->len);
    }
    for (size_t i = 0; i < st->n; i++) {
        const struct entry *e = &st->e[i];
        if (!e->matched)
            continue;
        if (e->implied) {
            /* §6.3.9: shown only when no subscribed descendant is shown instead. */
            bool shown_below = false;
            for (size_t j = i + 1; j < st->n && !shown_below &&
                                   mboxname_is_child(e->name, e->len, st->e[j].name, st->e[j].len);
                 j++)
                shown_below = st->e[j].subscribed && st->e[j].matched;
            if (shown_below)
                continue;
        }
        send_entry(ctx, "LSUB", e, e->implied || !e->exists ? "\\Noselect" : "");
    }
    reply_tagged(ctx, "OK", NULL, "LSUB completed");
    return CMD_DONE;
}

/* Two pipelined replies: SMEMBERS subscriptions, then HKEYS mailboxes. */
static enum cmd_status lsub_got(struct cmd_ctx *ctx)
{
    struct list_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    size_t which = st->got++;
    if (!cmd_reply_is_array(res, 0)) {
        if (!st->failed)
            st->fail_error = res->status == STORE_OK
                                 ? "unexpected reply"
                                 : arena_strndup(ctx->arena, res->error, strlen(res->error));
        st->failed = true;
    } else {
        const redisReply *r = res->reply;
        struct entry *v = arena_alloc(ctx->arena, (r->elements + 1) * sizeof(*v));
        size_t n = 0;
        for (size_t i = 0; i < r->elements; i++) {
            const redisReply *s = r->element[i];
            if (s->type != REDIS_REPLY_STRING || s->len == 0)
                continue;
            memset(&v[n], 0, sizeof(v[n]));
            v[n].name = arena_strndup(ctx->arena, s->str, s->len);
            v[n].len = s->len;
            n++;
        }
        if (which == 0) {
            for (size_t i = 0; i < n; i++)
                *entry_add(ctx, st) = v[i];
        } else if (n > 0) {
            qsort(v, n, sizeof(*v), entry_cmp);
            st->names = v;
            st->nnames = n;
        }
    }
    if (st->got < 2) {
        ctx->next = lsub_got;
        return CMD_WAIT;
    }
    if (st->failed) {
        reply_tagged(ctx, "NO", "UNAVAILABLE", "LSUB failed: %s, try again later", st->fail_error);
        return CMD_DONE;
    }
    return lsub_answer(ctx);
}

/* ---------------------------------------------------------------- both */

enum cmd_status cmd_list(struct cmd_ctx *ctx)
{
    bool lsub = ctx->desc->name[1] == 'S'; /* "LSUB" */
    const char *verb = lsub ? "LSUB" : "LIST";
    const char *ref = NULL;
    const char *pat = NULL;
    size_t ref_len = 0;
    size_t pat_len = 0;
    if (!cmd_arg_astring(&ctx->args[0], &ref, &ref_len) ||
        !cmd_arg_astring(&ctx->args[1], &pat, &pat_len)) {
        reply_tagged(ctx, "BAD", NULL, "%s takes a reference name and a mailbox pattern", verb);
        return CMD_DONE;
    }
    if (pat_len == 0) {
        /* §6.3.8: an empty pattern asks for the hierarchy delimiter and the reference's root. */
        reply_untagged(ctx->conn, "%s (\\Noselect) \"/\" \"\"", verb);
        reply_tagged(ctx, "OK", NULL, "%s completed", verb);
        return CMD_DONE;
    }
    struct list_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    char *p = arena_alloc(ctx->arena, ref_len + pat_len + 1);
    if (ref_len > 0)
        memcpy(p, ref, ref_len);
    memcpy(p + ref_len, pat, pat_len);
    p[ref_len + pat_len] = '\0';
    st->pattern = p;
    st->plen = mboxname_pattern_compact(p, ref_len + pat_len);
    ctx->state = st;
    const char *nsid = conn_nsid(ctx->conn);
    struct key mailboxes;
    keys_ns_mailboxes(&mailboxes, nsid);
    if (!lsub) {
        const char *argv[] = {"HGETALL", mailboxes.s};
        const size_t argvlen[] = {7, mailboxes.len};
        return conn_redis(ctx, list_got_mailboxes, 2, argv, argvlen);
    }
    struct key subs;
    keys_ns_subscriptions(&subs, nsid);
    const char *sargv[] = {"SMEMBERS", subs.s};
    const size_t sargvlen[] = {8, subs.len};
    (void)conn_redis(ctx, lsub_got, 2, sargv, sargvlen);
    const char *hargv[] = {"HKEYS", mailboxes.s};
    const size_t hargvlen[] = {5, mailboxes.len};
    return conn_redis(ctx, lsub_got, 2, hargv, hargvlen);
}
