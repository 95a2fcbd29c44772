/*
 * cimap-admin: what main.c shares with the command files (one cmd_<family>.c per family of
 * commands, each command a function in the dispatch table of main.c).
 *
 * Exit codes follow sysexits(3), so an MTA or a script can tell "retry later" from "no":
 *   0 success; 1 check-user: wrong password, fsck: problems found, import: files skipped;
 *   64 usage; 65 bad data (a message that is unusable or too big); 66 input missing; 67 no such
 *   user; 70 internal error; 73 cannot create (set-user on a user that is being deleted); 74 I/O
 *   error (export); 75 Redis unavailable or any transient failure (retry).
 */
#ifndef CIMAP_ADMIN_H
#define CIMAP_ADMIN_H

#include <stdint.h>

#define ADMIN_EX_OK 0
#define ADMIN_EX_MISMATCH 1
#define ADMIN_EX_USAGE 64
#define ADMIN_EX_DATAERR 65
#define ADMIN_EX_NOINPUT 66
#define ADMIN_EX_NOUSER 67
#define ADMIN_EX_SOFTWARE 70
#define ADMIN_EX_CANTCREAT 73
#define ADMIN_EX_IOERR 74
#define ADMIN_EX_TEMPFAIL 75

struct db;

/* Global options and the lazily opened Redis connection. Owned by main(). */
struct admin {
    const char *redis_url;  /* checked with db_url_parse() before any command runs */
    uint32_t timeout_ms;    /* connect and reply timeout */
    struct db *db;          /* NULL until admin_db() connects */
};

/*
 * A command: argv[0] is the command name, options and operands follow (parse them with
 * getopt_long; optind has been reset). Returns the process exit code; errors are already printed.
 */
typedef int admin_cmd_fn(struct admin *a, int argc, char **argv);

/*
 * Connects on first use. Returns 0 with *db_r (owned by a), or prints why and returns -1 (the
 * command then exits ADMIN_EX_TEMPFAIL).
 */
int admin_db(struct admin *a, struct db **db_r);

/* Prints "cimap-admin: <fmt...>" and a newline on stderr. */
void admin_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/*
 * Prints "cimap-admin: <what>: <error>" for a failed db call and returns the exit code it maps to:
 * ADMIN_EX_TEMPFAIL when Redis was unavailable, ADMIN_EX_SOFTWARE otherwise.
 */
int admin_db_fail(const struct db *d, const char *what, const char *error);

/* User commands (cmd_users.c); see the usage text in main.c. */
admin_cmd_fn cmd_set_user;
admin_cmd_fn cmd_get_user;
admin_cmd_fn cmd_list_users;
admin_cmd_fn cmd_check_user;
admin_cmd_fn cmd_delete_user;
admin_cmd_fn cmd_import_users;

/* Delivery (cmd_append.c). */
admin_cmd_fn cmd_append;

/* Maildir migration (cmd_maildir.c). */
admin_cmd_fn cmd_import_maildir;
admin_cmd_fn cmd_export_maildir;

/* Operations and inspection (cmd_ops.c). */
admin_cmd_fn cmd_health;
admin_cmd_fn cmd_keys;
admin_cmd_fn cmd_stats;
admin_cmd_fn cmd_fsck;
admin_cmd_fn cmd_gc;

#endif
