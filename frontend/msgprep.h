/*
 * msgprep: everything append.lua stores beside a message's bytes (DESIGN.md rule 6: parse once) —
 * SHA-256 content id, serialised MIME parse, rendered ENVELOPE and BODYSTRUCTURE, Message-ID and
 * thread references — and the builder of append.lua's KEYS/ARGV. Pure (no I/O), so cimapd's APPEND,
 * its demo data and cimap-admin's delivery share one implementation.
 */
#ifndef CIMAP_MSGPREP_H
#define CIMAP_MSGPREP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/arena.h"
#include "frontend/mail/mail.h"
#include "keys/keys.h"

/* Owned by its declarer; zero-initialise, release with msgprep_free. */
struct msgprep {
    char sha_hex[KEYS_SHA256_LEN + 1];
    struct mail_buf blob; /* serialised parse */
    struct mail_buf env;  /* rendered ENVELOPE */
    struct mail_buf bs;   /* rendered BODYSTRUCTURE */
    char *message_id;     /* the message's own Message-ID ("<...>") or "" (malloc'd) */
    char *thread_refs;    /* Message-IDs of In-Reply-To then References, space-separated (malloc'd) */
};

/* Hashes and parses a whole message held in memory. Returns 0, or -1 with *error_r. */
int msgprep_bytes(struct msgprep *m, const uint8_t *data, size_t len, const char **error_r);

/*
 * Completes a message that was hashed and parsed incrementally: m->sha_hex and m->blob are set by
 * the caller; this renders the rest. Returns 0, or -1 with *error_r (a corrupt blob).
 */
int msgprep_render(struct msgprep *m, const char **error_r);

/* Writes the lowercase hex of a 32-byte digest and its NUL. */
void msgprep_hex(const unsigned char md[32], char out[KEYS_SHA256_LEN + 1]);

/* Frees what m holds and zeroes it. */
void msgprep_free(struct msgprep *m);

/* One message of an append.lua call. */
struct append_item {
    const struct msgprep *prep;
    uint64_t size;
    const char *date;       /* unix seconds as text, or "" for now */
    const char *flags;      /* canonical flag list (flags.h), may be "" */
    const char *raw;        /* the bytes inline, or NULL when staged */
    size_t raw_len;
    const char *staging_id; /* when staged (raw == NULL) */
};

struct append_limits {
    uint64_t quota_bytes;    /* 0 = none */
    uint64_t quota_messages; /* 0 = none */
    uint32_t max_keywords;
};

/* append.lua's arguments (KEYS then ARGV), all in the arena. */
struct append_call {
    int nkeys;
    int argc;
    const char **argv;
    size_t *argvlen;
};

/* Builds append.lua's KEYS and ARGV (keys/README.md "Scripts") for n >= 1 messages. */
void append_call_build(struct arena *a, const char *nsid, const char *mbxid,
                       const struct append_limits *limits, const struct append_item *items,
                       size_t n, struct append_call *out);

#endif
