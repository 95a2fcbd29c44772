/* Per-user limits: defaults and their overrides from the user record (see user_limits.h). */
#include "frontend/user_limits.h"

#include "frontend/limits.h"

const char *const user_limits_params[USER_LIMITS_COUNT] = {
    "param:quota_bytes",  "param:quota_messages", "param:max_mailboxes",
    "param:max_name_len", "param:max_depth",      "param:max_keywords",
};

void user_limits_default(struct user_limits *l)
{
    l->quota_bytes = 0;
    l->quota_messages = 0;
    l->max_mailboxes = LIMITS_MAX_MAILBOXES;
    l->max_name_len = LIMITS_MAX_NAME_LEN;
    l->max_depth = LIMITS_MAX_DEPTH;
    l->max_keywords = LIMITS_MAX_KEYWORDS;
}

int user_limits_set(struct user_limits *l, size_t i, const char *value, size_t len)
{
    if (len == 0 || len > 19)
        return -1;
    uint64_t v = 0;
    for (size_t k = 0; k < len; k++) {
        if (value[k] < '0' || value[k] > '9')
            return -1;
        v = v * 10 + (uint64_t)(value[k] - '0');
    }
    switch (i) {
    case 0:
        l->quota_bytes = v;
        return 0;
    case 1:
        l->quota_messages = v;
        return 0;
    default:
        break;
    }
    if (v == 0 || v > UINT32_MAX)
        return -1;
    /* names are bounded by the scripts' hard cap (1,024 bytes, mboxname_normalize) */
    if (i == 3 && v > 1024)
        v = 1024;
    uint32_t *field[] = {NULL, NULL, &l->max_mailboxes, &l->max_name_len, &l->max_depth,
                         &l->max_keywords};
    if (i >= USER_LIMITS_COUNT)
        return -1;
    *field[i] = (uint32_t)v;
    return 0;
}
