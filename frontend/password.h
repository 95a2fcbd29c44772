/*
 * password: salted PBKDF2-HMAC-SHA256 (OpenSSL) in a self-describing string,
 *     $pbkdf2-sha256$i=<iterations>$<salt, base64 no padding>$<hash, base64 no padding>
 * (the PHC-style format used by passlib), so the cost travels with each hash and can rise
 * later without breaking stored users. Verification is constant-time in the hash comparison.
 * These functions are slow by design: call them on the worker pool, never on the event loop.
 * Thread-safe.
 */
#ifndef CIMAP_PASSWORD_H
#define CIMAP_PASSWORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PASSWORD_DEFAULT_ITERATIONS 100000u /* default cost; see README "Passwords" */
#define PASSWORD_MIN_ITERATIONS 1u          /* --kdf-cost floor (benchmarks and tests only) */
#define PASSWORD_MAX_ITERATIONS 10000000u
#define PASSWORD_MAX_LEN 1024               /* longest password accepted */

/* Hashes password with a fresh 16-byte salt. *hash_r is malloc'd. 0, or -1 with *error_r. */
int password_hash(const char *password, size_t len, uint32_t iterations, char **hash_r,
                  const char **error_r);

/*
 * Verifies password against an encoded hash (any form password_check_encoded() accepts).
 * Returns 0 and sets *match_r, or -1 with *error_r when the encoded hash is malformed or of an
 * unknown scheme (then *match_r is false).
 */
int password_verify(const char *password, size_t len, const char *encoded, bool *match_r,
                    const char **error_r);

/*
 * Checks that encoded is a hash password_verify() understands (for cimap-admin set-user
 * --password-hash): this module's own form, or one of Dovecot's kept as is:
 * "{SHA512-CRYPT}$6$...", "{SHA256-CRYPT}$5$...", "{BLF-CRYPT}$2y$...", "{MD5-CRYPT}$1$...",
 * "{CRYPT}$<id>$..." (libxcrypt) and "{PBKDF2}$1$<salt>$<rounds>$<hex>" (PBKDF2-HMAC-SHA1). Costs one verification. 0, or -1 with
 * *error_r (static text).
 */
int password_check_encoded(const char *encoded, const char **error_r);

/*
 * A valid hash at the default cost of a random secret made at first use, to verify unknown users
 * against so they cost the same time as known ones (no timing oracle). Static storage.
 */
const char *password_dummy_hash(void);

#endif
