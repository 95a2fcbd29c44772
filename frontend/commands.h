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
    CMD_F_IDLE = 1 << 3,        /* waiting in it is idleness: the autologout timer runs (IDLE) */
};

/* What a command's literal hook decides for one literal (RFC 7888, RFC 7889). */
enum lit_decision {
    LIT_ACCEPT, /* keep it in the argument (bounded by the connection's buffered-literal limit) */
    LIT_STREAM, /* hand its bytes to the literal_data hook as they arrive */
    LIT_REJECT, /* the hook wrote the tagged NO/BAD; the command ends here */
};

/*
 * Literal hooks (optional, APPEND): a command that has them starts running ("early", see
 * struct cmd_ctx) at its first literal. literal() decides each literal from what has been parsed
 * so far; literal_data() receives a streamed literal's bytes (copy them: they are borrowed) and
 * returns true to pause input until the hook calls conn_resume_input(); last marks the literal's
 * final bytes. When the command line is complete, run() is called — at once, or when the step the
 * command is waiting on returns with ctx->next unset.
 */
typedef enum lit_decision cmd_literal_fn(struct cmd_ctx *ctx, const struct parser_literal_info *li);
typedef bool cmd_literal_data_fn(struct cmd_ctx *ctx, const uint8_t *data, size_t len, bool last);

struct cmd_desc {
    const char *name;  /* upper case */
    uint8_t states;    /* enum conn_state bits in which it is valid */
    uint8_t flags;     /* enum cmd_flags */
    int16_t min_args;
    int16_t max_args;  /* -1: unbounded */
    cmd_step *run;
    cmd_literal_fn *literal;           /* optional */
    cmd_literal_data_fn *literal_data; /* with literal */
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
cmd_step cmd_create;
cmd_step cmd_delete;
cmd_step cmd_rename;
cmd_step cmd_list;
cmd_step cmd_subscribe;
cmd_step cmd_namespace;
cmd_step cmd_status;
cmd_step cmd_select;
cmd_step cmd_search;
cmd_step cmd_close;
cmd_step cmd_unselect;
cmd_step cmd_check;
cmd_step cmd_store;
cmd_step cmd_copy;
cmd_step cmd_move;
cmd_step cmd_expunge;
cmd_step cmd_append;
cmd_step cmd_idle;
cmd_literal_fn cmd_append_literal;
cmd_literal_data_fn cmd_append_literal_data;
cmd_step cmd_authenticate;
cmd_step cmd_starttls;
cmd_step cmd_fetch;

#endif
