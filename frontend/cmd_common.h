/*
 * cmd_common: small helpers shared by command handlers (argument access, mapping a failed Redis
 * answer to the IMAP reply). Stateless; every function writes at most one tagged reply.
 */
#ifndef CIMAP_CMD_COMMON_H
#define CIMAP_CMD_COMMON_H

#include <stdbool.h>
#include <stddef.h>

#include "frontend/conn.h"

/*
 * Answers a failed store request (res->status != STORE_OK) and returns CMD_DONE:
 *   STORE_UNAVAILABLE          -> NO [UNAVAILABLE] <what>: <reason>
 *   STORE_ERROR "CODE text"    -> NO [CODE] text   (CODE an IMAP response code, keys/README.md)
 *   STORE_ERROR "ERR ..." etc. -> NO [SERVERBUG] <what> failed  (logged)
 * what names the operation for the client, e.g. "CREATE".
 */
enum cmd_status cmd_store_failed(struct cmd_ctx *ctx, const struct store_result *res,
                                 const char *what);

/* True when res is STORE_OK with an array reply of at least n elements. */
bool cmd_reply_is_array(const struct store_result *res, size_t n);

/*
 * A count, UID or modseq from Redis: a non-negative integer reply, or a string reply of 1..19
 * decimal digits and nothing else (what the scripts store). False for anything else.
 */
bool cmd_reply_u64(const redisReply *r, uint64_t *out);

/* The same, and at most UINT32_MAX. */
bool cmd_reply_u32(const redisReply *r, uint32_t *out);

/*
 * The bytes of an astring argument (atom, quoted or literal; NIL counts as the atom "NIL").
 * Returns false for a list or a streamed literal.
 */
bool cmd_arg_astring(const struct imap_arg *arg, const char **s_r, size_t *len_r);

#endif
