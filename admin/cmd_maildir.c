/*
 * cmd_maildir: "cimap-admin import-maildir" and "export-maildir", migration from and to Dovecot
 * (or pymap, or any Maildir++ / fs-layout maildir), keeping what IMAP clients and sync tools cache:
 * UIDVALIDITY, every UID and the next UID (dovecot-uidlist), flags (the ":2," info: D F P R S T,
 * T = \Deleted, P = $Forwarded) and keywords (lowercase letters through dovecot-keywords),
 * INTERNALDATE (the file's mtime, as Dovecot uses it) and subscriptions (the "V\t2" file).
 *
 * Import, per folder: import_mailbox.lua creates the mailbox with the source's UIDVALIDITY (or
 * adopts an existing one that still has it, or is still empty), import_append.lua stores the
 * messages under their UIDs in batches (bytes CRLF-normalised and parsed once with msgprep, like
 * any APPEND; larger than 256 KiB through a staging key), and a last import_mailbox.lua call
 * raises uidnext to the source's. Re-running is idempotent: UIDs already present are skipped, UIDs
 * below uidnext that are absent were expunged in cimap since and stay expunged (so a file skipped
 * by an earlier run cannot come back under its UID either: the UID is spent, RFC 3501 §2.3.1.1).
 * Dovecot updates dovecot-uidlist lazily (its index holds the newest next UID): run
 * "doveadm force-resync -u USER '*'" on the source first, as README says; the next UID used is
 * max(the header's N, highest listed UID + 1) in any case. Files without a
 * dovecot-uidlist entry get UIDs after the listed ones, in file-name order (Dovecot's names start
 * with the delivery time); a folder without dovecot-uidlist gets a fresh UIDVALIDITY. Files that
 * cannot be imported (unreadable, too big, UID taken by other content) are listed at the end and
 * the exit code is 65.
 *
 * Export writes DIR (which must be missing or empty) as Maildir++ (default, Dovecot's default) or
 * fs layout: each message a file "<internaldate>.M<uid>V<uidvalidity>.cimap,S=<size>,W=<size>:2,
 * <flags>" in cur/ with its mtime set to INTERNALDATE, plus dovecot-uidlist (version 3: V, N and
 * one line per UID), dovecot-keywords (the mailbox's first 26 keywords; more cannot be expressed
 * in maildir and are reported) and subscriptions. The bytes are written as stored (CRLF), which
 * Dovecot serves unchanged.
 *
 * Not done: mbox, Dovecot's index files (Dovecot rebuilds them), \Recent, per-message modseqs.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "admin/admin.h"
#include "admin/db.h"
#include "admin/lookup.h"
#include "frontend/arena.h"
#include "frontend/defaults.h"
#include "frontend/flags.h"
#include "frontend/mail/mail.h"
#include "frontend/mail/mail_decode.h"
#include "frontend/mboxname.h"
#include "frontend/msgprep.h"
#include "keys/keys.h"

#define INLINE_MAX (256 * 1024)       /* larger messages go through a staging key */
#define STAGING_CHUNK (256 * 1024)
#define STAGING_TTL "3600"
#define BATCH_MESSAGES 200            /* messages per import_append.lua call */
#define BATCH_BYTES (8u * 1024 * 1024) /* inline bytes per import_append.lua call */
#define DEFAULT_MAX_SIZE (64ull * 1024 * 1024)
#define KEYWORD_LETTERS 26
#define EXPORT_BATCH 1000

enum layout { LAYOUT_AUTO, LAYOUT_MAILDIRPP, LAYOUT_FS };

/* ---- small helpers ---- */

static char *path_join(const char *a, const char *b)
{
    size_t size = strlen(a) + strlen(b) + 2;
    char *p = malloc(size);
    if (p == NULL)
        abort();
    snprintf(p, size, "%s/%s", a, b);
    return p;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static bool is_maildir(const char *path)
{
    char *cur = path_join(path, "cur");
    bool ok = is_dir(cur);
    free(cur);
    return ok;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Reads a whole (small) file; NULL when missing or unreadable. */
static char *read_text(const char *path, size_t max)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = malloc(max + 1);
    if (buf == NULL)
        abort();
    size_t n = fread(buf, 1, max, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* A list of strings (skipped files, notes). */
struct strlist {
    char **v;
    size_t n, cap;
};

static void strlist_add(struct strlist *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void strlist_add(struct strlist *l, const char *fmt, ...)
{
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 16 : l->cap * 2;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (l->v == NULL)
            abort();
    }
    char line[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    l->v[l->n] = strdup(line);
    if (l->v[l->n] == NULL)
        abort();
    l->n++;
}

static void strlist_free(struct strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- source folders ---- */

struct folder {
    char *name; /* canonical cimap name ("INBOX", "Archive/2024") */
    char *path;
};

struct folders {
    struct folder *v;
    size_t n, cap;
};

static void folders_add(struct folders *f, char *name, char *path)
{
    if (f->n == f->cap) {
        f->cap = f->cap == 0 ? 16 : f->cap * 2;
        f->v = realloc(f->v, f->cap * sizeof(*f->v));
        if (f->v == NULL)
            abort();
    }
    f->v[f->n].name = name;
    f->v[f->n].path = path;
    f->n++;
}

static void folders_free(struct folders *f)
{
    for (size_t i = 0; i < f->n; i++) {
        free(f->v[i].name);
        free(f->v[i].path);
    }
    free(f->v);
    memset(f, 0, sizeof(*f));
}

static int compare_folders(const void *a, const void *b)
{
    return strcmp(((const struct folder *)a)->name, ((const struct folder *)b)->name);
}

/* Canonical name of a folder (modified UTF-7, '/' delimiter), or NULL when it can never exist. */
static char *canonical_name(const char *name)
{
    struct arena *a = arena_new(256);
    const char *error;
    const char *norm = mboxname_normalize(a, name, strlen(name), &error);
    char *out = norm != NULL ? strdup(norm) : NULL;
    arena_free(&a);
    return out;
}

/* fs layout: every directory below root that holds cur/ is a folder named by its path. */
static void scan_fs(const char *root, const char *rel, int depth, struct folders *out,
                    struct strlist *skipped)
{
    char *dir = rel[0] == '\0' ? strdup(root) : path_join(root, rel);
    DIR *d = opendir(dir);
    if (d == NULL) {
        strlist_add(skipped, "%s: %s", dir, strerror(errno));
        free(dir);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        if (rel[0] == '\0' && (strcmp(e->d_name, "cur") == 0 || strcmp(e->d_name, "new") == 0 ||
                               strcmp(e->d_name, "tmp") == 0))
            continue;
        if (depth > 0 && (strcmp(e->d_name, "cur") == 0 || strcmp(e->d_name, "new") == 0 ||
                          strcmp(e->d_name, "tmp") == 0))
            continue;
        char *sub = path_join(dir, e->d_name);
        if (!is_dir(sub) || depth >= 32) {
            free(sub);
            continue;
        }
        char *subrel = rel[0] == '\0' ? strdup(e->d_name) : path_join(rel, e->d_name);
        if (is_maildir(sub)) {
            char *name = canonical_name(subrel);
            if (name == NULL)
                strlist_add(skipped, "%s: not a valid mailbox name", sub);
            else
                folders_add(out, name, strdup(sub));
        }
        free(sub);
        scan_fs(root, subrel, depth + 1, out, skipped);
        free(subrel);
    }
    closedir(d);
    free(dir);
}

/* Maildir++: ".A.B" directories under root are folders "A/B"; root itself is INBOX. */
static void scan_maildirpp(const char *root, struct folders *out, struct strlist *skipped)
{
    DIR *d = opendir(root);
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *sub = path_join(root, e->d_name);
        if (!is_maildir(sub)) {
            free(sub);
            continue;
        }
        char *name = strdup(e->d_name + 1);
        for (char *p = name; *p != '\0'; p++) {
            if (*p == '.')
                *p = '/';
        }
        char *canon = canonical_name(name);
        if (canon == NULL) {
            strlist_add(skipped, "%s: not a valid mailbox name", sub);
            free(sub);
        } else {
            folders_add(out, canon, sub);
        }
        free(name);
    }
    closedir(d);
}

static bool has_maildirpp_folders(const char *root)
{
    DIR *d = opendir(root);
    if (d == NULL)
        return false;
    bool found = false;
    struct dirent *e;
    while (!found && (e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.' || strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *sub = path_join(root, e->d_name);
        found = is_maildir(sub);
        free(sub);
    }
    closedir(d);
    return found;
}

/* ---- dovecot-uidlist and dovecot-keywords ---- */

struct uid_entry {
    char *base; /* file name without the ":2,..." info */
    uint32_t uid;
};

struct uidlist {
    bool present;
    uint32_t validity;
    uint32_t next; /* max(the header's N, highest listed UID + 1): Dovecot rewrites N lazily */
    struct uid_entry *v;
    size_t n;
};

static int compare_entries(const void *a, const void *b)
{
    return strcmp(((const struct uid_entry *)a)->base, ((const struct uid_entry *)b)->base);
}

static void uidlist_free(struct uidlist *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->v[i].base);
    free(u->v);
    memset(u, 0, sizeof(*u));
}

/*
 * Version 3 ("3 V<uidvalidity> N<nextuid> ...", then "<uid> [ext...] :<base>") and version 1
 * ("1 <uidvalidity> <nextuid>", then "<uid> <base>"). Returns 0 (maybe !present), -1 malformed.
 */
static int uidlist_read(const char *dir, struct uidlist *u)
{
    memset(u, 0, sizeof(*u));
    char *path = path_join(dir, "dovecot-uidlist");
    FILE *f = fopen(path, "r");
    free(path);
    if (f == NULL)
        return 0;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    int version = 0;
    size_t vcap = 0;
    int rc = 0;
    while ((len = getline(&line, &cap, f)) > 0) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (version == 0) {
            char *save = NULL;
            char *tok = strtok_r(line, " ", &save);
            version = tok != NULL ? atoi(tok) : -1;
            if (version == 3) {
                while ((tok = strtok_r(NULL, " ", &save)) != NULL) {
                    if (tok[0] == 'V')
                        u->validity = (uint32_t)strtoul(tok + 1, NULL, 10);
                    else if (tok[0] == 'N')
                        u->next = (uint32_t)strtoul(tok + 1, NULL, 10);
                }
            } else if (version == 1) {
                tok = strtok_r(NULL, " ", &save);
                u->validity = tok != NULL ? (uint32_t)strtoul(tok, NULL, 10) : 0;
                tok = strtok_r(NULL, " ", &save);
                u->next = tok != NULL ? (uint32_t)strtoul(tok, NULL, 10) : 0;
            } else {
                rc = -1;
                break;
            }
            if (u->validity == 0) {
                rc = -1;
                break;
            }
            u->present = true;
            continue;
        }
        char *end;
        unsigned long uid = strtoul(line, &end, 10);
        if (uid == 0 || uid > UINT32_MAX || *end != ' ')
            continue;
        const char *base;
        if (version == 3) {
            base = strstr(end, " :");
            if (base == NULL)
                continue;
            base += 2;
        } else {
            base = end + 1;
        }
        size_t blen = strcspn(base, ":");
        if (blen == 0)
            continue;
        if (u->n == vcap) {
            vcap = vcap == 0 ? 256 : vcap * 2;
            u->v = realloc(u->v, vcap * sizeof(*u->v));
            if (u->v == NULL)
                abort();
        }
        u->v[u->n].base = strndup(base, blen);
        u->v[u->n].uid = (uint32_t)uid;
        u->n++;
        if (uid >= u->next)
            u->next = (uint32_t)uid + 1;
    }
    free(line);
    fclose(f);
    if (u->n > 0)
        qsort(u->v, u->n, sizeof(*u->v), compare_entries);
    return rc;
}

static uint32_t uidlist_find(const struct uidlist *u, const char *base)
{
    struct uid_entry key = {(char *)base, 0};
    const struct uid_entry *e = u->n > 0 ? bsearch(&key, u->v, u->n, sizeof(*u->v), compare_entries)
                                         : NULL;
    return e != NULL ? e->uid : 0;
}

/* dovecot-keywords: "<index> <keyword>" lines; index 0..25 is letter 'a' + index. The words
 * point into text (owned; free with keywords_free). */
struct keywords {
    char *text;
    const char *w[KEYWORD_LETTERS];
};

static void keywords_read(const char *dir, struct keywords *kw)
{
    memset(kw, 0, sizeof(*kw));
    char *path = path_join(dir, "dovecot-keywords");
    kw->text = read_text(path, 65536);
    free(path);
    if (kw->text == NULL)
        return;
    char *line = kw->text;
    while (*line != '\0') {
        char *eol = line + strcspn(line, "\n");
        bool last = *eol == '\0';
        *eol = '\0';
        if (eol > line && eol[-1] == '\r')
            eol[-1] = '\0';
        char *end;
        unsigned long idx = strtoul(line, &end, 10);
        if (end != line && *end == ' ' && idx < KEYWORD_LETTERS && kw->w[idx] == NULL &&
            flags_keyword_valid(end + 1, strlen(end + 1)))
            kw->w[idx] = end + 1; /* the first line for an index wins */
        if (last)
            break;
        line = eol + 1;
    }
}

static void keywords_free(struct keywords *kw)
{
    free(kw->text);
    memset(kw, 0, sizeof(*kw));
}

/* ---- import ---- */

struct srcmsg {
    uint32_t uid;
    char *path;
    char *info;  /* after ":2," (malloc'd, may be "") */
    int64_t mtime;
};

struct srcmsgs {
    struct srcmsg *v;
    size_t n, cap;
};

static int compare_srcmsg_path(const void *a, const void *b)
{
    return strcmp(((const struct srcmsg *)a)->path, ((const struct srcmsg *)b)->path);
}

static int compare_srcmsg_uid(const void *a, const void *b)
{
    uint32_t x = ((const struct srcmsg *)a)->uid, y = ((const struct srcmsg *)b)->uid;
    return (x > y) - (x < y);
}

static void srcmsgs_free(struct srcmsgs *m)
{
    for (size_t i = 0; i < m->n; i++) {
        free(m->v[i].path);
        free(m->v[i].info);
    }
    free(m->v);
    memset(m, 0, sizeof(*m));
}

/* Lists cur/ and new/ of a folder and gives every file its UID. */
static void list_messages(const char *dir, const struct uidlist *u, struct srcmsgs *out,
                          struct strlist *skipped)
{
    static const char *const subs[] = {"cur", "new"};
    for (size_t s = 0; s < 2; s++) {
        char *sub = path_join(dir, subs[s]);
        DIR *d = opendir(sub);
        if (d == NULL) {
            free(sub);
            continue;
        }
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (e->d_name[0] == '.')
                continue;
            char *path = path_join(sub, e->d_name);
            struct stat st;
            if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
                if (errno != 0 && !S_ISDIR(st.st_mode))
                    strlist_add(skipped, "%s: %s", path, strerror(errno));
                free(path);
                continue;
            }
            if (out->n == out->cap) {
                out->cap = out->cap == 0 ? 256 : out->cap * 2;
                out->v = realloc(out->v, out->cap * sizeof(*out->v));
                if (out->v == NULL)
                    abort();
            }
            const char *colon = strchr(e->d_name, ':');
            size_t blen = colon != NULL ? (size_t)(colon - e->d_name) : strlen(e->d_name);
            char *base = strndup(e->d_name, blen);
            struct srcmsg *m = &out->v[out->n++];
            m->path = path;
            m->info = strdup(colon != NULL && strncmp(colon, ":2,", 3) == 0 ? colon + 3 : "");
            m->mtime = (int64_t)st.st_mtime;
            m->uid = u->present ? uidlist_find(u, base) : 0;
            free(base);
        }
        closedir(d);
        free(sub);
    }
    if (out->n == 0)
        return;
    /* Files the uidlist does not know: UIDs after the known ones, in file-name order. */
    qsort(out->v, out->n, sizeof(*out->v), compare_srcmsg_path);
    uint32_t next = u->present && u->next > 0 ? u->next : 1;
    for (size_t i = 0; i < out->n; i++) {
        if (out->v[i].uid >= next)
            next = out->v[i].uid + 1;
    }
    /* Two files with one base (a flag change raced the copy) would share a UID: keep the first. */
    for (size_t i = 0; i < out->n; i++) {
        if (out->v[i].uid == 0)
            out->v[i].uid = next++;
    }
    qsort(out->v, out->n, sizeof(*out->v), compare_srcmsg_uid);
    size_t k = 0;
    for (size_t i = 0; i < out->n; i++) {
        if (k > 0 && out->v[k - 1].uid == out->v[i].uid) {
            strlist_add(skipped, "%s: same UID %" PRIu32 " as %s", out->v[i].path, out->v[i].uid,
                        out->v[k - 1].path);
            free(out->v[i].path);
            free(out->v[i].info);
            continue;
        }
        out->v[k++] = out->v[i];
    }
    out->n = k;
}

/* The canonical flag list of a ":2," info string. */
static char *info_flags(const char *info, const struct keywords *kw, const char *path,
                        struct strlist *notes)
{
    struct mail_buf b = {0};
    static const struct {
        char c;
        const char *flag;
    } sys[] = {{'S', "\\Seen"}, {'R', "\\Answered"}, {'F', "\\Flagged"}, {'T', "\\Deleted"},
               {'D', "\\Draft"}, {'P', "$Forwarded"}};
    for (size_t i = 0; i < sizeof(sys) / sizeof(sys[0]); i++) {
        if (strchr(info, sys[i].c) != NULL) {
            if (b.len > 0)
                mail_buf_append(&b, " ", 1);
            mail_buf_append(&b, sys[i].flag, strlen(sys[i].flag));
        }
    }
    for (const char *p = info; *p != '\0'; p++) {
        if (*p >= 'a' && *p <= 'z') {
            const char *word = kw->w[*p - 'a'];
            if (word == NULL) {
                strlist_add(notes, "%s: flag letter '%c' has no keyword in dovecot-keywords", path,
                            *p);
                continue;
            }
            if (b.len > 0)
                mail_buf_append(&b, " ", 1);
            mail_buf_append(&b, word, strlen(word));
        }
    }
    char *s = malloc(b.len + 1);
    if (s == NULL)
        abort();
    if (b.len > 0)
        memcpy(s, b.data, b.len);
    s[b.len] = '\0';
    mail_buf_free(&b);
    return s;
}

/* Import progress and totals. */
struct import_state {
    struct db *d;
    const char *nsid;
    uint64_t max_size;
    size_t total, done, stored, present, expunged;
    struct strlist skipped; /* files not imported: exit 65 */
    struct strlist notes;   /* worth saying, not an error */
    bool tty;
    double started, last_progress;
};

static void progress(struct import_state *st, const char *folder, bool final)
{
    if (!st->tty)
        return;
    double t = now_s();
    if (!final && t - st->last_progress < 0.2)
        return;
    st->last_progress = t;
    double rate = t > st->started ? (double)st->done / (t - st->started) : 0;
    fprintf(stderr, "\r\033[Kimporting %s: %zu/%zu messages (%.0f/s)", folder, st->done, st->total,
            rate);
    if (final)
        fputc('\n', stderr);
    fflush(stderr);
}

/* One message read, normalised and prepared, waiting for its batch. */
struct pending {
    struct srcmsg *src;
    struct mail_buf bytes;
    struct msgprep prep;
    char *flags;
    char date[24];
    char staging_id[KEYS_STAGING_LEN + 1];
    bool staged;
};

static int stage_bytes(struct db *d, const char *nsid, struct pending *p)
{
    keys_staging_id_new(p->staging_id);
    struct key meta, staging;
    keys_ns_meta(&meta, nsid);
    keys_staging(&staging, nsid, p->staging_id);
    const char *keys[] = {meta.s, staging.s};
    const size_t keylen[] = {meta.len, staging.len};
    for (size_t off = 0; off < p->bytes.len; off += STAGING_CHUNK) {
        size_t n = p->bytes.len - off < STAGING_CHUNK ? p->bytes.len - off : STAGING_CHUNK;
        const char *args[] = {(const char *)p->bytes.data + off, STAGING_TTL};
        const size_t arglen[] = {n, strlen(STAGING_TTL)};
        redisReply *reply;
        const char *error;
        if (db_script(d, LUA_SCRIPT_STAGING_APPEND, 2, keys, keylen, 2, args, arglen, &reply,
                      &error) != 0)
            return admin_db_fail(d, "cannot upload a message", error);
        freeReplyObject(reply);
    }
    p->staged = true;
    return ADMIN_EX_OK;
}

/* Sends one import_append.lua call for batch[0..n). Exit code. */
static int import_batch(struct import_state *st, const char *mbxid, uint32_t uidvalidity,
                        struct pending *batch, size_t n, const char *folder)
{
    struct arena *a = arena_new(16384);
    size_t nkeys = 13 + 3 * n, nargs = 3 + 12 * n;
    struct key *kv = arena_alloc(a, nkeys * sizeof(*kv));
    const char **keys = arena_alloc(a, nkeys * sizeof(*keys));
    size_t *keylen = arena_alloc(a, nkeys * sizeof(*keylen));
    const char **args = arena_alloc(a, nargs * sizeof(*args));
    size_t *arglen = arena_alloc(a, nargs * sizeof(*arglen));
    keys_ns_meta(&kv[0], st->nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&kv[1 + p], st->nsid, mbxid, (enum keys_mbx_part)p);
    keys_ns_threads(&kv[10], st->nsid);
    keys_ns_channel(&kv[11], st->nsid);
    keys_ns_gc(&kv[12], st->nsid);
    size_t k = 0;
#define ARG(s, l) (args[k] = (s), arglen[k] = (l), k++)
#define ARGS(s) ARG((s), strlen(s))
    ARGS(mbxid);
    ARGS(arena_printf(a, "%" PRIu32, uidvalidity));
    ARGS(arena_printf(a, "%zu", n));
    for (size_t i = 0; i < n; i++) {
        struct pending *p = &batch[i];
        keys_content(&kv[13 + 3 * i], st->nsid, p->prep.sha_hex);
        keys_content_raw(&kv[14 + 3 * i], st->nsid, p->prep.sha_hex);
        if (p->staged)
            keys_staging(&kv[15 + 3 * i], st->nsid, p->staging_id);
        else
            kv[15 + 3 * i] = kv[14 + 3 * i];
        ARGS(arena_printf(a, "%" PRIu32, p->src->uid));
        ARGS(p->prep.sha_hex);
        ARGS(arena_printf(a, "%zu", p->bytes.len));
        ARGS(p->date);
        ARGS(p->flags);
        if (p->staged)
            ARG("", 0);
        else
            ARG((const char *)p->bytes.data, p->bytes.len);
        ARG((const char *)p->prep.blob.data, p->prep.blob.len);
        ARG((const char *)p->prep.env.data, p->prep.env.len);
        ARG((const char *)p->prep.bs.data, p->prep.bs.len);
        ARGS(p->prep.message_id);
        ARGS(p->prep.thread_refs);
        ARGS(arena_printf(a, "M%.24s", p->prep.sha_hex));
    }
#undef ARG
#undef ARGS
    for (size_t i = 0; i < nkeys; i++) {
        keys[i] = kv[i].s;
        keylen[i] = kv[i].len;
    }
    redisReply *reply;
    const char *error;
    int rc = ADMIN_EX_OK;
    if (db_script(st->d, LUA_SCRIPT_IMPORT_APPEND, nkeys, keys, keylen, k, args, arglen, &reply,
                  &error) != 0) {
        rc = admin_db_fail(st->d, "cannot import messages", error);
        if (db_error_is(st->d, "NONEXISTENT") || db_error_is(st->d, "TRYCREATE") ||
            db_error_is(st->d, "CANNOT"))
            rc = ADMIN_EX_TEMPFAIL;
        arena_free(&a);
        return rc;
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 + n) {
        admin_error("unexpected reply from import_append");
        rc = ADMIN_EX_SOFTWARE;
    } else {
        for (size_t i = 0; i < n; i++) {
            int64_t s = 0;
            lookup_reply_int(reply->element[2 + i], &s);
            if (s == 1)
                st->stored++;
            else if (s == 0)
                st->present++;
            else if (s == -2)
                st->expunged++;
            else
                strlist_add(&st->skipped,
                            "%s: UID %" PRIu32 " of %s holds another message in cimap",
                            batch[i].src->path, batch[i].src->uid, folder);
        }
    }
    freeReplyObject(reply);
    arena_free(&a);
    return rc;
}

static void pending_clear(struct pending *p)
{
    mail_buf_free(&p->bytes);
    msgprep_free(&p->prep);
    free(p->flags);
    memset(p, 0, sizeof(*p));
}

/* Reads one file into p. false (after noting it as skipped) when it cannot be imported. */
static bool pending_load(struct import_state *st, struct srcmsg *m, const struct keywords *kw,
                         struct pending *p)
{
    memset(p, 0, sizeof(*p));
    p->src = m;
    int fd = open(m->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        strlist_add(&st->skipped, "%s: %s", m->path, strerror(errno));
        return false;
    }
    struct mail_crlf_normaliser norm = {false};
    uint8_t buf[65536];
    uint64_t total = 0;
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            strlist_add(&st->skipped, "%s: %s", m->path, strerror(errno));
            close(fd);
            pending_clear(p);
            return false;
        }
        if (n == 0)
            break;
        total += (uint64_t)n;
        if (total > st->max_size) {
            strlist_add(&st->skipped, "%s: larger than --max-size", m->path);
            close(fd);
            pending_clear(p);
            return false;
        }
        mail_crlf_normalise(&norm, buf, (size_t)n, &p->bytes);
    }
    close(fd);
    const char *error;
    if (p->bytes.len == 0 || msgprep_bytes(&p->prep, p->bytes.data, p->bytes.len, &error) != 0) {
        strlist_add(&st->skipped, "%s: %s", m->path,
                    p->bytes.len == 0 ? "empty file" : "cannot parse");
        pending_clear(p);
        return false;
    }
    p->flags = info_flags(m->info, kw, m->path, &st->notes);
    snprintf(p->date, sizeof(p->date), "%" PRId64, m->mtime);
    return true;
}

static const char *specialuse_of(const char *name)
{
    for (size_t i = 0; i < DEFAULT_MAILBOX_COUNT; i++) {
        if (strcmp(default_mailboxes[i].name, name) == 0)
            return default_mailboxes[i].specialuse;
    }
    return "";
}

/* import_mailbox.lua: the mailbox with the source's UIDVALIDITY; raises uidnext to next. */
static int prepare_mailbox(struct db *d, const char *nsid, const char *name, const char *validity,
                           uint32_t next, char mbxid[KEYS_MBXID_LEN + 1], uint32_t *validity_r)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        bool found;
        int rc = lookup_mailbox(d, nsid, name, mbxid, &found);
        if (rc != ADMIN_EX_OK)
            return rc;
        if (!found)
            keys_mbxid_new(mbxid);
        struct key meta, boxes, mbx;
        keys_ns_meta(&meta, nsid);
        keys_ns_mailboxes(&boxes, nsid);
        keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
        const char *keys[] = {meta.s, boxes.s, mbx.s};
        const size_t keylen[] = {meta.len, boxes.len, mbx.len};
        char nextbuf[16];
        snprintf(nextbuf, sizeof(nextbuf), "%" PRIu32, next);
        const char *su = specialuse_of(name);
        const char *args[] = {name, mbxid, validity, nextbuf, su};
        const size_t arglen[] = {strlen(name), KEYS_MBXID_LEN, strlen(validity), strlen(nextbuf),
                                 strlen(su)};
        redisReply *reply;
        const char *error;
        if (db_script(d, LUA_SCRIPT_IMPORT_MAILBOX, 3, keys, keylen, 5, args, arglen, &reply,
                      &error) != 0) {
            if (db_error_is(d, "ALREADYEXISTS"))
                continue;
            if (db_error_is(d, "CANNOT")) {
                admin_error("mailbox %s: %s", name, error);
                return ADMIN_EX_DATAERR;
            }
            if (db_error_is(d, "NONEXISTENT")) {
                admin_error("the user is being deleted");
                return ADMIN_EX_NOUSER;
            }
            return admin_db_fail(d, "cannot prepare the mailbox", error);
        }
        int64_t v = 0;
        bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == 3 &&
                  lookup_reply_int(reply->element[0], &v) && v > 0 && v <= UINT32_MAX;
        freeReplyObject(reply);
        if (!ok) {
            admin_error("unexpected reply from import_mailbox");
            return ADMIN_EX_SOFTWARE;
        }
        *validity_r = (uint32_t)v;
        return ADMIN_EX_OK;
    }
    admin_error("mailbox %s keeps changing; try again", name);
    return ADMIN_EX_TEMPFAIL;
}

static int import_folder(struct import_state *st, const struct folder *f)
{
    struct uidlist u;
    if (uidlist_read(f->path, &u) != 0) {
        strlist_add(&st->notes, "%s/dovecot-uidlist: unknown format; fresh UIDs", f->path);
        uidlist_free(&u);
    }
    struct keywords kw;
    keywords_read(f->path, &kw);
    struct srcmsgs msgs = {0};
    list_messages(f->path, &u, &msgs, &st->skipped);

    char validity[16] = "";
    if (u.present)
        snprintf(validity, sizeof(validity), "%" PRIu32, u.validity);
    char mbxid[KEYS_MBXID_LEN + 1];
    uint32_t uidvalidity;
    int rc = prepare_mailbox(st->d, st->nsid, f->name, validity, 1, mbxid, &uidvalidity);
    if (rc == ADMIN_EX_DATAERR) {
        strlist_add(&st->skipped, "%s: all %zu messages (mailbox %s exists with another "
                    "UIDVALIDITY)", f->path, msgs.n, f->name);
        st->done += msgs.n;
        rc = ADMIN_EX_OK;
        goto out;
    }
    if (rc != ADMIN_EX_OK)
        goto out;

    struct pending batch[BATCH_MESSAGES];
    size_t n = 0, bytes = 0;
    for (size_t i = 0; i <= msgs.n && rc == ADMIN_EX_OK; i++) {
        bool flush = i == msgs.n;
        if (!flush) {
            struct pending *p = &batch[n];
            st->done++;
            if (!pending_load(st, &msgs.v[i], &kw, p))
                continue;
            if (p->bytes.len > INLINE_MAX) {
                rc = stage_bytes(st->d, st->nsid, p);
                if (rc != ADMIN_EX_OK) {
                    pending_clear(p);
                    break;
                }
            } else {
                bytes += p->bytes.len;
            }
            n++;
            flush = n == BATCH_MESSAGES || bytes >= BATCH_BYTES;
        }
        if (flush && n > 0) {
            rc = import_batch(st, mbxid, uidvalidity, batch, n, f->name);
            for (size_t j = 0; j < n; j++)
                pending_clear(&batch[j]);
            n = 0;
            bytes = 0;
        }
        progress(st, f->name, false);
    }
    for (size_t j = 0; j < n; j++)
        pending_clear(&batch[j]);
    if (rc != ADMIN_EX_OK)
        goto out;

    uint32_t next = u.present ? u.next : 1;
    if (msgs.n > 0 && msgs.v[msgs.n - 1].uid >= next)
        next = msgs.v[msgs.n - 1].uid + 1;
    if (next > 1) {
        snprintf(validity, sizeof(validity), "%" PRIu32, uidvalidity);
        rc = prepare_mailbox(st->d, st->nsid, f->name, validity, next, mbxid, &uidvalidity);
    }
out:
    srcmsgs_free(&msgs);
    uidlist_free(&u);
    keywords_free(&kw);
    return rc;
}

/* Dovecot's "subscriptions": "V\t2" then a blank line then one name per line, levels by tab;
 * older files: one name per line. */
static int import_subscriptions(struct import_state *st, const char *root, enum layout layout,
                                size_t *count_r)
{
    *count_r = 0;
    char *path = path_join(root, "subscriptions");
    char *text = read_text(path, 1 << 20);
    free(path);
    if (text == NULL)
        return ADMIN_EX_OK;
    bool v2 = strncmp(text, "V\t2\n", 4) == 0;
    int rc = ADMIN_EX_OK;
    char *save = NULL;
    char *line = strtok_r(v2 ? text + 4 : text, "\n", &save);
    for (; line != NULL && rc == ADMIN_EX_OK; line = strtok_r(NULL, "\n", &save)) {
        size_t len = strcspn(line, "\r");
        line[len] = '\0';
        if (len == 0)
            continue;
        for (char *p = line; *p != '\0'; p++) {
            if (v2 ? *p == '\t' : (layout == LAYOUT_MAILDIRPP && *p == '.'))
                *p = '/';
        }
        char *name = canonical_name(line);
        if (name == NULL) {
            strlist_add(&st->notes, "subscription %s: not a valid mailbox name", line);
            continue;
        }
        struct key meta, subs;
        keys_ns_meta(&meta, st->nsid);
        keys_ns_subscriptions(&subs, st->nsid);
        const char *keys[] = {meta.s, subs.s};
        const size_t keylen[] = {meta.len, subs.len};
        const char *args[] = {"1", name};
        const size_t arglen[] = {1, strlen(name)};
        redisReply *reply;
        const char *error;
        if (db_script(st->d, LUA_SCRIPT_MBX_SUBSCRIBE, 2, keys, keylen, 2, args, arglen, &reply,
                      &error) != 0)
            rc = admin_db_fail(st->d, "cannot subscribe", error);
        else
            freeReplyObject(reply);
        (*count_r)++;
        free(name);
    }
    free(text);
    return rc;
}

static int parse_layout(const char *s, enum layout *l)
{
    if (strcmp(s, "maildir++") == 0)
        *l = LAYOUT_MAILDIRPP;
    else if (strcmp(s, "fs") == 0)
        *l = LAYOUT_FS;
    else
        return -1;
    return 0;
}

struct maildir_opts {
    enum layout layout;
    uint64_t max_size;
    const char *login;
    const char *dir;
};

static int parse_maildir_opts(int argc, char **argv, struct maildir_opts *o)
{
    static const struct option options[] = {
        {"layout", required_argument, NULL, 'l'},
        {"max-size", required_argument, NULL, 's'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->max_size = DEFAULT_MAX_SIZE;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        switch (c) {
        case 'l':
            if (parse_layout(optarg, &o->layout) != 0) {
                admin_error("invalid --layout %s (maildir++ or fs)", optarg);
                return -1;
            }
            break;
        case 's': {
            char *end;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || v == 0) {
                admin_error("invalid --max-size: %s", optarg);
                return -1;
            }
            o->max_size = v;
            break;
        }
        case ':':
            admin_error("option %s needs a value (see cimap-admin --help)", argv[optind - 1]);
            return -1;
        default:
            admin_error("unknown option %s for %s (see cimap-admin --help)", argv[optind - 1],
                        argv[0]);
            return -1;
        }
    }
    if (argc - optind != 2) {
        admin_error("expected USER DIR (see cimap-admin --help)");
        return -1;
    }
    o->login = argv[optind];
    o->dir = argv[optind + 1];
    return 0;
}

int cmd_import_maildir(struct admin *adm, int argc, char **argv)
{
    struct maildir_opts o;
    if (parse_maildir_opts(argc, argv, &o) != 0)
        return ADMIN_EX_USAGE;
    if (!is_dir(o.dir)) {
        admin_error("%s is not a directory", o.dir);
        return ADMIN_EX_NOINPUT;
    }
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    char nsid[KEYS_NSID_LEN + 1];
    int rc = lookup_user(d, o.login, nsid);
    if (rc != ADMIN_EX_OK)
        return rc;

    struct import_state st = {.d = d, .nsid = nsid, .max_size = o.max_size};
    st.tty = isatty(STDERR_FILENO) == 1;
    st.started = st.last_progress = now_s();
    struct folders folders = {0};
    enum layout layout = o.layout;
    if (layout == LAYOUT_AUTO)
        layout = has_maildirpp_folders(o.dir) ? LAYOUT_MAILDIRPP : LAYOUT_FS;
    if (is_maildir(o.dir))
        folders_add(&folders, strdup("INBOX"), strdup(o.dir));
    if (layout == LAYOUT_MAILDIRPP)
        scan_maildirpp(o.dir, &folders, &st.skipped);
    else
        scan_fs(o.dir, "", 0, &folders, &st.skipped);
    if (folders.n == 0) {
        admin_error("%s holds no maildir (no cur/ directory anywhere)", o.dir);
        folders_free(&folders);
        strlist_free(&st.skipped);
        return ADMIN_EX_NOINPUT;
    }
    qsort(folders.v, folders.n, sizeof(*folders.v), compare_folders);
    for (size_t i = 1; i < folders.n; i++) {
        if (strcmp(folders.v[i].name, folders.v[i - 1].name) == 0)
            strlist_add(&st.skipped, "%s: same mailbox name as %s", folders.v[i].path,
                        folders.v[i - 1].path);
    }
    /* Count the files first, for the progress line. */
    for (size_t i = 0; i < folders.n; i++) {
        static const char *const subs[] = {"cur", "new"};
        for (size_t s = 0; s < 2; s++) {
            char *sub = path_join(folders.v[i].path, subs[s]);
            DIR *dh = opendir(sub);
            if (dh != NULL) {
                struct dirent *e;
                while ((e = readdir(dh)) != NULL)
                    st.total += e->d_name[0] != '.';
                closedir(dh);
            }
            free(sub);
        }
    }

    size_t imported_folders = 0;
    for (size_t i = 0; i < folders.n && rc == ADMIN_EX_OK; i++) {
        if (i > 0 && strcmp(folders.v[i].name, folders.v[i - 1].name) == 0)
            continue;
        rc = import_folder(&st, &folders.v[i]);
        imported_folders += rc == ADMIN_EX_OK;
        progress(&st, folders.v[i].name, false);
    }
    size_t nsubs = 0;
    if (rc == ADMIN_EX_OK)
        rc = import_subscriptions(&st, o.dir, layout, &nsubs);
    progress(&st, "done", true);

    for (size_t i = 0; i < st.notes.n; i++)
        admin_error("note: %s", st.notes.v[i]);
    for (size_t i = 0; i < st.skipped.n; i++)
        admin_error("skipped: %s", st.skipped.v[i]);
    double secs = now_s() - st.started;
    printf("imported %zu messages into %zu mailboxes of %s in %.1f s (%zu already there, %zu "
           "expunged in cimap since, %zu skipped), %zu subscriptions\n",
           st.stored, imported_folders, o.login, secs, st.present, st.expunged, st.skipped.n,
           nsubs);
    if (rc == ADMIN_EX_OK && st.skipped.n > 0)
        rc = ADMIN_EX_DATAERR;
    folders_free(&folders);
    strlist_free(&st.skipped);
    strlist_free(&st.notes);
    return rc;
}

/* ---- export ---- */

struct export_state {
    struct db *d;
    const char *nsid;
    const char *root;
    enum layout layout;
    size_t messages, mailboxes;
    struct strlist problems;
};

static int mkdir_p(const char *path)
{
    char *p = strdup(path);
    for (char *s = p + 1; *s != '\0'; s++) {
        if (*s == '/') {
            *s = '\0';
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                free(p);
                return -1;
            }
            *s = '/';
        }
    }
    int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
    free(p);
    return rc;
}

/* Writes data to dir/tmp/name, sets its mtime, then renames it to final. */
static int write_file(const char *tmp, const char *final, const void *data, size_t len,
                      int64_t mtime)
{
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        return -1;
    const char *p = data;
    size_t left = len;
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
        p += n;
        left -= (size_t)n;
    }
    if (mtime >= 0) {
        struct timespec ts[2] = {{(time_t)mtime, 0}, {(time_t)mtime, 0}};
        if (futimens(fd, ts) != 0) {
            close(fd);
            unlink(tmp);
            return -1;
        }
    }
    if (close(fd) != 0 || rename(tmp, final) != 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

/* The folder directory of a mailbox, or NULL when the layout cannot name it. */
static char *folder_dir(const struct export_state *st, const char *name)
{
    if (strcmp(name, "INBOX") == 0)
        return strdup(st->root);
    if (st->layout == LAYOUT_FS)
        return path_join(st->root, name);
    if (strchr(name, '.') != NULL)
        return NULL;
    size_t len = strlen(name);
    char *dot = malloc(len + 2);
    if (dot == NULL)
        abort();
    dot[0] = '.';
    for (size_t i = 0; i <= len; i++)
        dot[i + 1] = name[i] == '/' ? '.' : name[i];
    char *dir = path_join(st->root, dot);
    free(dot);
    return dir;
}

static int compare_flags_letters(const void *a, const void *b)
{
    return *(const char *)a - *(const char *)b;
}

/* ":2," letters of a stored flag list; unknown keywords are noted once per mailbox. */
static void flag_letters(const char *flags, char *const kw[KEYWORD_LETTERS], char *out,
                         bool *dropped_r)
{
    size_t n = 0;
    const char *p = flags;
    while (*p != '\0') {
        size_t w = strcspn(p, " ");
        char letter = 0;
        if (w == 5 && strncmp(p, "\\Seen", 5) == 0)
            letter = 'S';
        else if (w == 9 && strncmp(p, "\\Answered", 9) == 0)
            letter = 'R';
        else if (w == 8 && strncmp(p, "\\Flagged", 8) == 0)
            letter = 'F';
        else if (w == 8 && strncmp(p, "\\Deleted", 8) == 0)
            letter = 'T';
        else if (w == 6 && strncmp(p, "\\Draft", 6) == 0)
            letter = 'D';
        else {
            for (size_t i = 0; i < KEYWORD_LETTERS && kw[i] != NULL; i++) {
                if (strlen(kw[i]) == w && strncasecmp(kw[i], p, w) == 0)
                    letter = (char)('a' + i);
            }
            if (letter == 0)
                *dropped_r = true;
        }
        if (letter != 0 && memchr(out, letter, n) == NULL)
            out[n++] = letter;
        p += w;
        while (*p == ' ')
            p++;
    }
    out[n] = '\0';
    qsort(out, n, 1, compare_flags_letters);
}

static int export_mailbox(struct export_state *st, const struct lookup_mailbox *mb)
{
    char *dir = folder_dir(st, mb->name);
    if (dir == NULL) {
        strlist_add(&st->problems, "mailbox %s: a '.' in a name cannot be written as Maildir++ "
                    "(use --layout fs)", mb->name);
        return ADMIN_EX_OK;
    }
    struct key mbx, uids, msg, flags;
    keys_mbx(&mbx, st->nsid, mb->mbxid, KEYS_MBX);
    keys_mbx(&uids, st->nsid, mb->mbxid, KEYS_MBX_UIDS);
    keys_mbx(&msg, st->nsid, mb->mbxid, KEYS_MBX_MSG);
    keys_mbx(&flags, st->nsid, mb->mbxid, KEYS_MBX_FLAGS);
    const char *hav[] = {"HGETALL", mbx.s};
    const size_t havlen[] = {7, mbx.len};
    redisReply *hash;
    const char *error;
    int rc = ADMIN_EX_OK;
    FILE *uidlist = NULL;
    char *kw[KEYWORD_LETTERS] = {NULL};
    char *tmpdir = NULL, *curdir = NULL, *uidlist_tmp = NULL;
    if (db_command(st->d, 2, hav, havlen, &hash, &error) != 0) {
        free(dir);
        return admin_db_fail(st->d, "cannot read a mailbox", error);
    }
    int64_t validity = lookup_field_int(hash, "uidvalidity");
    int64_t uidnext = lookup_field_int(hash, "uidnext");
    const redisReply *kwr = lookup_field(hash, "keywords");
    if (validity <= 0 || uidnext <= 0 || lookup_field(hash, "removed") != NULL) {
        freeReplyObject(hash);
        free(dir);
        return ADMIN_EX_OK; /* being deleted */
    }
    size_t nkw = 0;
    bool kw_dropped = false;
    if (kwr != NULL && kwr->type == REDIS_REPLY_STRING) {
        char *words = strndup(kwr->str, kwr->len);
        char *save = NULL;
        for (char *w = strtok_r(words, " ", &save); w != NULL; w = strtok_r(NULL, " ", &save)) {
            if (nkw < KEYWORD_LETTERS)
                kw[nkw++] = strdup(w);
            else
                kw_dropped = true;
        }
        free(words);
    }
    freeReplyObject(hash);

    curdir = path_join(dir, "cur");
    tmpdir = path_join(dir, "tmp");
    char *newdir = path_join(dir, "new");
    bool made = mkdir_p(curdir) == 0 && mkdir_p(tmpdir) == 0 && mkdir_p(newdir) == 0;
    free(newdir);
    if (!made) {
        admin_error("cannot create %s: %s", dir, strerror(errno));
        rc = ADMIN_EX_IOERR;
        goto out;
    }
    if (strcmp(mb->name, "INBOX") != 0 && st->layout == LAYOUT_MAILDIRPP) {
        char *marker = path_join(dir, "maildirfolder");
        char *marker_tmp = path_join(tmpdir, "maildirfolder");
        if (write_file(marker_tmp, marker, "", 0, -1) != 0) {
            admin_error("cannot write %s: %s", marker, strerror(errno));
            rc = ADMIN_EX_IOERR;
        }
        free(marker);
        free(marker_tmp);
        if (rc != ADMIN_EX_OK)
            goto out;
    }
    uidlist_tmp = path_join(tmpdir, "dovecot-uidlist");
    uidlist = fopen(uidlist_tmp, "w");
    if (uidlist == NULL) {
        admin_error("cannot write %s: %s", uidlist_tmp, strerror(errno));
        rc = ADMIN_EX_IOERR;
        goto out;
    }
    fprintf(uidlist, "3 V%" PRId64 " N%" PRId64 "\n", validity, uidnext);

    char from[24] = "-inf";
    for (;;) {
        const char *zav[] = {"ZRANGEBYSCORE", uids.s, from, "+inf", "LIMIT", "0", "1000"};
        const size_t zavlen[] = {13, uids.len, strlen(from), 4, 5, 1, 4};
        redisReply *batch;
        if (db_command(st->d, 7, zav, zavlen, &batch, &error) != 0) {
            rc = admin_db_fail(st->d, "cannot read the UIDs", error);
            goto out;
        }
        size_t n = batch->type == REDIS_REPLY_ARRAY ? batch->elements : 0;
        if (n == 0) {
            freeReplyObject(batch);
            break;
        }
        const char **av = malloc((2 + n) * sizeof(*av));
        size_t *avlen = malloc((2 + n) * sizeof(*avlen));
        if (av == NULL || avlen == NULL)
            abort();
        for (size_t i = 0; i < n; i++) {
            av[2 + i] = batch->element[i]->str;
            avlen[2 + i] = batch->element[i]->len;
        }
        av[0] = "HMGET";
        avlen[0] = 5;
        av[1] = msg.s;
        avlen[1] = msg.len;
        redisReply *recs = NULL, *fl = NULL;
        int r1 = db_command(st->d, 2 + n, av, avlen, &recs, &error);
        av[1] = flags.s;
        avlen[1] = flags.len;
        int r2 = r1 == 0 ? db_command(st->d, 2 + n, av, avlen, &fl, &error) : -1;
        free(av);
        free(avlen);
        if (r1 != 0 || r2 != 0) {
            if (recs != NULL)
                freeReplyObject(recs);
            freeReplyObject(batch);
            rc = admin_db_fail(st->d, "cannot read the messages", error);
            goto out;
        }
        for (size_t i = 0; i < n && rc == ADMIN_EX_OK; i++) {
            const redisReply *rec = recs->element[i], *f = fl->element[i];
            if (rec->type != REDIS_REPLY_STRING)
                continue; /* expunged meanwhile */
            char sha[KEYS_SHA256_LEN + 1];
            long long date = 0, size = 0;
            char *r = strndup(rec->str, rec->len);
            int got = sscanf(r, "%64s %lld %lld", sha, &date, &size);
            free(r);
            if (got != 3 || !keys_hex_valid(sha, strlen(sha), KEYS_SHA256_LEN)) {
                strlist_add(&st->problems, "mailbox %s UID %.*s: damaged record", mb->name,
                            (int)batch->element[i]->len, batch->element[i]->str);
                continue;
            }
            struct key raw;
            keys_content_raw(&raw, st->nsid, sha);
            const char *gav[] = {"GET", raw.s};
            const size_t gavlen[] = {3, raw.len};
            redisReply *body;
            if (db_command(st->d, 2, gav, gavlen, &body, &error) != 0) {
                rc = admin_db_fail(st->d, "cannot read a message", error);
                break;
            }
            if (body->type != REDIS_REPLY_STRING) {
                strlist_add(&st->problems, "mailbox %s UID %.*s: content missing", mb->name,
                            (int)batch->element[i]->len, batch->element[i]->str);
                freeReplyObject(body);
                continue;
            }
            char letters[KEYWORD_LETTERS + 8];
            char *flagtext = f->type == REDIS_REPLY_STRING ? strndup(f->str, f->len) : strdup("");
            flag_letters(flagtext, kw, letters, &kw_dropped);
            free(flagtext);
            char base[160], name[200];
            snprintf(base, sizeof(base), "%lld.M%.*sV%" PRId64 ".cimap,S=%zu,W=%zu", date,
                     (int)batch->element[i]->len, batch->element[i]->str, validity, body->len,
                     body->len);
            snprintf(name, sizeof(name), "%s:2,%s", base, letters);
            char *final = path_join(curdir, name);
            char *tmp = path_join(tmpdir, name);
            if (write_file(tmp, final, body->str, body->len, date) != 0) {
                admin_error("cannot write %s: %s", final, strerror(errno));
                rc = ADMIN_EX_IOERR;
            } else {
                fprintf(uidlist, "%.*s :%s\n", (int)batch->element[i]->len, batch->element[i]->str,
                        base);
                st->messages++;
            }
            free(final);
            free(tmp);
            freeReplyObject(body);
        }
        const redisReply *lastuid = batch->element[n - 1];
        snprintf(from, sizeof(from), "(%.*s", (int)(lastuid->len < 20 ? lastuid->len : 20),
                 lastuid->str);
        freeReplyObject(recs);
        freeReplyObject(fl);
        freeReplyObject(batch);
        if (rc != ADMIN_EX_OK)
            goto out;
    }
    if (fclose(uidlist) != 0) {
        uidlist = NULL;
        admin_error("cannot write %s: %s", uidlist_tmp, strerror(errno));
        rc = ADMIN_EX_IOERR;
        goto out;
    }
    uidlist = NULL;
    char *uidlist_final = path_join(dir, "dovecot-uidlist");
    if (rename(uidlist_tmp, uidlist_final) != 0) {
        admin_error("cannot write %s: %s", uidlist_final, strerror(errno));
        rc = ADMIN_EX_IOERR;
    }
    free(uidlist_final);
    if (rc == ADMIN_EX_OK && nkw > 0) {
        struct mail_buf b = {0};
        for (size_t i = 0; i < nkw; i++) {
            char line[200];
            int len = snprintf(line, sizeof(line), "%zu %s\n", i, kw[i]);
            mail_buf_append(&b, line, (size_t)len);
        }
        char *kfinal = path_join(dir, "dovecot-keywords");
        char *ktmp = path_join(tmpdir, "dovecot-keywords");
        if (write_file(ktmp, kfinal, b.data, b.len, -1) != 0) {
            admin_error("cannot write %s: %s", kfinal, strerror(errno));
            rc = ADMIN_EX_IOERR;
        }
        free(kfinal);
        free(ktmp);
        mail_buf_free(&b);
    }
    if (kw_dropped)
        strlist_add(&st->problems, "mailbox %s: keywords beyond the first %d cannot be written "
                    "to a maildir and were left out", mb->name, KEYWORD_LETTERS);
    st->mailboxes++;
out:
    if (uidlist != NULL)
        fclose(uidlist);
    for (size_t i = 0; i < KEYWORD_LETTERS; i++)
        free(kw[i]);
    free(uidlist_tmp);
    free(curdir);
    free(tmpdir);
    free(dir);
    return rc;
}

static int export_subscriptions(struct export_state *st)
{
    struct key subs;
    keys_ns_subscriptions(&subs, st->nsid);
    const char *av[] = {"SMEMBERS", subs.s};
    const size_t avlen[] = {8, subs.len};
    redisReply *reply;
    const char *error;
    if (db_command(st->d, 2, av, avlen, &reply, &error) != 0)
        return admin_db_fail(st->d, "cannot read the subscriptions", error);
    struct mail_buf b = {0};
    mail_buf_append(&b, "V\t2\n\n", 5);
    for (size_t i = 0; reply->type == REDIS_REPLY_ARRAY && i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING || memchr(e->str, '\n', e->len) != NULL ||
            memchr(e->str, '\t', e->len) != NULL)
            continue;
        for (size_t k = 0; k < e->len; k++)
            mail_buf_append(&b, e->str[k] == '/' ? "\t" : &e->str[k], 1);
        mail_buf_append(&b, "\n", 1);
    }
    freeReplyObject(reply);
    char *final = path_join(st->root, "subscriptions");
    char *tmpd = path_join(st->root, "tmp");
    char *tmp = path_join(tmpd, "subscriptions");
    int rc = ADMIN_EX_OK;
    if (mkdir_p(tmpd) != 0 || write_file(tmp, final, b.data, b.len, -1) != 0) {
        admin_error("cannot write %s: %s", final, strerror(errno));
        rc = ADMIN_EX_IOERR;
    }
    free(final);
    free(tmpd);
    free(tmp);
    mail_buf_free(&b);
    return rc;
}

static bool dir_empty_or_missing(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return errno == ENOENT;
    struct dirent *e;
    bool empty = true;
    while (empty && (e = readdir(d)) != NULL)
        empty = strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0;
    closedir(d);
    return empty;
}

int cmd_export_maildir(struct admin *adm, int argc, char **argv)
{
    struct maildir_opts o;
    if (parse_maildir_opts(argc, argv, &o) != 0)
        return ADMIN_EX_USAGE;
    if (!dir_empty_or_missing(o.dir)) {
        admin_error("%s exists and is not empty", o.dir);
        return ADMIN_EX_CANTCREAT;
    }
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    char nsid[KEYS_NSID_LEN + 1];
    int rc = lookup_user(d, o.login, nsid);
    if (rc != ADMIN_EX_OK)
        return rc;
    if (mkdir_p(o.dir) != 0) {
        admin_error("cannot create %s: %s", o.dir, strerror(errno));
        return ADMIN_EX_CANTCREAT;
    }
    struct export_state st = {.d = d, .nsid = nsid, .root = o.dir,
                              .layout = o.layout == LAYOUT_FS ? LAYOUT_FS : LAYOUT_MAILDIRPP};
    struct lookup_mailbox *list;
    size_t n;
    rc = lookup_mailboxes(d, nsid, &list, &n);
    if (rc != ADMIN_EX_OK)
        return rc;
    double started = now_s();
    for (size_t i = 0; i < n && rc == ADMIN_EX_OK; i++)
        rc = export_mailbox(&st, &list[i]);
    lookup_mailboxes_free(list, n);
    if (rc == ADMIN_EX_OK)
        rc = export_subscriptions(&st);
    for (size_t i = 0; i < st.problems.n; i++)
        admin_error("not exported: %s", st.problems.v[i]);
    printf("exported %zu messages from %zu mailboxes of %s in %.1f s\n", st.messages,
           st.mailboxes, o.login, now_s() - started);
    if (rc == ADMIN_EX_OK && st.problems.n > 0)
        rc = ADMIN_EX_DATAERR;
    strlist_free(&st.problems);
    return rc;
}
