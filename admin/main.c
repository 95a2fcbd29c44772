/*
 * cimap-admin: the operator's tool. Talks to Redis directly (DESIGN.md "Interfaces operators
 * expect"); never links the network front end.
 *
 * main() parses the global options (stopping at the command name), checks the Redis URL, looks the
 * command up in one sorted table and runs it with the remaining arguments. Redis is connected only
 * when a command first needs it, so a usage error answers 64 at once even when Redis is down.
 * Every error is one line on stderr; every exit code is a sysexits(3) code (admin.h).
 */
#include <getopt.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/db.h"

#define ADMIN_DEFAULT_TIMEOUT_MS 5000u

struct admin_cmd {
    const char *name;
    admin_cmd_fn *fn;
    const char *synopsis;
};

/* Sorted by name (bsearch). */
static const struct admin_cmd commands[] = {
    {"append", cmd_append,
     "append [--from SENDER] [--mailbox NAME] [--create] [--flag FLAG]... [--date DATE]\n"
     "       [--delivery-id ID] [--max-size BYTES] [--dedupe-ttl SECONDS] USER < MESSAGE"},
    {"check-user", cmd_check_user, "check-user LOGIN [--password-stdin]"},
    {"delete-user", cmd_delete_user, "delete-user LOGIN"},
    {"export-maildir", cmd_export_maildir, "export-maildir [--layout maildir++|fs] USER DIR"},
    {"fsck", cmd_fsck, "fsck [--repair] [--json] USER"},
    {"gc", cmd_gc, "gc [--grace SECONDS] [--json] [USER]"},
    {"get-user", cmd_get_user, "get-user LOGIN [--show-hash] [--json]"},
    {"health", cmd_health, "health [--json]"},
    {"import-maildir", cmd_import_maildir,
     "import-maildir [--layout maildir++|fs] [--max-size BYTES] USER DIR"},
    {"import-users", cmd_import_users, "import-users [--kdf-cost N] PASSWD_FILE"},
    {"keys", cmd_keys, "keys USER [MAILBOX [UID]]"},
    {"list-users", cmd_list_users, "list-users [--json]"},
    {"set-user", cmd_set_user,
     "set-user LOGIN [--password-stdin | --password-hash HASH | --keep-password]\n"
     "       [--param NAME=VALUE]... [--kdf-cost N]"},
    {"stats", cmd_stats, "stats [--json] USER"},
};

static const char usage_text[] =
    "Usage: cimap-admin [--redis URL] [--timeout SECONDS] COMMAND [ARGS]\n"
    "\n"
    "Global options:\n"
    "  --redis URL        Redis to use, redis://HOST:PORT[/DB] (default: $CIMAP_REDIS, then\n"
    "                     " DB_DEFAULT_URL ")\n"
    "  --timeout SECONDS  connect and reply timeout, 1..3600 (default 5)\n"
    "  -h, --help         show this help; COMMAND --help shows the same\n"
    "\n"
    "Commands:\n"
    "  set-user LOGIN [--password-stdin | --password-hash HASH | --keep-password]\n"
    "           [--param NAME=VALUE]... [--kdf-cost N]\n"
    "      Create the user, or update an existing one. The password is read from the terminal\n"
    "      (no echo, asked twice) or, with --password-stdin, from standard input (one trailing\n"
    "      newline is removed). --keep-password changes only parameters of an existing user.\n"
    "      --param NAME=VALUE sets a per-user parameter (NAME: 1..64 of [A-Za-z0-9._-]; VALUE: up\n"
    "      to 1024 bytes, no control characters); an empty VALUE removes it. May repeat.\n"
    "      --kdf-cost N sets the PBKDF2 iteration count (default 100000). For benchmarks and\n"
    "      tests only: a low cost makes stolen hashes cheap to crack.\n"
    "      --password-hash HASH stores a Dovecot hash as is, so a migrated user keeps the\n"
    "      password: {SHA512-CRYPT}, {SHA256-CRYPT}, {BLF-CRYPT}, {MD5-CRYPT}, {CRYPT} ($id$\n"
    "      forms), {PBKDF2}; {PLAIN}/{CLEARTEXT} are hashed with PBKDF2 (never stored).\n"
    "  import-users [--kdf-cost N] PASSWD_FILE\n"
    "      Create or update every user of a Dovecot passwd-file (user:{SCHEME}hash:...) with\n"
    "      its hash, as set-user --password-hash does. Exit 65 when lines were skipped.\n"
    "  get-user LOGIN [--show-hash] [--json]\n"
    "      Print the user's record as NAME=VALUE lines: login, nsid, state, created (unix\n"
    "      seconds), param:NAME. The password hash is printed only with --show-hash.\n"
    "  list-users [--json]\n"
    "      Print every login, one per line, sorted.\n"
    "  check-user LOGIN [--password-stdin]\n"
    "      Check a password (read as for set-user, asked once). Exit 0 when it matches, 1 when\n"
    "      it does not, 67 when there is no such user.\n"
    "  delete-user LOGIN\n"
    "      Delete the user and every key of its namespace, in bounded batches. LOGIN stops\n"
    "      working at once; if interrupted, run it again to finish.\n"
    "  append [--from SENDER] [--mailbox NAME] [--create] [--flag FLAG]... [--date DATE]\n"
    "         [--delivery-id ID] [--max-size BYTES] [--dedupe-ttl SECONDS] USER < MESSAGE\n"
    "      Deliver one message (bare LF becomes CRLF) to USER's mailbox NAME (default INBOX; a\n"
    "      missing one means INBOX unless --create) and print 'UIDVALIDITY UID'. FLAG: \\Seen...\n"
    "      or a keyword; DATE: RFC 3339 or unix seconds (INTERNALDATE, default now). Once only:\n"
    "      a delivery with the same --delivery-id (the MTA queue id), or else the same message,\n"
    "      --from and USER, within --dedupe-ttl seconds (default 86400; 0: off) is stored once.\n"
    "      --max-size defaults to 64 MiB. Exit 0 stored, 65 empty/unusable/too big, 67 no such\n"
    "      user, 75 anything else (the MTA retries; nothing is half-written).\n"
    "  import-maildir [--layout maildir++|fs] [--max-size BYTES] USER DIR\n"
    "      Import a Dovecot (or any) maildir: Maildir++ or fs layout (detected), UIDs,\n"
    "      UIDVALIDITY and next UID from dovecot-uidlist, flags (:2, info, T = \\Deleted) and\n"
    "      keywords (dovecot-keywords), INTERNALDATE from the mtime, subscriptions. Safe to run\n"
    "      again (nothing twice, nothing expunged since comes back). Progress on a terminal;\n"
    "      exit 65 and a list when files were skipped. Run 'doveadm force-resync -u USER \"*\"'\n"
    "      on the source first: Dovecot writes dovecot-uidlist lazily.\n"
    "  export-maildir [--layout maildir++|fs] USER DIR\n"
    "      Write the user's mail as a maildir Dovecot serves with the same UIDs, UIDVALIDITY,\n"
    "      flags and keywords (DIR must be missing or empty; default Maildir++).\n"
    "  health [--json]\n"
    "      Redis reachable, version, memory, maxmemory-policy, persistence, schema, scripts\n"
    "      loaded, live front ends. Exit 1 when Redis is misconfigured.\n"
    "  keys USER [MAILBOX [UID]]\n"
    "      The Redis keys of a user, a mailbox or a message, to paste into redis-cli.\n"
    "  stats [--json] USER\n"
    "      Per mailbox: messages, unseen, deleted, recent, bytes, UIDVALIDITY, UIDNEXT.\n"
    "  fsck [--repair] [--json] USER\n"
    "      Check counters, flag indexes, runs against UIDs, UIDNEXT, modseqs against the change\n"
    "      log, content reference counts and the user's totals; --repair fixes them. Each check\n"
    "      is one script over the data it checks (blocks Redis ~1 s per million messages).\n"
    "      Exit 1 when problems were found and not repaired.\n"
    "  gc [--grace SECONDS] [--json] [USER]\n"
    "      Reclaim content unreferenced for longer than --grace (default 3600) and finish\n"
    "      deleted mailboxes still in the trash; for USER or every namespace.\n"
    "\n"
    "LOGIN: 1..255 of [A-Za-z0-9._@+-], not starting with '.' or '-'.\n"
    "\n"
    "Exit codes (sysexits): 0 ok; 1 wrong password (check-user), problems found (fsck), files\n"
    "skipped (import-maildir); 64 usage error; 65 unusable data; 66 missing input; 67 no such\n"
    "user; 70 internal error; 73 user is being deleted (set-user); 74 I/O error; 75 Redis\n"
    "unavailable or another transient failure, retry later.\n";

void admin_error(const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    fprintf(stderr, "cimap-admin: %s\n", line);
}

int admin_db(struct admin *a, struct db **db_r)
{
    if (a->db == NULL) {
        const char *error;
        if (db_connect(a->redis_url, a->timeout_ms, &a->db, &error) != 0) {
            admin_error("%s", error);
            return -1;
        }
    }
    *db_r = a->db;
    return 0;
}

int admin_db_fail(const struct db *d, const char *what, const char *error)
{
    admin_error("%s: %s", what, error);
    return db_unavailable(d) ? ADMIN_EX_TEMPFAIL : ADMIN_EX_SOFTWARE;
}

static int cmd_compare(const void *key, const void *elem)
{
    return strcmp(key, ((const struct admin_cmd *)elem)->name);
}

static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int usage_error(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    admin_error("%s (see cimap-admin --help)", msg);
    return ADMIN_EX_USAGE;
}

static int parse_timeout(const char *s, uint32_t *ms_r)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (s[0] < '0' || s[0] > '9' || *end != '\0' || v < 1 || v > 3600)
        return -1;
    *ms_r = (uint32_t)v * 1000u;
    return 0;
}

int main(int argc, char **argv)
{
    struct admin a = {NULL, ADMIN_DEFAULT_TIMEOUT_MS, NULL};
    static const struct option options[] = {
        {"redis", required_argument, NULL, 'r'},
        {"timeout", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    opterr = 0;
    int c;
    /* '+': stop at the command name; its own options are parsed by the command. */
    while ((c = getopt_long(argc, argv, "+:h", options, NULL)) != -1) {
        switch (c) {
        case 'r':
            a.redis_url = optarg;
            break;
        case 't':
            if (parse_timeout(optarg, &a.timeout_ms) != 0)
                return usage_error("invalid --timeout: %s", optarg);
            break;
        case 'h':
            fputs(usage_text, stdout);
            return ADMIN_EX_OK;
        case ':':
            return usage_error("option %s needs a value", argv[optind - 1]);
        default:
            return usage_error("unknown option %s", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return usage_error("%s", "no command given");
    const char *name = argv[optind];
    if (strcmp(name, "help") == 0) {
        fputs(usage_text, stdout);
        return ADMIN_EX_OK;
    }
    const struct admin_cmd *cmd = bsearch(name, commands, sizeof(commands) / sizeof(commands[0]),
                                          sizeof(commands[0]), cmd_compare);
    if (cmd == NULL)
        return usage_error("unknown command: %s", name);
    for (int i = optind + 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            printf("Usage: cimap-admin [--redis URL] %s\n\n", cmd->synopsis);
            fputs(usage_text, stdout);
            return ADMIN_EX_OK;
        }
    }

    if (a.redis_url == NULL) {
        const char *env = getenv("CIMAP_REDIS");
        a.redis_url = env != NULL && env[0] != '\0' ? env : DB_DEFAULT_URL;
    }
    char *host;
    uint16_t port;
    uint32_t dbnum;
    const char *error;
    if (db_url_parse(a.redis_url, &host, &port, &dbnum, &error) != 0)
        return usage_error("%s", error);
    free(host);

    int sub_argc = argc - optind;
    char **sub_argv = argv + optind;
    optind = 0; /* glibc: 0 fully reinitialises getopt for the command's own options */
    int rc = cmd->fn(&a, sub_argc, sub_argv);
    db_free(&a.db);
    if (fflush(stdout) == EOF) {
        admin_error("cannot write to standard output");
        if (rc == ADMIN_EX_OK)
            rc = ADMIN_EX_SOFTWARE;
    }
    return rc;
}
