/*
 * Parser tests. Each table case is an input, limits, a literal policy and the expected transcript
 * (commands, literal headers, streamed data, errors, rendered as text). Every case is run with the
 * input whole, cut once at every offset, cut twice at every pair of offsets (short inputs), and
 * fed one byte at a time; every run must produce the same transcript.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "frontend/parser.h"

#if defined(__SANITIZE_ADDRESS__)
#define HAVE_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define HAVE_ASAN 1
#endif
#endif
#ifdef HAVE_ASAN
/* from <sanitizer/allocator_interface.h>, which gcc does not install */
size_t __sanitizer_get_current_allocated_bytes(void);
static size_t heap_in_use(void)
{
    return __sanitizer_get_current_allocated_bytes();
}
#else
#include <malloc.h>
static size_t heap_in_use(void)
{
    return mallinfo2().uordblks;
}
#endif

/* ---- transcript rendering ---------------------------------------------------------------- */

struct out {
    char *buf;
    size_t len, cap;
};

static void out_add(struct out *o, const char *s, size_t n)
{
    if (o->cap - o->len < n + 1) {
        size_t cap = o->cap ? o->cap : 256;
        while (cap - o->len < n + 1)
            cap *= 2;
        o->buf = realloc(o->buf, cap);
        assert_non_null(o->buf);
        o->cap = cap;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
    o->buf[o->len] = '\0';
}

static void out_printf(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void out_printf(struct out *o, const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    assert_true(n >= 0 && (size_t)n < sizeof(tmp));
    out_add(o, tmp, (size_t)n);
}

/* Bytes as text; anything outside 0x20..0x7e as \xNN. */
static void out_bytes(struct out *o, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f)
            out_add(o, (const char *)&c, 1);
        else
            out_printf(o, "\\x%02x", c);
    }
}

static void render_arg(struct out *o, const struct imap_arg *a)
{
    switch (a->type) {
    case IMAP_ARG_ATOM:
        out_add(o, "A:", 2);
        out_bytes(o, a->str, a->len);
        break;
    case IMAP_ARG_NIL:
        out_add(o, "N", 1);
        break;
    case IMAP_ARG_QUOTED:
        out_add(o, "Q:\"", 3);
        out_bytes(o, a->str, a->len);
        out_add(o, "\"", 1);
        break;
    case IMAP_ARG_LITERAL:
        if (a->streamed) {
            assert_null(a->str);
            out_printf(o, "S%s{%zu}", a->literal8 ? "8" : "", a->len);
        } else {
            assert_non_null(a->str);
            assert_int_equal(a->str[a->len], '\0');
            out_printf(o, "L%s{%zu}:", a->literal8 ? "8" : "", a->len);
            out_bytes(o, a->str, a->len);
        }
        break;
    case IMAP_ARG_LIST:
        out_add(o, "(", 1);
        for (size_t i = 0; i < a->count; i++) {
            if (i > 0)
                out_add(o, " ", 1);
            render_arg(o, &a->list[i]);
        }
        out_add(o, ")", 1);
        break;
    }
}

/* ---- driver ------------------------------------------------------------------------------- */

static const struct parser_limits default_limits = {
    .max_line = 1000, .max_args = 100, .max_depth = 10, .max_literal = 1000,
};

struct run {
    const struct parser_limits *limits;
    const char *policy; /* one letter per literal: a(ccept) s(tream) r(eject); default a */
    size_t policy_pos;
    struct out out;
    struct out stream; /* streamed literal bytes not yet written to out */
};

static void flush_stream(struct run *r)
{
    if (r->stream.len > 0) {
        out_add(&r->out, "D ", 2);
        out_bytes(&r->out, r->stream.buf, r->stream.len);
        out_add(&r->out, "\n", 1);
        r->stream.len = 0;
    }
}

/* Handles one non-NEED_MORE result; returns false when the run must stop (fatal error). */
static bool handle(struct run *r, struct parser *p, enum parser_result res, const uint8_t *data,
                   size_t len)
{
    if (res != PARSER_LITERAL_DATA)
        flush_stream(r);
    switch (res) {
    case PARSER_NEED_MORE:
        break;
    case PARSER_COMMAND: {
        struct imap_command *cmd = parser_take_command(p);
        assert_non_null(cmd);
        assert_null(parser_take_command(p));
        out_printf(&r->out, "C %s %s", cmd->tag, cmd->name);
        for (size_t i = 0; i < cmd->argc; i++) {
            out_add(&r->out, " ", 1);
            render_arg(&r->out, &cmd->args[i]);
        }
        out_add(&r->out, "\n", 1);
        imap_command_free(&cmd);
        assert_null(cmd);
        break;
    }
    case PARSER_LITERAL: {
        const struct parser_literal_info *info = parser_literal(p);
        char act = 'a';
        if (r->policy != NULL && r->policy[r->policy_pos] != '\0')
            act = r->policy[r->policy_pos++];
        out_printf(&r->out, "LIT %llu %s%s %s %s [", (unsigned long long)info->size,
                   info->sync ? "sync" : "nonsync", info->literal8 ? " 8" : "", info->tag,
                   info->name != NULL ? info->name : "-");
        for (size_t i = 0; i < info->argc; i++) {
            if (i > 0)
                out_add(&r->out, " ", 1);
            render_arg(&r->out, &info->args[i]);
        }
        out_printf(&r->out, "] %c\n", act);
        if (act == 'a')
            parser_literal_accept(p);
        else if (act == 's')
            parser_literal_stream(p);
        else
            parser_literal_reject(p);
        break;
    }
    case PARSER_LITERAL_DATA: {
        const uint8_t *chunk;
        size_t n;
        parser_literal_chunk(p, &chunk, &n);
        assert_true(n > 0);
        assert_true(chunk >= data && chunk + n <= data + len); /* points into the fed data */
        out_add(&r->stream, (const char *)chunk, n);
        break;
    }
    case PARSER_ERROR: {
        const char *tag = parser_error_tag(p);
        bool fatal = parser_error_fatal(p);
        out_printf(&r->out, "%s %s %s\n", fatal ? "FATAL" : "ERR", tag != NULL ? tag : "*",
                   parser_error(p));
        if (fatal) {
            size_t consumed = 99;
            assert_int_equal(parser_feed(p, data, len, &consumed), PARSER_ERROR);
            assert_int_equal(consumed, 0);
            return false;
        }
        break;
    }
    }
    return true;
}

/*
 * Feeds input in pieces ending at cuts[0..ncuts) (ascending, then the end). Unconsumed bytes are
 * offered again together with the next piece, as a connection's input buffer would.
 * Returns the transcript (caller frees).
 */
static char *run_cuts(const char *input, size_t len, const struct parser_limits *limits,
                      const char *policy, const size_t *cuts, size_t ncuts)
{
    struct run r = { .limits = limits, .policy = policy };
    struct parser *p = parser_new(limits);
    assert_non_null(p);
    const uint8_t *data = (const uint8_t *)input;
    size_t start = 0, avail = 0, next_cut = 0;
    out_add(&r.out, "", 0);
    for (;;) {
        if (start == avail) {
            if (avail == len)
                break;
            avail = next_cut < ncuts ? cuts[next_cut++] : len;
            if (avail <= start)
                continue;
        }
        size_t consumed = 0;
        enum parser_result res = parser_feed(p, data + start, avail - start, &consumed);
        assert_true(consumed <= avail - start);
        if (res == PARSER_NEED_MORE) {
            assert_int_equal(consumed, avail - start); /* "everything given was consumed" */
            start = avail;
            if (avail == len)
                break;
            avail = next_cut < ncuts ? cuts[next_cut++] : len;
            continue;
        }
        if (!handle(&r, p, res, data + start, avail - start))
            break;
        start += consumed;
    }
    flush_stream(&r);
    parser_free(&p);
    assert_null(p);
    free(r.stream.buf);
    return r.out.buf;
}

static char *run_whole(const char *input, size_t len, const struct parser_limits *limits,
                       const char *policy)
{
    return run_cuts(input, len, limits, policy, NULL, 0);
}

/* ---- the table ---------------------------------------------------------------------------- */

struct pcase {
    const char *name;
    const char *input;
    size_t len; /* 0: strlen(input) (for inputs without NUL) */
    const struct parser_limits *limits;
    const char *policy;
    const char *expect;
};

static const struct parser_limits tiny_line = {
    .max_line = 10, .max_args = 100, .max_depth = 10, .max_literal = 1000,
};
static const struct parser_limits six_line = {
    .max_line = 6, .max_args = 100, .max_depth = 10, .max_literal = 1000,
};
static const struct parser_limits three_args = {
    .max_line = 1000, .max_args = 3, .max_depth = 10, .max_literal = 1000,
};
static const struct parser_limits depth_two = {
    .max_line = 1000, .max_args = 100, .max_depth = 2, .max_literal = 1000,
};
static const struct parser_limits no_lists = {
    .max_line = 1000, .max_args = 100, .max_depth = 0, .max_literal = 1000,
};

#define NUL_CASE(s) s, sizeof(s) - 1

static const struct pcase cases[] = {
    /* basics */
    { "noop", "a1 NOOP\r\n", 0, NULL, NULL, "C a1 NOOP\n" },
    { "bare LF", "a1 noop\n", 0, NULL, NULL, "C a1 noop\n" },
    { "empty lines ignored", "\r\n\n\r\na1 NOOP\r\n\r\n", 0, NULL, NULL, "C a1 NOOP\n" },
    { "pipelined", "a NOOP\r\nb CAPABILITY\nc LOGOUT\r\n", 0, NULL, NULL,
      "C a NOOP\nC b CAPABILITY\nC c LOGOUT\n" },
    { "incomplete stays silent", "a NOOP", 0, NULL, NULL, "" },
    { "tag chars", "A.b-9]x NOOP\r\n", 0, NULL, NULL, "C A.b-9]x NOOP\n" },
    { "atom", "a SELECT INBOX\r\n", 0, NULL, NULL, "C a SELECT A:INBOX\n" },
    { "gmail atom", "a SELECT [Gmail]/Sent\r\n", 0, NULL, NULL, "C a SELECT A:[Gmail]/Sent\n" },
    { "list wildcards and flags", "a LIST \"\" *%\r\nb STORE 1:*,5 +FLAGS (\\Seen \\Deleted $Fwd)\r\n",
      0, NULL, NULL,
      "C a LIST Q:\"\" A:*%\nC b STORE A:1:*,5 A:+FLAGS (A:\\Seen A:\\Deleted A:$Fwd)\n" },
    { "spaces lenient", "a X  1   2 \r\n", 0, NULL, NULL, "C a X A:1 A:2\n" },
    { "NIL any case", "a X nil Nil NILx \"NIL\"\r\n", 0, NULL, NULL, "C a X N N A:NILx Q:\"NIL\"\n" },
    { "tilde atoms", "a X ~foo ~ a~b\r\n", 0, NULL, NULL, "C a X A:~foo A:~ A:a~b\n" },

    /* quoted strings */
    { "quoted", "a LOGIN \"us er\" \"\"\r\n", 0, NULL, NULL, "C a LOGIN Q:\"us er\" Q:\"\"\n" },
    { "quoted escapes", "a LOGIN \"a\\\\b\" \"p\\\"w\"\r\n", 0, NULL, NULL,
      "C a LOGIN Q:\"a\\b\" Q:\"p\"w\"\n" },
    { "quoted 8-bit", "a X \"caf\xc3\xa9\"\r\n", 0, NULL, NULL, "C a X Q:\"caf\\xc3\\xa9\"\n" },
    { "quoted specials kept", "a X \"(){}[] *%\"\r\n", 0, NULL, NULL, "C a X Q:\"(){}[] *%\"\n" },

    /* lists */
    { "lists", "a FETCH 1:* (FLAGS (X Y) NIL ())\r\n", 0, NULL, NULL,
      "C a FETCH A:1:* (A:FLAGS (A:X A:Y) N ())\n" },
    { "list space inside", "a X ( a b ) c\r\n", 0, NULL, NULL, "C a X (A:a A:b) A:c\n" },
    { "nested ok", "a X (())\r\n", 0, &depth_two, NULL, "C a X (())\n" },

    /* fetch attributes */
    { "fetch attrs",
      "a FETCH 1 (BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.10> BODY[] BINARY.SIZE[1] "
      "body[text] binary.peek[1.2]<5.6> BODY)\r\n",
      0, NULL, NULL,
      "C a FETCH A:1 (A:BODY.PEEK[HEADER.FIELDS (From \"To\")]<0.10> A:BODY[] A:BINARY.SIZE[1] "
      "A:body[text] A:binary.peek[1.2]<5.6> A:BODY)\n" },
    { "fetch attr quoted bracket", "a F 1 BODY[HEADER.FIELDS (\"x]y\" \"a\\\"]\")]\r\n", 0, NULL,
      NULL, "C a F A:1 A:BODY[HEADER.FIELDS (\"x]y\" \"a\\\"]\")]\n" },
    { "fetch attr nested bracket", "a F 1 BODY[HEADER.FIELDS (X[1])]\r\n", 0, NULL, NULL,
      "C a F A:1 A:BODY[HEADER.FIELDS (X[1])]\n" },
    { "fetch attr bad escape", "a F 1 BODY[HEADER.FIELDS (\"a\\x\")]\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a invalid escape in quoted string\nC b NOOP\n" },
    { "fetch attr NUL", NUL_CASE("a F 1 BODY[\"a\0\"]\r\nb NOOP\r\n"), NULL, NULL,
      "ERR a NUL in quoted string\nC b NOOP\n" },
    { "fetch attr control", "a F 1 BODY[\x01]\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a invalid character in fetch attribute\nC b NOOP\n" },
    { "fetch attr 8-bit outside quotes", "a F 1 BODY[\xc3\xa9]\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a invalid character in fetch attribute\nC b NOOP\n" },
    { "fetch attr 8-bit quoted", "a F 1 BODY[HEADER.FIELDS (\"\xc3\xa9\")]\r\n", 0, NULL, NULL,
      "C a F A:1 A:BODY[HEADER.FIELDS (\"\\xc3\\xa9\")]\n" },
    { "fetch attr too long", "a F BODY[1 2 3 4 5]\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR a line too long\nC b NOOP\n" },
    { "other prefix: plain atom", "a X FOO[a b]\r\n", 0, NULL, NULL, "C a X A:FOO[a A:b]\n" },
    { "prefix must be whole", "a X XBODY[a b]\r\n", 0, NULL, NULL, "C a X A:XBODY[a A:b]\n" },
    { "fetch attr with literal", "a F 1 BODY[{3}\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a literal inside fetch attribute\nC b NOOP\n" },
    { "fetch attr with nonsync literal", "a F 1 BODY[{3+}\r\nabc]\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a literal inside fetch attribute\nC b NOOP\n" },
    { "fetch attr unterminated", "a F 1 BODY[TEXT\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unterminated '[' in fetch attribute\nC b NOOP\n" },

    /* literals */
    { "login literals with NUL", NUL_CASE("a LOGIN {4}\r\nu\0er {3+}\r\np\0w\r\n"), NULL, NULL,
      "LIT 4 sync a LOGIN [] a\nLIT 3 nonsync a LOGIN [L{4}:u\\x00er] a\n"
      "C a LOGIN L{4}:u\\x00er L{3}:p\\x00w\n" },
    { "literal8", "a APPEND x ~{3}\r\nabc\r\n", 0, NULL, NULL,
      "LIT 3 sync 8 a APPEND [A:x] a\nC a APPEND A:x L8{3}:abc\n" },
    { "literal8 nonsync", "a APPEND x ~{3+}\r\nabc\r\n", 0, NULL, NULL,
      "LIT 3 nonsync 8 a APPEND [A:x] a\nC a APPEND A:x L8{3}:abc\n" },
    { "literal in list", "a X y (a {1}\r\nb c)\r\n", 0, NULL, NULL,
      "LIT 1 sync a X [A:y] a\nC a X A:y (A:a L{1}:b A:c)\n" },
    { "literal then list close", "a X ({1}\r\na)\r\n", 0, NULL, NULL,
      "LIT 1 sync a X [] a\nC a X (L{1}:a)\n" },
    { "literal with CRLF inside", "a X {8}\r\nb NOOP\r\n\r\n", 0, NULL, NULL,
      "LIT 8 sync a X [] a\nC a X L{8}:b NOOP\\x0d\\x0a\n" },
    { "zero literal", "a X {0}\r\n {0+}\r\n\r\n", 0, NULL, NULL,
      "LIT 0 sync a X [] a\nLIT 0 nonsync a X [L{0}:] a\nC a X L{0}: L{0}:\n" },
    { "literal header bare LF", "a X {2}\nab\n", 0, NULL, NULL, "LIT 2 sync a X [] a\nC a X L{2}:ab\n" },
    { "leading zeros in literal", "a X {002}\r\nab\r\n", 0, NULL, NULL,
      "LIT 2 sync a X [] a\nC a X L{2}:ab\n" },
    { "literal needs separator", "a X {1}\r\nab\r\nb NOOP\r\n", 0, NULL, NULL,
      "LIT 1 sync a X [] a\nERR a missing space between arguments\nC b NOOP\n" },
    { "literal at max", "a X {1000+}\r\n", 0, NULL, "r", "LIT 1000 nonsync a X [] r\n" },

    /* streaming */
    { "stream", "a APPEND box {5}\r\nhello\r\n", 0, NULL, "s",
      "LIT 5 sync a APPEND [A:box] s\nD hello\nC a APPEND A:box S{5}\n" },
    { "stream nonsync then accept", NUL_CASE("a APPEND box (\\Seen) ~{5+}\r\nh\0llo {2}\r\nxy\r\n"), NULL, "sa",
      "LIT 5 nonsync 8 a APPEND [A:box (A:\\Seen)] s\nD h\\x00llo\n"
      "LIT 2 sync a APPEND [A:box (A:\\Seen) S8{5}] a\nC a APPEND A:box (A:\\Seen) S8{5} L{2}:xy\n" },
    { "stream zero", "a X {0}\r\n\r\n", 0, NULL, "s", "LIT 0 sync a X [] s\nC a X S{0}\n" },
    { "stream then error", "a X {3}\r\nabc)\r\nb NOOP\r\n", 0, NULL, "s",
      "LIT 3 sync a X [] s\nD abc\nERR a unexpected ')'\nC b NOOP\n" },

    /* reject */
    { "reject sync", "a APPEND box {5}\r\nb NOOP\r\n", 0, NULL, "r",
      "LIT 5 sync a APPEND [A:box] r\nC b NOOP\n" },
    { "reject nonsync", "a APPEND box {5+}\r\nhello {3+}\r\nabc more\r\nb NOOP\r\n", 0, NULL, "r",
      "LIT 5 nonsync a APPEND [A:box] r\nC b NOOP\n" },
    { "reject nonsync hides commands", "a APPEND box {12+}\r\nc NOOP\r\nxxxx\r\nb NOOP\r\n", 0, NULL,
      "r", "LIT 12 nonsync a APPEND [A:box] r\nC b NOOP\n" },
    { "reject nonsync then sync at end", "a X {2+}\r\nab {3}\r\nb NOOP\r\n", 0, NULL, "r",
      "LIT 2 nonsync a X [] r\nC b NOOP\n" },
    { "reject nonsync then huge", "a X {2+}\r\nab {1001+}\r\nb NOOP\r\n", 0, NULL, "r",
      "LIT 2 nonsync a X [] r\nFATAL a literal too big\n" },
    { "accept then reject", "a X {1}\r\nz {2}\r\nb NOOP\r\n", 0, NULL, "ar",
      "LIT 1 sync a X [] a\nLIT 2 sync a X [L{1}:z] r\nC b NOOP\n" },
    { "reject zero nonsync", "a X {0+}\r\n y\r\nb NOOP\r\n", 0, NULL, "r",
      "LIT 0 nonsync a X [] r\nC b NOOP\n" },

    /* syntax errors, each followed by a good command to prove recovery */
    { "missing name", "a1\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a1 missing command name\nC b NOOP\n" },
    { "missing name after space", "a1 \r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a1 missing command name\nC b NOOP\n" },
    { "untagged", "* NOOP\r\nb NOOP\r\n", 0, NULL, NULL, "ERR * invalid character in tag\nC b NOOP\n" },
    { "plus in tag", "a+ NOOP\r\nb NOOP\r\n", 0, NULL, NULL, "ERR * invalid character in tag\nC b NOOP\n" },
    { "leading space", " a NOOP\r\nb NOOP\r\n", 0, NULL, NULL, "ERR * missing tag\nC b NOOP\n" },
    { "bad name char", "a NO\"OP\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a invalid character in command name\nC b NOOP\n" },
    { "unterminated quoted", "a X \"abc\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unterminated quoted string\nC b NOOP\n" },
    { "bad escape", "a X \"a\\b\"\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a invalid escape in quoted string\nC b NOOP\n" },
    { "NUL in quoted", NUL_CASE("a X \"a\0b\"\r\nb NOOP\r\n"), NULL, NULL,
      "ERR a NUL in quoted string\nC b NOOP\n" },
    { "NUL in atom", NUL_CASE("a X ab\0c\r\nb NOOP\r\n"), NULL, NULL,
      "ERR a missing space between arguments\nC b NOOP\n" },
    { "8-bit atom", "a X \x80\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a invalid character\nC b NOOP\n" },
    { "unterminated list", "a X (a\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a unterminated list\nC b NOOP\n" },
    { "unterminated list LF", "a X (a\nb NOOP\r\n", 0, NULL, NULL, "ERR a unterminated list\nC b NOOP\n" },
    { "unexpected close", "a X a)\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a unexpected ')'\nC b NOOP\n" },
    { "missing space", "a X \"a\"b\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a missing space between arguments\nC b NOOP\n" },
    { "missing space after list", "a X (a)(b)\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a missing space between arguments\nC b NOOP\n" },
    { "bad literal header", "a X {x}\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a invalid literal header\nC b NOOP\n" },
    { "empty literal header", "a X {}\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a invalid literal header\nC b NOOP\n" },
    { "bad literal plus", "a X {5+x\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a invalid literal header\nC b NOOP\n" },
    { "literal header trailing", "a X {5}x\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a literal header not followed by CRLF\nC b NOOP\n" },
    { "literal header CR alone", "a X {5}\rx\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a literal header not followed by CRLF\nC b NOOP\n" },
    { "CR alone", "a NOOP\rX\r\nb NOOP\r\n", 0, NULL, NULL, "ERR a CR without LF\nC b NOOP\n" },
    { "CR alone at start", "\rX\r\nb NOOP\r\n", 0, NULL, NULL, "ERR * CR without LF\nC b NOOP\n" },
    { "error then nonsync literal", "a X ) {4+}\r\nb NO\r\nc NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC c NOOP\n" },
    { "error then two nonsync literals", "a X ) {1+}\r\nx {2+}\r\nyy\r\nc NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC c NOOP\n" },
    { "error then literal8 nonsync", "a X ) ~{4+}\r\nb NO\r\nc NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC c NOOP\n" },
    { "error then sync literal", "a X ) {4}\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC b NOOP\n" },
    { "error then literal not at end", "a X ) {4+} x\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC b NOOP\n" },
    { "error then huge nonsync", "a X ) {1001+}\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nFATAL a literal too big\n" },
    { "error then overflowing nonsync", "a X ) {99999999999999999999999+}\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nFATAL a literal too big\n" },
    { "error then huge sync", "a X ) {1001}\r\nb NOOP\r\n", 0, NULL, NULL,
      "ERR a unexpected ')'\nC b NOOP\n" },
    { "error at brace: header completes in discard", "a X \"a\"{3+}\r\nabc\r\nb NOOP\r\n", 0, NULL,
      NULL, "ERR a missing space between arguments\nC b NOOP\n" },

    /* limits */
    { "literal too big", "a APPEND x {1001}\r\n", 0, NULL, NULL, "FATAL a literal too big\n" },
    { "literal too big nonsync", "a APPEND x {1001+}\r\nb NOOP\r\n", 0, NULL, NULL,
      "FATAL a literal too big\n" },
    { "literal8 too big", "a APPEND x ~{1001}\r\n", 0, NULL, NULL, "FATAL a literal too big\n" },
    { "literal size overflow", "a APPEND x {99999999999999999999999}\r\n", 0, NULL, NULL,
      "FATAL a literal too big\n" },
    { "line too long", "a NOOP aaaaaaaaaaaaaa\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR a line too long\nC b NOOP\n" },
    { "line exactly at limit", "a NOOP 123\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "C a NOOP A:123\nC b NOOP\n" },
    { "line limit excludes literal", "a X {20}\r\n01234567890123456789\r\n", 0, &tiny_line, NULL,
      "LIT 20 sync a X [] a\nC a X L{20}:01234567890123456789\n" },
    { "long tag", "aaaaaaaaaaaaaaaaaa NOOP\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR * line too long\nC b NOOP\n" },
    { "long name", "a NOOOOOOOOOOOOOOOP\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR a line too long\nC b NOOP\n" },
    { "long quoted", "a \"0123456789\"\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR a invalid character in command name\nC b NOOP\n" },
    { "long quoted arg", "a X \"0123456789\"\r\nb NOOP\r\n", 0, &tiny_line, NULL,
      "ERR a line too long\nC b NOOP\n" },
    { "long line splits literal header", "a X {12+}\r\nc NOOP\r\nxxxx\r\nb NOOP\r\n", 0, &six_line,
      NULL, "ERR a line too long\nC b NOOP\n" },
    { "too many args", "a X 1 2 3 4\r\nb NOOP\r\n", 0, &three_args, NULL,
      "ERR a too many arguments\nC b NOOP\n" },
    { "args at max", "a X 1 2 3\r\n", 0, &three_args, NULL, "C a X A:1 A:2 A:3\n" },
    { "list args counted", "a X (1 2) 3\r\nb NOOP\r\n", 0, &three_args, NULL,
      "ERR a too many arguments\nC b NOOP\n" },
    { "too many args at literal", "a X 1 2 3 {4+}\r\nb NO\r\nc NOOP\r\n", 0, &three_args, NULL,
      "ERR a too many arguments\nC c NOOP\n" },
    { "too deep", "a X ((()))\r\nb NOOP\r\n", 0, &depth_two, NULL,
      "ERR a lists nested too deeply\nC b NOOP\n" },
    { "no lists", "a X ()\r\nb NOOP\r\n", 0, &no_lists, NULL, "ERR a lists nested too deeply\nC b NOOP\n" },
};

static size_t case_len(const struct pcase *c)
{
    return c->len != 0 ? c->len : strlen(c->input);
}

static const struct parser_limits *case_limits(const struct pcase *c)
{
    return c->limits != NULL ? c->limits : &default_limits;
}

static void check(const struct pcase *c, const char *how, const char *got)
{
    if (strcmp(got, c->expect) != 0) {
        print_error("case \"%s\" (%s)\n--- expected\n%s--- got\n%s---\n", c->name, how, c->expect,
                    got);
        fail();
    }
}

static void test_table_whole(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        char *got = run_whole(c->input, case_len(c), case_limits(c), c->policy);
        check(c, "whole", got);
        free(got);
    }
}

static void test_table_one_cut(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        size_t len = case_len(c);
        for (size_t k = 0; k <= len; k++) {
            char how[64];
            snprintf(how, sizeof(how), "cut at %zu", k);
            char *got = run_cuts(c->input, len, case_limits(c), c->policy, &k, 1);
            check(c, how, got);
            free(got);
        }
    }
}

static void test_table_two_cuts(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        size_t len = case_len(c);
        if (len > 64)
            continue;
        for (size_t k = 1; k < len; k++) {
            for (size_t m = k + 1; m < len; m++) {
                size_t cuts[2] = { k, m };
                char how[64];
                snprintf(how, sizeof(how), "cuts at %zu, %zu", k, m);
                char *got = run_cuts(c->input, len, case_limits(c), c->policy, cuts, 2);
                check(c, how, got);
                free(got);
            }
        }
    }
}

static void test_table_bytewise(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        size_t len = case_len(c);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (size_t k = 0; k < len; k++)
            cuts[k] = k + 1;
        char *got = run_cuts(c->input, len, case_limits(c), c->policy, cuts, len);
        check(c, "one byte at a time", got);
        free(got);
        free(cuts);
    }
}

/* Random cuts: long inputs get many shapes of split too. */
static void test_table_random_cuts(void **state)
{
    (void)state;
    unsigned seed = 12345;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const struct pcase *c = &cases[i];
        size_t len = case_len(c);
        size_t *cuts = malloc((len + 1) * sizeof(*cuts));
        assert_non_null(cuts);
        for (int round = 0; round < 50; round++) {
            size_t n = 0, at = 0;
            while (at < len) {
                seed = seed * 1103515245u + 12345u;
                at += 1 + (seed >> 16) % 7;
                if (at < len)
                    cuts[n++] = at;
            }
            char *got = run_cuts(c->input, len, case_limits(c), c->policy, cuts, n);
            check(c, "random cuts", got);
            free(got);
        }
        free(cuts);
    }
}

/* ---- behaviour outside the table --------------------------------------------------------- */

static enum parser_result feed_str(struct parser *p, const char *s, size_t *consumed_r)
{
    return parser_feed(p, (const uint8_t *)s, strlen(s), consumed_r);
}

static void test_nothing_consumed_until_caller_acts(void **state)
{
    (void)state;
    struct parser *p = parser_new(&default_limits);
    size_t n;
    const char *in = "a NOOP\r\nb X {3}\r\nabc\r\nc )\r\nd NOOP\r\n";
    assert_int_equal(feed_str(p, in, &n), PARSER_COMMAND);
    assert_int_equal(n, 8); /* exactly through the LF */
    in += n;
    size_t again;
    assert_int_equal(feed_str(p, in, &again), PARSER_COMMAND);
    assert_int_equal(again, 0);
    struct imap_command *cmd = parser_take_command(p);
    assert_string_equal(cmd->tag, "a");
    imap_command_free(&cmd);

    assert_int_equal(feed_str(p, in, &n), PARSER_LITERAL);
    in += n;
    assert_int_equal(feed_str(p, in, &again), PARSER_LITERAL);
    assert_int_equal(again, 0);
    parser_literal_accept(p);
    assert_int_equal(feed_str(p, in, &n), PARSER_COMMAND);
    in += n;
    cmd = parser_take_command(p);
    assert_int_equal(cmd->argc, 1);
    assert_memory_equal(cmd->args[0].str, "abc", 4);
    imap_command_free(&cmd);

    assert_int_equal(feed_str(p, in, &n), PARSER_ERROR);
    assert_string_equal(parser_error_tag(p), "c");
    assert_false(parser_error_fatal(p));
    in += n;
    assert_int_equal(feed_str(p, in, &n), PARSER_COMMAND);
    cmd = parser_take_command(p);
    assert_string_equal(cmd->tag, "d");
    imap_command_free(&cmd);
    imap_command_free(&cmd); /* NULL-safe */
    parser_free(&p);
    parser_free(&p);
    parser_free(NULL);
}

static void test_literal_info_and_stream_chunks(void **state)
{
    (void)state;
    struct parser *p = parser_new(&default_limits);
    size_t n;
    assert_int_equal(feed_str(p, "t1 APPEND \"box\" (\\Seen) ~{10}\r\n", &n), PARSER_LITERAL);
    const struct parser_literal_info *info = parser_literal(p);
    assert_int_equal(info->size, 10);
    assert_true(info->sync);
    assert_true(info->literal8);
    assert_string_equal(info->tag, "t1");
    assert_string_equal(info->name, "APPEND");
    assert_int_equal(info->argc, 2);
    assert_int_equal(info->args[0].type, IMAP_ARG_QUOTED);
    assert_int_equal(info->args[1].type, IMAP_ARG_LIST);
    assert_int_equal(info->args[1].count, 1);
    parser_literal_stream(p);
    /* chunks are at most what each feed offers and point into it */
    const uint8_t part1[] = "0123";
    assert_int_equal(parser_feed(p, part1, 4, &n), PARSER_LITERAL_DATA);
    assert_int_equal(n, 4);
    const uint8_t *chunk;
    size_t clen;
    parser_literal_chunk(p, &chunk, &clen);
    assert_ptr_equal(chunk, part1);
    assert_int_equal(clen, 4);
    const uint8_t part2[] = "456789\r\nnext";
    assert_int_equal(parser_feed(p, part2, sizeof(part2) - 1, &n), PARSER_LITERAL_DATA);
    assert_int_equal(n, 6);
    parser_literal_chunk(p, &chunk, &clen);
    assert_ptr_equal(chunk, part2);
    assert_int_equal(clen, 6);
    assert_int_equal(parser_feed(p, part2 + 6, sizeof(part2) - 7, &n), PARSER_COMMAND);
    assert_int_equal(n, 2);
    struct imap_command *cmd = parser_take_command(p);
    assert_int_equal(cmd->argc, 3);
    assert_true(cmd->args[2].streamed);
    assert_true(cmd->args[2].literal8);
    assert_int_equal(cmd->args[2].len, 10);
    imap_command_free(&cmd);
    parser_free(&p);
}

static void test_set_limits(void **state)
{
    (void)state;
    struct parser *p = parser_new(&default_limits);
    size_t n;
    /* a command in progress keeps the limits it started with */
    assert_int_equal(feed_str(p, "a LOGIN user", &n), PARSER_NEED_MORE);
    parser_set_limits(p, &tiny_line);
    assert_int_equal(feed_str(p, "name password\r\n", &n), PARSER_COMMAND);
    struct imap_command *cmd = parser_take_command(p);
    assert_int_equal(cmd->argc, 2);
    imap_command_free(&cmd);
    /* the next one uses the new limits */
    const char *line = "b LOGIN username\r\n";
    assert_int_equal(feed_str(p, line, &n), PARSER_ERROR);
    assert_string_equal(parser_error(p), "line too long");
    assert_int_equal(feed_str(p, line + n, &n), PARSER_NEED_MORE);
    /* and back */
    struct parser_limits big = default_limits;
    big.max_literal = 5;
    parser_set_limits(p, &big);
    assert_int_equal(feed_str(p, "c LOGIN username {6}\r\n", &n), PARSER_ERROR);
    assert_true(parser_error_fatal(p));
    assert_string_equal(parser_error_tag(p), "c");
    parser_free(&p);
}

static void test_arg_helpers(void **state)
{
    (void)state;
    struct parser *p = parser_new(&default_limits);
    size_t n;
    const char *in = "a X atom \"q\" NIL [Gmail]/Sent * \\Seen BODY[1 2] () {2}\r\nxy\r\n";
    assert_int_equal(feed_str(p, in, &n), PARSER_LITERAL);
    parser_literal_accept(p);
    in += n;
    assert_int_equal(feed_str(p, in, &n), PARSER_COMMAND);
    struct imap_command *cmd = parser_take_command(p);
    assert_int_equal(cmd->argc, 9);
    const bool astring[] = { true, true, true, true, false, false, false, false, true };
    for (size_t i = 0; i < 9; i++)
        assert_int_equal(imap_arg_is_astring(&cmd->args[i]), astring[i]);
    assert_true(imap_arg_atom_eq(&cmd->args[0], "ATOM"));
    assert_false(imap_arg_atom_eq(&cmd->args[0], "ATOMS"));
    assert_false(imap_arg_atom_eq(&cmd->args[0], "ATO"));
    assert_false(imap_arg_atom_eq(&cmd->args[1], "q"));
    assert_true(imap_arg_atom_eq(&cmd->args[2], "nil"));
    assert_int_equal(cmd->args[2].type, IMAP_ARG_NIL);
    imap_command_free(&cmd);
    parser_free(&p);
}

/* 4 MiB in one line: an error at max_line, then discarded without buffering. */
static void test_huge_line_bounded(void **state)
{
    (void)state;
    struct parser_limits lim = default_limits;
    lim.max_line = 8192;
    struct parser *p = parser_new(&lim);
    size_t chunk_len = 64 * 1024;
    uint8_t *chunk = malloc(chunk_len);
    memset(chunk, 'a', chunk_len);
    size_t n;
    assert_int_equal(feed_str(p, "t LOGIN ", &n), PARSER_NEED_MORE);
    size_t before = heap_in_use();
    size_t peak = 0;
    int errors = 0;
    for (size_t sent = 0; sent < 4 * 1024 * 1024;) {
        enum parser_result r = parser_feed(p, chunk, chunk_len, &n);
        if (r == PARSER_ERROR) {
            errors++;
            assert_false(parser_error_fatal(p));
            assert_string_equal(parser_error(p), "line too long");
            assert_string_equal(parser_error_tag(p), "t");
        } else {
            assert_int_equal(r, PARSER_NEED_MORE);
        }
        sent += n;
        size_t now = heap_in_use();
        if (now > before && now - before > peak)
            peak = now - before;
        /* a connection would drop the consumed bytes; feed the rest next */
        memmove(chunk, chunk + n, chunk_len - n);
        memset(chunk + chunk_len - n, 'a', n);
    }
    assert_int_equal(errors, 1);
    assert_true(peak < 64 * 1024);
    assert_int_equal(feed_str(p, "\r\nb NOOP\r\n", &n), PARSER_COMMAND);
    struct imap_command *cmd = parser_take_command(p);
    assert_string_equal(cmd->tag, "b");
    imap_command_free(&cmd);
    parser_free(&p);
    free(chunk);
}

/* Deep nesting: the depth limit stops it before any recursion or large allocation. */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *in = malloc(depth + 16);
    memcpy(in, "a X ", 4);
    memset(in + 4, '(', depth);
    memcpy(in + 4 + depth, "\r\nb NOOP\r\n", 11);
    struct parser_limits lim = { .max_line = 1024 * 1024, .max_args = 1000000, .max_depth = 64,
                                 .max_literal = 100 };
    char *got = run_whole(in, strlen(in), &lim, NULL);
    assert_string_equal(got, "ERR a lists nested too deeply\nC b NOOP\n");
    free(got);
    /* balanced, at the limit, fine */
    size_t d = 64;
    memset(in + 4, '(', d);
    memset(in + 4 + d, ')', d);
    memcpy(in + 4 + 2 * d, "\r\n", 3);
    struct parser *p = parser_new(&lim);
    size_t n;
    assert_int_equal(feed_str(p, in, &n), PARSER_COMMAND);
    struct imap_command *cmd = parser_take_command(p);
    const struct imap_arg *a = &cmd->args[0];
    for (size_t i = 1; i < d; i++) {
        assert_int_equal(a->type, IMAP_ARG_LIST);
        assert_int_equal(a->count, 1);
        a = &a->list[0];
    }
    assert_int_equal(a->count, 0);
    imap_command_free(&cmd);
    parser_free(&p);
    free(in);
}

/* Many arguments and a long line in one command: arrays grow and are handed over intact. */
static void test_many_args(void **state)
{
    (void)state;
    struct parser_limits lim = { .max_line = 1 << 20, .max_args = 5000, .max_depth = 4,
                                 .max_literal = 100 };
    struct out o = { 0 };
    out_add(&o, "a X (", 5);
    for (int i = 0; i < 4000; i++)
        out_printf(&o, "%s%d", i ? " " : "", i);
    out_add(&o, ") end\r\n", 7);
    struct parser *p = parser_new(&lim);
    size_t n;
    assert_int_equal(parser_feed(p, (const uint8_t *)o.buf, o.len, &n), PARSER_COMMAND);
    struct imap_command *cmd = parser_take_command(p);
    assert_int_equal(cmd->argc, 2);
    assert_int_equal(cmd->args[0].count, 4000);
    assert_string_equal(cmd->args[0].list[3999].str, "3999");
    assert_string_equal(cmd->args[1].str, "end");
    imap_command_free(&cmd);
    /* the parser keeps working with small scratch afterwards */
    assert_int_equal(feed_str(p, "b NOOP\r\n", &n), PARSER_COMMAND);
    cmd = parser_take_command(p);
    imap_command_free(&cmd);
    parser_free(&p);
    free(o.buf);
}

/* A parser freed mid-command (or mid-literal) releases everything (LeakSanitizer checks). */
static void test_free_midway(void **state)
{
    (void)state;
    const char *inputs[] = { "a X (b c", "a X {5}\r\nab", "a X ) rest", "a X {3}\r\n" };
    for (size_t i = 0; i < 4; i++) {
        struct parser *p = parser_new(&default_limits);
        size_t n;
        enum parser_result r = feed_str(p, inputs[i], &n);
        if (r == PARSER_LITERAL) {
            parser_literal_accept(p);
            r = feed_str(p, inputs[i] + n, &n);
        }
        parser_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_whole),
        cmocka_unit_test(test_table_one_cut),
        cmocka_unit_test(test_table_two_cuts),
        cmocka_unit_test(test_table_bytewise),
        cmocka_unit_test(test_table_random_cuts),
        cmocka_unit_test(test_nothing_consumed_until_caller_acts),
        cmocka_unit_test(test_literal_info_and_stream_chunks),
        cmocka_unit_test(test_set_limits),
        cmocka_unit_test(test_arg_helpers),
        cmocka_unit_test(test_huge_line_bounded),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_many_args),
        cmocka_unit_test(test_free_midway),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
