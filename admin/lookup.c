/*
 * lookup: user, mailbox and reply helpers shared by cimap-admin's mail commands (append, maildir
 * import/export, inspection). Reads go straight to Redis; the only write is mbx_create.lua for a
 * mailbox that must exist (delivery to a missing INBOX, import of a new folder), which creates the
 * missing parents in the same call, so a crash never leaves a child without its parent.
 * Not done here: anything that deletes, and any lookup by pattern (LIST semantics belong to
 * cimapd).
 */
#include "admin/lookup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin/admin.h"
#include "admin/db.h"
#include "frontend/arena.h"
#include "frontend/mboxname.h"

#define MAILBOX_DEPTH_MAX 64 /* levels created in one call (names deeper than this are refused) */

bool lookup_reply_int(const redisReply *r, int64_t *v_r)
{
    if (r == NULL)
        return false;
    if (r->type == REDIS_REPLY_INTEGER) {
        *v_r = r->integer;
        return true;
    }
    if (r->type != REDIS_REPLY_STRING || r->len == 0 || r->len > 20)
        return false;
    char buf[24];
    memcpy(buf, r->str, r->len);
    buf[r->len] = '\0';
    char *end;
    long long v = strtoll(buf, &end, 10);
    if (*end != '\0')
        return false;
    *v_r = v;
    return true;
}

const redisReply *lookup_field(const redisReply *hash, const char *name)
{
    if (hash == NULL || hash->type != REDIS_REPLY_ARRAY)
        return NULL;
    size_t n = strlen(name);
    for (size_t i = 0; i + 1 < hash->elements; i += 2) {
        const redisReply *k = hash->element[i];
        if (k->type == REDIS_REPLY_STRING && k->len == n && memcmp(k->str, name, n) == 0)
            return hash->element[i + 1];
    }
    return NULL;
}

int64_t lookup_field_int(const redisReply *hash, const char *name)
{
    int64_t v = 0;
    if (!lookup_reply_int(lookup_field(hash, name), &v))
        return 0;
    return v;
}

int lookup_user(struct db *d, const char *login, char nsid[KEYS_NSID_LEN + 1])
{
    struct key k;
    if (keys_user(&k, login, strlen(login)) != 0) {
        admin_error("invalid login name: %s", login);
        return ADMIN_EX_USAGE;
    }
    const char *argv[] = {"HMGET", k.s, "nsid", "state"};
    const size_t argvlen[] = {5, k.len, 4, 5};
    redisReply *reply;
    const char *error;
    if (db_command(d, 4, argv, argvlen, &reply, &error) != 0)
        return admin_db_fail(d, "cannot read the user record", error);
    int rc = ADMIN_EX_OK;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
        admin_error("unexpected reply reading the record of %s", login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    const redisReply *id = reply->element[0], *state = reply->element[1];
    if (id->type != REDIS_REPLY_STRING) {
        admin_error("no such user: %s", login);
        rc = ADMIN_EX_NOUSER;
        goto out;
    }
    if (!keys_nsid_valid(id->str, id->len)) {
        admin_error("the record of %s has no valid nsid", login);
        rc = ADMIN_EX_SOFTWARE;
        goto out;
    }
    if (state->type != REDIS_REPLY_STRING || state->len != 6 ||
        memcmp(state->str, "active", 6) != 0) {
        admin_error("user %s is being deleted", login);
        rc = ADMIN_EX_NOUSER;
        goto out;
    }
    memcpy(nsid, id->str, KEYS_NSID_LEN);
    nsid[KEYS_NSID_LEN] = '\0';
out:
    freeReplyObject(reply);
    return rc;
}

char *lookup_mailbox_name(const char *name)
{
    struct arena *a = arena_new(256);
    const char *error;
    const char *norm = mboxname_normalize(a, name, strlen(name), &error);
    char *out = NULL;
    if (norm == NULL)
        admin_error("invalid mailbox name %s: %s", name, error);
    else if ((out = strdup(norm)) == NULL)
        admin_error("out of memory");
    arena_free(&a);
    return out;
}

int lookup_mailbox(struct db *d, const char *nsid, const char *name,
                   char mbxid[KEYS_MBXID_LEN + 1], bool *found_r)
{
    *found_r = false;
    struct key boxes;
    keys_ns_mailboxes(&boxes, nsid);
    const char *argv[] = {"HGET", boxes.s, name};
    const size_t argvlen[] = {4, boxes.len, strlen(name)};
    redisReply *reply;
    const char *error;
    if (db_command(d, 3, argv, argvlen, &reply, &error) != 0)
        return admin_db_fail(d, "cannot read the mailboxes", error);
    int rc = ADMIN_EX_OK;
    if (reply->type == REDIS_REPLY_STRING) {
        if (!keys_mbxid_valid(reply->str, reply->len)) {
            admin_error("mailbox %s has an invalid id", name);
            rc = ADMIN_EX_SOFTWARE;
        } else {
            memcpy(mbxid, reply->str, KEYS_MBXID_LEN);
            mbxid[KEYS_MBXID_LEN] = '\0';
            *found_r = true;
        }
    }
    freeReplyObject(reply);
    return rc;
}

int lookup_mailbox_create(struct db *d, const char *nsid, const char *name, const char *specialuse,
                          char mbxid[KEYS_MBXID_LEN + 1], bool *created_r)
{
    *created_r = false;
    size_t len = strlen(name);
    for (int attempt = 0; attempt < 3; attempt++) {
        bool found;
        int rc = lookup_mailbox(d, nsid, name, mbxid, &found);
        if (rc != ADMIN_EX_OK || found)
            return rc;

        size_t lens[MAILBOX_DEPTH_MAX];
        size_t nparents = mboxname_parents(name, len, lens, MAILBOX_DEPTH_MAX - 1);
        if (nparents >= MAILBOX_DEPTH_MAX) {
            admin_error("mailbox name %s is too deep", name);
            return ADMIN_EX_DATAERR;
        }
        lens[nparents] = len;
        size_t nlevels = nparents + 1;

        /* Which levels are missing (HMGET of every prefix). */
        struct key boxes, meta;
        keys_ns_mailboxes(&boxes, nsid);
        keys_ns_meta(&meta, nsid);
        const char *argv[2 + MAILBOX_DEPTH_MAX];
        size_t argvlen[2 + MAILBOX_DEPTH_MAX];
        argv[0] = "HMGET";
        argvlen[0] = 5;
        argv[1] = boxes.s;
        argvlen[1] = boxes.len;
        for (size_t i = 0; i < nlevels; i++) {
            argv[2 + i] = name;
            argvlen[2 + i] = lens[i];
        }
        redisReply *reply;
        const char *error;
        if (db_command(d, 2 + nlevels, argv, argvlen, &reply, &error) != 0)
            return admin_db_fail(d, "cannot read the mailboxes", error);
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != nlevels) {
            freeReplyObject(reply);
            admin_error("unexpected HMGET reply");
            return ADMIN_EX_SOFTWARE;
        }
        struct key mbxkeys[MAILBOX_DEPTH_MAX];
        char ids[MAILBOX_DEPTH_MAX][KEYS_MBXID_LEN + 1];
        const char *keys[2 + MAILBOX_DEPTH_MAX];
        size_t keylen[2 + MAILBOX_DEPTH_MAX];
        const char *args[2 + 2 * MAILBOX_DEPTH_MAX];
        size_t arglen[2 + 2 * MAILBOX_DEPTH_MAX];
        size_t nkeys = 2, nargs = 1;
        keys[0] = meta.s;
        keylen[0] = meta.len;
        keys[1] = boxes.s;
        keylen[1] = boxes.len;
        args[0] = "0";
        arglen[0] = 1;
        for (size_t i = 0; i < nlevels; i++) {
            if (reply->element[i]->type == REDIS_REPLY_STRING)
                continue;
            keys_mbxid_new(ids[i]);
            keys_mbx(&mbxkeys[i], nsid, ids[i], KEYS_MBX);
            keys[nkeys] = mbxkeys[i].s;
            keylen[nkeys++] = mbxkeys[i].len;
            args[nargs] = name;
            arglen[nargs++] = lens[i];
            args[nargs] = ids[i];
            arglen[nargs++] = KEYS_MBXID_LEN;
        }
        freeReplyObject(reply);
        args[nargs] = specialuse;
        arglen[nargs++] = strlen(specialuse);
        if (db_script(d, LUA_SCRIPT_MBX_CREATE, nkeys, keys, keylen, nargs, args, arglen, &reply,
                      &error) != 0) {
            if (db_error_is(d, "ALREADYEXISTS"))
                continue; /* created meanwhile: read it again */
            if (db_error_is(d, "NONEXISTENT")) {
                admin_error("the user is being deleted");
                return ADMIN_EX_NOUSER;
            }
            return admin_db_fail(d, "cannot create the mailbox", error);
        }
        bool ok = reply->type == REDIS_REPLY_ARRAY && reply->elements == 2 &&
                  reply->element[1]->type == REDIS_REPLY_STRING &&
                  keys_mbxid_valid(reply->element[1]->str, reply->element[1]->len);
        if (ok) {
            memcpy(mbxid, reply->element[1]->str, KEYS_MBXID_LEN);
            mbxid[KEYS_MBXID_LEN] = '\0';
        }
        freeReplyObject(reply);
        if (!ok) {
            admin_error("unexpected reply from mbx_create");
            return ADMIN_EX_SOFTWARE;
        }
        *created_r = true;
        return ADMIN_EX_OK;
    }
    admin_error("mailbox %s keeps changing; try again", name);
    return ADMIN_EX_TEMPFAIL;
}

static int compare_mailboxes(const void *a, const void *b)
{
    const struct lookup_mailbox *x = a, *y = b;
    return strcmp(x->name, y->name);
}

int lookup_mailboxes(struct db *d, const char *nsid, struct lookup_mailbox **list_r, size_t *n_r)
{
    *list_r = NULL;
    *n_r = 0;
    struct key boxes;
    keys_ns_mailboxes(&boxes, nsid);
    const char *argv[] = {"HGETALL", boxes.s};
    const size_t argvlen[] = {7, boxes.len};
    redisReply *reply;
    const char *error;
    if (db_command(d, 2, argv, argvlen, &reply, &error) != 0)
        return admin_db_fail(d, "cannot read the mailboxes", error);
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements % 2 != 0) {
        freeReplyObject(reply);
        admin_error("unexpected HGETALL reply");
        return ADMIN_EX_SOFTWARE;
    }
    size_t n = reply->elements / 2;
    struct lookup_mailbox *list = calloc(n == 0 ? 1 : n, sizeof(*list));
    if (list == NULL) {
        freeReplyObject(reply);
        admin_error("out of memory");
        return ADMIN_EX_SOFTWARE;
    }
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const redisReply *name = reply->element[2 * i], *id = reply->element[2 * i + 1];
        if (name->type != REDIS_REPLY_STRING || id->type != REDIS_REPLY_STRING ||
            !keys_mbxid_valid(id->str, id->len) || memchr(name->str, '\0', name->len) != NULL)
            continue;
        list[k].name = strndup(name->str, name->len);
        if (list[k].name == NULL) {
            freeReplyObject(reply);
            lookup_mailboxes_free(list, k);
            admin_error("out of memory");
            return ADMIN_EX_SOFTWARE;
        }
        memcpy(list[k].mbxid, id->str, KEYS_MBXID_LEN);
        list[k].mbxid[KEYS_MBXID_LEN] = '\0';
        k++;
    }
    freeReplyObject(reply);
    if (k > 0)
        qsort(list, k, sizeof(*list), compare_mailboxes);
    *list_r = list;
    *n_r = k;
    return ADMIN_EX_OK;
}

void lookup_mailboxes_free(struct lookup_mailbox *list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(list[i].name);
    free(list);
}
