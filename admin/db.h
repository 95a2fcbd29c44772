/*
 * db: cimap-admin's one synchronous Redis connection (hiredis blocking API: the admin tool has no
 * event loop to keep responsive). Every write goes through db_script(), i.e. one lua/ script
 * called with EVALSHA (DESIGN.md rule 1).
 *
 * Failures come in two kinds, so callers can pick sysexits codes: "unavailable" (cannot connect,
 * timeout, I/O error, -LOADING, -BUSY, -OOM, -READONLY, -MASTERDOWN, ...: retry later, EX_TEMPFAIL)
 * and everything else (an error reply the caller may recognise by its code, e.g. a script's
 * "EXISTS ..."). Single-threaded.
 */
#ifndef CIMAP_ADMIN_DB_H
#define CIMAP_ADMIN_DB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>

#include "lua/scripts.h"

#define DB_DEFAULT_URL "redis://127.0.0.1:6379"

struct db;

/*
 * Parses redis://HOST:PORT[/DB]; HOST is a name, an IPv4 address or [IPv6]; PORT defaults to 6379
 * and DB to 0. On success *host_r is malloc'd (caller frees). Returns 0, or -1 with *error_r
 * (static text).
 */
int db_url_parse(const char *url, char **host_r, uint16_t *port_r, uint32_t *db_r,
                 const char **error_r);

/*
 * Connects to url (already checked with db_url_parse) with timeout_ms for the connect and for
 * every later reply, and SELECTs the database. Returns 0 and *db_r (free with db_free()), or -1
 * with *error_r (valid until the next db_connect()); a failure to connect is always "unavailable".
 */
int db_connect(const char *url, uint32_t timeout_ms, struct db **db_r, const char **error_r);

/* Closes and frees; sets *d to NULL. NULL-safe. */
void db_free(struct db **d);

/*
 * Runs one command; arguments are binary-safe (argv[i] is argvlen[i] bytes). Returns 0 with
 * *reply_r (caller frees with freeReplyObject; never an error reply), or -1 with *error_r (valid
 * until the next call on d) and db_unavailable(d) telling which kind of failure it was. After an
 * I/O error or timeout the connection is dead and every later call fails as unavailable.
 */
int db_command(struct db *d, size_t argc, const char *const *argv, const size_t *argvlen,
               redisReply **reply_r, const char **error_r);

/*
 * Runs script id with EVALSHA; when Redis answers NOSCRIPT, loads it (checking that Redis agrees
 * on its SHA1) and retries once. keys[i] is keylen[i] bytes, args[i] arglen[i] bytes. Same return
 * contract as db_command().
 */
int db_script(struct db *d, enum lua_script_id id, size_t nkeys, const char *const *keys,
              const size_t *keylen, size_t nargs, const char *const *args, const size_t *arglen,
              redisReply **reply_r, const char **error_r);

/* True when the last failure on d was Redis being unavailable (not an answer to the command). */
bool db_unavailable(const struct db *d);

/* True when the last failure on d was an error reply whose first word is code (e.g. "EXISTS"). */
bool db_error_is(const struct db *d, const char *code);

#endif
