/*
 * cmd_users: cimap-admin's user commands (set-user, get-user, list-users, check-user,
 * delete-user).
 *
 * A user spans two hash slots on purpose (DESIGN.md rule 8), so creating and deleting are two
 * crash-safe steps, each a lua/ script:
 *   create  ns_create.lua (fresh nsid) -> user_create.lua (SET-NX-like: refuses an existing record;
 *           the fresh namespace is then swept and the existing user updated instead);
 *   delete  user_tombstone.lua (state=deleting, LOGIN refuses) -> SCAN over keys_ns_pattern() +
 *           ns_sweep.lua in batches of SWEEP_BATCH keys, repeated until a full pass finds nothing ->
 *           user_remove.lua (only if still that tombstone).
 * A crash between steps leaves an unreferenced namespace or a tombstone; rerunning delete-user
 * finishes the job (tombstoning a tombstone answers its nsid again).
 *
 * Passwords are hashed here (PBKDF2, frontend/password.c) and only the encoded hash is sent to
 * Redis. Every user-supplied value is validated before the first request; the scripts validate
 * again before their first write.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/db.h"
#include "admin/json.h"
#include "admin/secret.h"
#include "frontend/password.h"
#include "frontend/defaults.h"
#include "keys/keys.h"

#define SWEEP_BATCH 500        /* keys per ns_sweep.lua call: bounds each script's run time */
#define SWEEP_MAX_PASSES 8     /* full SCAN passes before giving up on a namespace still written */
#define PARAM_NAME_MAX 64
#define PARAM_VALUE_MAX 1024
#define PARAMS_MAX 128
#define SET_USER_ATTEMPTS 3    /* create/update races with another admin before giving up */

struct param {
    const char *name;  /* borrowed from argv */
    size_t name_len;
    const char *value; /* borrowed from argv; empty removes the parameter */
    size_t value_len;
};

struct params {
    struct param v[PARAMS_MAX];
    size_t n;
};

/* Validates a login operand and builds its record key; prints the error. */
static int login_key(const char *login, struct key *k)
{
    if (keys_user(k, login, strlen(login)) != 0) {
        admin_error("invalid login name (1..%d of [A-Za-z0-9._@+-], not starting with '.' or "
                    "'-')",
                    KEYS_LOGIN_MAX);
        return -1;
    }
    return 0;
}

static bool param_name_valid(const char *s, size_t len)
{
    if (len == 0 || len > PARAM_NAME_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool param_value_valid(const char *s, size_t len)
{
    if (len > PARAM_VALUE_MAX)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    return true;
}

/* Adds "NAME=VALUE"; a repeated NAME replaces the earlier value. */
static int params_add(struct params *p, const char *arg)
{
    const char *eq = strchr(arg, '=');
    if (eq == NULL) {
        admin_error("--param needs NAME=VALUE (see cimap-admin --help)");
        return -1;
    }
    struct param np = {arg, (size_t)(eq - arg), eq + 1, strlen(eq + 1)};
    if (!param_name_valid(np.name, np.name_len)) {
        admin_error("invalid --param name (1..%d of [A-Za-z0-9._-])", PARAM_NAME_MAX);
        return -1;
    }
    if (!param_value_valid(np.value, np.value_len)) {
        admin_error("invalid --param value (at most %d bytes, no control characters)",
                    PARAM_VALUE_MAX);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++) {
        if (p->v[i].name_len == np.name_len && memcmp(p->v[i].name, np.name, np.name_len) == 0) {
            p->v[i] = np;
            return 0;
        }
    }
    if (p->n == PARAMS_MAX) {
        admin_error("too many --param options (at most %d)", PARAMS_MAX);
        return -1;
    }
    p->v[p->n++] = np;
    return 0;
}

/* The one key of a login-record script and its arguments, as db_script() wants them. */
struct script_args {
    const char *v[2 + 2 * PARAMS_MAX];
    size_t len[2 + 2 * PARAMS_MAX];
    size_t n;
};

static void args_push(struct script_args *a, const char *s, size_t len)
{
    a->v[a->n] = s;
    a->len[a->n] = len;
    a->n++;
}

static int run_script(struct db *d, enum lua_script_id id, const struct key *k,
                      const struct script_args *a, redisReply **reply_r, const char **error_r)
{
    const char *keys[] = {k->s};
    const size_t keylen[] = {k->len};
    return db_script(d, id, 1, keys, keylen, a != NULL ? a->n : 0, a != NULL ? a->v : NULL,
                     a != NULL ? a->len : NULL, reply_r, error_r);
}

/* Fields of a login record that the commands act on. */
struct record {
    bool exists;
    char nsid[KEYS_NSID_LEN + 1];
    bool active;
    char *password; /* malloc'd, or NULL */
};

static void record_clear(struct record *r)
{
    free(r->password);
    memset(r, 0, sizeof(*r));
}

/* HMGET nsid state password. Returns an exit code (0: read, maybe !exists). */
static int record_read(struct db *d, const struct key *k, const char *login, struct record *r)
{
    memset(r, 0, sizeof(*r));
    const char *argv[] = {"HMGET", k->s, "nsid", "state", "password"};
    const size_t argvlen[] = {5, k->len, 4, 5, 8};
    redisReply *reply;
    const char *error;
    if (db_command(d, 5, argv, argvlen, &reply, &error) != 0)
        return admin_db_fail(d, "cannot read the user record", error);
    int rc = ADMIN_EX_OK;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3) {
        admin_error("unexpected reply reading the record of %s", login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    const redisReply *nsid = reply->element[0], *state = reply->element[1],
                     *pw = reply->element[2];
    if (nsid->type == REDIS_REPLY_NIL && state->type == REDIS_REPLY_NIL &&
        pw->type == REDIS_REPLY_NIL)
        goto out;
    r->exists = true;
    if (nsid->type != REDIS_REPLY_STRING || !keys_nsid_valid(nsid->str, nsid->len)) {
        admin_error("the record of %s has no valid nsid", login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    memcpy(r->nsid, nsid->str, nsid->len);
    r->nsid[nsid->len] = '\0';
    r->active = state->type == REDIS_REPLY_STRING && state->len == 6 &&
                memcmp(state->str, "active", 6) == 0;
    if (pw->type == REDIS_REPLY_STRING && memchr(pw->str, '\0', pw->len) == NULL) {
        r->password = strndup(pw->str, pw->len);
        if (r->password == NULL) {
            admin_error("out of memory");
            rc = ADMIN_EX_SOFTWARE;
        }
    }
out:
    freeReplyObject(reply);
    return rc;
}

/*
 * Deletes every key of namespace nsid: full SCAN passes, each batch through ns_sweep.lua, until a
 * pass finds nothing. Returns an exit code; *deleted_r counts the keys deleted.
 */
static int sweep_namespace(struct db *d, const char *nsid, size_t *deleted_r)
{
    struct key pattern, prefix;
    keys_ns_pattern(&pattern, nsid);
    keys_ns_prefix(&prefix, nsid);
    const char *prefix_v[] = {prefix.s};
    const size_t prefix_len[] = {prefix.len};

    *deleted_r = 0;
    for (int pass = 0; pass < SWEEP_MAX_PASSES; pass++) {
        size_t found = 0;
        char cursor[32] = "0";
        do {
            const char *argv[] = {"SCAN", cursor, "MATCH", pattern.s, "COUNT", "500"};
            const size_t argvlen[] = {4, strlen(cursor), 5, pattern.len, 5, 3};
            redisReply *reply;
            const char *error;
            if (db_command(d, 6, argv, argvlen, &reply, &error) != 0)
                return admin_db_fail(d, "cannot scan the namespace", error);
            if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                reply->element[0]->type != REDIS_REPLY_STRING ||
                reply->element[0]->len >= sizeof(cursor) ||
                reply->element[1]->type != REDIS_REPLY_ARRAY) {
                freeReplyObject(reply);
                admin_error("unexpected SCAN reply");
                return ADMIN_EX_SOFTWARE;
            }
            memcpy(cursor, reply->element[0]->str, reply->element[0]->len);
            cursor[reply->element[0]->len] = '\0';
            const redisReply *list = reply->element[1];
            const char *keys[SWEEP_BATCH];
            size_t keylen[SWEEP_BATCH];
            for (size_t i = 0; i < list->elements;) {
                size_t n = 0;
                for (; i < list->elements && n < SWEEP_BATCH; i++) {
                    const redisReply *e = list->element[i];
                    if (e->type != REDIS_REPLY_STRING)
                        continue;
                    keys[n] = e->str;
                    keylen[n] = e->len;
                    n++;
                }
                if (n == 0)
                    break;
                found += n;
                redisReply *swept;
                if (db_script(d, LUA_SCRIPT_NS_SWEEP, n, keys, keylen, 1, prefix_v, prefix_len,
                              &swept, &error) != 0) {
                    freeReplyObject(reply);
                    return admin_db_fail(d, "cannot delete namespace keys", error);
                }
                if (swept->type == REDIS_REPLY_INTEGER && swept->integer > 0)
                    *deleted_r += (size_t)swept->integer;
                freeReplyObject(swept);
            }
            freeReplyObject(reply);
        } while (strcmp(cursor, "0") != 0);
        if (found == 0)
            return ADMIN_EX_OK;
    }
    admin_error("namespace %s is still being written to after %d passes; run delete-user again",
                nsid, SWEEP_MAX_PASSES);
    return ADMIN_EX_TEMPFAIL;
}

static int parse_kdf_cost(const char *s, uint32_t *cost_r)
{
    char *end;
    if (s[0] < '0' || s[0] > '9')
        return -1;
    unsigned long long v = strtoull(s, &end, 10);
    if (*end != '\0' || v < PASSWORD_MIN_ITERATIONS || v > PASSWORD_MAX_ITERATIONS)
        return -1;
    *cost_r = (uint32_t)v;
    return 0;
}

static int usage(const char *msg)
{
    admin_error("%s (see cimap-admin --help)", msg);
    return ADMIN_EX_USAGE;
}

/*
 * Parses the options shared by the user commands. Only those allowed by the caller's flags are
 * accepted. Leaves the single LOGIN operand in *login_r (NULL for none when none is wanted).
 */
struct user_opts {
    const char *password_hash;
    bool json;
    bool password_stdin;
    bool keep_password;
    bool show_hash;
    uint32_t kdf_cost;
    struct params params;
    const char *login;
};

enum {
    OPT_PASSWORD_STDIN = 1 << 0,
    OPT_KEEP_PASSWORD = 1 << 1,
    OPT_SHOW_HASH = 1 << 2,
    OPT_KDF_COST = 1 << 3,
    OPT_PARAM = 1 << 4,
    OPT_PASSWORD_HASH = 1 << 5,
    OPT_JSON = 1 << 6,
};

static int parse_user_opts(int argc, char **argv, unsigned allowed, bool want_login,
                           struct user_opts *o)
{
    static const struct option options[] = {
        {"password-stdin", no_argument, NULL, 's'},
        {"keep-password", no_argument, NULL, 'k'},
        {"show-hash", no_argument, NULL, 'H'},
        {"kdf-cost", required_argument, NULL, 'c'},
        {"param", required_argument, NULL, 'p'},
        {"password-hash", required_argument, NULL, 'P'},
        {"json", no_argument, NULL, 'j'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->kdf_cost = PASSWORD_DEFAULT_ITERATIONS;
    opterr = 0;
    int c;
    int idx = -1;
    while ((c = getopt_long(argc, argv, ":", options, &idx)) != -1) {
        unsigned need = 0;
        switch (c) {
        case 's':
            need = OPT_PASSWORD_STDIN;
            o->password_stdin = true;
            break;
        case 'k':
            need = OPT_KEEP_PASSWORD;
            o->keep_password = true;
            break;
        case 'H':
            need = OPT_SHOW_HASH;
            o->show_hash = true;
            break;
        case 'c':
            need = OPT_KDF_COST;
            if (parse_kdf_cost(optarg, &o->kdf_cost) != 0) {
                admin_error("invalid --kdf-cost (%u..%u)", PASSWORD_MIN_ITERATIONS,
                            PASSWORD_MAX_ITERATIONS);
                return -1;
            }
            break;
        case 'p':
            need = OPT_PARAM;
            if (params_add(&o->params, optarg) != 0)
                return -1;
            break;
        case 'P':
            need = OPT_PASSWORD_HASH;
            o->password_hash = optarg;
            break;
        case 'j':
            need = OPT_JSON;
            o->json = true;
            break;
        case ':':
            admin_error("option %s needs a value (see cimap-admin --help)", argv[optind - 1]);
            return -1;
        default:
            admin_error("unknown option %s for %s (see cimap-admin --help)", argv[optind - 1],
                        argv[0]);
            return -1;
        }
        if ((allowed & need) == 0) {
            admin_error("option --%s does not apply to %s (see cimap-admin --help)",
                        options[idx].name, argv[0]);
            return -1;
        }
        idx = -1;
    }
    int operands = argc - optind;
    if (want_login) {
        if (operands != 1) {
            usage(operands == 0 ? "missing LOGIN" : "too many arguments");
            return -1;
        }
        o->login = argv[optind];
    } else if (operands != 0) {
        usage("too many arguments");
        return -1;
    }
    int sources = (o->password_stdin ? 1 : 0) + (o->keep_password ? 1 : 0) +
                  (o->password_hash != NULL ? 1 : 0);
    if (sources > 1) {
        usage("--password-stdin, --password-hash and --keep-password exclude each other");
        return -1;
    }
    return 0;
}

/*
 * INBOX, Sent, Drafts, Trash, Junk and Archive with their SPECIAL-USE attributes (defaults.h);
 * one that exists already (a rerun) is left alone. Exit code.
 */
static int create_default_mailboxes(struct db *d, const char *nsid)
{
    struct key meta, boxes;
    keys_ns_meta(&meta, nsid);
    keys_ns_mailboxes(&boxes, nsid);
    for (size_t i = 0; i < DEFAULT_MAILBOX_COUNT; i++) {
        char mbxid[KEYS_MBXID_LEN + 1];
        keys_mbxid_new(mbxid);
        struct key mbx;
        keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
        const char *keys[] = {meta.s, boxes.s, mbx.s};
        const size_t keylen[] = {meta.len, boxes.len, mbx.len};
        const struct default_mailbox *m = &default_mailboxes[i];
        const char *args[] = {"0", m->name, mbxid, m->specialuse};
        const size_t arglen[] = {1, strlen(m->name), KEYS_MBXID_LEN, strlen(m->specialuse)};
        redisReply *reply = NULL;
        const char *error = NULL;
        if (db_script(d, LUA_SCRIPT_MBX_CREATE, 3, keys, keylen, 4, args, arglen, &reply, &error) != 0) {
            if (db_error_is(d, "ALREADYEXISTS"))
                continue;
            return admin_db_fail(d, "cannot create the default mailboxes", error);
        }
        freeReplyObject(reply);
    }
    return ADMIN_EX_OK;
}

/* Creates a new user; *raced_r when another admin created the record first. Exit code. */
static int user_create(struct db *d, const struct key *k, const char *login, const char *hash,
                       const struct params *params, bool *raced_r)
{
    *raced_r = false;
    char nsid[KEYS_NSID_LEN + 1];
    keys_nsid_new(nsid);
    struct key meta;
    keys_ns_meta(&meta, nsid);
    struct script_args a = {.n = 0};
    args_push(&a, login, strlen(login));
    redisReply *reply;
    const char *error;
    if (run_script(d, LUA_SCRIPT_NS_CREATE, &meta, &a, &reply, &error) != 0)
        return admin_db_fail(d, "cannot create the namespace", error);
    freeReplyObject(reply);

    a.n = 0;
    args_push(&a, nsid, KEYS_NSID_LEN);
    args_push(&a, hash, strlen(hash));
    for (size_t i = 0; i < params->n; i++) {
        if (params->v[i].value_len == 0)
            continue; /* removing a parameter of a new user: nothing to do */
        args_push(&a, params->v[i].name, params->v[i].name_len);
        args_push(&a, params->v[i].value, params->v[i].value_len);
    }
    if (run_script(d, LUA_SCRIPT_USER_CREATE, k, &a, &reply, &error) != 0) {
        if (!db_error_is(d, "EXISTS"))
            return admin_db_fail(d, "cannot create the user", error);
        /* Lost a race: the fresh namespace is nobody's; sweep it and let the caller update. */
        *raced_r = true;
        size_t deleted;
        return sweep_namespace(d, nsid, &deleted);
    }
    freeReplyObject(reply);
    int rc = create_default_mailboxes(d, nsid);
    if (rc != ADMIN_EX_OK)
        return rc;
    printf("created user %s (namespace %s)\n", login, nsid);
    return ADMIN_EX_OK;
}

/* Updates an existing active user; *gone_r when the record vanished meanwhile. Exit code. */
static int user_update(struct db *d, const struct key *k, const char *login, const char *hash,
                       const struct params *params, bool *gone_r)
{
    *gone_r = false;
    struct script_args a = {.n = 0};
    args_push(&a, hash != NULL ? hash : "", hash != NULL ? strlen(hash) : 0);
    for (size_t i = 0; i < params->n; i++) {
        args_push(&a, params->v[i].name, params->v[i].name_len);
        args_push(&a, params->v[i].value, params->v[i].value_len);
    }
    redisReply *reply;
    const char *error;
    if (run_script(d, LUA_SCRIPT_USER_UPDATE, k, &a, &reply, &error) != 0) {
        if (db_error_is(d, "NOUSER")) {
            *gone_r = true;
            return ADMIN_EX_OK;
        }
        if (db_error_is(d, "DELETING")) {
            admin_error("user %s is being deleted; run delete-user %s to finish first", login,
                        login);
            return ADMIN_EX_CANTCREAT;
        }
        return admin_db_fail(d, "cannot update the user", error);
    }
    freeReplyObject(reply);
    printf("updated user %s\n", login);
    return ADMIN_EX_OK;
}

/*
 * Creates or updates login with hash (NULL: keep the password; the user must exist). Exit code;
 * *created_r tells which happened.
 */
static int store_user(struct db *d, const struct key *k, const char *login, const char *hash,
                      const struct params *params, bool *created_r)
{
    *created_r = false;
    for (int attempt = 0; attempt < SET_USER_ATTEMPTS; attempt++) {
        struct record r;
        int rc = record_read(d, k, login, &r);
        bool exists = r.exists, active = r.active;
        record_clear(&r);
        if (rc != ADMIN_EX_OK)
            return rc;
        bool retry;
        if (exists && !active) {
            admin_error("user %s is being deleted; run delete-user %s to finish first", login,
                        login);
            return ADMIN_EX_CANTCREAT;
        } else if (exists) {
            rc = user_update(d, k, login, hash, params, &retry);
        } else if (hash == NULL) {
            admin_error("no such user: %s (--keep-password needs an existing user)", login);
            return ADMIN_EX_NOUSER;
        } else {
            rc = user_create(d, k, login, hash, params, &retry);
            *created_r = rc == ADMIN_EX_OK && !retry;
        }
        if (rc != ADMIN_EX_OK || !retry)
            return rc;
    }
    admin_error("the record of %s keeps changing under us; try again", login);
    return ADMIN_EX_TEMPFAIL;
}

/*
 * The hash to store for a hash given by an operator or a passwd-file: Dovecot's {PLAIN} and
 * {CLEARTEXT} are hashed here (a plain password is never stored), a bare "$id$..." is Dovecot's
 * default scheme {CRYPT}, anything else must be a hash password_verify() knows. NULL with
 * *error_r when it is none of these; else malloc'd.
 */
static char *import_hash(const char *given, uint32_t kdf_cost, const char **error_r)
{
    static const char *const plain[] = {"{PLAIN}", "{CLEARTEXT}"};
    for (size_t i = 0; i < sizeof(plain) / sizeof(plain[0]); i++) {
        size_t n = strlen(plain[i]);
        if (strncmp(given, plain[i], n) == 0) {
            char *hash;
            if (given[n] == '\0') {
                *error_r = "empty password";
                return NULL;
            }
            if (password_hash(given + n, strlen(given + n), kdf_cost, &hash, error_r) != 0)
                return NULL;
            return hash;
        }
    }
    char *hash = given[0] == '$' && strncmp(given, "$pbkdf2-sha256$", 15) != 0
                     ? malloc(strlen(given) + 8)
                     : strdup(given);
    if (hash == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    if (given[0] == '$' && strncmp(given, "$pbkdf2-sha256$", 15) != 0) {
        memcpy(hash, "{CRYPT}", 7);
        memcpy(hash + 7, given, strlen(given) + 1);
    }
    if (password_check_encoded(hash, error_r) != 0) {
        free(hash);
        return NULL;
    }
    return hash;
}

int cmd_set_user(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    if (parse_user_opts(argc, argv,
                        OPT_PASSWORD_STDIN | OPT_KEEP_PASSWORD | OPT_KDF_COST | OPT_PARAM |
                            OPT_PASSWORD_HASH,
                        true, &o) != 0)
        return ADMIN_EX_USAGE;
    struct key k;
    if (login_key(o.login, &k) != 0)
        return ADMIN_EX_USAGE;

    char *hash = NULL;
    const char *error;
    if (o.password_hash != NULL) {
        hash = import_hash(o.password_hash, o.kdf_cost, &error);
        if (hash == NULL) {
            admin_error("invalid --password-hash: %s", error);
            return ADMIN_EX_USAGE;
        }
    } else if (!o.keep_password) {
        char *pw;
        size_t len;
        if (secret_read(o.password_stdin, true, &pw, &len, &error) != 0)
            return usage(error);
        int rc = password_hash(pw, len, o.kdf_cost, &hash, &error);
        secret_free(pw);
        if (rc != 0) {
            admin_error("cannot hash the password: %s", error);
            return ADMIN_EX_SOFTWARE;
        }
    }

    struct db *d;
    int rc = ADMIN_EX_TEMPFAIL;
    bool created;
    if (admin_db(adm, &d) == 0)
        rc = store_user(d, &k, o.login, hash, &o.params, &created);
    free(hash);
    return rc;
}

/*
 * import-users PASSWD_FILE: Dovecot passwd-file lines "user:{SCHEME}hash:uid:gid:gecos:home:
 * shell:extra" (only the first two fields matter); '#' comments and blank lines are skipped.
 * Each user is created or has its password replaced, keeping its mail.
 */
int cmd_import_users(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    opterr = 0;
    if (parse_user_opts(argc, argv, OPT_KDF_COST, true, &o) != 0)
        return ADMIN_EX_USAGE;
    FILE *f = strcmp(o.login, "-") == 0 ? stdin : fopen(o.login, "r");
    if (f == NULL) {
        admin_error("cannot open %s", o.login);
        return ADMIN_EX_NOINPUT;
    }
    struct db *d;
    if (admin_db(adm, &d) != 0) {
        if (f != stdin)
            fclose(f);
        return ADMIN_EX_TEMPFAIL;
    }
    struct params none = {.n = 0};
    char *line = NULL;
    size_t cap = 0, lineno = 0, created = 0, updated = 0, skipped = 0;
    ssize_t len;
    int rc = ADMIN_EX_OK;
    while (rc == ADMIN_EX_OK && (len = getline(&line, &cap, f)) >= 0) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0 || line[0] == '#')
            continue;
        char *colon = strchr(line, ':');
        if (colon == NULL) {
            admin_error("skipped line %zu: no ':'", lineno);
            skipped++;
            continue;
        }
        *colon = '\0';
        char *pw = colon + 1;
        char *end = strchr(pw, ':');
        if (end != NULL)
            *end = '\0';
        struct key k;
        if (keys_user(&k, line, strlen(line)) != 0) {
            admin_error("skipped line %zu: invalid login name", lineno);
            skipped++;
            continue;
        }
        const char *error;
        char *hash = pw[0] != '\0' ? import_hash(pw, o.kdf_cost, &error) : NULL;
        if (hash == NULL) {
            admin_error("skipped %s (line %zu): %s", line, lineno,
                        pw[0] == '\0' ? "no password" : error);
            skipped++;
            continue;
        }
        bool was_created;
        rc = store_user(d, &k, line, hash, &none, &was_created);
        free(hash);
        if (rc == ADMIN_EX_CANTCREAT) {
            skipped++;
            rc = ADMIN_EX_OK;
        } else if (rc == ADMIN_EX_OK) {
            created += was_created;
            updated += !was_created;
        }
    }
    free(line);
    if (f != stdin)
        fclose(f);
    printf("imported users: %zu created, %zu updated, %zu skipped\n", created, updated, skipped);
    if (rc == ADMIN_EX_OK && skipped > 0)
        rc = ADMIN_EX_DATAERR;
    return rc;
}

/* Replaces control characters so one field prints as one line. */
static void print_field(const char *name, size_t name_len, const char *value, size_t value_len)
{
    fwrite(name, 1, name_len, stdout);
    putchar('=');
    for (size_t i = 0; i < value_len; i++) {
        unsigned char c = (unsigned char)value[i];
        putchar(c < 0x20 || c == 0x7f ? '?' : c);
    }
    putchar('\n');
}

static int compare_params(const void *a, const void *b)
{
    const redisReply *ra = *(const redisReply *const *)a, *rb = *(const redisReply *const *)b;
    size_t n = ra->len < rb->len ? ra->len : rb->len;
    int c = memcmp(ra->str, rb->str, n);
    return c != 0 ? c : (ra->len > rb->len) - (ra->len < rb->len);
}

int cmd_get_user(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    if (parse_user_opts(argc, argv, OPT_SHOW_HASH | OPT_JSON, true, &o) != 0)
        return ADMIN_EX_USAGE;
    struct key k;
    if (login_key(o.login, &k) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;

    const char *argv_r[] = {"HGETALL", k.s};
    const size_t argvlen[] = {7, k.len};
    redisReply *reply;
    const char *error;
    if (db_command(d, 2, argv_r, argvlen, &reply, &error) != 0)
        return admin_db_fail(d, "cannot read the user record", error);
    int rc = ADMIN_EX_OK;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        admin_error("unexpected reply reading the record of %s", o.login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    if (reply->elements == 0) {
        admin_error("no such user: %s", o.login);
        rc = ADMIN_EX_NOUSER;
        goto out;
    }
    for (size_t i = 0; i < reply->elements; i++) {
        if (reply->element[i]->type != REDIS_REPLY_STRING) {
            admin_error("unexpected reply reading the record of %s", o.login);
            rc = ADMIN_EX_SOFTWARE;
            goto out;
        }
    }

    if (o.json) {
        struct json j;
        json_init(&j, stdout);
        json_object(&j, NULL);
        json_string(&j, "login", o.login);
        json_object(&j, "params");
        for (size_t i = 0; i < reply->elements; i += 2) {
            const redisReply *name = reply->element[i], *value = reply->element[i + 1];
            if (name->len > 6 && memcmp(name->str, "param:", 6) == 0) {
                char key[PARAM_NAME_MAX + 1];
                snprintf(key, sizeof(key), "%.*s", (int)(name->len - 6), name->str + 6);
                json_stringn(&j, key, value->str, value->len);
            }
        }
        json_end_object(&j);
        for (size_t i = 0; i < reply->elements; i += 2) {
            const redisReply *name = reply->element[i], *value = reply->element[i + 1];
            char key[64];
            snprintf(key, sizeof(key), "%.*s", (int)(name->len < 63 ? name->len : 63), name->str);
            if (strcmp(key, "created") == 0) {
                json_int(&j, key, strtoll(value->str, NULL, 10));
            } else if (strcmp(key, "nsid") == 0 || strcmp(key, "state") == 0 ||
                       (o.show_hash && strcmp(key, "password") == 0)) {
                json_stringn(&j, key, value->str, value->len);
            }
        }
        json_end_object(&j);
        goto out;
    }
    print_field("login", 5, o.login, strlen(o.login));
    static const char *const fixed[] = {"nsid", "state", "created"};
    for (size_t f = 0; f < sizeof(fixed) / sizeof(fixed[0]); f++) {
        for (size_t i = 0; i < reply->elements; i += 2) {
            const redisReply *name = reply->element[i], *value = reply->element[i + 1];
            if (name->len == strlen(fixed[f]) && memcmp(name->str, fixed[f], name->len) == 0)
                print_field(name->str, name->len, value->str, value->len);
        }
    }
    /* Parameters sorted by name: HGETALL order is arbitrary. */
    const redisReply *params[PARAMS_MAX * 2] = {NULL};
    size_t nparams = 0;
    for (size_t i = 0; i < reply->elements && nparams < sizeof(params) / sizeof(params[0]); i += 2) {
        const redisReply *name = reply->element[i];
        if (name->len > 6 && memcmp(name->str, "param:", 6) == 0)
            params[nparams++] = name;
    }
    qsort(params, nparams, sizeof(params[0]), compare_params);
    for (size_t p = 0; p < nparams; p++) {
        for (size_t i = 0; i < reply->elements; i += 2) {
            if (reply->element[i] == params[p]) {
                const redisReply *value = reply->element[i + 1];
                print_field(params[p]->str, params[p]->len, value->str, value->len);
            }
        }
    }
    if (o.show_hash) {
        for (size_t i = 0; i < reply->elements; i += 2) {
            const redisReply *name = reply->element[i], *value = reply->element[i + 1];
            if (name->len == 8 && memcmp(name->str, "password", 8) == 0)
                print_field(name->str, name->len, value->str, value->len);
        }
    }
out:
    freeReplyObject(reply);
    return rc;
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int cmd_list_users(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    if (parse_user_opts(argc, argv, OPT_JSON, false, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;

    struct key pattern;
    keys_users_pattern(&pattern);
    size_t prefix = keys_users_prefix_len();
    char **logins = NULL;
    size_t n = 0, cap = 0;
    int rc = ADMIN_EX_OK;
    char cursor[32] = "0";
    do {
        const char *av[] = {"SCAN", cursor, "MATCH", pattern.s, "COUNT", "1000"};
        const size_t avlen[] = {4, strlen(cursor), 5, pattern.len, 5, 4};
        redisReply *reply;
        const char *error;
        if (db_command(d, 6, av, avlen, &reply, &error) != 0) {
            rc = admin_db_fail(d, "cannot list users", error);
            goto out;
        }
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
            reply->element[0]->type != REDIS_REPLY_STRING ||
            reply->element[0]->len >= sizeof(cursor) ||
            reply->element[1]->type != REDIS_REPLY_ARRAY) {
            freeReplyObject(reply);
            admin_error("unexpected SCAN reply");
            rc = ADMIN_EX_SOFTWARE;
            goto out;
        }
        memcpy(cursor, reply->element[0]->str, reply->element[0]->len);
        cursor[reply->element[0]->len] = '\0';
        const redisReply *list = reply->element[1];
        for (size_t i = 0; i < list->elements; i++) {
            const redisReply *e = list->element[i];
            /* Skip anything under /users/ that is not a login record key (hand-made keys). */
            if (e->type != REDIS_REPLY_STRING || e->len <= prefix ||
                !keys_login_valid(e->str + prefix, e->len - prefix))
                continue;
            if (n == cap) {
                size_t ncap = cap == 0 ? 64 : cap * 2;
                char **nl = realloc(logins, ncap * sizeof(*nl));
                if (nl == NULL) {
                    freeReplyObject(reply);
                    admin_error("out of memory");
                    rc = ADMIN_EX_SOFTWARE;
                    goto out;
                }
                logins = nl;
                cap = ncap;
            }
            logins[n] = strndup(e->str + prefix, e->len - prefix);
            if (logins[n] == NULL) {
                freeReplyObject(reply);
                admin_error("out of memory");
                rc = ADMIN_EX_SOFTWARE;
                goto out;
            }
            n++;
        }
        freeReplyObject(reply);
    } while (strcmp(cursor, "0") != 0);

    /* SCAN may return a key twice (rehashing): sort, then print each login once. */
    if (n > 0)
        qsort(logins, n, sizeof(*logins), compare_strings);
    struct json j;
    json_init(&j, stdout);
    if (o.json)
        json_array(&j, NULL);
    for (size_t i = 0; i < n; i++) {
        if (i > 0 && strcmp(logins[i], logins[i - 1]) == 0)
            continue;
        if (o.json)
            json_string(&j, NULL, logins[i]);
        else
            puts(logins[i]);
    }
    if (o.json)
        json_end_array(&j);
out:
    for (size_t i = 0; i < n; i++)
        free(logins[i]);
    free(logins);
    return rc;
}

int cmd_check_user(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    if (parse_user_opts(argc, argv, OPT_PASSWORD_STDIN, true, &o) != 0)
        return ADMIN_EX_USAGE;
    struct key k;
    if (login_key(o.login, &k) != 0)
        return ADMIN_EX_USAGE;
    char *pw;
    size_t len;
    const char *error;
    if (secret_read(o.password_stdin, false, &pw, &len, &error) != 0)
        return usage(error);

    struct db *d;
    struct record r = {0};
    int rc = ADMIN_EX_TEMPFAIL;
    if (admin_db(adm, &d) != 0)
        goto out;
    rc = record_read(d, &k, o.login, &r);
    if (rc != ADMIN_EX_OK)
        goto out;
    if (!r.exists || !r.active) {
        admin_error(r.exists ? "user %s is being deleted" : "no such user: %s", o.login);
        rc = ADMIN_EX_NOUSER;
        goto out;
    }
    if (r.password == NULL) {
        admin_error("the record of %s has no password", o.login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    bool match;
    if (password_verify(pw, len, r.password, &match, &error) != 0) {
        admin_error("the stored password of %s is unusable: %s", o.login, error);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    if (match) {
        printf("password matches for %s\n", o.login);
        rc = ADMIN_EX_OK;
    } else {
        admin_error("password does not match for %s", o.login);
        rc = ADMIN_EX_MISMATCH;
    }
out:
    record_clear(&r);
    secret_free(pw);
    return rc;
}

int cmd_delete_user(struct admin *adm, int argc, char **argv)
{
    struct user_opts o;
    if (parse_user_opts(argc, argv, 0, true, &o) != 0)
        return ADMIN_EX_USAGE;
    struct key k;
    if (login_key(o.login, &k) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;

    /* Step 1: tombstone (LOGIN refuses from now on). Idempotent, so a rerun lands here too. */
    redisReply *reply;
    const char *error;
    if (run_script(d, LUA_SCRIPT_USER_TOMBSTONE, &k, NULL, &reply, &error) != 0) {
        if (db_error_is(d, "NOUSER")) {
            admin_error("no such user: %s", o.login);
            return ADMIN_EX_NOUSER;
        }
        return admin_db_fail(d, "cannot mark the user deleted", error);
    }
    char nsid[KEYS_NSID_LEN + 1];
    bool ok = reply->type == REDIS_REPLY_STRING && keys_nsid_valid(reply->str, reply->len);
    if (ok) {
        memcpy(nsid, reply->str, KEYS_NSID_LEN);
        nsid[KEYS_NSID_LEN] = '\0';
    }
    freeReplyObject(reply);
    if (!ok) {
        admin_error("unexpected reply from user_tombstone");
        return ADMIN_EX_SOFTWARE;
    }

    /* Step 2: the namespace, in bounded batches. */
    size_t deleted;
    int rc = sweep_namespace(d, nsid, &deleted);
    if (rc != ADMIN_EX_OK)
        return rc;

    /* Step 3: the record, only if it is still our tombstone. */
    struct script_args a = {.n = 0};
    args_push(&a, nsid, KEYS_NSID_LEN);
    if (run_script(d, LUA_SCRIPT_USER_REMOVE, &k, &a, &reply, &error) != 0)
        return admin_db_fail(d, "cannot remove the user record", error);
    freeReplyObject(reply);
    printf("deleted user %s (namespace %s, %zu keys)\n", o.login, nsid, deleted);
    return ADMIN_EX_OK;
}
