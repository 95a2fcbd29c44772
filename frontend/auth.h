/*
 * auth: the one password check behind LOGIN and AUTHENTICATE (PLAIN, LOGIN). A command hands it
 * a user name and a password; auth reads the login record (one HMGET), verifies the password on
 * the worker pool (DESIGN.md rule 7), and finishes the command: success enters the authenticated
 * state, failure is answered after a delay that grows with the connection's failure count, and
 * the connection is closed after config max_login_failures. Unknown users, invalid names and
 * tombstoned records are verified against a dummy hash of the same cost, so the answer time does
 * not tell whether a user exists.
 */
#ifndef CIMAP_AUTH_H
#define CIMAP_AUTH_H

#include <stdbool.h>
#include <stddef.h>

#include "frontend/conn.h"

/*
 * True when the connection may authenticate with a password: it runs over TLS, comes from a
 * loopback address, or --allow-plaintext-auth is set. Otherwise CAPABILITY says LOGINDISABLED
 * (RFC 3501 §6.2.3) and LOGIN/AUTHENTICATE are answered NO [PRIVACYREQUIRED] (RFC 5530).
 */
bool auth_allowed(const struct conn *c);

/*
 * Verifies login/password (login_len / password_len bytes, any content; both are copied, so the
 * caller may wipe its copies as soon as this returns) for the running command and finishes it:
 * "OK [CAPABILITY ...] Logged in", or after the failure delay "NO [AUTHENTICATIONFAILED]" (and
 * "* BYE" plus close after too many failures). mech names the mechanism for the log ("LOGIN",
 * "PLAIN", ...; static). Replaces ctx->state. Returns the status for the handler to return.
 */
enum cmd_status auth_verify(struct cmd_ctx *ctx, const char *mech, const char *login,
                            size_t login_len, const char *password, size_t password_len);

/*
 * Fails the running command's authentication without looking at a password (a malformed SASL
 * message, an authorization identity other than the user): counted, delayed and answered exactly
 * like a wrong password. login may be NULL; why is static text for the log. Returns the status
 * for the handler to return.
 */
enum cmd_status auth_reject(struct cmd_ctx *ctx, const char *mech, const char *login,
                            size_t login_len, const char *why);

#endif
