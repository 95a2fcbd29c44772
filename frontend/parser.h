/*
 * parser: a pure, resumable, bounded IMAP command parser (RFC 3501 §9 grammar, RFC 7888 LITERAL+,
 * RFC 3516 literal8). No I/O: the connection feeds bytes as they arrive and acts on the results.
 *
 * A command line is parsed into a tree of arguments (struct imap_arg) allocated in the command's
 * own arena; the finished command is handed over whole (parser_take_command), so the parser can
 * start on the next pipelined command at once.
 *
 * Literals stop the parser at their header ({n}, {n+}, ~{n}) and return PARSER_LITERAL, so the caller
 * can decide (send "+", refuse with NO [TOOBIG], or stream it): see parser_literal_*().
 *
 * Fetch attributes: an atom that starts with BODY, BODY.PEEK, BINARY, BINARY.PEEK or BINARY.SIZE
 * (any case) and continues with '[' is read up to the matching ']' including spaces, parentheses
 * and quoted strings, then continues with atom characters, so "BODY.PEEK[HEADER.FIELDS (A B)]<0.10>"
 * is one atom. A literal inside the brackets is a syntax error.
 *
 * Not thread-safe; one parser per connection.
 */
#ifndef CIMAP_PARSER_H
#define CIMAP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"

enum imap_arg_type {
    IMAP_ARG_ATOM,    /* atom (incl. fetch attributes, sequence sets, flags like \Seen) */
    IMAP_ARG_QUOTED,  /* quoted string, escapes removed */
    IMAP_ARG_LITERAL, /* literal or literal8; may contain NUL */
    IMAP_ARG_NIL,     /* the atom NIL, any case */
    IMAP_ARG_LIST,    /* parenthesised list */
};

struct imap_arg {
    enum imap_arg_type type;
    bool literal8;        /* LITERAL: came as ~{n} */
    bool streamed;        /* LITERAL: bytes went to the caller as PARSER_LITERAL_DATA; str is NULL */
    const char *str;      /* ATOM/QUOTED/LITERAL: bytes, NUL-terminated (len is authoritative) */
    size_t len;           /* ATOM/QUOTED/LITERAL: byte length (streamed literal: its size) */
    struct imap_arg *list; /* LIST: children (array of count) */
    size_t count;          /* LIST: number of children */
};

/* A complete command. Owned by the caller after parser_take_command(); free with imap_command_free. */
struct imap_command {
    struct arena *arena;   /* owns tag, name, args and everything below them */
    const char *tag;       /* NUL-terminated */
    const char *name;      /* command name as sent (case preserved), NUL-terminated */
    struct imap_arg *args; /* top-level arguments after the name */
    size_t argc;
};

struct parser_limits {
    size_t max_line;      /* bytes of one line, literal contents excluded (error past it) */
    size_t max_args;      /* arguments in one command, all list levels counted */
    size_t max_depth;     /* parenthesis nesting depth */
    uint64_t max_literal; /* largest literal header accepted at all; larger is a parser error */
};

enum parser_result {
    PARSER_NEED_MORE,     /* everything given was consumed; feed more */
    PARSER_COMMAND,       /* a command is complete: parser_take_command() */
    PARSER_LITERAL,       /* stopped at a literal header: parser_literal(), then accept/stream/reject */
    PARSER_LITERAL_DATA,  /* a chunk of a streamed literal: parser_literal_chunk() */
    PARSER_ERROR,         /* syntax or limit error: parser_error(); the parser then skips the line */
};

/* What the caller learns at a literal header. */
struct parser_literal_info {
    uint64_t size;
    bool sync;            /* {n}: the client waits for "+" before sending the bytes */
    bool literal8;        /* ~{n} */
    const char *tag;      /* tag of the command being parsed (NULL when the literal is the tag...: never) */
    const char *name;     /* command name, or NULL if the literal came before it (an error anyway) */
    const struct imap_arg *args; /* top-level arguments parsed so far (complete ones only) */
    size_t argc;
};

/* Creates a parser; returns NULL on allocation failure. limits is copied. */
struct parser *parser_new(const struct parser_limits *limits);

/* Frees the parser and any partial command; sets *p to NULL. NULL-safe. */
void parser_free(struct parser **p);

/* Replaces the limits (e.g. after authentication); applies from the next command. */
void parser_set_limits(struct parser *p, const struct parser_limits *limits);

/*
 * Consumes bytes. *consumed_r is set to how many of data[0..len) were used; the caller drops those
 * and feeds the rest (plus anything new) on the next call. The parser copies what it keeps, so data
 * need not stay valid after the call, except for a PARSER_LITERAL_DATA chunk (which points into data
 * and is valid until the caller drops those bytes).
 * After PARSER_COMMAND, PARSER_LITERAL or PARSER_ERROR, nothing further is consumed until the
 * caller has acted (take the command / decide the literal / read the error).
 */
enum parser_result parser_feed(struct parser *p, const uint8_t *data, size_t len, size_t *consumed_r);

/* After PARSER_COMMAND: hands over the finished command; the parser starts a fresh one. */
struct imap_command *parser_take_command(struct parser *p);

/* Frees a command taken from the parser; sets *cmd to NULL. NULL-safe. */
void imap_command_free(struct imap_command **cmd);

/* After PARSER_LITERAL: what the literal is. Valid until the next parser call. */
const struct parser_literal_info *parser_literal(const struct parser *p);

/* After PARSER_LITERAL: keep the bytes in the argument (the caller sends "+" if info->sync). */
void parser_literal_accept(struct parser *p);

/*
 * After PARSER_LITERAL: deliver the bytes to the caller as PARSER_LITERAL_DATA chunks (each
 * at most what one feed call offers); the argument becomes a streamed LITERAL of the given size.
 */
void parser_literal_stream(struct parser *p);

/*
 * After PARSER_LITERAL: refuse it. A synchronizing literal ends the command (the client sends no
 * bytes); a non-synchronizing one is read and discarded without buffering, then the rest of its
 * command line (and any further non-synchronizing literals in it) is discarded too. Either way
 * the caller answers the command itself, and the parser then starts on the next command.
 */
void parser_literal_reject(struct parser *p);

/* After PARSER_LITERAL_DATA: the chunk, pointing into the data last fed. */
void parser_literal_chunk(const struct parser *p, const uint8_t **data_r, size_t *len_r);

/* After PARSER_ERROR: a short human-readable reason (static storage). */
const char *parser_error(const struct parser *p);

/* After PARSER_ERROR: the tag of the failed command, or NULL when none was parsed (use "*"). */
const char *parser_error_tag(const struct parser *p);

/*
 * After PARSER_ERROR: true when the error means the stream can no longer be trusted (e.g. a
 * literal over max_literal: the caller should send BYE and close). Otherwise the parser discards
 * the rest of the line (recognising trailing {n+} literals) and continues with the next command.
 */
bool parser_error_fatal(const struct parser *p);

/* Helpers for command handlers. */

/* True when arg is an astring (atom, quoted or non-streamed literal). */
bool imap_arg_is_astring(const struct imap_arg *arg);

/* True when arg is an atom equal to word, ASCII case-insensitively. */
bool imap_arg_atom_eq(const struct imap_arg *arg, const char *word);

#endif
