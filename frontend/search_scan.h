/*
 * search_scan: one message's raw bytes against SEARCH's raw-level keys (RFC 3501 §6.4.4 HEADER,
 * BODY, TEXT), fed in sequential chunks so a message of any size is searched in bounded memory.
 * Pure and self-contained (owns copies of what it needs), so a batch of scans can run on a worker
 * thread while the event loop serves other clients; one scan is used by one thread at a time.
 *
 * HEADER name value: a root header field called name (case-insensitive) whose unfolded, RFC 2047
 * decoded value contains value (an empty value matches any such field). BODY: the text leaves of
 * the MIME tree (mail_part_is_searchable_text), decoded from transfer encoding and charset. TEXT:
 * the root header (every field, decoded) or the body text as for BODY. Matching is
 * case-insensitive (mail_matcher); a match never spans two parts.
 */
#ifndef CIMAP_SEARCH_SCAN_H
#define CIMAP_SEARCH_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/mail/mail.h"

enum search_needle_kind { SEARCH_NEEDLE_HEADER, SEARCH_NEEDLE_BODY, SEARCH_NEEDLE_TEXT };

/* One raw-level key. Owned by whoever built it (it must outlive the scans that use it). */
struct search_needle {
    enum search_needle_kind kind;
    char *name;          /* HEADER: field name (NUL-terminated) */
    size_t name_len;
    uint8_t *value;      /* the string to find (UTF-8) */
    size_t value_len;
};

#define SEARCH_SCAN_MAX_HEADER (1024 * 1024) /* root header bytes kept for HEADER/TEXT */

/* One message being scanned. Zero-initialise, then begin ... feed ... end, then free. */
struct search_scan {
    const struct search_needle *needles;
    size_t n_needles;
    uint8_t *blob;                 /* copy of the stored parse */
    struct mail_view *view;
    bool *found;                   /* per needle */
    struct mail_matcher *matchers; /* per needle (BODY and TEXT use theirs) */
    uint64_t header_end;           /* root header bytes [0, header_end) */
    struct mail_buf header;        /* buffered root header */
    bool header_done;
    uint32_t part;                 /* next part to consider for body text */
    bool in_part;
    struct mail_text_decoder dec;
    struct mail_buf text;          /* decoded text of the current feed */
};

/*
 * Starts a scan of the message whose stored parse is blob[0..blob_len) (copied). needles are
 * borrowed. Returns 0, or -1 with *error_r when the parse is unreadable (the scan then holds
 * nothing; search_scan_free is still safe).
 */
int search_scan_begin(struct search_scan *s, const struct search_needle *needles, size_t n,
                      const uint8_t *blob, size_t blob_len, const char **error_r);

/* Raw bytes the scan needs from offset 0: the root header only, or the whole message (body). */
uint64_t search_scan_need(const struct search_scan *s, bool body);

/* Feeds raw[offset .. offset+len); chunks must come in order without gaps, starting at 0. */
void search_scan_feed(struct search_scan *s, uint64_t offset, const uint8_t *data, size_t len);

/* Ends the scan (whatever was not fed counts as absent); found_r[i] for needle i. */
void search_scan_end(struct search_scan *s, bool *found_r);

/* Frees everything the scan holds and zeroes it. NULL-safe, idempotent. */
void search_scan_free(struct search_scan *s);

#endif
