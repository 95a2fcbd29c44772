/*
 * Change-log replay for a selected session (see updates.h).
 *
 * One round trip reads the mailbox's state (highestmodseq, uidvalidity, removed) and up to 1,000
 * log entries after the session's modseq, in one MULTI/EXEC snapshot. Entries are applied in
 * order: appends grow the view, expunges shrink it (each EXPUNGE carries the sequence number the
 * message has at that moment, and an EXISTS is sent first if appends made the view bigger than
 * the client knows), flag changes are collected and answered after the log with one HMGET of
 * their current flags per 1,000 messages. New messages are claimed as \Recent (recent_claim.lua)
 * by a read-write session. The session's modseq advances entry by entry, so an interrupted run
 * resumes where it stopped.
 *
 * Resynchronisation (log trimmed past the session, modseq gone backwards): the UID runs are read
 * again (mbx_select.lua without claiming) and compared with the view: missing messages are
 * EXPUNGEd, new ones announced with EXISTS, and every message's flags are sent again, since which
 * of them changed cannot be known.
 *
 * Memory: one arena per session (struct selected), reset at each run, so a day-long IDLE does not
 * grow.
 */
#include "frontend/updates.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>

#include "frontend/arena.h"
#include "frontend/cmd_common.h"
#include "frontend/log.h"
#include "frontend/reply.h"
#include "frontend/selected.h"
#include "frontend/view.h"
#include "keys/keys.h"

#define LOG_BATCH 1000
#define FLAGS_BATCH 1000
#define RUNS_BATCH 1000

struct upd {
    cmd_step *next;
    struct arena *a;
    uint32_t told;         /* EXISTS the client believes */
    bool appended;         /* the view grew during this run */
    uint32_t *flag_uids;   /* messages whose flags are to be reported */
    size_t nflag, capflag;
    size_t flag_pos;
    uint64_t target;       /* the mailbox's highestmodseq in the last snapshot */
    struct view *fresh;    /* resync: the UID set as it is now */
    uint64_t runs_read, runs_total;
};

static enum cmd_status read_log(struct cmd_ctx *ctx);
static enum cmd_status report_flags(struct cmd_ctx *ctx);

/* Ends the session: the selected mailbox is gone or is no longer the one the client knows. */
static enum cmd_status gone(struct cmd_ctx *ctx, const char *why)
{
    struct upd *u = ctx->helper;
    log_write(LOG_INFO, "updates.bye", "conn=%llu reason=\"%s\"", (unsigned long long)conn_id(ctx->conn),
              why);
    reply_bye(ctx->conn, NULL, why);
    conn_close_after_output(ctx->conn);
    ctx->helper = NULL;
    (void)u;
    return CMD_DONE;
}

static enum cmd_status finish(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    cmd_step *next = u->next;
    ctx->helper = NULL;
    return next(ctx);
}

static enum cmd_status failed(struct cmd_ctx *ctx, const struct store_result *res)
{
    /* Nothing is lost: the session's modseq marks what it has seen; the next run resumes. */
    log_write(LOG_WARN, "updates.failed", "conn=%llu error=\"%s\"",
              (unsigned long long)conn_id(ctx->conn), res->error != NULL ? res->error : "?");
    return finish(ctx);
}

static void tell_exists(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    uint32_t n = view_count(sel->view);
    if (n != u->told) {
        reply_untagged(ctx->conn, "%" PRIu32 " EXISTS", n);
        u->told = n;
    }
}

static void want_flags(struct upd *u, uint32_t uid)
{
    if (u->nflag == u->capflag) {
        size_t ncap = u->capflag == 0 ? 64 : u->capflag * 2;
        uint32_t *grown = arena_alloc(u->a, ncap * sizeof(*grown));
        if (u->nflag > 0)
            memcpy(grown, u->flag_uids, u->nflag * sizeof(*grown));
        u->flag_uids = grown;
        u->capflag = ncap;
    }
    u->flag_uids[u->nflag++] = uid;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

/* Calls fn for every UID of a UID-set text ("4:7,9"); false on malformed text. */
static bool each_uid(const char *s, size_t len, void (*fn)(struct cmd_ctx *, uint32_t),
                     struct cmd_ctx *ctx)
{
    size_t i = 0;
    while (i < len) {
        uint64_t a = 0, b = 0;
        size_t start = i;
        while (i < len && s[i] >= '0' && s[i] <= '9')
            a = a * 10 + (uint64_t)(s[i++] - '0');
        if (i == start || a == 0 || a > UINT32_MAX)
            return false;
        b = a;
        if (i < len && s[i] == ':') {
            i++;
            start = i;
            b = 0;
            while (i < len && s[i] >= '0' && s[i] <= '9')
                b = b * 10 + (uint64_t)(s[i++] - '0');
            if (i == start || b < a || b > UINT32_MAX)
                return false;
        }
        if (i < len && s[i++] != ',')
            return false;
        for (uint64_t x = a; x <= b; x++)
            fn(ctx, (uint32_t)x);
    }
    return true;
}

static void apply_append(struct cmd_ctx *ctx, uint32_t uid)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    if (uid > view_max_uid(sel->view) && view_add_run(sel->view, uid, uid) == 0)
        u->appended = true;
}

static void apply_expunge(struct cmd_ctx *ctx, uint32_t uid)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    if (view_seq(sel->view, uid) == 0)
        return; /* already gone (e.g. this session expunged it) */
    tell_exists(ctx); /* the client must know the messages appended before this expunge */
    uint32_t seq = view_remove(sel->view, uid);
    reply_untagged(ctx->conn, "%" PRIu32 " EXPUNGE", seq);
    u->told--;
}

static void apply_flags(struct cmd_ctx *ctx, uint32_t uid)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    if (view_seq(sel->view, uid) != 0)
        want_flags(u, uid);
}

/* The field value of a stream entry's field list (["k","append","u","1:3",...]). */
static const redisReply *field(const redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        const redisReply *k = fields->element[i];
        if (k->type == REDIS_REPLY_STRING && strlen(name) == k->len && memcmp(k->str, name, k->len) == 0)
            return fields->element[i + 1];
    }
    return NULL;
}

/* ---------------------------------------------------------------- resynchronisation */

static enum cmd_status resync_apply(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    struct view *old = sel->view;
    /* Expunge what is gone, in ascending UID order (each with its current number). */
    uint32_t seq = 1;
    while (seq <= view_count(old)) {
        uint32_t uid = view_uid(old, seq);
        if (view_seq(u->fresh, uid) == 0) {
            view_remove(old, uid);
            reply_untagged(ctx->conn, "%" PRIu32 " EXPUNGE", seq);
            u->told--;
        } else {
            seq++;
        }
    }
    /* What is left is a subset of the fresh set; anything new must come after it. */
    uint32_t top = view_max_uid(old);
    for (size_t i = 0; i < view_run_count(u->fresh); i++) {
        uint32_t first, last;
        view_run(u->fresh, i, &first, &last);
        if (last <= top)
            continue;
        if (first <= top) {
            for (uint32_t x = first; x <= top; x++) {
                if (view_seq(old, x) == 0)
                    return gone(ctx, "Mailbox changed beyond repair, please reselect");
            }
            first = top + 1;
        }
        if (view_add_run(old, first, last) != 0)
            return gone(ctx, "Mailbox changed beyond repair, please reselect");
        u->appended = true;
    }
    for (uint32_t s = 1; s <= view_count(old); s++) {
        uint32_t uid = view_uid(old, s);
        if (view_seq(u->fresh, uid) == 0)
            return gone(ctx, "Mailbox changed beyond repair, please reselect");
    }
    view_free(&u->fresh);
    tell_exists(ctx);
    /* Which flags changed cannot be known: report them all. */
    for (uint32_t s = 1; s <= view_count(old); s++)
        want_flags(u, view_uid(old, s));
    sel->highestmodseq = u->target;
    log_write(LOG_INFO, "updates.resync", "conn=%llu messages=%" PRIu32,
              (unsigned long long)conn_id(ctx->conn), view_count(old));
    return report_flags(ctx);
}

static bool add_run_text(struct view *v, const redisReply *r)
{
    return r->type == REDIS_REPLY_STRING && view_add_run_text(v, r->str, r->len);
}

static enum cmd_status resync_more(struct cmd_ctx *ctx);

static enum cmd_status resync_got_runs(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return failed(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY)
        return failed(ctx, res);
    for (size_t i = 0; i < r->elements; i++) {
        if (!add_run_text(u->fresh, r->element[i]))
            return gone(ctx, "Mailbox data inconsistent, please reselect");
    }
    u->runs_read += r->elements;
    if (r->elements < RUNS_BATCH)
        return resync_apply(ctx);
    return resync_more(ctx);
}

static enum cmd_status resync_more(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    const struct selected *sel = conn_selected(ctx->conn);
    struct key k;
    keys_mbx(&k, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_RUNS);
    /* By score after the highest UID read, never by rank (cmd_select.c says why). */
    char start[24], count[24];
    int ls = snprintf(start, sizeof(start), "(%" PRIu32, view_max_uid(u->fresh));
    int lc = snprintf(count, sizeof(count), "%d", RUNS_BATCH);
    const char *argv[] = {"ZRANGEBYSCORE", k.s, start, "+inf", "LIMIT", "0", count};
    const size_t argvlen[] = {13, k.len, (size_t)ls, 4, 5, 1, (size_t)lc};
    return conn_redis(ctx, resync_got_runs, 7, argv, argvlen);
}

static enum cmd_status resync_got_snapshot(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    const struct store_result *res = ctx->store;
    struct selected *sel = conn_selected(ctx->conn);
    if (res->status == STORE_ERROR && strncmp(res->error, "NONEXISTENT", 11) == 0)
        return gone(ctx, "Selected mailbox was deleted");
    if (res->status != STORE_OK)
        return failed(ctx, res);
    const redisReply *r = res->reply;
    uint64_t uidvalidity = 0;
    if (r->type != REDIS_REPLY_ARRAY || r->elements < 9 || !cmd_reply_u64(r->element[0], &uidvalidity) ||
        !cmd_reply_u64(r->element[2], &u->target) || !cmd_reply_u64(r->element[8], &u->runs_total))
        return gone(ctx, "Mailbox data inconsistent, please reselect");
    if (uidvalidity != sel->uidvalidity)
        return gone(ctx, "UIDVALIDITY changed, please reselect");
    u->fresh = view_new();
    for (size_t i = 9; i < r->elements; i++) {
        if (!add_run_text(u->fresh, r->element[i]))
            return gone(ctx, "Mailbox data inconsistent, please reselect");
    }
    u->runs_read = r->elements - 9;
    if (u->runs_read >= u->runs_total)
        return resync_apply(ctx);
    return resync_more(ctx);
}

static enum cmd_status resync(struct cmd_ctx *ctx)
{
    const struct selected *sel = conn_selected(ctx->conn);
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, mbx, runs, unseen;
    keys_ns_meta(&meta, nsid);
    keys_mbx(&mbx, nsid, sel->mbxid, KEYS_MBX);
    keys_mbx(&runs, nsid, sel->mbxid, KEYS_MBX_RUNS);
    keys_mbx(&unseen, nsid, sel->mbxid, KEYS_MBX_UNSEEN);
    const char *argv[] = {meta.s, mbx.s, runs.s, unseen.s, sel->mbxid, "0", "1000"};
    const size_t argvlen[] = {meta.len, mbx.len, runs.len, unseen.len, KEYS_MBXID_LEN, 1, 4};
    return conn_eval(ctx, resync_got_snapshot, LUA_SCRIPT_MBX_SELECT, 4, 7, argv, argvlen);
}

/* ---------------------------------------------------------------- \Recent, flags */

static enum cmd_status claimed(struct cmd_ctx *ctx)
{
    struct selected *sel = conn_selected(ctx->conn);
    const struct store_result *res = ctx->store;
    uint64_t old = 0;
    if (res->status == STORE_OK && res->reply->type == REDIS_REPLY_ARRAY &&
        res->reply->elements >= 1 && cmd_reply_u64(res->reply->element[0], &old)) {
        /* RFC 3501 §2.3.2: UIDs from old up are \Recent for this session only. UIDs claimed by
         * another session in between are taken as recent here too (a documented approximation:
         * \Recent keeps one threshold per session). */
        if (old <= view_max_uid(sel->view) && (sel->recent_first > view_max_uid(sel->view) ||
                                               old < sel->recent_first))
            sel->recent_first = (uint32_t)old;
    }
    reply_untagged(ctx->conn, "%" PRIu32 " RECENT", view_count_from(sel->view, sel->recent_first));
    return finish(ctx);
}

static enum cmd_status done_reading(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    tell_exists(ctx);
    if (!u->appended)
        return finish(ctx);
    if (sel->readonly) {
        reply_untagged(ctx->conn, "%" PRIu32 " RECENT",
                       view_count_from(sel->view, sel->recent_first));
        return finish(ctx);
    }
    const char *nsid = conn_nsid(ctx->conn);
    struct key meta, mbx, uids;
    keys_ns_meta(&meta, nsid);
    keys_mbx(&mbx, nsid, sel->mbxid, KEYS_MBX);
    keys_mbx(&uids, nsid, sel->mbxid, KEYS_MBX_UIDS);
    char upto[16];
    int n = snprintf(upto, sizeof(upto), "%" PRIu32, view_max_uid(sel->view) + 1);
    const char *argv[] = {meta.s, mbx.s, uids.s, sel->mbxid, upto};
    const size_t argvlen[] = {meta.len, mbx.len, uids.len, KEYS_MBXID_LEN, (size_t)n};
    return conn_eval(ctx, claimed, LUA_SCRIPT_RECENT_CLAIM, 3, 5, argv, argvlen);
}

static enum cmd_status got_flags(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return failed(ctx, res);
    const redisReply *r = res->reply;
    size_t batch = u->nflag - u->flag_pos < FLAGS_BATCH ? u->nflag - u->flag_pos : FLAGS_BATCH;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != batch)
        return failed(ctx, res);
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return CMD_ERR;
    for (size_t i = 0; i < batch; i++) {
        uint32_t uid = u->flag_uids[u->flag_pos + i];
        uint32_t seq = view_seq(sel->view, uid);
        const redisReply *f = r->element[i];
        if (seq == 0)
            continue;
        bool recent = uid >= sel->recent_first;
        evbuffer_add_printf(b, "* %" PRIu32 " FETCH (UID %" PRIu32 " FLAGS (", seq, uid);
        if (f->type == REDIS_REPLY_STRING)
            evbuffer_add(b, f->str, f->len);
        if (recent)
            evbuffer_add_printf(b, "%s\\Recent", f->type == REDIS_REPLY_STRING && f->len > 0 ? " " : "");
        evbuffer_add(b, "))", 2);
        reply_line(ctx->conn, b);
        evbuffer_drain(b, evbuffer_get_length(b));
    }
    evbuffer_free(b);
    u->flag_pos += batch;
    return report_flags(ctx);
}

static enum cmd_status report_flags(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    if (u->flag_pos >= u->nflag)
        return done_reading(ctx);
    if (u->flag_pos == 0) { /* one report per message, in UID order */
        tell_exists(ctx); /* a FETCH may name a message appended in this run */
        qsort(u->flag_uids, u->nflag, sizeof(uint32_t), cmp_u32);
        size_t w = 0;
        for (size_t i = 0; i < u->nflag; i++) {
            if (w == 0 || u->flag_uids[w - 1] != u->flag_uids[i])
                u->flag_uids[w++] = u->flag_uids[i];
        }
        u->nflag = w;
    }
    const struct selected *sel = conn_selected(ctx->conn);
    struct key k;
    keys_mbx(&k, conn_nsid(ctx->conn), sel->mbxid, KEYS_MBX_FLAGS);
    size_t batch = u->nflag - u->flag_pos < FLAGS_BATCH ? u->nflag - u->flag_pos : FLAGS_BATCH;
    const char **argv = arena_alloc(u->a, (batch + 2) * sizeof(*argv));
    size_t *argvlen = arena_alloc(u->a, (batch + 2) * sizeof(*argvlen));
    argv[0] = "HMGET";
    argvlen[0] = 5;
    argv[1] = arena_strndup(u->a, k.s, k.len);
    argvlen[1] = k.len;
    for (size_t i = 0; i < batch; i++) {
        char *s = arena_printf(u->a, "%" PRIu32, u->flag_uids[u->flag_pos + i]);
        argv[2 + i] = s;
        argvlen[2 + i] = strlen(s);
    }
    return conn_redis(ctx, got_flags, (int)(batch + 2), argv, argvlen);
}

/* ---------------------------------------------------------------- the log */

static enum cmd_status got_log(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    struct selected *sel = conn_selected(ctx->conn);
    const struct store_result *res = ctx->store;
    if (res->status != STORE_OK)
        return failed(ctx, res);
    const redisReply *r = res->reply;
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 2 || r->element[0]->type != REDIS_REPLY_ARRAY ||
        r->element[0]->elements != 3 || r->element[1]->type != REDIS_REPLY_ARRAY)
        return failed(ctx, res);
    const redisReply *state = r->element[0];
    const redisReply *entries = r->element[1];
    uint64_t highest = 0, uidvalidity = 0;
    if (state->element[2]->type != REDIS_REPLY_NIL || !cmd_reply_u64(state->element[0], &highest))
        return gone(ctx, "Selected mailbox was deleted");
    if (cmd_reply_u64(state->element[1], &uidvalidity) && uidvalidity != sel->uidvalidity)
        return gone(ctx, "UIDVALIDITY changed, please reselect");
    u->target = highest;
    if (highest < sel->highestmodseq) {
        log_write(LOG_WARN, "updates.modseq_backwards", "conn=%llu have=%" PRIu64 " mailbox=%" PRIu64,
                  (unsigned long long)conn_id(ctx->conn), sel->highestmodseq, highest);
        return resync(ctx);
    }
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            return failed(ctx, res);
        uint64_t modseq = strtoull(e->element[0]->str, NULL, 10);
        if (modseq != sel->highestmodseq + 1) {
            if (modseq <= sel->highestmodseq)
                continue;
            return resync(ctx); /* the log was trimmed past this session */
        }
        const redisReply *kind = field(e->element[1], "k");
        const redisReply *uids = field(e->element[1], "u");
        const redisReply *event = field(e->element[1], "e");
        if (kind == NULL || kind->type != REDIS_REPLY_STRING)
            return failed(ctx, res);
        const char *us = uids != NULL && uids->type == REDIS_REPLY_STRING ? uids->str : "";
        size_t ul = uids != NULL && uids->type == REDIS_REPLY_STRING ? uids->len : 0;
        bool ok = true;
        if (strcmp(kind->str, "append") == 0)
            ok = each_uid(us, ul, apply_append, ctx);
        else if (strcmp(kind->str, "expunge") == 0)
            ok = each_uid(us, ul, apply_expunge, ctx);
        else if (strcmp(kind->str, "flags") == 0)
            ok = each_uid(us, ul, apply_flags, ctx);
        else if (strcmp(kind->str, "mailbox") == 0 && event != NULL &&
                 event->type == REDIS_REPLY_STRING && strcmp(event->str, "deleted") == 0)
            return gone(ctx, "Selected mailbox was deleted");
        if (!ok)
            return failed(ctx, res);
        sel->highestmodseq = modseq;
    }
    if (entries->elements == LOG_BATCH)
        return read_log(ctx);
    if (sel->highestmodseq < highest)
        return resync(ctx); /* modseq rose without log entries we could read: trimmed */
    return report_flags(ctx);
}

static enum cmd_status read_log(struct cmd_ctx *ctx)
{
    struct upd *u = ctx->helper;
    const struct selected *sel = conn_selected(ctx->conn);
    const char *nsid = conn_nsid(ctx->conn);
    struct key mbx, log;
    keys_mbx(&mbx, nsid, sel->mbxid, KEYS_MBX);
    keys_mbx(&log, nsid, sel->mbxid, KEYS_MBX_LOG);
    char *start = arena_printf(u->a, "%" PRIu64 "-0", sel->highestmodseq + 1);
    const char *a0[] = {"HMGET", mbx.s, "highestmodseq", "uidvalidity", "removed"};
    const size_t l0[] = {5, mbx.len, 13, 11, 7};
    const char *a1[] = {"XRANGE", log.s, start, "+", "COUNT", "1000"};
    const size_t l1[] = {6, log.len, strlen(start), 1, 5, 4};
    const int argc[] = {5, 6};
    const char *const *argv[] = {a0, a1};
    const size_t *const argvlen[] = {l0, l1};
    return conn_redis_tx(ctx, got_log, 2, argc, argv, argvlen);
}

enum cmd_status updates_run(struct cmd_ctx *ctx, cmd_step *next)
{
    struct selected *sel = conn_selected(ctx->conn);
    if (sel->upd_arena == NULL)
        sel->upd_arena = arena_new(4096);
    else
        arena_reset(sel->upd_arena);
    struct upd *u = arena_calloc(sel->upd_arena, 1, sizeof(*u));
    u->a = sel->upd_arena;
    u->next = next;
    u->told = view_count(sel->view);
    ctx->helper = u;
    return read_log(ctx);
}
