/*
 * mboxname: validation, INBOX normalisation, hierarchy and LIST pattern matching of mailbox names
 * (RFC 3501 §5.1, §5.1.3, §6.3.8). Pure: no I/O, nothing kept between calls, no allocation but the
 * caller's arena in mboxname_normalize().
 *
 * Validation insists on the canonical modified UTF-7 spelling because the name is the field of
 * the mailboxes hash: two spellings of one name would be two mailboxes. It does not decode names
 * for display or convert from UTF-8 (UTF8=ACCEPT, RFC 6855, is not offered).
 *
 * Pattern matching walks the pattern once, keeping the set of name positions reachable so far
 * (a bitmap of at most MBOXNAME_MATCH_MAX + 1 bytes on the stack), so "*" and "%" never backtrack:
 * the cost is bounded by pattern length × name length whatever the client sends.
 */
#include "frontend/mboxname.h"

#include "frontend/arena.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

/* Longest name mboxname_match() considers; longer names never match (limits are far below). */
#define MBOXNAME_MATCH_MAX 4096

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == ',') /* modified BASE64: ',' instead of '/' (RFC 3501 §5.1.3) */
        return 63;
    return -1;
}

/* A UTF-16 unit that must not appear in a base64 run on its own (surrogates are handled apart). */
static bool unit_forbidden(uint32_t u)
{
    /* Printable US-ASCII MUST represent itself; C0, DEL and C1 controls are never allowed. */
    return u <= 0x9f;
}

/*
 * Checks one base64 run starting at name[*pos] (just after "&", not "&-"); on success *pos is just
 * after its closing "-".
 */
static bool utf7_run_valid(const char *name, size_t len, size_t *pos)
{
    uint32_t bits = 0;
    unsigned nbits = 0;
    bool high_pending = false;
    size_t chars = 0;
    size_t i = *pos;
    for (; i < len && name[i] != '-'; i++) {
        int v = base64_value((unsigned char)name[i]);
        if (v < 0)
            return false;
        bits = (bits << 6) | (uint32_t)v;
        nbits += 6;
        if (nbits < 16)
            continue;
        nbits -= 16;
        uint32_t u = (bits >> nbits) & 0xffffu;
        bits &= (1u << nbits) - 1u;
        if (high_pending) {
            if (u < 0xdc00 || u > 0xdfff)
                return false;
            high_pending = false;
            chars++;
        } else if (u >= 0xd800 && u <= 0xdbff) {
            high_pending = true;
        } else if ((u >= 0xdc00 && u <= 0xdfff) || unit_forbidden(u)) {
            return false;
        } else {
            chars++;
        }
    }
    if (i == len)      /* unterminated run */
        return false;
    if (high_pending || chars == 0)
        return false;
    if (nbits >= 6 || bits != 0) /* a wasted base64 character, or non-zero padding bits */
        return false;
    *pos = i + 1;
    return true;
}

bool mboxname_utf7_valid(const char *name, size_t len)
{
    size_t last_run_end = SIZE_MAX; /* index just after the previous base64 run's "-" */
    size_t i = 0;
    while (i < len) {
        unsigned char c = (unsigned char)name[i];
        if (c != '&') {
            if (c < 0x20 || c > 0x7e)
                return false;
            i++;
            continue;
        }
        size_t amp = i++;
        if (i < len && name[i] == '-') { /* "&-" is "&" */
            i++;
            continue;
        }
        if (amp == last_run_end) /* adjacent runs: not the canonical spelling */
            return false;
        if (!utf7_run_valid(name, len, &i))
            return false;
        last_run_end = i;
    }
    return true;
}

static bool inbox_prefix_nocase(const char *name, size_t len)
{
    return len >= 5 && strncasecmp(name, "INBOX", 5) == 0 && (len == 5 || name[5] == MBOXNAME_DELIM);
}

bool mboxname_is_inbox(const char *name, size_t len)
{
    return len >= 5 && memcmp(name, "INBOX", 5) == 0 && (len == 5 || name[5] == MBOXNAME_DELIM);
}

int mboxname_validate(const char *name, size_t len, const struct mboxname_limits *limits,
                      char *out, const char **code_r, const char **error_r)
{
    *code_r = "CANNOT";
    if (len == 0) {
        *error_r = "Empty mailbox name";
        return -1;
    }
    if (len > limits->max_len) {
        *code_r = "LIMIT";
        *error_r = "Mailbox name too long";
        return -1;
    }
    size_t depth = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)name[i];
        if (c < 0x20 || c == 0x7f) {
            *error_r = "Control characters are not allowed in mailbox names";
            return -1;
        }
        if (c >= 0x80) {
            *error_r = "Mailbox names must be 7-bit (modified UTF-7, RFC 3501 5.1.3)";
            return -1;
        }
        if (c == '*' || c == '%') {
            *error_r = "Wildcards are not allowed in mailbox names";
            return -1;
        }
        if (c == MBOXNAME_DELIM) {
            if (i == 0 || i + 1 == len || name[i - 1] == MBOXNAME_DELIM) {
                *error_r = "Empty hierarchy level in mailbox name";
                return -1;
            }
            depth++;
        }
    }
    if (depth > limits->max_depth) {
        *code_r = "LIMIT";
        *error_r = "Mailbox hierarchy too deep";
        return -1;
    }
    if (!mboxname_utf7_valid(name, len)) {
        *error_r = "Invalid modified UTF-7 in mailbox name (RFC 3501 5.1.3)";
        return -1;
    }
    if (out != name)
        memmove(out, name, len);
    out[len] = '\0';
    if (inbox_prefix_nocase(out, len))
        memcpy(out, "INBOX", 5);
    *code_r = NULL;
    *error_r = NULL;
    return 0;
}

const char *mboxname_normalize(struct arena *arena, const char *name, size_t len,
                               const char **error_r)
{
    static const struct mboxname_limits caps = {MBOXNAME_MAX_LEN, MBOXNAME_MAX_DEPTH};
    const char *code = NULL;
    if (len > MBOXNAME_MAX_LEN) {
        *error_r = "Mailbox name too long";
        return NULL;
    }
    char *out = arena_alloc(arena, len + 1);
    if (mboxname_validate(name, len, &caps, out, &code, error_r) != 0)
        return NULL;
    return out;
}

size_t mboxname_parents(const char *name, size_t len, size_t *lens, size_t max)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++) {
        if (name[i] != MBOXNAME_DELIM)
            continue;
        if (n < max)
            lens[n] = i;
        n++;
    }
    return n;
}

bool mboxname_is_child(const char *parent, size_t plen, const char *child, size_t clen)
{
    return clen > plen + 1 && memcmp(parent, child, plen) == 0 && child[plen] == MBOXNAME_DELIM;
}

static unsigned char upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? (unsigned char)(c - 'a' + 'A') : c;
}

bool mboxname_match(const char *pattern, size_t plen, const char *name, size_t nlen)
{
    if (nlen > MBOXNAME_MATCH_MAX)
        return false;
    /* reach[j]: the pattern read so far can match exactly name[0..j). */
    bool reach[MBOXNAME_MATCH_MAX + 1];
    memset(reach, 0, nlen + 1);
    reach[0] = true;
    size_t fold = mboxname_is_inbox(name, nlen) ? 5 : 0; /* name bytes matched case-insensitively */
    unsigned char prev = 0;
    for (size_t p = 0; p < plen; p++) {
        unsigned char pc = (unsigned char)pattern[p];
        bool any = false;
        if (pc == '*') {
            if (prev == '*')
                continue;
            bool r = false;
            for (size_t j = 0; j <= nlen; j++) {
                r = r || reach[j];
                reach[j] = r;
            }
            any = r;
        } else if (pc == '%') {
            if (prev == '*' || prev == '%') /* "*%" is "*", "%%" is "%" */
                continue;
            any = reach[0];
            for (size_t j = 1; j <= nlen; j++) {
                reach[j] = reach[j] || (reach[j - 1] && name[j - 1] != MBOXNAME_DELIM);
                any = any || reach[j];
            }
        } else {
            for (size_t j = nlen; j > 0; j--) {
                unsigned char nc = (unsigned char)name[j - 1];
                bool eq = pc == nc || (j - 1 < fold && upper(pc) == nc);
                reach[j] = reach[j - 1] && eq;
                any = any || reach[j];
            }
            reach[0] = false;
        }
        if (!any)
            return false;
        prev = pc;
    }
    return reach[nlen];
}

size_t mboxname_pattern_compact(char *pattern, size_t len)
{
    size_t w = 0;
    size_t i = 0;
    while (i < len) {
        if (pattern[i] != '*' && pattern[i] != '%') {
            pattern[w++] = pattern[i++];
            continue;
        }
        char wild = '%';
        for (; i < len && (pattern[i] == '*' || pattern[i] == '%'); i++) {
            if (pattern[i] == '*')
                wild = '*';
        }
        pattern[w++] = wild;
    }
    return w;
}
