/*
 * cmd_ops: cimap-admin's operations and inspection commands — health, keys, stats, fsck, gc.
 *
 * health: is Redis reachable and configured as a database (DESIGN.md rule 9: noeviction, a
 * persistence policy), its version and memory, the schema version, which lua/ scripts are loaded
 * (SCRIPT EXISTS; cimapd and cimap-admin load them on connect anyway), and the live front ends:
 * their count from PUBSUB NUMSUB on the keepalive channel and, where they heartbeat, their
 * details from /frontends (lease) and /frontends/<id>. Exit 0 healthy, 1 when Redis is
 * misconfigured, 75 when it is unreachable.
 *
 * keys / stats: read-only views of one user for an operator (names to paste into redis-cli;
 * per-mailbox counters).
 *
 * fsck: every check runs inside lua/fsck_repair.lua (one mailbox per call, then the user's content
 * references and totals), so a concurrent write can neither confuse the check nor be undone by a
 * repair. --repair runs the same checks with the fix applied. Exit 0 clean (or repaired), 1 when
 * problems were found and not repaired.
 *
 * gc: the sweeper: content past its grace period in each namespace's gc set (gc_sweep.lua, 1,000
 * per call) and mailboxes a killed front end left half-purged in the trash set (mbx_purge.lua,
 * 1,000 messages per call). One user, or every namespace found by SCAN.
 */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "admin/admin.h"
#include "admin/db.h"
#include "admin/json.h"
#include "admin/lookup.h"
#include "keys/keys.h"
#include "lua/scripts.h"

#define GC_DEFAULT_GRACE 3600 /* seconds content stays unreferenced before gc reclaims it */
#define BATCH 1000

struct ops_opts {
    bool json;
    bool repair;
    int64_t grace;
    const char *operands[3];
    int noperands;
};

static int parse_ops(int argc, char **argv, bool allow_json, bool allow_repair, bool allow_grace,
                     int min_operands, int max_operands, struct ops_opts *o)
{
    static const struct option options[] = {
        {"json", no_argument, NULL, 'j'},
        {"repair", no_argument, NULL, 'r'},
        {"grace", required_argument, NULL, 'g'},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->grace = GC_DEFAULT_GRACE;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, ":", options, NULL)) != -1) {
        bool ok;
        switch (c) {
        case 'j':
            ok = allow_json;
            o->json = true;
            break;
        case 'r':
            ok = allow_repair;
            o->repair = true;
            break;
        case 'g': {
            char *end;
            long long v = strtoll(optarg, &end, 10);
            ok = allow_grace;
            if (optarg[0] < '0' || optarg[0] > '9' || *end != '\0' || v > 365LL * 86400) {
                admin_error("invalid --grace (0..31536000 seconds): %s", optarg);
                return -1;
            }
            o->grace = v;
            break;
        }
        case ':':
            admin_error("option %s needs a value (see cimap-admin --help)", argv[optind - 1]);
            return -1;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            admin_error("unknown option %s for %s (see cimap-admin --help)", argv[optind - 1],
                        argv[0]);
            return -1;
        }
    }
    o->noperands = argc - optind;
    if (o->noperands < min_operands || o->noperands > max_operands) {
        admin_error("wrong number of arguments for %s (see cimap-admin --help)", argv[0]);
        return -1;
    }
    for (int i = 0; i < o->noperands; i++)
        o->operands[i] = argv[optind + i];
    return 0;
}

/* Runs a command given as NUL-terminated words. */
static int run(struct db *d, redisReply **reply_r, const char **error_r, size_t argc,
               const char *const *argv)
{
    size_t len[16];
    for (size_t i = 0; i < argc && i < 16; i++)
        len[i] = strlen(argv[i]);
    return db_command(d, argc, argv, len, reply_r, error_r);
}

/* The value of "name:" in an INFO reply section, copied into out; false when absent. */
static bool info_field(const redisReply *info, const char *name, char *out, size_t cap)
{
    if (info == NULL || (info->type != REDIS_REPLY_STRING && info->type != REDIS_REPLY_STATUS))
        return false;
    size_t n = strlen(name);
    const char *p = info->str, *end = info->str + info->len;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (eol == NULL)
            eol = end;
        if ((size_t)(eol - p) > n && memcmp(p, name, n) == 0 && p[n] == ':') {
            size_t vlen = (size_t)(eol - p) - n - 1;
            while (vlen > 0 && (p[n + 1 + vlen - 1] == '\r'))
                vlen--;
            if (vlen >= cap)
                vlen = cap - 1;
            memcpy(out, p + n + 1, vlen);
            out[vlen] = '\0';
            return true;
        }
        p = eol + 1;
    }
    return false;
}

/* SCAN MATCH pattern; calls fn for each key (may repeat: callers dedupe). Exit code. */
typedef int scan_fn(void *ctx, const char *key, size_t len);

static int scan_keys(struct db *d, const char *pattern, scan_fn *fn, void *ctx)
{
    char cursor[32] = "0";
    do {
        const char *av[] = {"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        redisReply *reply;
        const char *error;
        if (run(d, &reply, &error, 6, av) != 0)
            return admin_db_fail(d, "cannot scan", error);
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
        int rc = ADMIN_EX_OK;
        for (size_t i = 0; i < list->elements && rc == ADMIN_EX_OK; i++) {
            if (list->element[i]->type == REDIS_REPLY_STRING)
                rc = fn(ctx, list->element[i]->str, list->element[i]->len);
        }
        freeReplyObject(reply);
        if (rc != ADMIN_EX_OK)
            return rc;
    } while (strcmp(cursor, "0") != 0);
    return ADMIN_EX_OK;
}

/* A growable, deduplicated (after sort) list of strings. */
struct names {
    char **v;
    size_t n, cap;
};

static int names_add(void *ctx, const char *s, size_t len)
{
    struct names *l = ctx;
    if (l->n == l->cap) {
        l->cap = l->cap == 0 ? 64 : l->cap * 2;
        l->v = realloc(l->v, l->cap * sizeof(*l->v));
        if (l->v == NULL)
            abort();
    }
    l->v[l->n] = strndup(s, len);
    if (l->v[l->n] == NULL)
        abort();
    l->n++;
    return ADMIN_EX_OK;
}

static int compare_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_sort_unique(struct names *l)
{
    if (l->n == 0)
        return;
    qsort(l->v, l->n, sizeof(*l->v), compare_str);
    size_t k = 1;
    for (size_t i = 1; i < l->n; i++) {
        if (strcmp(l->v[i], l->v[k - 1]) == 0)
            free(l->v[i]);
        else
            l->v[k++] = l->v[i];
    }
    l->n = k;
}

static void names_free(struct names *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof(*l));
}

/* ---- health ---- */

int cmd_health(struct admin *adm, int argc, char **argv)
{
    struct ops_opts o;
    if (parse_ops(argc, argv, true, false, false, 0, 0, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0) {
        if (o.json) {
            struct json j;
            json_init(&j, stdout);
            json_object(&j, NULL);
            json_bool(&j, "reachable", false);
            json_end_object(&j);
        }
        return ADMIN_EX_TEMPFAIL;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    redisReply *ping, *info = NULL;
    const char *error;
    const char *pav[] = {"PING"};
    if (run(d, &ping, &error, 1, pav) != 0)
        return admin_db_fail(d, "Redis does not answer PING", error);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    freeReplyObject(ping);
    double ping_ms =
        (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    const char *iav[] = {"INFO", "everything"};
    if (run(d, &info, &error, 2, iav) != 0)
        return admin_db_fail(d, "INFO failed", error);
    char version[64] = "?", used[32] = "0", used_h[32] = "?", maxmem[32] = "0", policy[64] = "?",
         aof[8] = "0", rdb_saves[64] = "", role[32] = "?", clients[32] = "0", uptime[32] = "0",
         aof_status[32] = "", rdb_status[32] = "";
    info_field(info, "redis_version", version, sizeof(version));
    info_field(info, "used_memory", used, sizeof(used));
    info_field(info, "used_memory_human", used_h, sizeof(used_h));
    info_field(info, "maxmemory", maxmem, sizeof(maxmem));
    info_field(info, "maxmemory_policy", policy, sizeof(policy));
    info_field(info, "aof_enabled", aof, sizeof(aof));
    info_field(info, "aof_last_write_status", aof_status, sizeof(aof_status));
    info_field(info, "rdb_last_bgsave_status", rdb_status, sizeof(rdb_status));
    info_field(info, "role", role, sizeof(role));
    info_field(info, "connected_clients", clients, sizeof(clients));
    info_field(info, "uptime_in_seconds", uptime, sizeof(uptime));
    freeReplyObject(info);
    /* RDB snapshots are configured when CONFIG GET save is non-empty. */
    redisReply *cfg;
    const char *cav[] = {"CONFIG", "GET", "save"};
    if (run(d, &cfg, &error, 3, cav) == 0) {
        if (cfg->type == REDIS_REPLY_ARRAY && cfg->elements == 2 &&
            cfg->element[1]->type == REDIS_REPLY_STRING)
            snprintf(rdb_saves, sizeof(rdb_saves), "%.*s", (int)cfg->element[1]->len,
                     cfg->element[1]->str);
        freeReplyObject(cfg);
    }
    bool persistent = strcmp(aof, "1") == 0 || rdb_saves[0] != '\0';

    /* Schema version. */
    struct key schema;
    keys_schema(&schema);
    redisReply *sr;
    const char *gav[] = {"GET", schema.s};
    int64_t schema_v = -1;
    if (run(d, &sr, &error, 2, gav) != 0)
        return admin_db_fail(d, "cannot read the schema", error);
    if (!lookup_reply_int(sr, &schema_v))
        schema_v = -1;
    freeReplyObject(sr);

    /* Scripts loaded. */
    const char **sav = malloc((2 + LUA_SCRIPT_COUNT) * sizeof(*sav));
    size_t *savlen = malloc((2 + LUA_SCRIPT_COUNT) * sizeof(*savlen));
    if (sav == NULL || savlen == NULL)
        abort();
    sav[0] = "SCRIPT";
    savlen[0] = 6;
    sav[1] = "EXISTS";
    savlen[1] = 6;
    for (size_t i = 0; i < LUA_SCRIPT_COUNT; i++) {
        sav[2 + i] = lua_scripts[i].sha1;
        savlen[2 + i] = 40;
    }
    redisReply *ex;
    int erc = db_command(d, 2 + LUA_SCRIPT_COUNT, sav, savlen, &ex, &error);
    free(sav);
    free(savlen);
    if (erc != 0)
        return admin_db_fail(d, "SCRIPT EXISTS failed", error);
    size_t loaded = 0;
    bool loaded_v[LUA_SCRIPT_COUNT];
    for (size_t i = 0; i < LUA_SCRIPT_COUNT; i++) {
        loaded_v[i] = ex->type == REDIS_REPLY_ARRAY && i < ex->elements &&
                      ex->element[i]->type == REDIS_REPLY_INTEGER && ex->element[i]->integer == 1;
        loaded += loaded_v[i];
    }
    freeReplyObject(ex);

    /* Front ends: subscribers of the keepalive channel, and heartbeat leases where present. */
    struct key ka, fe;
    keys_frontends_keepalive(&ka);
    keys_frontends(&fe);
    redisReply *ns;
    const char *nav[] = {"PUBSUB", "NUMSUB", ka.s};
    int64_t subscribers = 0;
    if (run(d, &ns, &error, 3, nav) != 0)
        return admin_db_fail(d, "PUBSUB NUMSUB failed", error);
    if (ns->type == REDIS_REPLY_ARRAY && ns->elements == 2)
        lookup_reply_int(ns->element[1], &subscribers);
    freeReplyObject(ns);
    char now_ms[32];
    snprintf(now_ms, sizeof(now_ms), "%lld", (long long)time(NULL) * 1000);
    redisReply *leases;
    const char *lav[] = {"ZRANGEBYSCORE", fe.s, now_ms, "+inf"};
    if (run(d, &leases, &error, 4, lav) != 0)
        return admin_db_fail(d, "cannot read the front-end leases", error);

    bool healthy = strcmp(policy, "noeviction") == 0 && schema_v <= KEYS_SCHEMA_VERSION;
    struct json j;
    json_init(&j, stdout);
    if (o.json) {
        json_object(&j, NULL);
        json_bool(&j, "reachable", true);
        json_bool(&j, "healthy", healthy);
        json_double(&j, "ping_ms", ping_ms);
        json_string(&j, "redis_version", version);
        json_string(&j, "role", role);
        json_int(&j, "uptime_seconds", strtoll(uptime, NULL, 10));
        json_int(&j, "connected_clients", strtoll(clients, NULL, 10));
        json_int(&j, "used_memory", strtoll(used, NULL, 10));
        json_int(&j, "maxmemory", strtoll(maxmem, NULL, 10));
        json_string(&j, "maxmemory_policy", policy);
        json_object(&j, "persistence");
        json_bool(&j, "aof", strcmp(aof, "1") == 0);
        json_string(&j, "rdb_save", rdb_saves);
        json_string(&j, "aof_last_write_status", aof_status);
        json_string(&j, "rdb_last_bgsave_status", rdb_status);
        json_end_object(&j);
        if (schema_v >= 0)
            json_int(&j, "schema", schema_v);
        else
            json_null(&j, "schema");
        json_int(&j, "schema_supported", KEYS_SCHEMA_VERSION);
        json_object(&j, "scripts");
        json_int(&j, "loaded", (int64_t)loaded);
        json_int(&j, "total", LUA_SCRIPT_COUNT);
        json_array(&j, "missing");
        for (size_t i = 0; i < LUA_SCRIPT_COUNT; i++) {
            if (!loaded_v[i])
                json_string(&j, NULL, lua_scripts[i].name);
        }
        json_end_array(&j);
        json_end_object(&j);
        json_int(&j, "frontends_subscribed", subscribers);
        json_array(&j, "frontends");
    } else {
        printf("redis: reachable (%.2f ms), version %s, role %s, up %s s, %s clients\n", ping_ms,
               version, role, uptime, clients);
        printf("memory: %s used, maxmemory %s, policy %s%s\n", used_h, maxmem, policy,
               strcmp(policy, "noeviction") == 0 ? "" : "  <-- PROBLEM: must be noeviction");
        printf("persistence: aof %s, rdb save \"%s\"%s\n", strcmp(aof, "1") == 0 ? "on" : "off",
               rdb_saves, persistent ? "" : "  <-- WARNING: nothing survives a restart");
        if (schema_v >= 0)
            printf("schema: %" PRId64 " (this build: %d)%s\n", schema_v, KEYS_SCHEMA_VERSION,
                   schema_v > KEYS_SCHEMA_VERSION ? "  <-- PROBLEM: newer than this build" : "");
        else
            printf("schema: not set (no cimapd has started here yet)\n");
        printf("scripts: %zu of %d loaded\n", loaded, LUA_SCRIPT_COUNT);
        printf("front ends: %" PRId64 " subscribed to the keepalive channel\n", subscribers);
    }
    for (size_t i = 0; leases->type == REDIS_REPLY_ARRAY && i < leases->elements; i++) {
        const redisReply *id = leases->element[i];
        if (id->type != REDIS_REPLY_STRING || !keys_frontend_id_valid(id->str, id->len))
            continue;
        char idbuf[128];
        snprintf(idbuf, sizeof(idbuf), "%.*s", (int)id->len, id->str);
        struct key k;
        keys_frontend(&k, idbuf);
        redisReply *h;
        const char *hav[] = {"HGETALL", k.s};
        if (run(d, &h, &error, 2, hav) != 0)
            continue;
        if (o.json) {
            json_object(&j, NULL);
            json_string(&j, "id", idbuf);
            for (size_t f = 0; h->type == REDIS_REPLY_ARRAY && f + 1 < h->elements; f += 2) {
                char name[64];
                snprintf(name, sizeof(name), "%.*s", (int)h->element[f]->len, h->element[f]->str);
                json_stringn(&j, name, h->element[f + 1]->str, h->element[f + 1]->len);
            }
            json_end_object(&j);
        } else {
            printf("  front end %s:", idbuf);
            for (size_t f = 0; h->type == REDIS_REPLY_ARRAY && f + 1 < h->elements; f += 2)
                printf(" %.*s=%.*s", (int)h->element[f]->len, h->element[f]->str,
                       (int)h->element[f + 1]->len, h->element[f + 1]->str);
            printf("\n");
        }
        freeReplyObject(h);
    }
    freeReplyObject(leases);
    if (o.json) {
        json_end_array(&j);
        json_end_object(&j);
    }
    return healthy ? ADMIN_EX_OK : ADMIN_EX_MISMATCH;
}

/* ---- keys ---- */

static void key_line(const struct key *k, const char *what)
{
    printf("%s\t%s\n", k->s, what);
}

int cmd_keys(struct admin *adm, int argc, char **argv)
{
    struct ops_opts o;
    if (parse_ops(argc, argv, false, false, false, 1, 3, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    const char *login = o.operands[0];
    char nsid[KEYS_NSID_LEN + 1];
    int rc = lookup_user(d, login, nsid);
    if (rc != ADMIN_EX_OK)
        return rc;
    struct key k;
    if (o.noperands == 1) {
        keys_user(&k, login, strlen(login));
        key_line(&k, "hash: the login record");
        keys_ns_meta(&k, nsid);
        key_line(&k, "hash: namespace record, user totals");
        keys_ns_mailboxes(&k, nsid);
        key_line(&k, "hash: mailbox name -> id");
        keys_ns_subscriptions(&k, nsid);
        key_line(&k, "set: subscribed names");
        keys_ns_threads(&k, nsid);
        key_line(&k, "hash: Message-ID -> THREADID");
        keys_ns_gc(&k, nsid);
        key_line(&k, "zset: unreferenced content -> time");
        keys_ns_trash(&k, nsid);
        key_line(&k, "set: deleted mailboxes still being purged");
        keys_ns_copies(&k, nsid);
        key_line(&k, "zset: COPY/MOVE being staged");
        keys_ns_channel(&k, nsid);
        key_line(&k, "pub/sub channel: wake-ups");
        keys_ns_pattern(&k, nsid);
        key_line(&k, "SCAN pattern: every key of the user");
        struct lookup_mailbox *list;
        size_t n;
        rc = lookup_mailboxes(d, nsid, &list, &n);
        if (rc != ADMIN_EX_OK)
            return rc;
        for (size_t i = 0; i < n; i++) {
            keys_mbx(&k, nsid, list[i].mbxid, KEYS_MBX);
            char what[1200];
            snprintf(what, sizeof(what), "hash: mailbox %s", list[i].name);
            key_line(&k, what);
        }
        lookup_mailboxes_free(list, n);
        return ADMIN_EX_OK;
    }
    char *name = lookup_mailbox_name(o.operands[1]);
    if (name == NULL)
        return ADMIN_EX_USAGE;
    char mbxid[KEYS_MBXID_LEN + 1];
    bool found;
    rc = lookup_mailbox(d, nsid, name, mbxid, &found);
    if (rc == ADMIN_EX_OK && !found) {
        admin_error("no mailbox %s", name);
        rc = ADMIN_EX_DATAERR;
    }
    free(name);
    if (rc != ADMIN_EX_OK)
        return rc;
    if (o.noperands == 2) {
        static const char *const what[KEYS_MBX_PART_COUNT] = {
            "hash: UIDVALIDITY, UIDNEXT, HIGHESTMODSEQ, counters",
            "zset: UIDs (ZRANK + 1 = sequence number)",
            "zset: runs of consecutive UIDs",
            "hash: UID -> sha256 internaldate size emailid threadid",
            "hash: UID -> flags",
            "zset: UID -> modseq",
            "zset: UIDs without \\Seen",
            "zset: UIDs with \\Deleted",
            "stream: change log",
        };
        for (int p = 0; p < KEYS_MBX_PART_COUNT; p++) {
            keys_mbx(&k, nsid, mbxid, (enum keys_mbx_part)p);
            key_line(&k, what[p]);
        }
        return ADMIN_EX_OK;
    }
    char *end;
    unsigned long long uid = strtoull(o.operands[2], &end, 10);
    if (o.operands[2][0] < '1' || o.operands[2][0] > '9' || *end != '\0' || uid > UINT32_MAX) {
        admin_error("invalid UID: %s", o.operands[2]);
        return ADMIN_EX_USAGE;
    }
    keys_mbx(&k, nsid, mbxid, KEYS_MBX_MSG);
    char uidbuf[16];
    snprintf(uidbuf, sizeof(uidbuf), "%llu", uid);
    redisReply *rec;
    const char *error;
    const char *hav[] = {"HGET", k.s, uidbuf};
    if (run(d, &rec, &error, 3, hav) != 0)
        return admin_db_fail(d, "cannot read the message", error);
    char sha[KEYS_SHA256_LEN + 1] = "";
    if (rec->type == REDIS_REPLY_STRING && rec->len > KEYS_SHA256_LEN &&
        keys_hex_valid(rec->str, KEYS_SHA256_LEN, KEYS_SHA256_LEN)) {
        memcpy(sha, rec->str, KEYS_SHA256_LEN);
        sha[KEYS_SHA256_LEN] = '\0';
    }
    freeReplyObject(rec);
    if (sha[0] == '\0') {
        admin_error("no message with UID %s", uidbuf);
        return ADMIN_EX_DATAERR;
    }
    printf("%s %s\thash field: the message record\n", k.s, uidbuf);
    keys_mbx(&k, nsid, mbxid, KEYS_MBX_FLAGS);
    printf("%s %s\thash field: flags\n", k.s, uidbuf);
    keys_content(&k, nsid, sha);
    key_line(&k, "hash: refs, size, parse, env, bs");
    keys_content_raw(&k, nsid, sha);
    key_line(&k, "string: the message bytes");
    return ADMIN_EX_OK;
}

/* ---- stats ---- */

int cmd_stats(struct admin *adm, int argc, char **argv)
{
    struct ops_opts o;
    if (parse_ops(argc, argv, true, false, false, 1, 1, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    char nsid[KEYS_NSID_LEN + 1];
    int rc = lookup_user(d, o.operands[0], nsid);
    if (rc != ADMIN_EX_OK)
        return rc;
    struct lookup_mailbox *list;
    size_t n;
    rc = lookup_mailboxes(d, nsid, &list, &n);
    if (rc != ADMIN_EX_OK)
        return rc;
    struct json j;
    json_init(&j, stdout);
    struct key meta, gc, trash;
    keys_ns_meta(&meta, nsid);
    keys_ns_gc(&gc, nsid);
    keys_ns_trash(&trash, nsid);
    redisReply *m = NULL, *g = NULL, *t = NULL;
    const char *error;
    const char *mav[] = {"HGETALL", meta.s};
    const char *gav[] = {"ZCARD", gc.s};
    const char *tav[] = {"SCARD", trash.s};
    if (run(d, &m, &error, 2, mav) != 0 || run(d, &g, &error, 2, gav) != 0 ||
        run(d, &t, &error, 2, tav) != 0) {
        if (m != NULL)
            freeReplyObject(m);
        if (g != NULL)
            freeReplyObject(g);
        lookup_mailboxes_free(list, n);
        return admin_db_fail(d, "cannot read the user", error);
    }
    if (o.json) {
        json_object(&j, NULL);
        json_string(&j, "login", o.operands[0]);
        json_string(&j, "nsid", nsid);
        json_int(&j, "messages", lookup_field_int(m, "messages"));
        json_int(&j, "bytes", lookup_field_int(m, "bytes"));
        json_int(&j, "gc_pending", g->type == REDIS_REPLY_INTEGER ? g->integer : 0);
        json_int(&j, "trash_pending", t->type == REDIS_REPLY_INTEGER ? t->integer : 0);
        json_array(&j, "mailboxes");
    } else {
        printf("user %s (namespace %s): %" PRId64 " messages, %" PRId64 " bytes; %lld contents "
               "awaiting gc, %lld mailboxes awaiting purge\n",
               o.operands[0], nsid, lookup_field_int(m, "messages"), lookup_field_int(m, "bytes"),
               g->type == REDIS_REPLY_INTEGER ? g->integer : 0,
               t->type == REDIS_REPLY_INTEGER ? t->integer : 0);
        printf("%-30s %9s %9s %9s %7s %12s %11s %9s\n", "mailbox", "messages", "unseen", "deleted",
               "recent", "bytes", "uidvalidity", "uidnext");
    }
    freeReplyObject(m);
    freeReplyObject(g);
    freeReplyObject(t);
    for (size_t i = 0; i < n && rc == ADMIN_EX_OK; i++) {
        struct key k;
        keys_mbx(&k, nsid, list[i].mbxid, KEYS_MBX);
        redisReply *h;
        const char *hav[] = {"HGETALL", k.s};
        if (run(d, &h, &error, 2, hav) != 0) {
            rc = admin_db_fail(d, "cannot read a mailbox", error);
            break;
        }
        static const char *const fields[] = {"messages", "unseen",      "deleted", "recent",
                                             "bytes",    "uidvalidity", "uidnext", "highestmodseq"};
        int64_t v[8];
        for (size_t f = 0; f < 8; f++)
            v[f] = lookup_field_int(h, fields[f]);
        const redisReply *su = lookup_field(h, "specialuse");
        if (o.json) {
            json_object(&j, NULL);
            json_string(&j, "name", list[i].name);
            json_string(&j, "mailboxid", list[i].mbxid);
            for (size_t f = 0; f < 8; f++)
                json_int(&j, fields[f], v[f]);
            if (su != NULL && su->type == REDIS_REPLY_STRING)
                json_stringn(&j, "specialuse", su->str, su->len);
            json_end_object(&j);
        } else {
            printf("%-30s %9" PRId64 " %9" PRId64 " %9" PRId64 " %7" PRId64 " %12" PRId64
                   " %11" PRId64 " %9" PRId64 "\n",
                   list[i].name, v[0], v[1], v[2], v[3], v[4], v[5], v[6]);
        }
        freeReplyObject(h);
    }
    if (o.json) {
        json_end_array(&j);
        json_end_object(&j);
    }
    lookup_mailboxes_free(list, n);
    return rc;
}

/* ---- fsck ---- */

struct fsck_state {
    struct db *d;
    bool repair;
    struct json *j; /* NULL: text */
    size_t problems;
};

/* Runs one fsck_repair.lua call and prints its findings under what. Exit code. */
static int fsck_call(struct fsck_state *st, const char *what, size_t nkeys, const char **keys,
                     const size_t *keylen, size_t nargs, const char **args, const size_t *arglen)
{
    redisReply *reply;
    const char *error;
    if (db_script(st->d, LUA_SCRIPT_FSCK_REPAIR, nkeys, keys, keylen, nargs, args, arglen, &reply,
                  &error) != 0) {
        if (db_error_is(st->d, "NONEXISTENT")) {
            admin_error("the user is being deleted");
            return ADMIN_EX_NOUSER;
        }
        return admin_db_fail(st->d, "fsck failed", error);
    }
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements < 1) {
        freeReplyObject(reply);
        admin_error("unexpected reply from fsck_repair");
        return ADMIN_EX_SOFTWARE;
    }
    for (size_t i = 1; i < reply->elements; i++) {
        const redisReply *e = reply->element[i];
        if (e->type != REDIS_REPLY_STRING)
            continue;
        st->problems++;
        if (st->j != NULL) {
            json_object(st->j, NULL);
            json_string(st->j, "where", what);
            json_stringn(st->j, "problem", e->str, e->len);
            json_bool(st->j, "repaired", st->repair);
            json_end_object(st->j);
        } else {
            printf("%s: %.*s%s\n", what, (int)e->len, e->str, st->repair ? " (repaired)" : "");
        }
    }
    freeReplyObject(reply);
    return ADMIN_EX_OK;
}

static int collect_key(void *ctx, const char *key, size_t len)
{
    return names_add(ctx, key, len);
}

/*
 * After a repair of one mailbox: its column caches (frontend/colcache.h) may contradict the
 * rewritten columns, so they go (cache_drop.lua, 1,000 keys per call); readers rebuild them.
 */
static int fsck_drop_caches(struct db *d, const char *nsid, const char *mbxid)
{
    struct key mbx, meta;
    keys_mbx(&mbx, nsid, mbxid, KEYS_MBX);
    keys_ns_meta(&meta, nsid);
    char pattern[KEYS_MAX_LEN + 16];
    snprintf(pattern, sizeof(pattern), "%s/cache/*", mbx.s);
    struct names found = {0};
    int rc = scan_keys(d, pattern, collect_key, &found);
    for (size_t at = 0; rc == ADMIN_EX_OK && at < found.n; at += 1000) {
        size_t m = found.n - at < 1000 ? found.n - at : 1000;
        const char *keys[2 + 1000];
        size_t keylen[2 + 1000];
        keys[0] = meta.s;
        keylen[0] = meta.len;
        keys[1] = mbx.s;
        keylen[1] = mbx.len;
        for (size_t i = 0; i < m; i++) {
            keys[2 + i] = found.v[at + i];
            keylen[2 + i] = strlen(found.v[at + i]);
        }
        const char *args[] = {mbxid};
        const size_t arglen[] = {KEYS_MBXID_LEN};
        redisReply *reply;
        const char *error;
        if (db_script(d, LUA_SCRIPT_CACHE_DROP, 2 + m, keys, keylen, 1, args, arglen, &reply,
                      &error) != 0) {
            rc = admin_db_fail(d, "cannot drop column caches", error);
            break;
        }
        freeReplyObject(reply);
    }
    names_free(&found);
    return rc;
}

int cmd_fsck(struct admin *adm, int argc, char **argv)
{
    struct ops_opts o;
    if (parse_ops(argc, argv, true, true, false, 1, 1, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    char nsid[KEYS_NSID_LEN + 1];
    int rc = lookup_user(d, o.operands[0], nsid);
    if (rc != ADMIN_EX_OK)
        return rc;
    struct json j;
    json_init(&j, stdout);
    struct fsck_state st = {d, o.repair, o.json ? &j : NULL, 0};
    if (o.json) {
        json_object(&j, NULL);
        json_string(&j, "login", o.operands[0]);
        json_string(&j, "nsid", nsid);
        json_bool(&j, "repair", o.repair);
        json_array(&j, "problems");
    }
    const char *action = o.repair ? "repair" : "check";

    /* Every mailbox id: named ones and those in the trash (their messages still hold refs). */
    struct lookup_mailbox *list = NULL;
    size_t n = 0;
    struct names ids = {0}, contents = {0}, copies = {0};
    rc = lookup_mailboxes(d, nsid, &list, &n);
    if (rc != ADMIN_EX_OK)
        goto out;
    for (size_t i = 0; i < n; i++)
        names_add(&ids, list[i].mbxid, KEYS_MBXID_LEN);
    struct key trash;
    keys_ns_trash(&trash, nsid);
    redisReply *tr;
    const char *error;
    const char *tav[] = {"SMEMBERS", trash.s};
    if (run(d, &tr, &error, 2, tav) != 0) {
        rc = admin_db_fail(d, "cannot read the trash", error);
        goto out;
    }
    for (size_t i = 0; tr->type == REDIS_REPLY_ARRAY && i < tr->elements; i++) {
        if (tr->element[i]->type == REDIS_REPLY_STRING &&
            keys_mbxid_valid(tr->element[i]->str, tr->element[i]->len))
            names_add(&ids, tr->element[i]->str, tr->element[i]->len);
    }
    freeReplyObject(tr);
    names_sort_unique(&ids);

    for (size_t i = 0; i < ids.n && rc == ADMIN_EX_OK; i++) {
        struct key kv[1 + KEYS_MBX_PART_COUNT];
        const char *keys[1 + KEYS_MBX_PART_COUNT];
        size_t keylen[1 + KEYS_MBX_PART_COUNT];
        keys_ns_meta(&kv[0], nsid);
        for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
            keys_mbx(&kv[1 + p], nsid, ids.v[i], (enum keys_mbx_part)p);
        for (size_t k = 0; k <= KEYS_MBX_PART_COUNT; k++) {
            keys[k] = kv[k].s;
            keylen[k] = kv[k].len;
        }
        const char *args[] = {"mailbox", action, ids.v[i]};
        const size_t arglen[] = {7, strlen(action), KEYS_MBXID_LEN};
        const char *name = ids.v[i];
        for (size_t m = 0; m < n; m++) {
            if (strcmp(list[m].mbxid, ids.v[i]) == 0)
                name = list[m].name;
        }
        char what[1100];
        snprintf(what, sizeof(what), "mailbox %s", name);
        rc = fsck_call(&st, what, 1 + KEYS_MBX_PART_COUNT, keys, keylen, 3, args, arglen);
        if (rc == ADMIN_EX_OK && o.repair)
            rc = fsck_drop_caches(d, nsid, ids.v[i]);
    }
    if (rc != ADMIN_EX_OK)
        goto out;

    /* Content references: every msg hash, every staged copy list, every content hash. */
    struct key pat;
    char pattern[KEYS_MAX_LEN + 16];
    keys_ns_prefix(&pat, nsid);
    snprintf(pattern, sizeof(pattern), "%scontent/*", pat.s);
    rc = scan_keys(d, pattern, collect_key, &contents);
    if (rc == ADMIN_EX_OK) {
        snprintf(pattern, sizeof(pattern), "%scopy/*", pat.s);
        rc = scan_keys(d, pattern, collect_key, &copies);
    }
    if (rc != ADMIN_EX_OK)
        goto out;
    names_sort_unique(&contents);
    names_sort_unique(&copies);
    {
        size_t cap = 2 + ids.n + copies.n + contents.n;
        const char **keys = malloc(cap * sizeof(*keys));
        size_t *keylen = malloc(cap * sizeof(*keylen));
        struct key *msgkeys = malloc((ids.n + 1) * sizeof(*msgkeys));
        if (keys == NULL || keylen == NULL || msgkeys == NULL)
            abort();
        struct key meta, gc;
        keys_ns_meta(&meta, nsid);
        keys_ns_gc(&gc, nsid);
        size_t k = 0;
        keys[k] = meta.s;
        keylen[k++] = meta.len;
        keys[k] = gc.s;
        keylen[k++] = gc.len;
        for (size_t i = 0; i < ids.n; i++) {
            keys_mbx(&msgkeys[i], nsid, ids.v[i], KEYS_MBX_MSG);
            keys[k] = msgkeys[i].s;
            keylen[k++] = msgkeys[i].len;
        }
        for (size_t i = 0; i < copies.n; i++) {
            keys[k] = copies.v[i];
            keylen[k++] = strlen(copies.v[i]);
        }
        for (size_t i = 0; i < contents.n; i++) {
            size_t len = strlen(contents.v[i]);
            if (len > 4 && strcmp(contents.v[i] + len - 4, "/raw") == 0)
                continue;
            keys[k] = contents.v[i];
            keylen[k++] = len;
        }
        char nmsg[24], ncopy[24];
        snprintf(nmsg, sizeof(nmsg), "%zu", ids.n);
        snprintf(ncopy, sizeof(ncopy), "%zu", copies.n);
        const char *args[] = {"refs", action, nmsg, ncopy};
        const size_t arglen[] = {4, strlen(action), strlen(nmsg), strlen(ncopy)};
        rc = fsck_call(&st, "content", k, keys, keylen, 4, args, arglen);

        /* Totals: the user's counters against the sum over its mailboxes. */
        if (rc == ADMIN_EX_OK) {
            k = 0;
            keys[k] = meta.s;
            keylen[k++] = meta.len;
            for (size_t i = 0; i < ids.n; i++) {
                keys_mbx(&msgkeys[i], nsid, ids.v[i], KEYS_MBX);
                keys[k] = msgkeys[i].s;
                keylen[k++] = msgkeys[i].len;
            }
            const char *targs[] = {"totals", action};
            const size_t targlen[] = {6, strlen(action)};
            rc = fsck_call(&st, "user", k, keys, keylen, 2, targs, targlen);
        }
        free(keys);
        free(keylen);
        free(msgkeys);
    }
out:
    if (o.json) {
        json_end_array(&j);
        json_int(&j, "mailboxes", (int64_t)ids.n);
        json_int(&j, "contents", (int64_t)contents.n);
        json_int(&j, "problem_count", (int64_t)st.problems);
        json_bool(&j, "ok", rc == ADMIN_EX_OK && (st.problems == 0 || o.repair));
        json_end_object(&j);
    } else if (rc == ADMIN_EX_OK) {
        printf("fsck %s: %zu mailboxes, %zu problems%s\n", o.operands[0], ids.n, st.problems,
               st.problems > 0 ? (o.repair ? " repaired" : " (run with --repair to fix)") : "");
    }
    lookup_mailboxes_free(list, n);
    names_free(&ids);
    names_free(&contents);
    names_free(&copies);
    if (rc == ADMIN_EX_OK && st.problems > 0 && !o.repair)
        rc = ADMIN_EX_MISMATCH;
    return rc;
}

/* ---- gc ---- */

struct gc_totals {
    size_t namespaces, contents, mailboxes, messages;
};

/* Purges one trashed mailbox the way cimapd's DELETE does: batches of mbx_purge.lua. */
static int purge_mailbox(struct db *d, const char *nsid, const char *mbxid, struct gc_totals *t)
{
    struct key kv[2 + KEYS_MBX_PART_COUNT + 1];
    keys_ns_meta(&kv[0], nsid);
    keys_ns_trash(&kv[1], nsid);
    for (int p = 0; p < KEYS_MBX_PART_COUNT; p++)
        keys_mbx(&kv[2 + p], nsid, mbxid, (enum keys_mbx_part)p);
    keys_ns_gc(&kv[2 + KEYS_MBX_PART_COUNT], nsid);
    const size_t fixed = 3 + KEYS_MBX_PART_COUNT;
    for (int round = 0; round < 100000; round++) {
        const char *zav[] = {"ZRANGE", kv[3].s, "0", "999"};
        redisReply *uids;
        const char *error;
        if (run(d, &uids, &error, 4, zav) != 0)
            return admin_db_fail(d, "cannot read a trashed mailbox", error);
        size_t n = uids->type == REDIS_REPLY_ARRAY ? uids->elements : 0;
        redisReply *recs = NULL;
        if (n > 0) {
            const char **av = malloc((2 + n) * sizeof(*av));
            size_t *avlen = malloc((2 + n) * sizeof(*avlen));
            if (av == NULL || avlen == NULL)
                abort();
            av[0] = "HMGET";
            avlen[0] = 5;
            av[1] = kv[5].s;
            avlen[1] = kv[5].len;
            for (size_t i = 0; i < n; i++) {
                av[2 + i] = uids->element[i]->str;
                avlen[2 + i] = uids->element[i]->len;
            }
            int r = db_command(d, 2 + n, av, avlen, &recs, &error);
            free(av);
            free(avlen);
            if (r != 0) {
                freeReplyObject(uids);
                return admin_db_fail(d, "cannot read a trashed mailbox", error);
            }
        }
        const char **keys = malloc((fixed + 3 * n) * sizeof(*keys));
        size_t *keylen = malloc((fixed + 3 * n) * sizeof(*keylen));
        struct key *content = malloc((3 * n + 1) * sizeof(*content));
        uint32_t *chunks = malloc((n + 1) * sizeof(*chunks));
        const char **args = malloc((1 + n) * sizeof(*args));
        size_t *arglen = malloc((1 + n) * sizeof(*arglen));
        if (keys == NULL || keylen == NULL || content == NULL || args == NULL || arglen == NULL ||
            chunks == NULL)
            abort();
        for (size_t i = 0; i < fixed; i++) {
            keys[i] = kv[i].s;
            keylen[i] = kv[i].len;
        }
        args[0] = mbxid;
        arglen[0] = KEYS_MBXID_LEN;
        for (size_t i = 0; i < n; i++) {
            const redisReply *r = recs->element[i];
            char sha[KEYS_SHA256_LEN + 1];
            if (r->type == REDIS_REPLY_STRING && r->len > KEYS_SHA256_LEN &&
                keys_hex_valid(r->str, KEYS_SHA256_LEN, KEYS_SHA256_LEN)) {
                memcpy(sha, r->str, KEYS_SHA256_LEN);
                sha[KEYS_SHA256_LEN] = '\0';
                keys_content(&content[i], nsid, sha);
            } else {
                content[i] = kv[0]; /* no record: any key of the namespace (mbx_purge.lua) */
            }
            keys[fixed + i] = content[i].s;
            keylen[fixed + i] = content[i].len;
            args[1 + i] = uids->element[i]->str;
            arglen[1 + i] = uids->element[i]->len;
        }
        /* The column caches of the batch's chunks (mbx_purge.lua deletes them). */
        for (size_t i = 0; i < n; i++)
            chunks[i] = (uint32_t)strtoul(uids->element[i]->str, NULL, 10);
        size_t nchunks = keys_cache_chunks(chunks, n, chunks);
        for (size_t i = 0; i < nchunks; i++) {
            keys_mbx_cache(&content[n + 2 * i], nsid, mbxid, 'f', chunks[i]);
            keys_mbx_cache(&content[n + 2 * i + 1], nsid, mbxid, 'm', chunks[i]);
        }
        for (size_t i = 0; i < 2 * nchunks; i++) {
            keys[fixed + n + i] = content[n + i].s;
            keylen[fixed + n + i] = content[n + i].len;
        }
        redisReply *reply;
        int r = db_script(d, LUA_SCRIPT_MBX_PURGE, fixed + n + 2 * nchunks, keys, keylen, 1 + n,
                          args, arglen, &reply, &error);
        free(chunks);
        free(keys);
        free(keylen);
        free(content);
        free(args);
        free(arglen);
        if (recs != NULL)
            freeReplyObject(recs);
        freeReplyObject(uids);
        if (r != 0)
            return admin_db_fail(d, "cannot purge a deleted mailbox", error);
        int64_t released = 0, remaining = 0;
        bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
                  lookup_reply_int(reply->element[0], &released) &&
                  lookup_reply_int(reply->element[1], &remaining);
        freeReplyObject(reply);
        if (!ok) {
            admin_error("unexpected reply from mbx_purge");
            return ADMIN_EX_SOFTWARE;
        }
        t->messages += (size_t)released;
        if (remaining == 0) {
            t->mailboxes++;
            return ADMIN_EX_OK;
        }
        if (released == 0 && n == 0) {
            admin_error("mailbox %s of %s does not shrink; giving up on it", mbxid, nsid);
            return ADMIN_EX_OK;
        }
    }
    return ADMIN_EX_OK;
}

static int gc_namespace(struct db *d, const char *nsid, int64_t grace, struct gc_totals *t)
{
    struct key meta, gc, trash;
    keys_ns_meta(&meta, nsid);
    keys_ns_gc(&gc, nsid);
    keys_ns_trash(&trash, nsid);
    const char *error;
    /* Mailboxes left in the trash first: their content joins gc. */
    redisReply *tr;
    const char *tav[] = {"SMEMBERS", trash.s};
    if (run(d, &tr, &error, 2, tav) != 0)
        return admin_db_fail(d, "cannot read the trash", error);
    int rc = ADMIN_EX_OK;
    size_t ntrash = tr->type == REDIS_REPLY_ARRAY ? tr->elements : 0;
    for (size_t i = 0; i < ntrash && rc == ADMIN_EX_OK; i++) {
        const redisReply *e = tr->element[i];
        if (e->type != REDIS_REPLY_STRING || !keys_mbxid_valid(e->str, e->len))
            continue;
        char mbxid[KEYS_MBXID_LEN + 1];
        memcpy(mbxid, e->str, KEYS_MBXID_LEN);
        mbxid[KEYS_MBXID_LEN] = '\0';
        rc = purge_mailbox(d, nsid, mbxid, t);
    }
    freeReplyObject(tr);
    if (rc != ADMIN_EX_OK)
        return rc;

    char cutoff[32], grace_s[24];
    snprintf(cutoff, sizeof(cutoff), "%lld", (long long)time(NULL) - (long long)grace);
    snprintf(grace_s, sizeof(grace_s), "%" PRId64, grace);
    for (int round = 0; round < 100000; round++) {
        const char *zav[] = {"ZRANGEBYSCORE", gc.s, "-inf", cutoff, "LIMIT", "0", "1000"};
        redisReply *cand;
        if (run(d, &cand, &error, 7, zav) != 0)
            return admin_db_fail(d, "cannot read the gc set", error);
        size_t n = cand->type == REDIS_REPLY_ARRAY ? cand->elements : 0;
        if (n == 0) {
            freeReplyObject(cand);
            break;
        }
        const char **keys = malloc((2 + 2 * n) * sizeof(*keys));
        size_t *keylen = malloc((2 + 2 * n) * sizeof(*keylen));
        struct key *ck = malloc(2 * n * sizeof(*ck));
        const char **args = malloc((1 + n) * sizeof(*args));
        size_t *arglen = malloc((1 + n) * sizeof(*arglen));
        if (keys == NULL || keylen == NULL || ck == NULL || args == NULL || arglen == NULL)
            abort();
        keys[0] = meta.s;
        keylen[0] = meta.len;
        keys[1] = gc.s;
        keylen[1] = gc.len;
        args[0] = grace_s;
        arglen[0] = strlen(grace_s);
        size_t m = 0;
        for (size_t i = 0; i < n; i++) {
            const redisReply *e = cand->element[i];
            if (e->type != REDIS_REPLY_STRING || !keys_hex_valid(e->str, e->len, KEYS_SHA256_LEN))
                continue;
            char sha[KEYS_SHA256_LEN + 1];
            memcpy(sha, e->str, KEYS_SHA256_LEN);
            sha[KEYS_SHA256_LEN] = '\0';
            keys_content(&ck[2 * m], nsid, sha);
            keys_content_raw(&ck[2 * m + 1], nsid, sha);
            keys[2 + 2 * m] = ck[2 * m].s;
            keylen[2 + 2 * m] = ck[2 * m].len;
            keys[3 + 2 * m] = ck[2 * m + 1].s;
            keylen[3 + 2 * m] = ck[2 * m + 1].len;
            args[1 + m] = e->str;
            arglen[1 + m] = e->len;
            m++;
        }
        redisReply *reply = NULL;
        int r = m > 0 ? db_script(d, LUA_SCRIPT_GC_SWEEP, 2 + 2 * m, keys, keylen, 1 + m, args,
                                  arglen, &reply, &error)
                      : 0;
        free(keys);
        free(keylen);
        free(ck);
        free(args);
        free(arglen);
        freeReplyObject(cand);
        if (r != 0)
            return admin_db_fail(d, "gc_sweep failed", error);
        int64_t deleted = 0;
        if (reply != NULL) {
            if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1)
                lookup_reply_int(reply->element[0], &deleted);
            freeReplyObject(reply);
        }
        t->contents += (size_t)deleted;
        if (n < 1000 || deleted == 0)
            break; /* the rest is younger than the grace period, or gained references */
    }
    t->namespaces++;
    return ADMIN_EX_OK;
}

static int collect_nsid(void *ctx, const char *key, size_t len)
{
    /* "/ns/{<nsid>}/meta" */
    if (len == 4 + 1 + KEYS_NSID_LEN + 1 + 5 && memcmp(key, "/ns/{", 5) == 0 &&
        keys_nsid_valid(key + 5, KEYS_NSID_LEN))
        return names_add(ctx, key + 5, KEYS_NSID_LEN);
    return ADMIN_EX_OK;
}

int cmd_gc(struct admin *adm, int argc, char **argv)
{
    struct ops_opts o;
    if (parse_ops(argc, argv, true, false, true, 0, 1, &o) != 0)
        return ADMIN_EX_USAGE;
    struct db *d;
    if (admin_db(adm, &d) != 0)
        return ADMIN_EX_TEMPFAIL;
    struct names nsids = {0};
    int rc = ADMIN_EX_OK;
    if (o.noperands == 1) {
        char nsid[KEYS_NSID_LEN + 1];
        rc = lookup_user(d, o.operands[0], nsid);
        if (rc != ADMIN_EX_OK)
            return rc;
        names_add(&nsids, nsid, KEYS_NSID_LEN);
    } else {
        rc = scan_keys(d, "/ns/{*}/meta", collect_nsid, &nsids);
        names_sort_unique(&nsids);
    }
    struct gc_totals t = {0, 0, 0, 0};
    for (size_t i = 0; i < nsids.n && rc == ADMIN_EX_OK; i++)
        rc = gc_namespace(d, nsids.v[i], o.grace, &t);
    names_free(&nsids);
    if (rc != ADMIN_EX_OK)
        return rc;
    if (o.json) {
        struct json j;
        json_init(&j, stdout);
        json_object(&j, NULL);
        json_int(&j, "namespaces", (int64_t)t.namespaces);
        json_int(&j, "contents_deleted", (int64_t)t.contents);
        json_int(&j, "mailboxes_purged", (int64_t)t.mailboxes);
        json_int(&j, "messages_released", (int64_t)t.messages);
        json_int(&j, "grace_seconds", o.grace);
        json_end_object(&j);
    } else {
        printf("gc: %zu namespaces, %zu contents deleted, %zu deleted mailboxes purged (%zu "
               "messages released)\n",
               t.namespaces, t.contents, t.mailboxes, t.messages);
    }
    return ADMIN_EX_OK;
}
