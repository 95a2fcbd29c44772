/*
 * commands: the command table (STYLE.md "Dispatch"). One sorted table, looked up
 * case-insensitively; state and argument count are checked generically by conn.c before the
 * handler runs. Each handler lives in its own cmd_<name>.c.
 */
#ifndef CIMAP_COMMANDS_H
#define CIMAP_COMMANDS_H

#include <stddef.h>
#include <stdint.h>

#include "frontend/conn.h"

enum cmd_flags {
    CMD_F_NO_PIPELINE = 1 << 0, /* parse nothing after it until it ends (STARTTLS, IDLE, LOGOUT) */
    CMD_F_SENSITIVE = 1 << 1,   /* mask arguments in the --debug transcript (LOGIN) */
    CMD_F_UID = 1 << 2,         /* also valid as "UID <name>" */
};

struct cmd_desc {
    const char *name;  /* upper case */
    uint8_t states;    /* enum conn_state bits in which it is valid */
    uint8_t flags;     /* enum cmd_flags */
    int16_t min_args;
    int16_t max_args;  /* -1: unbounded */
    cmd_step *run;
};

/* Finds a command by name (len bytes, any case); NULL when unknown. */
const struct cmd_desc *commands_find(const char *name, size_t len);

/* Handlers (one per file). */
cmd_step cmd_capability;
cmd_step cmd_noop;
cmd_step cmd_logout;
cmd_step cmd_id;
cmd_step cmd_enable;
cmd_step cmd_login;

#endif
