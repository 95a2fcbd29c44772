/*
 * cmd_append: "cimap-admin append", the local delivery agent (postfix mailbox_command or pipe(8)
 * transport; README "Delivery with postfix").
 *
 * One message from standard input: read up to --max-size bytes, bare LF turned into CRLF (maildir
 * files and MTA pipes use LF; IMAP stores CRLF), parsed once with msgprep, stored with the same
 * append.lua the front end's APPEND uses (same keys, change log and wake-up, so IDLE sessions see
 * it at once). Up to 256 KiB the bytes travel inline; larger ones go first to a staging key in
 * 256 KiB chunks (staging_append.lua, TTL 1 h), like the front end.
 *
 * Exactly once: append.lua gets a delivery key (/ns/{nsid}/delivery/<sha256>) remembered for
 * --dedupe-ttl (24 h). Its id hashes the MTA's queue id (--delivery-id) with the login, else the
 * message's content id with the envelope sender (--from) and the login. The check and the store
 * are one script, so a delivery retried after a lost answer (the MTA saw 75, or the process was
 * killed after the write) is answered "already stored" with the first UID. Without --delivery-id
 * the same message from the same sender to the same user within the TTL is stored once, as
 * Dovecot's duplicate suppression would.
 *
 * Exit codes (sysexits, what an MTA acts on): 0 stored (or already stored); 64 usage; 65 the
 * message is empty, unparseable or over --max-size; 67 no such user (nothing is created for a
 * stranger); 75 everything else (Redis down, -OOM, quota, a mailbox that vanished twice, ...):
 * the MTA keeps the message and retries, and nothing is half-written (one script per message).
 *
 * A --mailbox that does not exist (or can never exist) gets the message in INBOX instead (as
 * Dovecot's LDA and pymap do unless told otherwise), with a note on stderr; --create creates a
 * valid one instead. A user without INBOX gets one.
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "admin/admin.h"
#include "admin/db.h"
#include "admin/lookup.h"
#include "frontend/arena.h"
#include "frontend/flags.h"
#include "frontend/limits.h"
#include "frontend/mail/mail.h"
#include "frontend/mail/mail_decode.h"
#include "frontend/msgprep.h"
#include "keys/keys.h"

#define APPEND_INLINE_MAX (256 * 1024) /* larger messages go through a staging key */
#define STAGING_CHUNK (256 * 1024)
#define STAGING_TTL "3600"
#define DEFAULT_MAX_SIZE (64ull * 1024 * 1024)
#define DEFAULT_DEDUPE_TTL 86400u
#define MAX_FLAGS 64
#define APPEND_ATTEMPTS 3 /* the target mailbox was deleted under us: look it up again */

struct append_opts {
    const char *from;
    const char *mailbox; /* NULL: INBOX */
    const char *flags[MAX_FLAGS];
    size_t nflags;
    const char *date;    /* NULL: now */
    const char *delivery_id;
    uint64_t max_size;
    uint32_t dedupe_ttl; /* 0: no delivery key */
    bool create;
    const char *login;
};

static const char *const system_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                           "\\Draft"};

/* Appends one flag in canonical spelling to out (space separated), unless already there. */
static int flag_add(struct arena *a, const char **out, const char *flag)
{
    const char *canon = NULL;
    if (flag[0] == '\\') {
        for (size_t i = 0; i < sizeof(system_flags) / sizeof(system_flags[0]); i++) {
            if (strcasecmp(flag, system_flags[i]) == 0)
                canon = system_flags[i];
        }
        if (canon == NULL)
            return -1;
    } else if (flags_keyword_valid(flag, strlen(flag))) {
        canon = flag;
    } else {
        return -1;
    }
    size_t clen = strlen(canon);
    for (const char *p = *out; *p != '\0';) {
        size_t w = strcspn(p, " ");
        if (w == clen && strncasecmp(p, canon, w) == 0)
            return 0;
        p += w;
        while (*p == ' ')
            p++;
    }
    *out = (*out)[0] == '\0' ? arena_strndup(a, canon, clen)
                             : arena_printf(a, "%s %s", *out, canon);
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool digits(const char *s, size_t n, unsigned *v_r)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *v_r = v;
    return true;
}

/*
 * Unix seconds of "EPOCH" (decimal) or RFC 3339 "YYYY-MM-DDTHH:MM:SS[.frac](Z|+HH:MM|-HH:MM)"
 * ('t' or ' ' also separate date and time). 0, or -1 when malformed.
 */
static int parse_date(const char *s, int64_t *t_r)
{
    size_t len = strlen(s);
    if (len > 0 && len <= 12 && strspn(s, "0123456789") == len) {
        *t_r = strtoll(s, NULL, 10);
        return 0;
    }
    unsigned y, mo, d, h, mi, se;
    if (len < 20 || !digits(s, 4, &y) || s[4] != '-' || !digits(s + 5, 2, &mo) || s[7] != '-' ||
        !digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
        !digits(s + 11, 2, &h) || s[13] != ':' || !digits(s + 14, 2, &mi) || s[16] != ':' ||
        !digits(s + 17, 2, &se))
        return -1;
    static const unsigned mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] || h > 23 || mi > 59 || se > 60)
        return -1;
    const char *p = s + 19;
    if (*p == '.') {
        p++;
        size_t f = strspn(p, "0123456789");
        if (f == 0)
            return -1;
        p += f;
    }
    int64_t offset = 0;
    if ((*p == 'Z' || *p == 'z') && p[1] == '\0') {
        offset = 0;
    } else if ((*p == '+' || *p == '-') && strlen(p) == 6 && p[3] == ':') {
        unsigned oh, om;
        if (!digits(p + 1, 2, &oh) || !digits(p + 4, 2, &om) || oh > 23 || om > 59)
            return -1;
        offset = (int64_t)(oh * 3600 + om * 60) * (*p == '-' ? -1 : 1);
    } else {
        return -1;
    }
    *t_r = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + (se > 59 ? 59 : se) - offset;
    return 0;
}

static int parse_u64(const char *s, uint64_t max, uint64_t *v_r)
{
    if (s[0] < '0' || s[0] > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0' || v > max)
        return -1;
    *v_r = v;
    return 0;
}

static int parse_opts(int argc, char **argv, struct append_opts *o)
{
    static const struct option options[] = {
        {"from", required_argument, NULL, 'f'},
        {"mailbox", required_argument, NULL, 'm'},
        {"flag", required_argument, NULL, 'F'},
        {"date", required_argument, NULL, 'd'},
        {"delivery-id", required_argument, NULL, 'i'},
        {"max-size", required_argument, NULL, 's'},
        {"dedupe-ttl", required_argument, NULL, 't'},
        {"create", no_argument, NULL, 'c'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->max_size = DEFAULT_MAX_SIZE;
    o->dedupe_ttl = DEFAULT_DEDUPE_TTL;
    opterr = 0;
    int c;
    uint64_t v;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'f':
            o->from = optarg;
            break;
        case 'm':
            o->mailbox = optarg;
            break;
        case 'F':
            if (o->nflags == MAX_FLAGS) {
                admin_error("too many --flag options (at most %d)", MAX_FLAGS);
                return -1;
            }
            o->flags[o->nflags++] = optarg;
            break;
        case 'd':
            o->date = optarg;
            break;
        case 'i':
            if (optarg[0] == '\0' || strlen(optarg) > 1024) {
                admin_error("invalid --delivery-id (1..1024 bytes)");
                return -1;
            }
            o->delivery_id = optarg;
            break;
        case 's':
            if (parse_u64(optarg, 1ull << 40, &v) != 0 || v == 0) {
                admin_error("invalid --max-size: %s", optarg);
                return -1;
            }
            o->max_size = v;
            break;
        case 't':
            if (parse_u64(optarg, 2592000, &v) != 0) {
                admin_error("invalid --dedupe-ttl (0..2592000 seconds): %s", optarg);
                return -1;
            }
            o->dedupe_ttl = (uint32_t)v;
            break;
        case 'c':
            o->create = true;
            break;
        case ':':
            admin_error("option %s needs a value (see cimap-admin --help)", argv[optind - 1]);
            return -1;
        default:
            admin_error("unknown option %s for append (see cimap-admin --help)", argv[optind - 1]);
            return -1;
        }
    }
    if (argc - optind != 1) {
        admin_error("%s (see cimap-admin --help)",
                    argc == optind ? "missing USER" : "too many arguments");
        return -1;
    }
    o->login = argv[optind];
    return 0;
}

/* Reads standard input to its end, at most max bytes (*over_r when there was more). */
static int read_stdin(uint64_t max, struct mail_buf *out, bool *over_r)
{
    *over_r = false;
    struct mail_crlf_normaliser norm = {false};
    uint8_t buf[65536];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(STDIN_FILENO, buf, sizeof(buf));
        if (n < 0) {
            if (errno == EINTR)
                continue;
            admin_error("cannot read the message: %s", strerror(errno));
            return -1;
        }
        if (n == 0)
            return 0;
        total += (uint64_t)n;
        if (total > max) {
            *over_r = true;
            return 0;
        }
        mail_crlf_normalise(&norm, buf, (size_t)n, out);
    }
}

/* Maps a failed script or command to the delivery's exit code (never 70: the MTA must retry). */
static int delivery_fail(struct db *d, const char *what, const char *error)
{
    admin_error("%s: %s", what, error);
    if (db_error_is(d, "NONEXISTENT") && strstr(error, "deleted") != NULL)
        return ADMIN_EX_NOUSER;
    return ADMIN_EX_TEMPFAIL;
}

/* Uploads the message to a fresh staging key in chunks. Exit code. */
static int stage(struct db *d, const char *nsid, const struct mail_buf *msg,
                 char staging_id[KEYS_STAGING_LEN + 1])
{
    keys_staging_id_new(staging_id);
    struct key meta, staging;
    keys_ns_meta(&meta, nsid);
    keys_staging(&staging, nsid, staging_id);
    const char *keys[] = {meta.s, staging.s};
    const size_t keylen[] = {meta.len, staging.len};
    for (size_t off = 0; off < msg->len; off += STAGING_CHUNK) {
        size_t n = msg->len - off < STAGING_CHUNK ? msg->len - off : STAGING_CHUNK;
        const char *args[] = {(const char *)msg->data + off, STAGING_TTL};
        const size_t arglen[] = {n, strlen(STAGING_TTL)};
        redisReply *reply;
        const char *error;
        if (db_script(d, LUA_SCRIPT_STAGING_APPEND, 2, keys, keylen, 2, args, arglen, &reply,
                      &error) != 0)
            return delivery_fail(d, "cannot upload the message", error);
        freeReplyObject(reply);
    }
    return ADMIN_EX_OK;
}

/* The delivery key's id: SHA-256 over a tagged, NUL-separated list of the identifying parts. */
static void delivery_hash(const struct append_opts *o, const char *sha_hex,
                          char out[KEYS_SHA256_LEN + 1])
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    unsigned char md[32];
    unsigned int mdlen = 0;
    if (ctx == NULL || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
        abort();
    const char *parts[4];
    if (o->delivery_id != NULL) {
        parts[0] = "queue-id";
        parts[1] = o->delivery_id;
        parts[2] = "";
    } else {
        parts[0] = "message";
        parts[1] = sha_hex;
        parts[2] = o->from != NULL ? o->from : "";
    }
    parts[3] = o->login;
    for (size_t i = 0; i < 4; i++)
        EVP_DigestUpdate(ctx, parts[i], strlen(parts[i]) + 1);
    if (EVP_DigestFinal_ex(ctx, md, &mdlen) != 1 || mdlen != 32)
        abort();
    EVP_MD_CTX_free(ctx);
    msgprep_hex(md, out);
}

/* Finds the target mailbox (fallback INBOX, created when missing). Exit code. */
static int target_mailbox(struct db *d, const char *nsid, const char *name, bool create,
                          char mbxid[KEYS_MBXID_LEN + 1])
{
    bool found = false;
    int rc;
    if (strcmp(name, "INBOX") != 0) {
        if (create) {
            bool created;
            return lookup_mailbox_create(d, nsid, name, "", mbxid, &created);
        }
        rc = lookup_mailbox(d, nsid, name, mbxid, &found);
        if (rc != ADMIN_EX_OK)
            return rc;
        if (found)
            return ADMIN_EX_OK;
        admin_error("note: mailbox %s does not exist; delivering to INBOX", name);
    }
    bool created;
    return lookup_mailbox_create(d, nsid, "INBOX", "", mbxid, &created);
}

int cmd_append(struct admin *adm, int argc, char **argv)
{
    struct append_opts o;
    if (parse_opts(argc, argv, &o) != 0)
        return ADMIN_EX_USAGE;
    if (!keys_login_valid(o.login, strlen(o.login))) {
        admin_error("invalid login name: %s", o.login);
        return ADMIN_EX_NOUSER;
    }
    struct arena *a = arena_new(4096);
    struct mail_buf msg = {0};
    struct msgprep prep = {0};
    char *mailbox = NULL;
    int rc = ADMIN_EX_USAGE;

    const char *flags = "";
    for (size_t i = 0; i < o.nflags; i++) {
        if (flag_add(a, &flags, o.flags[i]) != 0) {
            admin_error("invalid --flag %s (a system flag such as \\Seen, or a keyword atom)",
                        o.flags[i]);
            goto out;
        }
    }
    const char *date = "";
    if (o.date != NULL) {
        int64_t t;
        if (parse_date(o.date, &t) != 0) {
            admin_error("invalid --date %s (RFC 3339, e.g. 2024-05-01T12:00:00Z, or unix seconds)",
                        o.date);
            goto out;
        }
        date = arena_printf(a, "%" PRId64, t);
    }
    mailbox = lookup_mailbox_name(o.mailbox != NULL ? o.mailbox : "INBOX");
    if (mailbox == NULL) {
        /* e.g. a "user+folder" extension that can never be a mailbox: INBOX, like a missing one */
        admin_error("note: delivering to INBOX instead");
        mailbox = strdup("INBOX");
        if (mailbox == NULL)
            goto out;
    }

    bool over;
    rc = ADMIN_EX_TEMPFAIL;
    if (read_stdin(o.max_size, &msg, &over) != 0)
        goto out;
    rc = ADMIN_EX_DATAERR;
    if (over || msg.len > o.max_size) {
        admin_error("the message is larger than --max-size (%" PRIu64 " bytes)", o.max_size);
        goto out;
    }
    if (msg.len == 0) {
        admin_error("the message is empty");
        goto out;
    }
    const char *error;
    if (msgprep_bytes(&prep, msg.data, msg.len, &error) != 0) {
        admin_error("cannot parse the message: %s", error);
        goto out;
    }
    char delivery[KEYS_SHA256_LEN + 1];
    delivery_hash(&o, prep.sha_hex, delivery);

    struct db *d;
    rc = ADMIN_EX_TEMPFAIL;
    if (admin_db(adm, &d) != 0)
        goto out;
    char nsid[KEYS_NSID_LEN + 1];
    rc = lookup_user(d, o.login, nsid);
    if (rc != ADMIN_EX_OK) {
        if (rc != ADMIN_EX_NOUSER && rc != ADMIN_EX_USAGE)
            rc = ADMIN_EX_TEMPFAIL;
        goto out;
    }

    for (int attempt = 0; attempt < APPEND_ATTEMPTS; attempt++) {
        char mbxid[KEYS_MBXID_LEN + 1];
        rc = target_mailbox(d, nsid, attempt == 0 ? mailbox : "INBOX", o.create && attempt == 0,
                            mbxid);
        if (rc != ADMIN_EX_OK) {
            if (rc != ADMIN_EX_NOUSER)
                rc = ADMIN_EX_TEMPFAIL;
            goto out;
        }
        struct append_item item = {&prep, msg.len, date, flags, NULL, 0, NULL};
        char staging_id[KEYS_STAGING_LEN + 1];
        if (msg.len <= APPEND_INLINE_MAX) {
            item.raw = (const char *)msg.data;
            item.raw_len = msg.len;
        } else {
            rc = stage(d, nsid, &msg, staging_id);
            if (rc != ADMIN_EX_OK)
                goto out;
            item.staging_id = staging_id;
        }
        const struct append_limits limits = {0, 0, LIMITS_MAX_KEYWORDS};
        struct append_call call;
        append_call_build(a, nsid, mbxid, &limits, &item, 1, &call);

        /* append.lua's optional delivery key goes last in KEYS, its TTL last in ARGV. */
        size_t nkeys = (size_t)call.nkeys, nargs = (size_t)(call.argc - call.nkeys);
        const char **keys = arena_alloc(a, (nkeys + 1) * sizeof(*keys));
        size_t *keylen = arena_alloc(a, (nkeys + 1) * sizeof(*keylen));
        const char **args = arena_alloc(a, (nargs + 1) * sizeof(*args));
        size_t *arglen = arena_alloc(a, (nargs + 1) * sizeof(*arglen));
        memcpy(keys, call.argv, nkeys * sizeof(*keys));
        memcpy(keylen, call.argvlen, nkeys * sizeof(*keylen));
        memcpy(args, call.argv + nkeys, nargs * sizeof(*args));
        memcpy(arglen, call.argvlen + nkeys, nargs * sizeof(*arglen));
        struct key dkey;
        if (o.dedupe_ttl > 0) {
            keys_delivery(&dkey, nsid, delivery);
            keys[nkeys] = dkey.s;
            keylen[nkeys++] = dkey.len;
            args[nargs] = arena_printf(a, "%" PRIu32, o.dedupe_ttl);
            arglen[nargs] = strlen(args[nargs]);
            nargs++;
        }
        redisReply *reply;
        if (db_script(d, LUA_SCRIPT_APPEND, nkeys, keys, keylen, nargs, args, arglen, &reply,
                      &error) != 0) {
            if (db_error_is(d, "TRYCREATE") && attempt + 1 < APPEND_ATTEMPTS)
                continue; /* the mailbox went away between lookup and append */
            rc = delivery_fail(d, "cannot store the message", error);
            goto out;
        }
        int64_t uidvalidity = 0, uid = 0, dup = 0;
        bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements >= 4 &&
                  lookup_reply_int(reply->element[0], &uidvalidity) &&
                  lookup_reply_int(reply->element[1], &uid) &&
                  (reply->elements < 5 || lookup_reply_int(reply->element[4], &dup));
        freeReplyObject(reply);
        if (!ok) {
            admin_error("unexpected reply from append");
            rc = ADMIN_EX_TEMPFAIL;
            goto out;
        }
        if (dup != 0)
            admin_error("note: delivery %s was stored before; not storing it again",
                        o.delivery_id != NULL ? o.delivery_id : delivery);
        printf("%" PRId64 " %" PRId64 "\n", uidvalidity, uid);
        rc = ADMIN_EX_OK;
        goto out;
    }
    admin_error("the target mailbox keeps disappearing; try again");
    rc = ADMIN_EX_TEMPFAIL;
out:
    free(mailbox);
    msgprep_free(&prep);
    mail_buf_free(&msg);
    arena_free(&a);
    return rc;
}
