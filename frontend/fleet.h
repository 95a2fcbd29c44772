/*
 * fleet: what a front end shares with the other front ends through Redis (issue 10):
 *
 * - A heartbeat lease. Every lease-ttl/3 seconds the front end renews its entry in the index
 *   /frontends (sorted set, id -> lease expiry) and its details key /frontends/<id> (hash with the
 *   same TTL: address, version, start time, connections), learning the ids of the live front
 *   ends. A front end that stops renewing (killed, partitioned) is gone after lease-ttl.
 * - Connections per user across the fleet (--max-user-connections): /ns/{<nsid>}/conns maps front
 *   end id -> that front end's connections of the user. A login counts only the fields of live
 *   front ends (and deletes fields of front ends known dead), so a dead front end's connections
 *   vanish with its lease while a live one's never expire. Each front end writes its own field
 *   as its exact local count (never an increment), so a lost update heals at the user's next
 *   login or logout on that front end.
 * - Failed-login throttling per user and per client address (IPv6: per /64), a token bucket in
 *   Redis per key (/throttle/user/<login>, /throttle/addr/<address>), shared by every front end.
 *   A throttled login is not verified at all and is answered NO [UNAVAILABLE] (RFC 5530: a
 *   temporary condition; clients retry later instead of asking the user for a new password).
 * - Redis's persistence and eviction settings (CONFIG GET appendonly, appendfsync,
 *   maxmemory-policy), polled with the heartbeat, logged at start and on change, and exported.
 *
 * Every write is a lua/ script (frontend_lease, frontend_info, user_conns, login_throttle); key
 * names come from keys/. Owned by main.c through struct frontend; event-loop thread only.
 */
#ifndef CIMAP_FLEET_H
#define CIMAP_FLEET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/conn.h"

struct frontend;
struct fleet;

#define FLEET_ID_MAX 64

/*
 * Creates the fleet member for fe (reads fe->cfg: lease_ttl_s, max_user_connections, login
 * throttle settings) with a fresh id "fe-<start unix ms>-<8 hex digits>"; the first heartbeat
 * goes out once the store is ready. fe must outlive it. NULL on allocation failure.
 */
struct fleet *fleet_new(struct frontend *fe);

/* Stops the heartbeat and frees. Sets *f to NULL. NULL-safe. */
void fleet_free(struct fleet **f);

/*
 * Gives the lease up (drain end): removes this front end from /frontends and deletes its details
 * key, then calls done(arg) once both are answered or after at most a second. Call once.
 */
void fleet_leave(struct fleet *f, void (*done)(void *arg), void *arg);

/* This front end's id (NUL-terminated, at most FLEET_ID_MAX bytes). */
const char *fleet_id(const struct fleet *f);

/* True while the last heartbeat renewed the lease less than lease-ttl ago. */
bool fleet_lease_held(const struct fleet *f);

/* What the last poll of Redis's configuration found. */
struct fleet_redis_info {
    bool known;              /* a poll has been answered */
    bool policy_noeviction;  /* maxmemory-policy is noeviction */
    bool appendonly;         /* AOF on */
    char policy[32];         /* maxmemory-policy as read ("unknown" until known) */
    char appendfsync[16];    /* always, everysec, no ("unknown" until known or with AOF off) */
    size_t frontends_live;   /* live front ends in the index, this one included */
};
void fleet_get_redis_info(const struct fleet *f, struct fleet_redis_info *out);

/* --- login: helper steps run by auth.c (they use ctx->helper; the caller keeps ctx->state) --- */

enum fleet_verdict {
    FLEET_OK,          /* go on */
    FLEET_REFUSED,     /* throttled (check) or over the user limit (acquire) */
    FLEET_UNAVAILABLE, /* Redis failed; answer NO [UNAVAILABLE] */
};

/*
 * Checks the failed-login throttle of the client address and of login (when keys_login_valid),
 * then continues next; fleet_verdict(ctx) tells the outcome. Without throttling configured it
 * continues next at once (returns next's status).
 */
enum cmd_status fleet_login_check(struct cmd_ctx *ctx, const char *login, size_t login_len,
                                  cmd_step *next);

/* Records one failed login of login (when valid) from the connection's client address. */
void fleet_login_failed(struct conn *c, const char *login, size_t login_len);

/*
 * Takes a connection slot of user nsid for the connection (before it enters the authenticated
 * state), then continues next; fleet_verdict(ctx) says FLEET_REFUSED when the user already has
 * --max-user-connections across the live front ends. On FLEET_OK the slot is held until
 * fleet_user_release. Without a limit configured it continues next at once.
 */
enum cmd_status fleet_user_acquire(struct cmd_ctx *ctx, const char *nsid, cmd_step *next);

/* The verdict of the last fleet_login_check / fleet_user_acquire of this command. */
enum fleet_verdict fleet_verdict(const struct cmd_ctx *ctx);

/* Gives back a slot taken by fleet_user_acquire (the connection closes). fe->fleet may be NULL. */
void fleet_user_release(struct frontend *fe, const char *nsid);

#endif
