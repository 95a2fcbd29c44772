/*
 * fetch_att: turns FETCH's item argument into a plan (fetch_att.h).
 *
 * The parser hands every item over as one atom, a section and its partial included
 * ("BODY.PEEK[HEADER.FIELDS (A "B]")]<0.10>"), so this file finds the closing ']' itself (skipping
 * quoted strings), parses the section with the mail library and builds the name the response
 * echoes (RFC 3501 §7.4.2: BODY.PEEK answers as BODY, a partial as "<origin>"). Macros (ALL, FAST,
 * FULL) are only valid alone, never inside a list (RFC 3501 §9 "fetch"). Simple items asked twice
 * are answered once. MODSEQ is not accepted: CONDSTORE is not advertised.
 */
#include "frontend/fetch_att.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

static bool name_eq(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static const struct {
    const char *name;
    enum fetch_att_kind kind;
} simple_atts[] = {
    {"UID", FETCH_ATT_UID},
    {"FLAGS", FETCH_ATT_FLAGS},
    {"INTERNALDATE", FETCH_ATT_INTERNALDATE},
    {"RFC822.SIZE", FETCH_ATT_RFC822_SIZE},
    {"ENVELOPE", FETCH_ATT_ENVELOPE},
    {"BODY", FETCH_ATT_BODY},
    {"BODYSTRUCTURE", FETCH_ATT_BODYSTRUCTURE},
    {"EMAILID", FETCH_ATT_EMAILID},
    {"THREADID", FETCH_ATT_THREADID},
};

/* Adds a simple (non-section) item unless the plan has it already. */
static void add_simple(struct fetch_plan *plan, enum fetch_att_kind kind)
{
    for (size_t i = 0; i < plan->n; i++) {
        if (plan->atts[i].kind == kind)
            return;
    }
    struct fetch_att *att = &plan->atts[plan->n++];
    memset(att, 0, sizeof(*att));
    att->kind = kind;
}

/* Parses "number" (up to 2^32 - 1) from s[*i..len). */
static bool parse_number(const char *s, size_t len, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;
    while (*i < len && s[*i] >= '0' && s[*i] <= '9') {
        v = v * 10 + (uint64_t)(s[*i] - '0');
        if (v > UINT32_MAX)
            return false;
        (*i)++;
    }
    *out = v;
    return *i > start;
}

/* Builds the echoed name: prefix "[" section "]" and "<origin>" for a partial. */
static void build_echo(struct arena *a, struct fetch_att *att, const char *prefix)
{
    struct mail_buf b = {0};
    mail_buf_append(&b, prefix, strlen(prefix));
    mail_buf_append(&b, "[", 1);
    mail_section_render(&att->section, &b);
    mail_buf_append(&b, "]", 1);
    if (att->partial) {
        char num[24];
        int n = snprintf(num, sizeof(num), "<%llu>", (unsigned long long)att->origin);
        mail_buf_append(&b, num, (size_t)n);
    }
    att->echo = arena_strndup(a, (const char *)b.data, b.len);
    att->echo_len = b.len;
    mail_buf_free(&b);
}

/* An item with a section: BODY[, BODY.PEEK[, BINARY[, BINARY.PEEK[, BINARY.SIZE[. */
static int parse_section_att(struct arena *a, const char *s, size_t len, size_t open,
                             struct fetch_att *att, const char **error_r)
{
    const char *prefix = NULL;
    if (name_eq(s, open, "BODY")) {
        prefix = "BODY";
    } else if (name_eq(s, open, "BODY.PEEK")) {
        prefix = "BODY";
        att->peek = true;
    } else if (name_eq(s, open, "BINARY")) {
        prefix = "BINARY";
        att->binary = true;
    } else if (name_eq(s, open, "BINARY.PEEK")) {
        prefix = "BINARY";
        att->binary = true;
        att->peek = true;
    } else if (name_eq(s, open, "BINARY.SIZE")) {
        prefix = "BINARY.SIZE";
        att->binary = true;
        att->peek = true;
    } else {
        *error_r = "Unknown FETCH data item";
        return -1;
    }
    att->kind = name_eq(s, open, "BINARY.SIZE") ? FETCH_ATT_BINARY_SIZE : FETCH_ATT_SECTION;
    size_t i = open + 1, close = 0;
    bool found = false;
    while (i < len && !found) {
        if (s[i] == '"') {
            for (i++; i < len && s[i] != '"'; i++) {
                if (s[i] == '\\')
                    i++;
            }
            if (i >= len)
                break;
        } else if (s[i] == ']') {
            close = i;
            found = true;
        }
        i++;
    }
    if (!found) {
        *error_r = "Missing ] in FETCH section";
        return -1;
    }
    if (mail_section_parse(s + open + 1, close - open - 1, &att->section, error_r) != 0)
        return -1;
    if (att->binary && att->section.text != MAIL_SECTION_ALL) {
        *error_r = "BINARY takes part numbers only";
        return -1;
    }
    att->whole = att->section.path_len == 0 && att->section.text == MAIL_SECTION_ALL;
    i = close + 1;
    if (i < len) {
        if (att->kind == FETCH_ATT_BINARY_SIZE || s[i] != '<') {
            *error_r = "Unexpected text after FETCH section";
            return -1;
        }
        i++;
        if (!parse_number(s, len, &i, &att->origin) || i >= len || s[i] != '.') {
            *error_r = "Bad partial range";
            return -1;
        }
        i++;
        if (!parse_number(s, len, &i, &att->count) || att->count == 0 || i + 1 != len ||
            s[i] != '>') {
            *error_r = "Bad partial range";
            return -1;
        }
        att->partial = true;
    }
    build_echo(a, att, prefix);
    return 0;
}

/* Adds one item (not a macro). */
static int parse_att(struct arena *a, const struct imap_arg *arg, struct fetch_plan *plan,
                     const char **error_r)
{
    if (arg->type != IMAP_ARG_ATOM || arg->len == 0) {
        *error_r = "FETCH data items are atoms";
        return -1;
    }
    const char *s = arg->str;
    size_t len = arg->len;
    for (size_t k = 0; k < sizeof(simple_atts) / sizeof(simple_atts[0]); k++) {
        if (name_eq(s, len, simple_atts[k].name)) {
            add_simple(plan, simple_atts[k].kind);
            return 0;
        }
    }
    struct fetch_att *att = &plan->atts[plan->n];
    memset(att, 0, sizeof(*att));
    const char *open = memchr(s, '[', len);
    if (open != NULL) {
        plan->n++; /* counted at once so fetch_plan_free sees its section even after an error */
        return parse_section_att(a, s, len, (size_t)(open - s), att, error_r);
    }
    /* RFC 3501 §6.4.5: RFC822 = BODY[], RFC822.HEADER = BODY.PEEK[HEADER], RFC822.TEXT = BODY[TEXT]. */
    att->kind = FETCH_ATT_SECTION;
    if (name_eq(s, len, "RFC822")) {
        att->whole = true;
        att->echo = "RFC822";
    } else if (name_eq(s, len, "RFC822.HEADER")) {
        att->section.text = MAIL_SECTION_HEADER;
        att->peek = true;
        att->echo = "RFC822.HEADER";
    } else if (name_eq(s, len, "RFC822.TEXT")) {
        att->section.text = MAIL_SECTION_TEXT;
        att->echo = "RFC822.TEXT";
    } else {
        *error_r = "Unknown FETCH data item";
        return -1;
    }
    att->echo_len = strlen(att->echo);
    plan->n++;
    return 0;
}

static void compute_needs(struct fetch_plan *plan)
{
    for (size_t i = 0; i < plan->n; i++) {
        const struct fetch_att *att = &plan->atts[i];
        switch (att->kind) {
        case FETCH_ATT_UID:
            plan->has_uid = true;
            break;
        case FETCH_ATT_FLAGS:
            plan->has_flags = true;
            plan->need_flags = true;
            break;
        case FETCH_ATT_INTERNALDATE:
        case FETCH_ATT_RFC822_SIZE:
        case FETCH_ATT_EMAILID:
        case FETCH_ATT_THREADID:
            plan->need_msg = true;
            break;
        case FETCH_ATT_ENVELOPE:
            plan->need_msg = plan->need_env = true;
            break;
        case FETCH_ATT_BODYSTRUCTURE:
            plan->need_msg = plan->need_bs = true;
            break;
        case FETCH_ATT_BODY:
            plan->need_msg = plan->need_parse = true;
            break;
        case FETCH_ATT_SECTION:
            plan->need_msg = plan->need_raw = true;
            if (!att->whole)
                plan->need_parse = true;
            if (!att->peek)
                plan->sets_seen = plan->need_flags = true;
            break;
        case FETCH_ATT_BINARY_SIZE:
            plan->need_msg = true;
            if (!att->whole)
                plan->need_parse = true;
            break;
        }
    }
}

int fetch_plan_parse(struct arena *a, const struct imap_arg *arg, bool uid, struct fetch_plan *plan,
                     const char **error_r)
{
    memset(plan, 0, sizeof(*plan));
    size_t max = (arg->type == IMAP_ARG_LIST ? arg->count : 1) + 5;
    plan->atts = arena_calloc(a, max, sizeof(*plan->atts));
    if (uid)
        add_simple(plan, FETCH_ATT_UID);
    if (arg->type == IMAP_ARG_LIST) {
        if (arg->count == 0) {
            *error_r = "Empty FETCH item list";
            return -1;
        }
        for (size_t i = 0; i < arg->count; i++) {
            if (parse_att(a, &arg->list[i], plan, error_r) != 0)
                return -1;
        }
    } else if (arg->type == IMAP_ARG_ATOM && name_eq(arg->str, arg->len, "ALL")) {
        add_simple(plan, FETCH_ATT_FLAGS);
        add_simple(plan, FETCH_ATT_INTERNALDATE);
        add_simple(plan, FETCH_ATT_RFC822_SIZE);
        add_simple(plan, FETCH_ATT_ENVELOPE);
    } else if (arg->type == IMAP_ARG_ATOM && name_eq(arg->str, arg->len, "FAST")) {
        add_simple(plan, FETCH_ATT_FLAGS);
        add_simple(plan, FETCH_ATT_INTERNALDATE);
        add_simple(plan, FETCH_ATT_RFC822_SIZE);
    } else if (arg->type == IMAP_ARG_ATOM && name_eq(arg->str, arg->len, "FULL")) {
        add_simple(plan, FETCH_ATT_FLAGS);
        add_simple(plan, FETCH_ATT_INTERNALDATE);
        add_simple(plan, FETCH_ATT_RFC822_SIZE);
        add_simple(plan, FETCH_ATT_ENVELOPE);
        add_simple(plan, FETCH_ATT_BODY);
    } else if (parse_att(a, arg, plan, error_r) != 0) {
        return -1;
    }
    compute_needs(plan);
    return 0;
}

void fetch_plan_free(struct fetch_plan *plan)
{
    if (plan == NULL || plan->atts == NULL)
        return;
    for (size_t i = 0; i < plan->n; i++)
        mail_section_free(&plan->atts[i].section);
}
