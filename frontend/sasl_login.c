/*
 * SASL LOGIN (draft-murchison-sasl-login-00): the obsolete but widely used two-prompt exchange
 * (Outlook and many devices still prefer it). The server prompts "Username:" then "Password:",
 * base64 "VXNlcm5hbWU6" / "UGFzc3dvcmQ6"; the client answers each with the plain value. An
 * initial response (SASL-IR) is taken as the user name (as the draft allows), skipping the
 * first prompt. Not offered over plaintext (auth_allowed), like PLAIN.
 */
#include "frontend/arena.h"
#include "frontend/sasl.h"

#define PROMPT_USERNAME "VXNlcm5hbWU6" /* "Username:" */
#define PROMPT_PASSWORD "UGFzc3dvcmQ6" /* "Password:" */

struct login_state {
    bool have_user;
    const char *user; /* arena copy */
    size_t user_len;
};

static enum sasl_status login_step(void *state, struct arena *a, const unsigned char *resp,
                                   size_t len, struct sasl_output *out)
{
    struct login_state *ls = state;
    if (resp == NULL) {
        out->challenge = PROMPT_USERNAME;
        return SASL_CHALLENGE;
    }
    if (!ls->have_user) {
        if (len == 0) {
            out->error = "empty user name";
            return SASL_FAILED;
        }
        ls->user = arena_strndup(a, (const char *)resp, len);
        ls->user_len = len;
        ls->have_user = true;
        out->challenge = PROMPT_PASSWORD;
        return SASL_CHALLENGE;
    }
    out->authcid = ls->user;
    out->authcid_len = ls->user_len;
    out->password = (const char *)resp;
    out->password_len = len;
    return SASL_CREDENTIALS;
}

const struct sasl_mech sasl_mech_login = {"LOGIN", sizeof(struct login_state), login_step};
