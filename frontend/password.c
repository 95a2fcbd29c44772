/*
 * password: PBKDF2-HMAC-SHA256 hashes in the self-describing form
 *     $pbkdf2-sha256$i=<iterations>$<salt>$<hash>
 * with salt and hash in standard base64 (A-Z a-z 0-9 + /) without '=' padding.
 *
 * Parsing is strict on purpose: a stored hash is either exactly in this form or rejected, so a
 * corrupted or hand-edited record can never degrade into a cheaper check. Iterations are plain
 * decimal without leading zeros, inside [PASSWORD_MIN_ITERATIONS, PASSWORD_MAX_ITERATIONS]; base64
 * must be canonical (unused low bits zero); the salt is 8..64 bytes and the hash exactly 32 bytes.
 * The computed hash is compared with CRYPTO_memcmp (constant time).
 *
 * Dovecot's crypt(3) and {PBKDF2} hashes are verified as they are (libxcrypt's crypt_rn keeps all
 * its state in the caller's buffer, so it is thread-safe), so users migrated from Dovecot keep
 * their passwords; new hashes are always PBKDF2-SHA256.
 *
 * Not done here: threading (callers run these on the worker pool), rate limiting, other schemes.
 */
#include "frontend/password.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <crypt.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#define PASSWORD_SCHEME "$pbkdf2-sha256$i="
#define PASSWORD_SALT_LEN 16
#define PASSWORD_SALT_MIN 8
#define PASSWORD_SALT_MAX 64
#define PASSWORD_HASH_LEN 32 /* SHA-256 output: one PBKDF2 block */

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Encoded length of n bytes without padding. */
static size_t b64_encoded_len(size_t n)
{
    return (n / 3) * 4 + (n % 3 == 0 ? 0 : n % 3 + 1);
}

/* Writes b64_encoded_len(n) characters and a NUL into out. */
static void b64_encode(const unsigned char *in, size_t n, char *out)
{
    size_t o = 0;
    size_t i = 0;
    for (; i + 3 <= n; i += 3) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8) | in[i + 2];
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
        out[o++] = b64_alphabet[v & 63];
    }
    if (n - i == 1) {
        unsigned long v = (unsigned long)in[i] << 16;
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
    } else if (n - i == 2) {
        unsigned long v = ((unsigned long)in[i] << 16) | ((unsigned long)in[i + 1] << 8);
        out[o++] = b64_alphabet[(v >> 18) & 63];
        out[o++] = b64_alphabet[(v >> 12) & 63];
        out[o++] = b64_alphabet[(v >> 6) & 63];
    }
    out[o] = '\0';
}

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/*
 * Strictly decodes len characters of unpadded base64 into out (room for out_max bytes).
 * Rejects characters outside the alphabet, impossible lengths (len % 4 == 1) and non-canonical
 * encodings (unused low bits set). Returns 0 and *n_r, or -1.
 */
static int b64_decode(const char *in, size_t len, unsigned char *out, size_t out_max, size_t *n_r)
{
    if (len % 4 == 1)
        return -1;
    size_t n = (len / 4) * 3 + (len % 4 == 0 ? 0 : len % 4 - 1);
    if (n > out_max)
        return -1;
    unsigned long acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64_value(in[i]);
        if (v < 0)
            return -1;
        acc = ((acc << 6) | (unsigned long)v) & 0xffffffUL;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)((acc >> bits) & 0xff);
        }
    }
    /* Leftover bits (2 or 4) must be zero, or two encodings would decode to the same bytes. */
    if (bits > 0 && (acc & ((1UL << bits) - 1)) != 0)
        return -1;
    *n_r = o;
    return 0;
}

static int pbkdf2(const char *password, size_t len, const unsigned char *salt, size_t salt_len,
                  uint32_t iterations, unsigned char out[PASSWORD_HASH_LEN])
{
    /* OpenSSL takes the length explicitly, so passwords may contain NUL bytes. */
    if (PKCS5_PBKDF2_HMAC(len == 0 ? "" : password, (int)len, salt, (int)salt_len, (int)iterations,
                          EVP_sha256(), PASSWORD_HASH_LEN, out) != 1)
        return -1;
    return 0;
}

int password_hash(const char *password, size_t len, uint32_t iterations, char **hash_r,
                  const char **error_r)
{
    *hash_r = NULL;
    if (len > PASSWORD_MAX_LEN) {
        *error_r = "password too long";
        return -1;
    }
    if (iterations < PASSWORD_MIN_ITERATIONS || iterations > PASSWORD_MAX_ITERATIONS) {
        *error_r = "iteration count out of range";
        return -1;
    }
    unsigned char salt[PASSWORD_SALT_LEN];
    unsigned char hash[PASSWORD_HASH_LEN];
    if (RAND_bytes(salt, sizeof(salt)) != 1) {
        *error_r = "random number generator failed";
        return -1;
    }
    if (pbkdf2(password, len, salt, sizeof(salt), iterations, hash) != 0) {
        *error_r = "PBKDF2 failed";
        return -1;
    }
    char salt64[b64_encoded_len(PASSWORD_SALT_LEN) + 1];
    char hash64[b64_encoded_len(PASSWORD_HASH_LEN) + 1];
    b64_encode(salt, sizeof(salt), salt64);
    b64_encode(hash, sizeof(hash), hash64);
    OPENSSL_cleanse(hash, sizeof(hash));

    size_t size = strlen(PASSWORD_SCHEME) + 10 + 1 + sizeof(salt64) + sizeof(hash64) + 1;
    char *s = malloc(size);
    if (s == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    int n = snprintf(s, size, "%s%u$%s$%s", PASSWORD_SCHEME, (unsigned)iterations, salt64, hash64);
    if (n < 0 || (size_t)n >= size) {
        free(s);
        *error_r = "internal error formatting hash";
        return -1;
    }
    *hash_r = s;
    return 0;
}

struct password_parsed {
    uint32_t iterations;
    unsigned char salt[PASSWORD_SALT_MAX];
    size_t salt_len;
    unsigned char hash[PASSWORD_HASH_LEN];
};

static int parse_iterations(const char *s, size_t len, uint32_t *iterations_r)
{
    if (len == 0 || len > 10 || (s[0] == '0' && len > 1))
        return -1;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v < PASSWORD_MIN_ITERATIONS || v > PASSWORD_MAX_ITERATIONS)
        return -1;
    *iterations_r = (uint32_t)v;
    return 0;
}

static int password_parse(const char *encoded, struct password_parsed *p, const char **error_r)
{
    size_t scheme_len = strlen(PASSWORD_SCHEME);
    if (strncmp(encoded, "$pbkdf2-sha256$", strlen("$pbkdf2-sha256$")) != 0) {
        *error_r = "unknown password scheme";
        return -1;
    }
    if (strncmp(encoded, PASSWORD_SCHEME, scheme_len) != 0) {
        *error_r = "malformed password hash: missing i=";
        return -1;
    }
    const char *it = encoded + scheme_len;
    const char *d1 = strchr(it, '$');
    if (d1 == NULL) {
        *error_r = "malformed password hash: missing salt";
        return -1;
    }
    const char *salt = d1 + 1;
    const char *d2 = strchr(salt, '$');
    if (d2 == NULL) {
        *error_r = "malformed password hash: missing hash";
        return -1;
    }
    const char *hash = d2 + 1;
    size_t hash_len = strlen(hash); /* any further '$' is rejected by the base64 decoder */

    if (parse_iterations(it, (size_t)(d1 - it), &p->iterations) != 0) {
        *error_r = "malformed password hash: bad iteration count";
        return -1;
    }
    if (b64_decode(salt, (size_t)(d2 - salt), p->salt, sizeof(p->salt), &p->salt_len) != 0 ||
        p->salt_len < PASSWORD_SALT_MIN) {
        *error_r = "malformed password hash: bad salt";
        return -1;
    }
    size_t n;
    if (b64_decode(hash, hash_len, p->hash, sizeof(p->hash), &n) != 0 || n != PASSWORD_HASH_LEN) {
        *error_r = "malformed password hash: bad hash";
        return -1;
    }
    return 0;
}

/*
 * Dovecot's schemes, kept as Dovecot wrote them so migrated users keep their passwords:
 * "{SHA512-CRYPT}$6$...", "{SHA256-CRYPT}$5$...", "{BLF-CRYPT}$2y$...", "{MD5-CRYPT}$1$...",
 * "{CRYPT}$<id>$..." (any modular crypt(3) hash libxcrypt verifies; traditional DES is refused),
 * and "{PBKDF2}$1$<salt>$<rounds>$<40 hex digits>" (PBKDF2-HMAC-SHA1 over the salt as text).
 */
struct crypt_scheme {
    const char *tag;    /* "{SHA512-CRYPT}" */
    const char *prefix; /* what the crypt setting must start with ("$" for any) */
};

static const struct crypt_scheme crypt_schemes[] = {
    {"{SHA512-CRYPT}", "$6$"}, {"{SHA256-CRYPT}", "$5$"}, {"{BLF-CRYPT}", "$2"},
    {"{MD5-CRYPT}", "$1$"},    {"{CRYPT}", "$"},
};

#define DOVECOT_PBKDF2 "{PBKDF2}$1$"
#define DOVECOT_PBKDF2_LEN 20 /* SHA-1 output */

static const struct crypt_scheme *crypt_scheme_of(const char *encoded)
{
    for (size_t i = 0; i < sizeof(crypt_schemes) / sizeof(crypt_schemes[0]); i++) {
        size_t n = strlen(crypt_schemes[i].tag);
        if (strncmp(encoded, crypt_schemes[i].tag, n) == 0 &&
            strncmp(encoded + n, crypt_schemes[i].prefix, strlen(crypt_schemes[i].prefix)) == 0)
            return &crypt_schemes[i];
    }
    return NULL;
}

/* crypt_rn (libxcrypt, thread-safe: all state in the caller's crypt_data). */
static int verify_crypt(const char *password, size_t len, const char *setting, bool *match_r,
                        const char **error_r)
{
    if (strlen(setting) >= CRYPT_OUTPUT_SIZE) {
        *error_r = "malformed crypt hash: too long";
        return -1;
    }
    struct crypt_data *cd = calloc(1, sizeof(*cd));
    char *pw = malloc(len + 1);
    if (cd == NULL || pw == NULL) {
        free(cd);
        free(pw);
        *error_r = "out of memory";
        return -1;
    }
    /* crypt(3) takes a C string: a password with a NUL byte is hashed as "*" never matches. */
    bool has_nul = len > 0 && memchr(password, '\0', len) != NULL;
    if (len > 0)
        memcpy(pw, password, len);
    pw[len] = '\0';
    const char *out = crypt_rn(has_nul ? "" : pw, setting, cd, (int)sizeof(*cd));
    int rc = 0;
    if (out == NULL || out[0] == '*' || strlen(out) != strlen(setting)) {
        /* A bare setting ("$6$salt") hashes to something longer: not a stored hash. */
        *error_r = "malformed or unsupported crypt hash";
        rc = -1;
    } else {
        *match_r = !has_nul && CRYPTO_memcmp(out, setting, strlen(setting)) == 0;
    }
    OPENSSL_cleanse(pw, len + 1);
    OPENSSL_cleanse(cd, sizeof(*cd));
    free(pw);
    free(cd);
    return rc;
}

static int hex_nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* "{PBKDF2}$1$<salt>$<rounds>$<hex>", Dovecot's PBKDF2-HMAC-SHA1. */
static int verify_dovecot_pbkdf2(const char *password, size_t len, const char *encoded,
                                 bool *match_r, const char **error_r)
{
    const char *salt = encoded + strlen(DOVECOT_PBKDF2);
    const char *d1 = strchr(salt, '$');
    const char *d2 = d1 != NULL ? strchr(d1 + 1, '$') : NULL;
    uint32_t rounds;
    if (d1 == NULL || d2 == NULL || d1 == salt || d1 - salt > PASSWORD_SALT_MAX ||
        parse_iterations(d1 + 1, (size_t)(d2 - d1 - 1), &rounds) != 0 ||
        strlen(d2 + 1) != 2 * DOVECOT_PBKDF2_LEN) {
        *error_r = "malformed {PBKDF2} hash";
        return -1;
    }
    unsigned char want[DOVECOT_PBKDF2_LEN], got[DOVECOT_PBKDF2_LEN];
    for (size_t i = 0; i < DOVECOT_PBKDF2_LEN; i++) {
        int hi = hex_nibble(d2[1 + 2 * i]), lo = hex_nibble(d2[2 + 2 * i]);
        if (hi < 0 || lo < 0) {
            *error_r = "malformed {PBKDF2} hash";
            return -1;
        }
        want[i] = (unsigned char)(hi << 4 | lo);
    }
    if (PKCS5_PBKDF2_HMAC(len == 0 ? "" : password, (int)len, (const unsigned char *)salt,
                          (int)(d1 - salt), (int)rounds, EVP_sha1(), DOVECOT_PBKDF2_LEN,
                          got) != 1) {
        *error_r = "PBKDF2 failed";
        return -1;
    }
    *match_r = CRYPTO_memcmp(got, want, DOVECOT_PBKDF2_LEN) == 0;
    OPENSSL_cleanse(got, sizeof(got));
    return 0;
}

int password_verify(const char *password, size_t len, const char *encoded, bool *match_r,
                    const char **error_r)
{
    *match_r = false;
    const struct crypt_scheme *cs = crypt_scheme_of(encoded);
    if (cs != NULL) {
        if (len > PASSWORD_MAX_LEN)
            return 0;
        return verify_crypt(password, len, encoded + strlen(cs->tag), match_r, error_r);
    }
    if (strncmp(encoded, DOVECOT_PBKDF2, strlen(DOVECOT_PBKDF2)) == 0) {
        if (len > PASSWORD_MAX_LEN)
            return 0;
        return verify_dovecot_pbkdf2(password, len, encoded, match_r, error_r);
    }
    struct password_parsed p;
    if (password_parse(encoded, &p, error_r) != 0)
        return -1;
    if (len > PASSWORD_MAX_LEN) {
        /* Still a well-formed question with a definite answer: no. */
        return 0;
    }
    unsigned char computed[PASSWORD_HASH_LEN];
    if (pbkdf2(password, len, p.salt, p.salt_len, p.iterations, computed) != 0) {
        *error_r = "PBKDF2 failed";
        return -1;
    }
    *match_r = CRYPTO_memcmp(computed, p.hash, PASSWORD_HASH_LEN) == 0;
    OPENSSL_cleanse(computed, sizeof(computed));
    OPENSSL_cleanse(p.hash, sizeof(p.hash));
    return 0;
}

static pthread_once_t dummy_once = PTHREAD_ONCE_INIT;
static char *dummy_hash;

static void dummy_init(void)
{
    unsigned char secret[32];
    const char *error;
    if (RAND_bytes(secret, sizeof(secret)) != 1 ||
        password_hash((const char *)secret, sizeof(secret), PASSWORD_DEFAULT_ITERATIONS,
                      &dummy_hash, &error) != 0) {
        /* Without a dummy hash unknown users would answer faster: refuse to run instead. */
        fputs("password: cannot make the dummy hash (random number generator failed)\n", stderr);
        abort();
    }
    OPENSSL_cleanse(secret, sizeof(secret));
}

int password_check_encoded(const char *encoded, const char **error_r)
{
    bool match;
    if (crypt_scheme_of(encoded) == NULL &&
        strncmp(encoded, DOVECOT_PBKDF2, strlen(DOVECOT_PBKDF2)) != 0 &&
        strncmp(encoded, "$pbkdf2-sha256$", strlen("$pbkdf2-sha256$")) != 0) {
        *error_r = "unknown password scheme (expected {SHA512-CRYPT}, {SHA256-CRYPT}, "
                   "{BLF-CRYPT}, {MD5-CRYPT}, {CRYPT}, {PBKDF2} or $pbkdf2-sha256$)";
        return -1;
    }
    for (const char *p = encoded; *p != '\0'; p++) {
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f) {
            *error_r = "a password hash is printable ASCII without spaces";
            return -1;
        }
    }
    return password_verify("", 0, encoded, &match, error_r);
}

const char *password_dummy_hash(void)
{
    if (pthread_once(&dummy_once, dummy_init) != 0)
        abort();
    return dummy_hash;
}
