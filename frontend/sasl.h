/*
 * sasl: the server side of the SASL mechanisms AUTHENTICATE offers (RFC 3501 §6.2.2, RFC 4422),
 * one file per mechanism (sasl_<mech>.c) behind one small interface, plus strict base64.
 *
 * A mechanism only turns client responses into either the next challenge or a user name and
 * password; it never looks anything up. The command (cmd_authenticate.c) does the IMAP framing
 * ("+ " lines, "*" to cancel, SASL-IR) and hands the credentials to auth.c. Pure: no I/O.
 */
#ifndef CIMAP_SASL_H
#define CIMAP_SASL_H

#include <stdbool.h>
#include <stddef.h>

struct arena;

enum sasl_status {
    SASL_CHALLENGE,   /* send out->challenge and feed the client's next response to step */
    SASL_CREDENTIALS, /* done: verify out->authcid / out->password */
    SASL_FAILED,      /* malformed or not allowed: fail the authentication (out->error says why) */
};

/* What one step produced; pointers stay valid as documented per field. */
struct sasl_output {
    const char *challenge;   /* SASL_CHALLENGE: base64 text, maybe empty (static) */
    const char *authcid;     /* SASL_CREDENTIALS: the user name (into resp or the arena) */
    size_t authcid_len;
    const char *password;    /* SASL_CREDENTIALS: points into resp: valid while resp is */
    size_t password_len;
    const char *error;       /* SASL_FAILED: static text for the log */
};

struct sasl_mech {
    const char *name;        /* upper case, as advertised in AUTH=<name> */
    size_t state_size;       /* bytes of per-exchange state, zeroed before the first step */
    /*
     * Processes the client's next response: resp/len is the decoded response, or resp == NULL
     * for "no response yet" (AUTHENTICATE without an initial response: produce the first
     * challenge). state persists across the steps of one exchange; a is the command's arena,
     * for anything kept between steps. Fills *out for the status returned.
     */
    enum sasl_status (*step)(void *state, struct arena *a, const unsigned char *resp, size_t len,
                             struct sasl_output *out);
};

/* The mechanism called name (len bytes, any case), or NULL when not offered. */
const struct sasl_mech *sasl_find(const char *name, size_t len);

/* The offered mechanisms, in advertising order: i < sasl_mech_count(). */
size_t sasl_mech_count(void);
const struct sasl_mech *sasl_mech_at(size_t i);

/* Bytes sasl_base64_decode may write for len bytes of input. */
#define SASL_BASE64_DECODED_MAX(len) ((len) / 4 * 3)

/*
 * Decodes strict base64 (RFC 4648 §4: the standard alphabet, padded to a multiple of 4, '='
 * only at the end, no whitespace, unused bits zero). out must hold SASL_BASE64_DECODED_MAX(len)
 * bytes. Returns 0 with *out_len_r, or -1 when in is not such base64. An empty input decodes to
 * an empty output.
 */
int sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len_r);

/* The mechanisms (sasl_plain.c, sasl_login.c). */
extern const struct sasl_mech sasl_mech_plain;
extern const struct sasl_mech sasl_mech_login;

#endif
