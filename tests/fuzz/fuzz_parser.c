/*
 * libFuzzer target for the IMAP parser (and, through the atoms it produces, sequence sets).
 *
 * Input layout: byte 0 picks the limits, bytes 1..4 seed a PRNG; the rest is the client's byte
 * stream. The stream is parsed twice: once fed in random pieces (re-offering unconsumed bytes as a
 * connection does), once offered whole. Literal decisions (accept/stream/reject) and limit changes
 * come from a second PRNG indexed by event, so both runs make the same choices. Invariants:
 * - consumed <= offered; NEED_MORE consumed everything; a pending result consumes nothing;
 * - commands are well-formed and within the limits; streamed chunks lie inside the offered data;
 * - a fatal error stays fatal;
 * - the arena of a command stays proportional to max_line, max_args and accepted literals;
 * - both runs produce the same transcript (the parser is resumable at every byte);
 * - every atom that parses as a sequence set resolves to a sorted, merged set whose formatted text
 *   parses back to itself.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/parser.h"
#include "frontend/seqset.h"

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    *s = x;
    return x;
}

static struct parser_limits limits_from(uint8_t b)
{
    static const size_t lines[] = { 16, 64, 1024, 65536 };
    static const size_t args[] = { 2, 8, 100, 10000 };
    static const size_t depths[] = { 0, 1, 3, 100 };
    static const uint64_t literals[] = { 0, 5, 100, 1 << 20 };
    struct parser_limits l = {
        .max_line = lines[b & 3],
        .max_args = args[(b >> 2) & 3],
        .max_depth = depths[(b >> 4) & 3],
        .max_literal = literals[(b >> 6) & 3],
    };
    return l;
}

struct transcript {
    uint8_t *buf;
    size_t len, cap;
};

static void tr_add(struct transcript *t, const void *s, size_t n)
{
    if (t->cap - t->len < n) {
        size_t cap = t->cap ? t->cap : 1024;
        while (cap - t->len < n)
            cap *= 2;
        t->buf = realloc(t->buf, cap);
        CHECK(t->buf != NULL);
        t->cap = cap;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

static void tr_u64(struct transcript *t, uint64_t v)
{
    tr_add(t, &v, sizeof(v));
}

/* The set rebuilt from its own numbers (when small) is the same set. */
static void check_from_numbers(struct arena *ar, const struct seqset *set)
{
    uint64_t count = seqset_count(set);
    if (count > 256)
        return;
    uint32_t nums[256];
    size_t n = 0;
    for (size_t k = set->count; k-- > 0;) /* descending, so seqset_from_numbers must sort */
        for (uint64_t v = set->ranges[k].last + 1ull; v-- > set->ranges[k].first;)
            nums[n++] = (uint32_t)v;
    struct seqset built;
    const char *error = NULL;
    CHECK(seqset_from_numbers(ar, nums, n, &built, &error) == 0);
    CHECK(built.count == set->count);
    CHECK(built.count == 0 ||
          memcmp(built.ranges, set->ranges, built.count * sizeof(*built.ranges)) == 0);
}

static void check_seqset(const struct imap_arg *a)
{
    struct arena *ar = arena_new(256);
    struct seqset_spec spec;
    const char *error = NULL;
    if (seqset_parse(ar, a->str, a->len, SEQSET_ALLOW_SAVED, &spec, &error) == 0 && !spec.saved) {
        uint32_t stars[] = { 0, 1, 7, UINT32_MAX };
        for (size_t i = 0; i < 4; i++) {
            struct seqset set;
            CHECK(seqset_resolve(ar, &spec, stars[i], &set, &error) == 0);
            uint64_t count = 0;
            for (size_t k = 0; k < set.count; k++) {
                CHECK(set.ranges[k].first >= 1 && set.ranges[k].first <= set.ranges[k].last);
                if (k > 0)
                    CHECK((uint64_t)set.ranges[k - 1].last + 1 < set.ranges[k].first);
                CHECK(seqset_contains(&set, set.ranges[k].first));
                CHECK(seqset_contains(&set, set.ranges[k].last));
                if (set.ranges[k].first > 1)
                    CHECK(!seqset_contains(&set, set.ranges[k].first - 1));
                count += (uint64_t)set.ranges[k].last - set.ranges[k].first + 1;
            }
            CHECK(seqset_count(&set) == count);
            check_from_numbers(ar, &set);
            if (set.count > 0) {
                char *text = seqset_format_arena(ar, &set);
                struct seqset again;
                CHECK(seqset_parse_resolve(ar, text, strlen(text), 0, &again, &error) == 0);
                CHECK(strcmp(seqset_format_arena(ar, &again), text) == 0);
            }
        }
    } else {
        CHECK(error != NULL || spec.saved);
    }
    arena_free(&ar);
}

struct totals {
    size_t args;
    uint64_t literal_bytes;
};

static void check_arg(struct transcript *t, const struct imap_arg *a, const struct parser_limits *l,
                      size_t depth, struct totals *tot)
{
    tot->args++;
    tr_u64(t, a->type);
    switch (a->type) {
    case IMAP_ARG_ATOM:
    case IMAP_ARG_NIL:
    case IMAP_ARG_QUOTED:
        CHECK(a->str != NULL && a->str[a->len] == '\0');
        CHECK(a->len <= l->max_line);
        if (a->type != IMAP_ARG_QUOTED)
            CHECK(a->len > 0);
        if (a->type == IMAP_ARG_NIL)
            CHECK(a->len == 3);
        if (a->type == IMAP_ARG_QUOTED)
            CHECK(memchr(a->str, '\n', a->len) == NULL && memchr(a->str, '\r', a->len) == NULL &&
                  memchr(a->str, '\0', a->len) == NULL);
        tr_u64(t, a->len);
        tr_add(t, a->str, a->len);
        if (a->type == IMAP_ARG_ATOM && a->len < 64)
            check_seqset(a);
        CHECK(imap_arg_atom_eq(a, "NIL") == (a->type == IMAP_ARG_NIL));
        if (a->type == IMAP_ARG_QUOTED)
            CHECK(imap_arg_is_astring(a));
        else if (memchr(a->str, ' ', a->len) != NULL || memchr(a->str, '*', a->len) != NULL)
            CHECK(!imap_arg_is_astring(a));
        break;
    case IMAP_ARG_LITERAL:
        CHECK(a->len <= l->max_literal);
        tr_u64(t, a->len);
        tr_u64(t, (uint64_t)a->streamed * 2 + a->literal8);
        CHECK(imap_arg_is_astring(a) == !a->streamed);
        CHECK(!imap_arg_atom_eq(a, "NIL"));
        if (!a->streamed) {
            CHECK(a->str != NULL && a->str[a->len] == '\0');
            tr_add(t, a->str, a->len);
            tot->literal_bytes += a->len;
        } else {
            CHECK(a->str == NULL);
        }
        break;
    case IMAP_ARG_LIST:
        CHECK(depth < l->max_depth);
        CHECK(!imap_arg_is_astring(a));
        CHECK(a->count == 0 || a->list != NULL);
        tr_u64(t, a->count);
        for (size_t i = 0; i < a->count; i++)
            check_arg(t, &a->list[i], l, depth + 1, tot);
        break;
    }
}

/*
 * One run over data with the given cut PRNG (NULL: offer everything at once). Appends the
 * transcript to t.
 */
static void run(const uint8_t *data, size_t len, uint8_t limit_byte, uint64_t seed, bool split,
                struct transcript *t)
{
    uint64_t cut_rng = seed | 1, choice_rng = (seed * 0x9e3779b97f4a7c15ull) | 1;
    struct parser_limits limits = limits_from(limit_byte);
    struct parser_limits next = limits;
    struct parser *p = parser_new(&limits);
    CHECK(p != NULL);
    size_t start = 0, avail = split ? 0 : len;
    uint64_t streamed = 0, stream_size = 0;
    bool streaming = false;

    for (;;) {
        if (start == avail) {
            if (avail == len)
                break;
            size_t piece = 1 + (size_t)(rng_next(&cut_rng) % 17);
            if (rng_next(&cut_rng) % 8 == 0)
                piece += (size_t)(rng_next(&cut_rng) % 4096);
            avail = len - avail < piece ? len : avail + piece;
        }
        size_t offered = avail - start, consumed = (size_t)-1;
        enum parser_result r = parser_feed(p, data + start, offered, &consumed);
        CHECK(consumed <= offered);
        if (r != PARSER_LITERAL_DATA && streaming) {
            CHECK(streamed == stream_size);
            streaming = false;
        }
        switch (r) {
        case PARSER_NEED_MORE:
            CHECK(consumed == offered);
            break;
        case PARSER_COMMAND: {
            size_t again = 1;
            CHECK(parser_feed(p, data + start + consumed, offered - consumed, &again) ==
                  PARSER_COMMAND);
            CHECK(again == 0);
            struct imap_command *cmd = parser_take_command(p);
            CHECK(cmd != NULL);
            CHECK(parser_take_command(p) == NULL);
            CHECK(cmd->tag != NULL && cmd->tag[0] != '\0' && cmd->name != NULL &&
                  cmd->name[0] != '\0');
            size_t tl = strlen(cmd->tag), nl = strlen(cmd->name);
            CHECK(tl + nl + 1 <= limits.max_line);
            tr_add(t, "C", 1);
            tr_add(t, cmd->tag, tl + 1);
            tr_add(t, cmd->name, nl + 1);
            tr_u64(t, cmd->argc);
            struct totals tot = { 0, 0 };
            for (size_t i = 0; i < cmd->argc; i++)
                check_arg(t, &cmd->args[i], &limits, 0, &tot);
            CHECK(tot.args <= limits.max_args);
            size_t bound = 4 * (limits.max_line + (limits.max_args + 4) * (sizeof(struct imap_arg) + 64) +
                                (size_t)tot.literal_bytes) +
                           64 * 1024;
            CHECK(arena_footprint(cmd->arena) <= bound);
            imap_command_free(&cmd);
            CHECK(cmd == NULL);
            /* sometimes change the limits, as a connection does after LOGIN */
            if (rng_next(&choice_rng) % 4 == 0) {
                next = limits_from((uint8_t)rng_next(&choice_rng));
                parser_set_limits(p, &next);
            }
            break;
        }
        case PARSER_LITERAL: {
            const struct parser_literal_info *info = parser_literal(p);
            CHECK(info->size <= limits.max_literal);
            CHECK(info->tag != NULL && info->name != NULL);
            size_t again = 1;
            CHECK(parser_feed(p, data + start + consumed, offered - consumed, &again) ==
                  PARSER_LITERAL);
            CHECK(again == 0);
            tr_add(t, "L", 1);
            tr_u64(t, info->size);
            tr_u64(t, (uint64_t)info->sync * 2 + info->literal8);
            tr_u64(t, info->argc);
            switch (rng_next(&choice_rng) % 3) {
            case 0:
                parser_literal_accept(p);
                break;
            case 1:
                parser_literal_stream(p);
                streaming = true;
                streamed = 0;
                stream_size = info->size;
                tr_add(t, "S", 1);
                if (stream_size == 0)
                    streaming = false;
                break;
            default:
                parser_literal_reject(p);
                tr_add(t, "R", 1);
                break;
            }
            break;
        }
        case PARSER_LITERAL_DATA: {
            const uint8_t *chunk;
            size_t n;
            parser_literal_chunk(p, &chunk, &n);
            CHECK(streaming);
            CHECK(n > 0 && n == consumed);
            CHECK(chunk == data + start);
            streamed += n;
            CHECK(streamed <= stream_size);
            tr_add(t, chunk, n); /* no framing: chunk boundaries differ between runs */
            break;
        }
        case PARSER_ERROR: {
            const char *msg = parser_error(p);
            const char *tag = parser_error_tag(p);
            bool fatal = parser_error_fatal(p);
            CHECK(msg != NULL);
            tr_add(t, "E", 1);
            tr_add(t, msg, strlen(msg) + 1);
            if (tag != NULL)
                tr_add(t, tag, strlen(tag) + 1);
            tr_u64(t, fatal);
            if (fatal) {
                size_t again = 1;
                CHECK(parser_feed(p, data + start, offered, &again) == PARSER_ERROR);
                CHECK(again == 0);
                parser_free(&p);
                return;
            }
            break;
        }
        }
        /* limits in force follow the commands: take the new ones once a command begins */
        if (r == PARSER_COMMAND)
            limits = next;
        start += consumed;
    }
    parser_free(&p);
    CHECK(p == NULL);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 5)
        return 0;
    uint8_t limit_byte = data[0];
    uint64_t seed = (uint64_t)data[1] | (uint64_t)data[2] << 8 | (uint64_t)data[3] << 16 |
                    (uint64_t)data[4] << 24;
    data += 5;
    size -= 5;
    struct transcript split = { 0 }, whole = { 0 };
    run(data, size, limit_byte, seed, true, &split);
    run(data, size, limit_byte, seed, false, &whole);
    CHECK(split.len == whole.len);
    CHECK(split.len == 0 || memcmp(split.buf, whole.buf, split.len) == 0);
    free(split.buf);
    free(whole.buf);
    return 0;
}
