/*
 * Demo data for --demo-data: the user demouser with INBOX, Sent, Drafts, Trash, Junk and Archive
 * (SPECIAL-USE) and a handful of realistic messages written for this project — plain text,
 * multipart with an attachment, a forwarded message, an HTML newsletter, a reply in Sent, a draft
 * and a deleted message — with a mix of flags, unseen mail and \Recent mail.
 *
 * Everything is prepared up front (ids are chosen here, messages parsed here) and then written by
 * the same scripts a client's commands use, one after another; the first failure stops the run.
 * Created only when the user record did not exist (startup.c checks).
 */
#include "frontend/demo.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/defaults.h"
#include "frontend/limits.h"
#include "frontend/log.h"
#include "frontend/msgprep.h"
#include "keys/keys.h"

struct demo_message {
    int mailbox;       /* index into mailboxes[] */
    const char *flags; /* canonical */
    const char *date;  /* unix seconds */
    const char *text;  /* CRLF line ends */
};

/* messages[].mailbox indexes default_mailboxes: INBOX, Sent, Drafts, Trash, ... */
#define mailboxes default_mailboxes
#define N_MAILBOXES DEFAULT_MAILBOX_COUNT

static const struct demo_message messages[] = {
    {0, "\\Seen", "1764000000",
     "Return-Path: <team@cimap.example>\r\n"
     "From: The cimap team <team@cimap.example>\r\n"
     "To: Demo User <demouser@cimap.example>\r\n"
     "Subject: Welcome to cimap\r\n"
     "Date: Mon, 24 Nov 2025 16:00:00 +0000\r\n"
     "Message-ID: <welcome-1@cimap.example>\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: 8bit\r\n"
     "\r\n"
     "Hello,\r\n"
     "\r\n"
     "this mailbox lives entirely in Redis. Every front end you connect to sees\r\n"
     "the same mail, and any of them can go away without losing a message.\r\n"
     "\r\n"
     "Try flagging this message, moving it to Archive, or searching for \"Redis\".\r\n"
     "\r\n"
     "\xe2\x80\x94 the cimap team\r\n"},
    {0, "\\Seen \\Flagged", "1764072000",
     "From: Ada Lovelace <ada@analytical.example>\r\n"
     "To: Demo User <demouser@cimap.example>\r\n"
     "Cc: Charles Babbage <charles@analytical.example>\r\n"
     "Subject: Notes on the engine, with the table attached\r\n"
     "Date: Tue, 25 Nov 2025 12:00:00 +0000\r\n"
     "Message-ID: <notes-g@analytical.example>\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: multipart/mixed; boundary=\"=_engine_notes\"\r\n"
     "\r\n"
     "This is a multi-part message in MIME format.\r\n"
     "--=_engine_notes\r\n"
     "Content-Type: text/plain; charset=us-ascii\r\n"
     "\r\n"
     "Here are my notes on the Bernoulli numbers. The table is attached as CSV;\r\n"
     "note G computes B7 in twenty-five operations.\r\n"
     "\r\n"
     "Ada\r\n"
     "--=_engine_notes\r\n"
     "Content-Type: text/csv; name=\"bernoulli.csv\"\r\n"
     "Content-Disposition: attachment; filename=\"bernoulli.csv\"\r\n"
     "Content-Transfer-Encoding: base64\r\n"
     "\r\n"
     "bixCX24KMSwxLzYKMiwtMS8zMAozLDEvNDIKNCwtMS8zMAo1LDUvNjYKNiwtNjkxLzI3MzAKNyw3\r\n"
     "LzYK\r\n"
     "--=_engine_notes--\r\n"},
    {0, "", "1764086400",
     "From: Grace Hopper <grace@navy.example>\r\n"
     "To: Demo User <demouser@cimap.example>\r\n"
     "Subject: Fwd: The first actual bug\r\n"
     "Date: Tue, 25 Nov 2025 16:00:00 +0000\r\n"
     "Message-ID: <fwd-moth@navy.example>\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: multipart/mixed; boundary=\"fwd-boundary-1947\"\r\n"
     "\r\n"
     "--fwd-boundary-1947\r\n"
     "Content-Type: text/plain; charset=us-ascii\r\n"
     "\r\n"
     "Found this in the logbook, forwarding for the archive.\r\n"
     "\r\n"
     "--fwd-boundary-1947\r\n"
     "Content-Type: message/rfc822\r\n"
     "Content-Disposition: inline\r\n"
     "\r\n"
     "From: Operator <operator@mark2.example>\r\n"
     "To: Grace Hopper <grace@navy.example>\r\n"
     "Subject: Relay #70, panel F\r\n"
     "Date: Tue, 9 Sep 1947 15:45:00 -0400\r\n"
     "Message-ID: <relay70@mark2.example>\r\n"
     "\r\n"
     "Moth found trapped between points at relay #70, panel F.\r\n"
     "First actual case of bug being found.\r\n"
     "--fwd-boundary-1947--\r\n"},
    {0, "\\Seen \\Answered", "1764090000",
     "From: \"Redis Weekly\" <news@weekly.example>\r\n"
     "To: demouser@cimap.example\r\n"
     "Subject: =?utf-8?q?Redis_Weekly_=E2=80=94_issue_42?=\r\n"
     "Date: Tue, 25 Nov 2025 17:00:00 +0000\r\n"
     "Message-ID: <issue42@weekly.example>\r\n"
     "List-Unsubscribe: <mailto:unsubscribe@weekly.example>\r\n"
     "MIME-Version: 1.0\r\n"
     "Content-Type: multipart/alternative; boundary=\"alt42\"\r\n"
     "\r\n"
     "--alt42\r\n"
     "Content-Type: text/plain; charset=utf-8\r\n"
     "Content-Transfer-Encoding: quoted-printable\r\n"
     "\r\n"
     "This week: Lua scripts as transactions, and why noeviction matters for a=\r\n"
     " database.\r\n"
     "--alt42\r\n"
     "Content-Type: text/html; charset=utf-8\r\n"
     "\r\n"
     "<html><body><h1>Redis Weekly</h1><p>This week: Lua scripts as transactions,\r\n"
     "and why <b>noeviction</b> matters for a database.</p></body></html>\r\n"
     "--alt42--\r\n"},
    {0, "", "1764093600",
     "From: Charles Babbage <charles@analytical.example>\r\n"
     "To: Demo User <demouser@cimap.example>\r\n"
     "Subject: Re: Notes on the engine, with the table attached\r\n"
     "Date: Tue, 25 Nov 2025 18:00:00 +0000\r\n"
     "Message-ID: <re-notes@analytical.example>\r\n"
     "In-Reply-To: <notes-g@analytical.example>\r\n"
     "References: <notes-g@analytical.example>\r\n"
     "\r\n"
     "Splendid. I shall bring the punched cards on Thursday.\r\n"},
    {1, "\\Seen", "1764079200",
     "From: Demo User <demouser@cimap.example>\r\n"
     "To: Ada Lovelace <ada@analytical.example>\r\n"
     "Subject: Re: Notes on the engine, with the table attached\r\n"
     "Date: Tue, 25 Nov 2025 14:00:00 +0000\r\n"
     "Message-ID: <reply-ada@cimap.example>\r\n"
     "In-Reply-To: <notes-g@analytical.example>\r\n"
     "References: <notes-g@analytical.example>\r\n"
     "\r\n"
     "Thank you, Ada. The table checks out to B7.\r\n"},
    {2, "\\Draft \\Seen", "1764097200",
     "From: Demo User <demouser@cimap.example>\r\n"
     "To: Grace Hopper <grace@navy.example>\r\n"
     "Subject: Compilers, an idea\r\n"
     "Date: Tue, 25 Nov 2025 19:00:00 +0000\r\n"
     "Message-ID: <draft-1@cimap.example>\r\n"
     "\r\n"
     "What if programs were written in something closer to English...\r\n"},
    {3, "\\Seen \\Deleted", "1763900000",
     "From: Prize Committee <winner@lottery.example>\r\n"
     "To: demouser@cimap.example\r\n"
     "Subject: You have won!!!\r\n"
     "Date: Sun, 23 Nov 2025 12:13:20 +0000\r\n"
     "Message-ID: <spam-1@lottery.example>\r\n"
     "\r\n"
     "Send us your bank details.\r\n"},
};
#define N_MESSAGES (sizeof(messages) / sizeof(messages[0]))

/* One prepared script call. Strings live in the plan's arena. */
struct demo_call {
    enum lua_script_id script;
    int nkeys;
    int argc;
    const char **argv;
    size_t *argvlen;
};

struct demo_plan {
    struct arena *arena;
    struct msgprep preps[N_MESSAGES];
    struct demo_call calls[N_MAILBOXES + N_MESSAGES];
    size_t n;
};

static void add_mailbox_call(struct demo_plan *p, const char *nsid, const char *name,
                             const char *mbxid, const char *specialuse)
{
    struct demo_call *c = &p->calls[p->n++];
    struct key meta, boxes, mbx;
    keys_ns_meta(&meta, nsid);
    keys_ns_mailboxes(&boxes, nsid);
    keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
    c->script = LUA_SCRIPT_MBX_CREATE;
    c->nkeys = 3;
    c->argc = 7;
    c->argv = arena_alloc(p->arena, 7 * sizeof(*c->argv));
    c->argvlen = arena_alloc(p->arena, 7 * sizeof(*c->argvlen));
    const char *vals[7] = {meta.s, boxes.s, mbx.s, arena_printf(p->arena, "%d", LIMITS_MAX_MAILBOXES),
                           name, mbxid, specialuse};
    for (int i = 0; i < 7; i++) {
        c->argv[i] = arena_strndup(p->arena, vals[i], strlen(vals[i]));
        c->argvlen[i] = strlen(vals[i]);
    }
}

struct demo_plan *demo_plan_new(const char *nsid)
{
    struct demo_plan *p = calloc(1, sizeof(*p));
    if (p == NULL)
        abort();
    p->arena = arena_new(64 * 1024);
    char ids[N_MAILBOXES][KEYS_MBXID_LEN + 1];
    for (size_t i = 0; i < N_MAILBOXES; i++) {
        keys_mbxid_new(ids[i]);
        add_mailbox_call(p, nsid, mailboxes[i].name, ids[i], mailboxes[i].specialuse);
    }
    const struct append_limits limits = {0, 0, LIMITS_MAX_KEYWORDS};
    for (size_t i = 0; i < N_MESSAGES; i++) {
        const struct demo_message *m = &messages[i];
        const char *error = NULL;
        size_t len = strlen(m->text);
        if (msgprep_bytes(&p->preps[i], (const uint8_t *)m->text, len, &error) != 0) {
            log_write(LOG_ERROR, "demo.prepare", "error=\"%s\"", error);
            demo_plan_free(&p);
            return NULL;
        }
        struct append_item item = {&p->preps[i], len, m->date, m->flags, m->text, len, NULL};
        struct append_call call;
        append_call_build(p->arena, nsid, ids[m->mailbox], &limits, &item, 1, &call);
        struct demo_call *c = &p->calls[p->n++];
        c->script = LUA_SCRIPT_APPEND;
        c->nkeys = call.nkeys;
        c->argc = call.argc;
        c->argv = call.argv;
        c->argvlen = call.argvlen;
    }
    return p;
}

size_t demo_plan_count(const struct demo_plan *p)
{
    return p->n;
}

void demo_plan_call(const struct demo_plan *p, size_t i, enum lua_script_id *script_r, int *nkeys_r,
                    int *argc_r, const char *const **argv_r, const size_t **argvlen_r)
{
    const struct demo_call *c = &p->calls[i];
    *script_r = c->script;
    *nkeys_r = c->nkeys;
    *argc_r = c->argc;
    *argv_r = c->argv;
    *argvlen_r = c->argvlen;
}

void demo_plan_free(struct demo_plan **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    struct demo_plan *p = *pp;
    for (size_t i = 0; i < N_MESSAGES; i++)
        msgprep_free(&p->preps[i]);
    arena_free(&p->arena);
    free(p);
    *pp = NULL;
}
