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
    {"CAPABILITY", ANY, 0, 0, 0, cmd_capability},
    {"ENABLE", AUTHED, 0, 1, -1, cmd_enable},
    {"ID", ANY, 0, 1, 1, cmd_id},
    {"LOGIN", CONN_STATE_NOT_AUTH, CMD_F_SENSITIVE, 2, 2, cmd_login},
    {"LOGOUT", ANY, CMD_F_NO_PIPELINE, 0, 0, cmd_logout},
    {"NOOP", ANY, 0, 0, 0, cmd_noop},
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
