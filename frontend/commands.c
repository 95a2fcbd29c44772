/*
 * The command table. Sorted by name for bsearch; a unit of truth for which commands exist, in
 * which states, with how many arguments. Adding a command = one row here + one cmd_<name>.c.
 */
#include "frontend/commands.h"

#include <stdlib.h>
#include <strings.h>

#define ANY (CONN_STATE_NOT_AUTH | CONN_STATE_AUTH | CONN_STATE_SELECTED)
#define AUTHED (CONN_STATE_AUTH | CONN_STATE_SELECTED)

static const struct cmd_desc table[] = {
    {"APPEND", AUTHED, 0, 2, -1, cmd_append, cmd_append_literal, cmd_append_literal_data},
    {"AUTHENTICATE", CONN_STATE_NOT_AUTH, CMD_F_NO_PIPELINE | CMD_F_SENSITIVE, 1, 2,
     cmd_authenticate, NULL, NULL},
    {"CAPABILITY", ANY, 0, 0, 0, cmd_capability, NULL, NULL},
    {"CHECK", CONN_STATE_SELECTED, 0, 0, 0, cmd_check, NULL, NULL},
    {"CLOSE", CONN_STATE_SELECTED, 0, 0, 0, cmd_close, NULL, NULL},
    {"COPY", CONN_STATE_SELECTED, CMD_F_UID, 2, 2, cmd_copy, NULL, NULL},
    {"CREATE", AUTHED, 0, 1, 1, cmd_create, NULL, NULL},
    {"DELETE", AUTHED, 0, 1, 1, cmd_delete, NULL, NULL},
    {"ENABLE", AUTHED, 0, 1, -1, cmd_enable, NULL, NULL},
    {"EXAMINE", AUTHED, 0, 1, 1, cmd_select, NULL, NULL},
    {"EXPUNGE", CONN_STATE_SELECTED, CMD_F_UID, 0, 1, cmd_expunge, NULL, NULL},
    {"FETCH", CONN_STATE_SELECTED, CMD_F_UID, 2, 2, cmd_fetch, NULL, NULL},
    {"ID", ANY, 0, 1, 1, cmd_id, NULL, NULL},
    {"IDLE", AUTHED, CMD_F_NO_PIPELINE | CMD_F_IDLE, 0, 0, cmd_idle, NULL, NULL},
    {"LIST", AUTHED, 0, 2, 2, cmd_list, NULL, NULL},
    {"LOGIN", CONN_STATE_NOT_AUTH, CMD_F_SENSITIVE, 2, 2, cmd_login, NULL, NULL},
    {"LOGOUT", ANY, CMD_F_NO_PIPELINE, 0, 0, cmd_logout, NULL, NULL},
    {"LSUB", AUTHED, 0, 2, 2, cmd_list, NULL, NULL},
    {"MOVE", CONN_STATE_SELECTED, CMD_F_UID, 2, 2, cmd_move, NULL, NULL},
    {"NAMESPACE", AUTHED, 0, 0, 0, cmd_namespace, NULL, NULL},
    {"NOOP", ANY, 0, 0, 0, cmd_noop, NULL, NULL},
    {"RENAME", AUTHED, 0, 2, 2, cmd_rename, NULL, NULL},
    {"SEARCH", CONN_STATE_SELECTED, CMD_F_UID, 1, -1, cmd_search, NULL, NULL},
    {"SELECT", AUTHED, 0, 1, 1, cmd_select, NULL, NULL},
    {"STARTTLS", CONN_STATE_NOT_AUTH, CMD_F_NO_PIPELINE, 0, 0, cmd_starttls, NULL, NULL},
    {"STATUS", AUTHED, 0, 2, 2, cmd_status, NULL, NULL},
    {"STORE", CONN_STATE_SELECTED, CMD_F_UID, 3, -1, cmd_store, NULL, NULL},
    {"SUBSCRIBE", AUTHED, 0, 1, 1, cmd_subscribe, NULL, NULL},
    {"UNSELECT", CONN_STATE_SELECTED, 0, 0, 0, cmd_unselect, NULL, NULL},
    {"UNSUBSCRIBE", AUTHED, 0, 1, 1, cmd_subscribe, NULL, NULL},
};

struct name_key {
    const char *name;
    size_t len;
};

static int compare(const void *k, const void *e)
{
    const struct name_key *key = k;
    const struct cmd_desc *d = e;
    int r = strncasecmp(key->name, d->name, key->len);
    if (r != 0)
        return r;
    return d->name[key->len] == '\0' ? 0 : -1;
}

const struct cmd_desc *commands_find(const char *name, size_t len)
{
    if (len == 0 || len > 32)
        return NULL;
    struct name_key key = {name, len};
    return bsearch(&key, table, sizeof(table) / sizeof(table[0]), sizeof(table[0]), compare);
}
