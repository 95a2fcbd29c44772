/*
 * STORE and UID STORE (RFC 3501 §6.4.6, §6.4.8): FLAGS, +FLAGS, -FLAGS, each with .SILENT.
 * The sequence set is resolved against the session's view, then sent in batches of up to 1,000
 * ascending UIDs to store.lua, one atomic call per batch; each answer is written out as it
 * arrives ("* n FETCH (FLAGS (...))", with UID for UID STORE; RFC 3501 answers every message,
 * changed or not, unless .SILENT), pausing while the client's output is over its high-water mark.
 * \Recent is session state: it is never stored and is added to the FLAGS of this session's
 * \Recent messages. A keyword the session has not been told of yet is announced with FLAGS and
 * PERMANENTFLAGS first (RFC 3501 §7.2.6).
 *
 * Messages another session expunged (the view still holds them; RFC 2180 §4.2): UID STORE simply
 * matches nothing for them (RFC 3501 §6.4.8); STORE by sequence number changes the others and
 * answers NO [EXPUNGEISSUED] unless .SILENT (RFC 2180 §4.2.3).
 * Not here yet: CONDSTORE's UNCHANGEDSINCE (store.lua already takes it).
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <event2/buffer.h>

#include "frontend/cmd_common.h"
#include "frontend/commands.h"
#include "frontend/flags.h"
#include "frontend/limits.h"
#include "frontend/msgset.h"
#include "frontend/reply.h"
#include "frontend/user_limits.h"
#include "frontend/selected.h"
#include "keys/keys.h"

#define STORE_BATCH 1000

struct store_state {
    const char *name;      /* "STORE" or "UID STORE" */
    const char *mode;      /* "set", "add", "remove" */
    const char *flags;     /* canonical, space separated */
    bool silent;
    bool missing;          /* some messages of the set no longer exist */
    struct seqset seqs;    /* sequence numbers */
    size_t range;          /* next range of seqs */
    uint32_t next;         /* next sequence number in that range */
    uint32_t *batch;
    size_t batch_n;
    struct arena *batch_arena;
};

static enum cmd_status send_batch(struct cmd_ctx *ctx);

static void store_cleanup(struct cmd_ctx *ctx)
{
    struct store_state *st = ctx->state;
    if (st != NULL)
        arena_free(&st->batch_arena);
}

/* True when keyword (len bytes) is in the space-separated list, without regard to case. */
static bool listed(const char *list, const char *word, size_t len)
{
    const char *p = list;
    while (*p != '\0') {
        while (*p == ' ')
            p++;
        const char *e = p;
        while (*e != '\0' && *e != ' ')
            e++;
        if ((size_t)(e - p) == len && len > 0 && strncasecmp(p, word, len) == 0)
            return true;
        p = e;
    }
    return false;
}

static void flag_list(struct evbuffer *b, const char *keywords, bool star)
{
    evbuffer_add_printf(b, "(\\Answered \\Flagged \\Deleted \\Seen \\Draft");
    if (keywords[0] != '\0')
        evbuffer_add_printf(b, " %s", keywords);
    if (star)
        evbuffer_add(b, " \\*", 3);
    evbuffer_add(b, ")", 1);
}

/* Announces keywords of flags the session was not told of (untagged FLAGS and PERMANENTFLAGS). */
static void announce_keywords(struct cmd_ctx *ctx, const char *flags)
{
    struct selected *sel = conn_selected(ctx->conn);
    const char *old = sel->keywords != NULL ? sel->keywords : "";
    size_t oldlen = strlen(old), len = strlen(flags);
    char *kw = arena_alloc(ctx->arena, oldlen + len + 2);
    memcpy(kw, old, oldlen + 1);
    size_t used = oldlen;
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && flags[j] != ' ')
            j++;
        if (j > i && flags[i] != '\\' && !listed(kw, flags + i, j - i)) {
            if (used > 0)
                kw[used++] = ' ';
            memcpy(kw + used, flags + i, j - i);
            used += j - i;
            kw[used] = '\0';
        }
        i = j + 1;
    }
    if (used == oldlen)
        return;
    char *copy = malloc(used + 1);
    if (copy == NULL)
        abort();
    memcpy(copy, kw, used + 1);
    free(sel->keywords);
    sel->keywords = copy;
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        abort();
    evbuffer_add_printf(b, "* FLAGS ");
    flag_list(b, sel->keywords, false);
    reply_line(ctx->conn, b);
    evbuffer_drain(b, evbuffer_get_length(b));
    evbuffer_add_printf(b, "* OK [PERMANENTFLAGS ");
    flag_list(b, sel->keywords, true);
    evbuffer_add_printf(b, "] Flags permitted");
    reply_line(ctx->conn, b);
    evbuffer_free(b);
}

static bool reply_uint(const redisReply *r, uint64_t *out)
{
    if (r->type == REDIS_REPLY_INTEGER && r->integer >= 0) {
        *out = (uint64_t)r->integer;
        return true;
    }
    return false;
}

static enum cmd_status finish(struct cmd_ctx *ctx)
{
    struct store_state *st = ctx->state;
    if (st->missing && !st->silent && !ctx->uid) {
        reply_tagged(ctx, "NO", "EXPUNGEISSUED", "Some of the messages no longer exist");
        return CMD_DONE;
    }
    reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
    return CMD_DONE;
}

static enum cmd_status stored(struct cmd_ctx *ctx)
{
    struct store_state *st = ctx->state;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return cmd_store_failed(ctx, res, st->name);
    const redisReply *r = res->reply;
    uint64_t modseq = 0, n = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 2 || !reply_uint(r->element[0], &modseq) ||
        !reply_uint(r->element[1], &n) || n > st->batch_n || r->elements != 2 + 3 * n) {
        reply_tagged(ctx, "NO", "SERVERBUG", "%s failed: unexpected reply", st->name);
        return CMD_DONE;
    }
    if (n < st->batch_n)
        st->missing = true;
    struct selected *sel = conn_selected(ctx->conn);
    if (strcmp(st->mode, "remove") != 0 && n > 0)
        announce_keywords(ctx, st->flags);
    struct evbuffer *line = evbuffer_new();
    if (line == NULL)
        return CMD_ERR;
    for (size_t i = 0; i < n && !st->silent; i++) {
        const redisReply *u = r->element[2 + 3 * i];
        const redisReply *f = r->element[3 + 3 * i];
        uint64_t uid = 0;
        if (!reply_uint(u, &uid) || uid == 0 || uid > UINT32_MAX || f->type != REDIS_REPLY_STRING)
            continue;
        uint32_t seq = view_seq(sel->view, (uint32_t)uid);
        if (seq == 0)
            continue;
        evbuffer_add_printf(line, "* %" PRIu32 " FETCH (FLAGS (", seq);
        evbuffer_add(line, f->str, f->len);
        if (uid >= sel->recent_first)
            evbuffer_add_printf(line, "%s\\Recent", f->len > 0 ? " " : "");
        evbuffer_add(line, ")", 1);
        if (ctx->uid)
            evbuffer_add_printf(line, " UID %" PRIu64, uid);
        evbuffer_add(line, ")", 1);
        reply_line(ctx->conn, line);
        evbuffer_drain(line, evbuffer_get_length(line));
    }
    evbuffer_free(line);
    if (st->range >= st->seqs.count)
        return finish(ctx);
    if (conn_output_full(ctx->conn))
        return conn_wait_drain(ctx, send_batch);
    return send_batch(ctx);
}

static enum cmd_status send_batch(struct cmd_ctx *ctx)
{
    struct store_state *st = ctx->state;
    const struct selected *sel = conn_selected(ctx->conn);
    arena_reset(st->batch_arena);
    struct arena *a = st->batch_arena;
    st->batch = arena_alloc(a, STORE_BATCH * sizeof(uint32_t));
    st->batch_n = 0;
    while (st->range < st->seqs.count && st->batch_n < STORE_BATCH) {
        const struct seqset_range *rg = &st->seqs.ranges[st->range];
        if (st->next < rg->first)
            st->next = rg->first;
        uint32_t uid = view_uid(sel->view, st->next);
        if (uid != 0)
            st->batch[st->batch_n++] = uid;
        if (st->next == rg->last)
            st->range++;
        else
            st->next++;
    }
    if (st->batch_n == 0)
        return finish(ctx);
    const char *nsid = conn_nsid(ctx->conn);
    uint32_t *chunks = arena_alloc(a, st->batch_n * sizeof(*chunks));
    size_t nchunks = keys_cache_chunks(st->batch, st->batch_n, chunks);
    size_t nkeys = 11 + nchunks;
    size_t argc = nkeys + 5 + st->batch_n;
    const char **argv = arena_alloc(a, argc * sizeof(*argv));
    size_t *argvlen = arena_alloc(a, argc * sizeof(*argvlen));
    struct key *keys = arena_alloc(a, nkeys * sizeof(*keys));
    keys_ns_meta(&keys[0], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&keys[1 + p], nsid, sel->mbxid, (enum keys_mbx_part)p);
    keys_ns_channel(&keys[10], nsid);
    for (size_t i = 0; i < nchunks; i++)
        keys_mbx_cache(&keys[11 + i], nsid, sel->mbxid, 'f', chunks[i]);
    for (size_t i = 0; i < nkeys; i++) {
        argv[i] = keys[i].s;
        argvlen[i] = keys[i].len;
    }
    const char *fixed[5] = {sel->mbxid, st->mode, st->flags, "0",
                            arena_printf(a, "%u", (unsigned)conn_user_limits(ctx->conn)->max_keywords)};
    for (size_t i = 0; i < 5; i++) {
        argv[nkeys + i] = fixed[i];
        argvlen[nkeys + i] = strlen(fixed[i]);
    }
    for (size_t i = 0; i < st->batch_n; i++) {
        char *uid = arena_printf(a, "%" PRIu32, st->batch[i]);
        argv[nkeys + 5 + i] = uid;
        argvlen[nkeys + 5 + i] = strlen(uid);
    }
    return conn_eval(ctx, stored, LUA_SCRIPT_STORE, (int)nkeys, (int)argc, argv, argvlen);
}

/* Parses "[+|-]FLAGS[.SILENT]" into st->mode and st->silent. */
static bool parse_item(const struct imap_arg *a, struct store_state *st)
{
    if (a->type != IMAP_ARG_ATOM)
        return false;
    const char *s = a->str;
    size_t len = a->len;
    st->mode = "set";
    if (len > 0 && (s[0] == '+' || s[0] == '-')) {
        st->mode = s[0] == '+' ? "add" : "remove";
        s++;
        len--;
    }
    if (len == 12 && strncasecmp(s, "FLAGS.SILENT", 12) == 0) {
        st->silent = true;
        return true;
    }
    return len == 5 && strncasecmp(s, "FLAGS", 5) == 0;
}

enum cmd_status cmd_store(struct cmd_ctx *ctx)
{
    const struct selected *sel = conn_selected(ctx->conn);
    struct store_state *st = arena_calloc(ctx->arena, 1, sizeof(*st));
    st->name = ctx->uid ? "UID STORE" : "STORE";
    const char *error = NULL;
    if (ctx->argc < 3 || ctx->args[0].type != IMAP_ARG_ATOM || !parse_item(&ctx->args[1], st)) {
        reply_tagged(ctx, "BAD", NULL, "%s takes a sequence set, FLAGS, +FLAGS or -FLAGS "
                     "(optionally .SILENT) and flags", st->name);
        return CMD_DONE;
    }
    if (msgset_resolve(ctx->arena, sel->view, ctx->args[0].str, ctx->args[0].len, ctx->uid,
                       &st->seqs, &error) != 0) {
        reply_tagged(ctx, "BAD", NULL, "%s: %s", st->name, error);
        return CMD_DONE;
    }
    /* flag-list, or one or more flags without parentheses (RFC 3501 §9 store-att-flags). */
    if (ctx->argc > 3 || ctx->args[2].type != IMAP_ARG_LIST) {
        size_t cap = 1;
        for (size_t i = 2; i < ctx->argc; i++)
            cap += ctx->args[i].len + 1;
        char *all = arena_alloc(ctx->arena, cap);
        size_t used = 0;
        for (size_t i = 2; i < ctx->argc; i++) {
            if (ctx->args[i].type != IMAP_ARG_ATOM) {
                reply_tagged(ctx, "BAD", NULL, "%s: flags are atoms", st->name);
                return CMD_DONE;
            }
            const char *one = flags_canonical(ctx->arena, &ctx->args[i], true, &error);
            if (one == NULL) {
                reply_tagged(ctx, "BAD", NULL, "%s: %s", st->name, error);
                return CMD_DONE;
            }
            size_t l = strlen(one);
            if (l > 0) {
                if (used > 0)
                    all[used++] = ' ';
                memcpy(all + used, one, l);
                used += l;
            }
        }
        all[used] = '\0';
        st->flags = all;
    } else {
        st->flags = flags_canonical(ctx->arena, &ctx->args[2], true, &error);
        if (st->flags == NULL) {
            reply_tagged(ctx, "BAD", NULL, "%s: %s", st->name, error);
            return CMD_DONE;
        }
    }
    if (sel->readonly) {
        reply_tagged(ctx, "NO", "READ-ONLY", "%s: the mailbox is read-only", st->name);
        return CMD_DONE;
    }
    if (st->seqs.count == 0) {
        reply_tagged(ctx, "OK", NULL, "%s completed", st->name);
        return CMD_DONE;
    }
    st->batch_arena = arena_new(64 * 1024);
    ctx->state = st;
    ctx->cleanup = store_cleanup;
    return send_batch(ctx);
}
