/*
 * SASL PLAIN (RFC 4616): one message, [authzid] NUL authcid NUL passwd. cimap has no proxy or
 * master users, so the authorization identity must be empty or the authentication identity
 * itself (§2: the server verifies that authcid may act as authzid); anything else fails. The
 * password may not contain NUL (it is the separator), so a third NUL is malformed. Without an
 * initial response the first challenge is empty (§2: "The server ... sends an empty challenge").
 */
#include <string.h>

#include "frontend/sasl.h"

static enum sasl_status plain_step(void *state, struct arena *a, const unsigned char *resp,
                                   size_t len, struct sasl_output *out)
{
    (void)state;
    (void)a;
    if (resp == NULL) {
        out->challenge = "";
        return SASL_CHALLENGE;
    }
    const unsigned char *nul1 = memchr(resp, '\0', len);
    if (nul1 == NULL) {
        out->error = "PLAIN message without NUL separators";
        return SASL_FAILED;
    }
    size_t authzid_len = (size_t)(nul1 - resp);
    const unsigned char *authcid = nul1 + 1;
    size_t rest = len - authzid_len - 1;
    const unsigned char *nul2 = memchr(authcid, '\0', rest);
    if (nul2 == NULL) {
        out->error = "PLAIN message without a password";
        return SASL_FAILED;
    }
    size_t authcid_len = (size_t)(nul2 - authcid);
    const unsigned char *passwd = nul2 + 1;
    size_t passwd_len = rest - authcid_len - 1;
    if (authcid_len == 0 || passwd_len == 0 || memchr(passwd, '\0', passwd_len) != NULL) {
        out->error = "malformed PLAIN message";
        return SASL_FAILED;
    }
    out->authcid = (const char *)authcid;
    out->authcid_len = authcid_len;
    if (authzid_len != 0 &&
        (authzid_len != authcid_len || memcmp(resp, authcid, authcid_len) != 0)) {
        out->error = "authorization identity is not the user";
        return SASL_FAILED;
    }
    out->password = (const char *)passwd;
    out->password_len = passwd_len;
    return SASL_CREDENTIALS;
}

const struct sasl_mech sasl_mech_plain = {"PLAIN", 0, plain_step};
