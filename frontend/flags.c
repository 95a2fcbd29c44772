/*
 * Flag lists. A keyword is an atom (RFC 3501 §9: ATOM-CHAR excludes "(" ")" "{" SP CTL "%" "*"
 * DQUOTE "\" "]"); a system flag is one of five backslash words. Other backslash words
 * (flag-extension) are refused: the server cannot store them.
 */
#include "frontend/flags.h"

#include <string.h>
#include <strings.h>

static const char *const system_flags[] = {"\\Seen", "\\Answered", "\\Flagged", "\\Deleted",
                                           "\\Draft"};

bool flags_keyword_valid(const char *s, size_t len)
{
    if (len == 0 || len > FLAGS_MAX_KEYWORD_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f || strchr("(){%*\"\\]", c) != NULL)
            return false;
    }
    return true;
}

static bool present(const char *list, size_t used, const char *word, size_t wlen)
{
    size_t i = 0;
    while (i < used) {
        const char *sp = memchr(list + i, ' ', used - i);
        size_t end = sp != NULL ? (size_t)(sp - list) : used;
        if (end - i == wlen && strncasecmp(list + i, word, wlen) == 0)
            return true;
        i = end + 1;
    }
    return false;
}

const char *flags_canonical(struct arena *a, const struct imap_arg *list, bool allow_recent,
                            const char **error_r)
{
    const struct imap_arg *items = list;
    size_t n = 1;
    if (list->type == IMAP_ARG_LIST) {
        items = list->list;
        n = list->count;
    }
    size_t cap = 1;
    for (size_t i = 0; i < n; i++)
        cap += items[i].len + 1;
    char *out = arena_alloc(a, cap);
    size_t used = 0;
    for (size_t i = 0; i < n; i++) {
        const struct imap_arg *f = &items[i];
        if (f->type != IMAP_ARG_ATOM) {
            *error_r = "Flags are atoms";
            return NULL;
        }
        const char *word = f->str;
        size_t wlen = f->len;
        if (wlen > 0 && word[0] == '\\') {
            const char *canon = NULL;
            for (size_t k = 0; k < sizeof(system_flags) / sizeof(system_flags[0]); k++) {
                if (strlen(system_flags[k]) == wlen && strncasecmp(system_flags[k], word, wlen) == 0)
                    canon = system_flags[k];
            }
            if (canon == NULL && wlen == 7 && strncasecmp(word, "\\Recent", 7) == 0) {
                if (!allow_recent) {
                    *error_r = "\\Recent cannot be set";
                    return NULL;
                }
                continue;
            }
            if (canon == NULL) {
                *error_r = "Unknown system flag";
                return NULL;
            }
            word = canon;
        } else if (!flags_keyword_valid(word, wlen)) {
            *error_r = "Invalid keyword";
            return NULL;
        }
        if (present(out, used, word, wlen))
            continue;
        if (used > 0)
            out[used++] = ' ';
        memcpy(out + used, word, wlen);
        used += wlen;
    }
    out[used] = '\0';
    return out;
}
