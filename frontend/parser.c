/*
 * parser: a byte-driven state machine over one IMAP command at a time (RFC 3501 §9 "command",
 * RFC 7888 LITERAL+, RFC 3516 literal8), fed by the connection as bytes arrive.
 *
 * How it works
 * - Every piece of parsing state lives in struct parser, so input may be split at any byte: the
 *   same bytes give the same commands, literals and errors however they are chunked.
 * - The token being read (tag, command name, atom, quoted string) is gathered in a small scratch
 *   buffer that never exceeds max_line; a finished token is copied once into the command's arena.
 *   Arguments collect on a scratch stack; a closing ')' moves its children into an arena array, the
 *   closing CRLF moves the top level. Scratch memory shrinks back after each command, so an idle
 *   connection holds a few hundred bytes.
 * - Runs of atom or quoted-string bytes are scanned in tight loops and copied with memcpy; the
 *   per-byte switch is only taken at token boundaries.
 * - Errors never consume the offending byte. The rest of the line is then discarded without
 *   buffering (memchr for LF), watching only whether the line ends in a "{n+}" header: such a
 *   non-synchronizing literal is part of the discarded command, so its n bytes are skipped too
 *   (RFC 7888 §4 leaves the server no other way to stay in step). A literal over max_literal,
 *   announced or discarded, is fatal: the stream can no longer be followed.
 *
 * Leniency (deliberate): several spaces between arguments and trailing spaces before CRLF are
 * accepted, and a bare LF ends a line like CRLF. Atoms accept '*', '%', '\' and ']' so that
 * sequence sets, LIST patterns, flags and "[Gmail]/Sent" arrive as atoms; the handlers check what
 * each argument must be (imap_arg_is_astring).
 *
 * Details parser.h leaves open, as implemented:
 * - max_line counts every byte of the line except CR, LF and literal contents (tag, spaces and
 *   literal headers count). A line may be exactly max_line bytes long.
 * - Calling parser_feed again while a PARSER_COMMAND / PARSER_LITERAL is pending returns the same
 *   result and consumes nothing; after a fatal error every call returns PARSER_ERROR, consuming
 *   nothing, and parser_error*() keep answering.
 * - After parser_literal_reject() of a synchronizing literal, info->tag stays valid until the
 *   next parser_feed (the caller answers with it).
 * - A streamed literal may be followed by a syntax error in the rest of its line: the caller has
 *   already received the bytes and drops them when PARSER_ERROR arrives.
 * - NIL is an atom for imap_arg_is_astring / imap_arg_atom_eq (a mailbox may be called NIL);
 *   atoms with '*', '%', '\' or a fetch section are not astrings.
 *
 * What it does not do: interpret commands, know which commands take literals, send "+" (the
 * caller does, after parser_literal_accept), or read IDLE's DONE / AUTHENTICATE responses (those
 * lines are not commands; after PARSER_COMMAND the parser has consumed exactly up to the LF, so
 * the caller can read such lines itself before feeding again).
 */
#include "frontend/parser.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

enum parser_state {
    ST_LINE_START,  /* before the first byte of a command; empty lines are skipped here */
    ST_EMPTY_CR,    /* a CR at line start: an empty line if LF follows */
    ST_TAG,
    ST_NAME,
    ST_ARG,         /* between arguments; need_sep says whether a separator is still due */
    ST_TILDE,       /* '~' at argument start: literal8 if '{' follows, else an atom */
    ST_ATOM,
    ST_BRACKET,     /* inside the [...] of a fetch attribute */
    ST_QUOTED,
    ST_QUOTED_ESC,
    ST_LIT_DIGITS,  /* after '{' */
    ST_LIT_PLUS,    /* after "{n+" */
    ST_LIT_CLOSE,   /* after "{n}" or "{n+}": CRLF or LF due */
    ST_LIT_LF,      /* after "{n}\r" */
    ST_EOL_LF,      /* after the CR that ends a command line */
    ST_LIT_PENDING, /* PARSER_LITERAL returned; waiting for accept/stream/reject */
    ST_LIT_ACCEPT,  /* copying literal bytes into the arena */
    ST_LIT_STREAM,  /* handing literal bytes to the caller */
    ST_LIT_SKIP,    /* skipping the bytes of a refused or discarded non-synchronizing literal */
    ST_CMD_PENDING, /* PARSER_COMMAND returned; waiting for parser_take_command */
    ST_ERR_PENDING, /* PARSER_ERROR returned; the next feed starts discarding */
    ST_DISCARD,     /* skipping the rest of a line, watching for a trailing {n+} */
    ST_DEAD,        /* fatal error: nothing more is consumed */
};

/* Progress through a literal header "{digits[+]}" followed by CRLF; shared by ST_LIT_* and the
 * discard scanner. */
enum lit_hdr {
    LH_NONE,
    LH_DIGITS,
    LH_PLUS,
    LH_CLOSED,
    LH_CLOSED_CR,
};

#define ARENA_INITIAL 1024
#define TOK_KEEP 256    /* scratch capacities kept between commands (idle connections are many) */
#define STACK_KEEP 16
#define FRAMES_KEEP 8

struct parser {
    struct parser_limits limits;      /* in force for the command being parsed */
    struct parser_limits next_limits; /* latest parser_set_limits(), taken at the next command */
    enum parser_state state;

    struct arena *arena;       /* arena of the command being parsed, or NULL */
    struct imap_command *cmd;  /* in arena; NULL between commands */
    size_t line_len;           /* line bytes so far (CR, LF and literal contents not counted) */
    size_t nargs;              /* arguments started, all levels */

    char *tok;                 /* current token (scratch, malloc) */
    size_t tok_len, tok_cap;

    struct imap_arg *stack;    /* complete arguments of all open levels (scratch, malloc) */
    size_t sp, stack_cap;
    size_t *frames;            /* per open list: stack index of its first child */
    size_t depth, frames_cap;
    bool need_sep;

    size_t bracket_depth;
    bool bracket_quote, bracket_esc;

    enum lit_hdr lh;           /* literal header progress (normal parsing and discarding) */
    uint64_t lit_size;         /* saturates at UINT64_MAX */
    bool lit_digits, lit_nonsync, lit_8;

    char *lit_buf;             /* ST_LIT_ACCEPT destination (arena) */
    uint64_t lit_left;
    size_t lit_pos;

    struct parser_literal_info info;
    const uint8_t *chunk;
    size_t chunk_len;

    const char *error;
    bool error_fatal;
};

/* Character classes (RFC 3501 §9). Tag: ASTRING-CHAR except '+'. Name: ATOM-CHAR. Argument atom:
 * ASTRING-CHAR plus list-wildcards and '\' (see the leniency note above). */
static inline bool is_arg_atom_char(uint8_t c)
{
    return c > 0x20 && c < 0x7f && c != '(' && c != ')' && c != '{' && c != '"';
}

static inline bool is_atom_run_char(uint8_t c)
{
    return is_arg_atom_char(c) && c != '[';
}

static inline bool is_tag_char(uint8_t c)
{
    return is_arg_atom_char(c) && c != '%' && c != '*' && c != '\\' && c != '+';
}

static inline bool is_name_char(uint8_t c)
{
    return is_arg_atom_char(c) && c != '%' && c != '*' && c != '\\' && c != ']';
}

static inline bool is_quoted_plain(uint8_t c)
{
    return c != '"' && c != '\\' && c != '\r' && c != '\n' && c != '\0';
}

/* Inside the [...] of a fetch attribute, outside quoted strings. */
static inline bool is_bracket_plain(uint8_t c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '[' && c != ']' && c != '{';
}

static inline bool is_digit(uint8_t c)
{
    return c >= '0' && c <= '9';
}

static void *xrealloc(void *ptr, size_t size)
{
    void *q = realloc(ptr, size);
    if (q == NULL)
        abort(); /* sizes are bounded by the limits; as with the arena, OOM is fatal */
    return q;
}

static void tok_append(struct parser *p, const uint8_t *s, size_t n)
{
    if (n == 0)
        return;
    if (p->tok_cap - p->tok_len < n) {
        size_t cap = p->tok_cap ? p->tok_cap : 64;
        while (cap - p->tok_len < n)
            cap *= 2;
        p->tok = xrealloc(p->tok, cap);
        p->tok_cap = cap;
    }
    memcpy(p->tok + p->tok_len, s, n);
    p->tok_len += n;
}

static void tok_append_byte(struct parser *p, uint8_t c)
{
    tok_append(p, &c, 1);
}

static struct imap_arg *stack_push(struct parser *p)
{
    if (p->sp == p->stack_cap) {
        size_t cap = p->stack_cap ? p->stack_cap * 2 : 8;
        p->stack = xrealloc(p->stack, cap * sizeof(*p->stack));
        p->stack_cap = cap;
    }
    struct imap_arg *a = &p->stack[p->sp++];
    memset(a, 0, sizeof(*a));
    return a;
}

/* Frees scratch buffers that grew past their keep size. */
static void scratch_trim(struct parser *p)
{
    if (p->tok_cap > TOK_KEEP) {
        free(p->tok);
        p->tok = NULL;
        p->tok_cap = 0;
    }
    if (p->stack_cap > STACK_KEEP) {
        free(p->stack);
        p->stack = NULL;
        p->stack_cap = 0;
    }
    if (p->frames_cap > FRAMES_KEEP) {
        free(p->frames);
        p->frames = NULL;
        p->frames_cap = 0;
    }
}

/* Drops a command that will not be handed over (after an error or a rejected literal). */
static void drop_command(struct parser *p)
{
    if (p->arena != NULL)
        arena_reset(p->arena);
    p->cmd = NULL;
}

static void begin_command(struct parser *p)
{
    p->limits = p->next_limits;
    scratch_trim(p);
    if (p->arena == NULL)
        p->arena = arena_new(ARENA_INITIAL);
    else
        arena_reset(p->arena);
    p->cmd = arena_calloc(p->arena, 1, sizeof(*p->cmd));
    p->cmd->arena = p->arena;
    p->line_len = 0;
    p->nargs = 0;
    p->tok_len = 0;
    p->sp = 0;
    p->depth = 0;
    p->need_sep = false;
}

struct parser *parser_new(const struct parser_limits *limits)
{
    struct parser *p = calloc(1, sizeof(*p));
    if (p == NULL)
        return NULL;
    p->limits = *limits;
    p->next_limits = *limits;
    p->state = ST_LINE_START;
    return p;
}

void parser_free(struct parser **pp)
{
    if (pp == NULL || *pp == NULL)
        return;
    struct parser *p = *pp;
    arena_free(&p->arena);
    free(p->tok);
    free(p->stack);
    free(p->frames);
    free(p);
    *pp = NULL;
}

void parser_set_limits(struct parser *p, const struct parser_limits *limits)
{
    p->next_limits = *limits;
}

/* Records an error. The offending byte is not consumed; discarding starts at it, continuing any
 * literal header in progress so that "{12" + "3+}" split by the error is still recognised. */
static enum parser_result fail(struct parser *p, const char *msg, bool fatal)
{
    p->error = msg;
    p->error_fatal = fatal;
    switch (p->state) {
    case ST_LIT_DIGITS:
        p->lh = LH_DIGITS;
        break;
    case ST_LIT_PLUS:
        p->lh = LH_PLUS;
        break;
    case ST_LIT_CLOSE:
        p->lh = LH_CLOSED;
        break;
    case ST_LIT_LF:
        p->lh = LH_CLOSED_CR;
        break;
    default:
        p->lh = LH_NONE;
        break;
    }
    p->state = fatal ? ST_DEAD : ST_ERR_PENDING;
    return PARSER_ERROR;
}

static void lit_digit(struct parser *p, uint8_t c)
{
    uint64_t d = (uint64_t)(c - '0');
    if (p->lit_size > (UINT64_MAX - d) / 10)
        p->lit_size = UINT64_MAX;
    else
        p->lit_size = p->lit_size * 10 + d;
    p->lit_digits = true;
}

/* One byte of the discard scanner's literal-header watch (LF is handled by the caller). */
static void lh_step(struct parser *p, uint8_t c)
{
    if (c == '{') {
        p->lh = LH_DIGITS;
        p->lit_size = 0;
        p->lit_digits = false;
        p->lit_nonsync = false;
        return;
    }
    switch (p->lh) {
    case LH_NONE:
        break;
    case LH_DIGITS:
        if (is_digit(c))
            lit_digit(p, c);
        else if (c == '+' && p->lit_digits)
            p->lh = LH_PLUS;
        else if (c == '}' && p->lit_digits)
            p->lh = LH_CLOSED;
        else
            p->lh = LH_NONE;
        break;
    case LH_PLUS:
        if (c == '}') {
            p->lit_nonsync = true;
            p->lh = LH_CLOSED;
        } else {
            p->lh = LH_NONE;
        }
        break;
    case LH_CLOSED:
        p->lh = c == '\r' ? LH_CLOSED_CR : LH_NONE;
        break;
    case LH_CLOSED_CR:
        p->lh = LH_NONE;
        break;
    }
}

/* Discard scanning over bytes that contain no LF: only the state after the last '{' matters,
 * because '{' restarts the watch and LH_NONE is left only through '{'. */
static void lh_scan(struct parser *p, const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n && p->lh != LH_NONE)
        lh_step(p, s[i++]);
    size_t j = n;
    while (j > i && s[j - 1] != '{')
        j--;
    if (j == i)
        return;
    for (j--; j < n; j++)
        lh_step(p, s[j]);
}

/* Number of leading bytes of s[0..n) in a class. */
#define RUN(class_fn, s, n, out)                        \
    do {                                                \
        size_t run_i_ = 0;                              \
        while (run_i_ < (n) && class_fn((s)[run_i_]))   \
            run_i_++;                                   \
        (out) = run_i_;                                 \
    } while (0)

static bool ascii_ieq(const char *a, size_t alen, const char *b)
{
    size_t i = 0;
    for (; i < alen && b[i] != '\0'; i++) {
        char x = a[i], y = b[i];
        if (x >= 'a' && x <= 'z')
            x = (char)(x - 'a' + 'A');
        if (y >= 'a' && y <= 'z')
            y = (char)(y - 'a' + 'A');
        if (x != y)
            return false;
    }
    return i == alen && b[i] == '\0';
}

/* True when the atom so far names a fetch attribute that takes a [section]. */
static bool fetch_section_prefix(const char *s, size_t n)
{
    return ascii_ieq(s, n, "BODY") || ascii_ieq(s, n, "BODY.PEEK") || ascii_ieq(s, n, "BINARY") ||
           ascii_ieq(s, n, "BINARY.PEEK") || ascii_ieq(s, n, "BINARY.SIZE");
}

static void finish_atom(struct parser *p)
{
    struct imap_arg *a = stack_push(p);
    a->type = ascii_ieq(p->tok, p->tok_len, "NIL") ? IMAP_ARG_NIL : IMAP_ARG_ATOM;
    a->str = arena_strndup(p->arena, p->tok, p->tok_len);
    a->len = p->tok_len;
    p->tok_len = 0;
    p->need_sep = true;
    p->state = ST_ARG;
}

static void finish_literal(struct parser *p, bool streamed)
{
    struct imap_arg *a = stack_push(p);
    a->type = IMAP_ARG_LITERAL;
    a->literal8 = p->lit_8;
    a->streamed = streamed;
    a->len = (size_t)p->info.size;
    if (!streamed) {
        p->lit_buf[a->len] = '\0';
        a->str = p->lit_buf;
    }
    p->lit_buf = NULL;
    p->need_sep = true;
    p->state = ST_ARG;
}

static struct imap_arg *copy_args(struct parser *p, size_t from, size_t n)
{
    if (n == 0)
        return NULL;
    struct imap_arg *v = arena_alloc(p->arena, n * sizeof(*v));
    memcpy(v, p->stack + from, n * sizeof(*v));
    return v;
}

/* Top-level arguments complete so far: everything below the outermost open list. */
static size_t top_level_count(const struct parser *p)
{
    return p->depth > 0 ? p->frames[0] - 1 : p->sp;
}

/*
 * Appends the n line bytes at data[*pos] to the token and advances *pos. Returns false when they
 * would exceed max_line; *pos then stops at the first byte past the limit (the error's byte).
 */
static bool token_run(struct parser *p, const uint8_t *data, size_t *pos, size_t n)
{
    size_t room = p->limits.max_line - p->line_len;
    if (n > room) {
        *pos += room;
        p->line_len += room;
        return false;
    }
    tok_append(p, data + *pos, n);
    *pos += n;
    p->line_len += n;
    return true;
}

/* Starting a new argument: counts it against max_args. */
static bool arg_start_ok(struct parser *p)
{
    return ++p->nargs <= p->limits.max_args;
}

#define FAIL(msg)                          \
    do {                                   \
        res = fail(p, (msg), false);       \
        goto out;                          \
    } while (0)

/* Consumes one line byte at data[pos], enforcing max_line. */
#define LINE_BYTE()                                       \
    do {                                                  \
        if (p->line_len >= p->limits.max_line)            \
            FAIL("line too long");                        \
        p->line_len++;                                    \
        pos++;                                            \
    } while (0)

enum parser_result parser_feed(struct parser *p, const uint8_t *data, size_t len, size_t *consumed_r)
{
    enum parser_result res = PARSER_NEED_MORE;
    size_t pos = 0;

    switch (p->state) {
    case ST_CMD_PENDING:
        res = PARSER_COMMAND;
        goto out;
    case ST_LIT_PENDING:
        res = PARSER_LITERAL;
        goto out;
    case ST_DEAD:
        res = PARSER_ERROR;
        goto out;
    case ST_ERR_PENDING:
        p->state = ST_DISCARD;
        break;
    case ST_LINE_START:
        if (p->cmd != NULL)
            drop_command(p); /* left over from a refused synchronizing literal */
        break;
    default:
        break;
    }

    while (pos < len) {
        const uint8_t c = data[pos];
        switch (p->state) {
        case ST_LINE_START:
            if (c == '\n') {
                pos++;
            } else if (c == '\r') {
                pos++;
                p->state = ST_EMPTY_CR;
            } else {
                begin_command(p);
                p->state = ST_TAG;
            }
            break;

        case ST_EMPTY_CR:
            if (c == '\n') {
                pos++;
                p->state = ST_LINE_START;
            } else {
                begin_command(p);
                FAIL("CR without LF");
            }
            break;

        case ST_TAG: {
            size_t n;
            RUN(is_tag_char, data + pos, len - pos, n);
            if (!token_run(p, data, &pos, n))
                FAIL("line too long");
            if (pos == len)
                break;
            if (data[pos] == ' ' && p->tok_len > 0) {
                p->cmd->tag = arena_strndup(p->arena, p->tok, p->tok_len);
                p->tok_len = 0;
                LINE_BYTE();
                p->state = ST_NAME;
            } else if ((data[pos] == '\r' || data[pos] == '\n') && p->tok_len > 0) {
                p->cmd->tag = arena_strndup(p->arena, p->tok, p->tok_len);
                FAIL("missing command name");
            } else {
                FAIL(p->tok_len == 0 && data[pos] == ' ' ? "missing tag" : "invalid character in tag");
            }
            break;
        }

        case ST_NAME: {
            size_t n;
            RUN(is_name_char, data + pos, len - pos, n);
            if (!token_run(p, data, &pos, n))
                FAIL("line too long");
            if (pos == len)
                break;
            uint8_t e = data[pos];
            if (e != ' ' && e != '\r' && e != '\n')
                FAIL("invalid character in command name");
            if (p->tok_len == 0)
                FAIL("missing command name");
            p->cmd->name = arena_strndup(p->arena, p->tok, p->tok_len);
            p->tok_len = 0;
            p->state = ST_ARG;
            p->need_sep = e != ' ';
            break; /* ST_ARG handles the separator or the line end */
        }

        case ST_ARG:
            if (c == ' ') {
                LINE_BYTE();
                p->need_sep = false;
            } else if (c == '\r') {
                pos++;
                p->state = ST_EOL_LF;
            } else if (c == '\n') {
                if (p->depth > 0)
                    FAIL("unterminated list");
                pos++;
                p->cmd->argc = p->sp;
                p->cmd->args = copy_args(p, 0, p->sp);
                p->state = ST_CMD_PENDING;
                res = PARSER_COMMAND;
                goto out;
            } else if (c == ')') {
                if (p->depth == 0)
                    FAIL("unexpected ')'");
                LINE_BYTE();
                size_t first = p->frames[--p->depth];
                struct imap_arg *list = &p->stack[first - 1];
                list->count = p->sp - first;
                list->list = copy_args(p, first, list->count);
                p->sp = first;
                p->need_sep = true;
            } else if (p->need_sep) {
                FAIL("missing space between arguments");
            } else if (c == '(') {
                if (p->depth >= p->limits.max_depth)
                    FAIL("lists nested too deeply");
                if (!arg_start_ok(p))
                    FAIL("too many arguments");
                LINE_BYTE();
                if (p->depth == p->frames_cap) {
                    size_t cap = p->frames_cap ? p->frames_cap * 2 : 4;
                    p->frames = xrealloc(p->frames, cap * sizeof(*p->frames));
                    p->frames_cap = cap;
                }
                stack_push(p)->type = IMAP_ARG_LIST;
                p->frames[p->depth++] = p->sp;
            } else if (c == '"') {
                if (!arg_start_ok(p))
                    FAIL("too many arguments");
                LINE_BYTE();
                p->tok_len = 0;
                p->state = ST_QUOTED;
            } else if (c == '{' || c == '~') {
                if (!arg_start_ok(p))
                    FAIL("too many arguments");
                LINE_BYTE();
                p->lit_8 = c == '~';
                p->lit_size = 0;
                p->lit_digits = false;
                p->lit_nonsync = false;
                p->state = c == '~' ? ST_TILDE : ST_LIT_DIGITS;
            } else if (is_arg_atom_char(c)) {
                if (!arg_start_ok(p))
                    FAIL("too many arguments");
                p->tok_len = 0;
                p->state = ST_ATOM;
            } else {
                FAIL("invalid character");
            }
            break;

        case ST_TILDE:
            if (c == '{') {
                LINE_BYTE();
                p->state = ST_LIT_DIGITS;
            } else {
                p->tok_len = 0;
                tok_append_byte(p, '~');
                p->state = ST_ATOM;
            }
            break;

        case ST_ATOM: {
            size_t n;
            /* the run stops at '[', which may open a fetch section: the prefix decides */
            RUN(is_atom_run_char, data + pos, len - pos, n);
            if (!token_run(p, data, &pos, n))
                FAIL("line too long");
            if (pos == len)
                break;
            if (data[pos] == '[') {
                bool section = fetch_section_prefix(p->tok, p->tok_len);
                tok_append_byte(p, '[');
                LINE_BYTE();
                if (section) {
                    p->bracket_depth = 1;
                    p->bracket_quote = false;
                    p->bracket_esc = false;
                    p->state = ST_BRACKET;
                }
            } else {
                finish_atom(p);
            }
            break;
        }

        case ST_BRACKET: {
            /* runs of ordinary bytes first, then one special byte through the switch below */
            size_t n = 0;
            if (!p->bracket_esc) {
                if (p->bracket_quote)
                    RUN(is_quoted_plain, data + pos, len - pos, n);
                else
                    RUN(is_bracket_plain, data + pos, len - pos, n);
            }
            if (!token_run(p, data, &pos, n))
                FAIL("line too long");
            if (pos == len)
                break;
            uint8_t e = data[pos];
            if (e == '\r' || e == '\n')
                FAIL("unterminated '[' in fetch attribute");
            if (p->bracket_esc) {
                if (e != '\\' && e != '"')
                    FAIL("invalid escape in quoted string");
                p->bracket_esc = false;
            } else if (p->bracket_quote) {
                if (e == '\0')
                    FAIL("NUL in quoted string");
                if (e == '\\')
                    p->bracket_esc = true;
                else
                    p->bracket_quote = false; /* '"' */
            } else if (e == '{') {
                FAIL("literal inside fetch attribute");
            } else if (e == '"') {
                p->bracket_quote = true;
            } else if (e == '[') {
                p->bracket_depth++;
            } else if (e == ']') {
                if (--p->bracket_depth == 0)
                    p->state = ST_ATOM;
            } else {
                FAIL("invalid character in fetch attribute");
            }
            LINE_BYTE();
            tok_append_byte(p, e);
            break;
        }

        case ST_QUOTED: {
            size_t n;
            RUN(is_quoted_plain, data + pos, len - pos, n);
            if (!token_run(p, data, &pos, n))
                FAIL("line too long");
            if (pos == len)
                break;
            uint8_t e = data[pos];
            if (e == '"') {
                LINE_BYTE();
                struct imap_arg *a = stack_push(p);
                a->type = IMAP_ARG_QUOTED;
                a->str = arena_strndup(p->arena, p->tok, p->tok_len);
                a->len = p->tok_len;
                p->tok_len = 0;
                p->need_sep = true;
                p->state = ST_ARG;
            } else if (e == '\\') {
                LINE_BYTE();
                p->state = ST_QUOTED_ESC;
            } else {
                FAIL(e == '\0' ? "NUL in quoted string" : "unterminated quoted string");
            }
            break;
        }

        case ST_QUOTED_ESC:
            if (c != '\\' && c != '"')
                FAIL("invalid escape in quoted string");
            LINE_BYTE();
            tok_append_byte(p, c);
            p->state = ST_QUOTED;
            break;

        case ST_LIT_DIGITS:
            if (is_digit(c)) {
                LINE_BYTE();
                lit_digit(p, c);
            } else if (c == '+' && p->lit_digits) {
                LINE_BYTE();
                p->state = ST_LIT_PLUS;
            } else if (c == '}' && p->lit_digits) {
                LINE_BYTE();
                p->state = ST_LIT_CLOSE;
            } else {
                FAIL("invalid literal header");
            }
            break;

        case ST_LIT_PLUS:
            if (c != '}')
                FAIL("invalid literal header");
            LINE_BYTE();
            p->lit_nonsync = true;
            p->state = ST_LIT_CLOSE;
            break;

        case ST_LIT_CLOSE:
        case ST_LIT_LF:
            if (c == '\r' && p->state == ST_LIT_CLOSE) {
                pos++;
                p->state = ST_LIT_LF;
                break;
            }
            if (c != '\n')
                FAIL("literal header not followed by CRLF");
            if (p->lit_size > p->limits.max_literal || p->lit_size >= SIZE_MAX / 2) {
                res = fail(p, "literal too big", true);
                goto out;
            }
            pos++;
            p->info.size = p->lit_size;
            p->info.sync = !p->lit_nonsync;
            p->info.literal8 = p->lit_8;
            p->info.tag = p->cmd->tag;
            p->info.name = p->cmd->name;
            p->info.args = p->stack;
            p->info.argc = top_level_count(p);
            p->state = ST_LIT_PENDING;
            res = PARSER_LITERAL;
            goto out;

        case ST_EOL_LF:
            if (c != '\n')
                FAIL("CR without LF");
            if (p->depth > 0)
                FAIL("unterminated list");
            pos++;
            p->cmd->argc = p->sp;
            p->cmd->args = copy_args(p, 0, p->sp);
            p->state = ST_CMD_PENDING;
            res = PARSER_COMMAND;
            goto out;

        case ST_LIT_ACCEPT: {
            size_t n = len - pos;
            if ((uint64_t)n > p->lit_left)
                n = (size_t)p->lit_left;
            memcpy(p->lit_buf + p->lit_pos, data + pos, n);
            p->lit_pos += n;
            p->lit_left -= n;
            pos += n;
            if (p->lit_left == 0)
                finish_literal(p, false);
            break;
        }

        case ST_LIT_STREAM: {
            size_t n = len - pos;
            if ((uint64_t)n > p->lit_left)
                n = (size_t)p->lit_left;
            p->chunk = data + pos;
            p->chunk_len = n;
            p->lit_left -= n;
            pos += n;
            if (p->lit_left == 0)
                finish_literal(p, true);
            res = PARSER_LITERAL_DATA;
            goto out;
        }

        case ST_LIT_SKIP: {
            size_t n = len - pos;
            if ((uint64_t)n > p->lit_left)
                n = (size_t)p->lit_left;
            p->lit_left -= n;
            pos += n;
            if (p->lit_left == 0) {
                p->lh = LH_NONE;
                p->state = ST_DISCARD;
            }
            break;
        }

        case ST_DISCARD: {
            const uint8_t *lf = memchr(data + pos, '\n', len - pos);
            size_t n = lf != NULL ? (size_t)(lf - (data + pos)) : len - pos;
            lh_scan(p, data + pos, n);
            pos += n;
            if (lf == NULL)
                break;
            pos++;
            if ((p->lh == LH_CLOSED || p->lh == LH_CLOSED_CR) && p->lit_nonsync) {
                if (p->lit_size > p->limits.max_literal) {
                    res = fail(p, "literal too big", true);
                    goto out;
                }
                p->lit_left = p->lit_size;
                p->lh = LH_NONE;
                p->state = p->lit_left > 0 ? ST_LIT_SKIP : ST_DISCARD;
            } else {
                p->lh = LH_NONE;
                drop_command(p);
                p->state = ST_LINE_START;
            }
            break;
        }

        case ST_LIT_PENDING:
        case ST_CMD_PENDING:
        case ST_ERR_PENDING:
        case ST_DEAD:
            abort(); /* handled before the loop */
        }
    }

out:
    *consumed_r = pos;
    return res;
}

struct imap_command *parser_take_command(struct parser *p)
{
    if (p->state != ST_CMD_PENDING)
        return NULL;
    struct imap_command *cmd = p->cmd;
    p->cmd = NULL;
    p->arena = NULL; /* now owned by cmd */
    p->state = ST_LINE_START;
    scratch_trim(p);
    return cmd;
}

void imap_command_free(struct imap_command **cmd)
{
    if (cmd == NULL || *cmd == NULL)
        return;
    struct arena *a = (*cmd)->arena; /* cmd itself lives in its arena */
    arena_free(&a);
    *cmd = NULL;
}

const struct parser_literal_info *parser_literal(const struct parser *p)
{
    assert(p->state == ST_LIT_PENDING);
    return &p->info;
}

void parser_literal_accept(struct parser *p)
{
    assert(p->state == ST_LIT_PENDING);
    size_t size = (size_t)p->info.size;
    p->lit_buf = arena_alloc(p->arena, size + 1);
    p->lit_pos = 0;
    p->lit_left = size;
    p->state = ST_LIT_ACCEPT;
    if (size == 0)
        finish_literal(p, false);
}

void parser_literal_stream(struct parser *p)
{
    assert(p->state == ST_LIT_PENDING);
    p->lit_left = p->info.size;
    p->state = ST_LIT_STREAM;
    if (p->lit_left == 0)
        finish_literal(p, true);
}

void parser_literal_reject(struct parser *p)
{
    assert(p->state == ST_LIT_PENDING);
    if (p->info.sync) {
        /* RFC 3501 §7.5: the client sends nothing after a refused synchronizing literal; the
         * command is over. The arena (tag) stays valid until the next parser_feed. */
        p->state = ST_LINE_START;
        return;
    }
    p->lit_left = p->info.size;
    p->lh = LH_NONE;
    p->state = p->lit_left > 0 ? ST_LIT_SKIP : ST_DISCARD;
}

void parser_literal_chunk(const struct parser *p, const uint8_t **data_r, size_t *len_r)
{
    *data_r = p->chunk;
    *len_r = p->chunk_len;
}

const char *parser_error(const struct parser *p)
{
    return p->error != NULL ? p->error : "no error";
}

const char *parser_error_tag(const struct parser *p)
{
    return p->cmd != NULL ? p->cmd->tag : NULL;
}

bool parser_error_fatal(const struct parser *p)
{
    return p->state == ST_DEAD;
}

static inline bool is_astring_char(uint8_t c)
{
    return is_arg_atom_char(c) && c != '%' && c != '*' && c != '\\';
}

bool imap_arg_is_astring(const struct imap_arg *arg)
{
    switch (arg->type) {
    case IMAP_ARG_QUOTED:
        return true;
    case IMAP_ARG_LITERAL:
        return !arg->streamed;
    case IMAP_ARG_ATOM:
    case IMAP_ARG_NIL:
        for (size_t i = 0; i < arg->len; i++) {
            if (!is_astring_char((uint8_t)arg->str[i]))
                return false;
        }
        return arg->len > 0;
    case IMAP_ARG_LIST:
        break;
    }
    return false;
}

bool imap_arg_atom_eq(const struct imap_arg *arg, const char *word)
{
    if (arg->type != IMAP_ARG_ATOM && arg->type != IMAP_ARG_NIL)
        return false;
    return ascii_ieq(arg->str, arg->len, word);
}
