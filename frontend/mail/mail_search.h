/*
 * mail_search: what SEARCH and threading need from a message (RFC 3501 §6.4.4, RFC 5256), included
 * by mail.h. Header helpers work on raw header bytes (a part's header range, read with GETRANGE);
 * text helpers decode transfer encoding and charset to UTF-8 for case-insensitive matching.
 *
 * Typical SEARCH use in the server:
 *   - SUBJECT/FROM/TO/CC/BCC: mail_view_root(view)->envelope[...] → mail_header_decode → matcher.
 *   - HEADER name value: read the root header range, mail_header_next loop (name match) →
 *     mail_header_decode → matcher (or, cheaper, fields[] of the root to read only those fields).
 *   - BODY/TEXT: for each part with mail_part_is_searchable_text, mail_text_decoder over its raw body
 *     range → matcher; TEXT also matches the root header.
 *   - SENTBEFORE/ON/SINCE: mail_date_parse on envelope[MAIL_ENV_DATE].
 */
#ifndef CIMAP_MAIL_SEARCH_H
#define CIMAP_MAIL_SEARCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifndef CIMAP_MAIL_H
#error "include frontend/mail/mail.h, not mail_search.h"
#endif

/* ---- header fields in raw header bytes ---- */

/* One field found by mail_header_next; spans point into the header given. */
struct mail_header_field {
    const uint8_t *name;
    size_t name_len;
    const uint8_t *value; /* raw, still folded, without the line end of the last line */
    size_t value_len;
    size_t offset, size;  /* the whole field incl. line ends, relative to the header start */
};

/*
 * Iterates header fields: *pos starts at 0; returns true and fills *field, or false at the end of
 * the header (blank line or end of bytes). Lines without a colon are skipped.
 */
bool mail_header_next(const uint8_t *hdr, size_t len, size_t *pos, struct mail_header_field *field);

/* Appends value with line ends removed (RFC 5322 §2.2.3 unfolding) and outer whitespace trimmed. */
void mail_header_unfold(const uint8_t *value, size_t len, struct mail_buf *out);

/*
 * Finds the first field called name (case-insensitive) and appends its unfolded value, decoded
 * from RFC 2047 to UTF-8 when decode is true. Returns true when found.
 */
bool mail_header_find(const uint8_t *hdr, size_t len, const char *name, bool decode,
                      struct mail_buf *out);

/*
 * HEADER.FIELDS[.NOT] by hand (for parts with fields_truncated): appends the selected fields of
 * hdr, then the blank line, to *out. section->text must be HEADER_FIELDS or HEADER_FIELDS_NOT.
 */
void mail_header_filter(const uint8_t *hdr, size_t len, const struct mail_section *section,
                        struct mail_buf *out);

/* ---- matching ---- */

/*
 * Case-insensitive substring matcher over UTF-8 text fed in chunks (a match may span chunks).
 * Case folding: simple lowercase mapping of Latin (incl. Latin-1 and Extended-A), Greek and Cyrillic.
 * Owned by the caller; init, feed..., free.
 */
struct mail_matcher {
    struct mail_buf needle;  /* folded */
    struct mail_buf window;  /* folded: last needle.len-1 bytes of the haystack, then new text */
    uint8_t pend[4];         /* a UTF-8 sequence split across feeds */
    size_t pend_len;
    bool found;
};

void mail_matcher_init(struct mail_matcher *m, const uint8_t *needle, size_t len);
/* Feeds text; returns true once the needle has been seen (it stays true until reset). */
bool mail_matcher_feed(struct mail_matcher *m, const uint8_t *text, size_t len);
/* Forgets the haystack (for the next message or the next part). */
void mail_matcher_reset(struct mail_matcher *m);
void mail_matcher_free(struct mail_matcher *m);

/* One-shot: true when needle occurs in text, case-insensitively (both UTF-8). */
bool mail_text_contains(const uint8_t *text, size_t len, const uint8_t *needle, size_t needle_len);

/* Appends the folded (lowercased) form of UTF-8 text; invalid bytes are copied. */
void mail_utf8_fold(const uint8_t *text, size_t len, struct mail_buf *out);

/* True for leaves worth searching as text: any text/ subtype (defaults included). */
bool mail_part_is_searchable_text(const struct mail_part *part);

/*
 * Streaming decoder of a part body to UTF-8 text: transfer encoding, then charset. Owned by the
 * caller; init with the part from a view, feed raw body bytes, finish, free.
 */
struct mail_text_decoder {
    struct mail_decoder dec;
    struct mail_charset_conv conv;
    struct mail_buf scratch;
};

void mail_text_decoder_init(struct mail_text_decoder *t, const struct mail_part *part);
/* Appends the UTF-8 text of raw[0..len) to *out. */
void mail_text_decoder_feed(struct mail_text_decoder *t, const uint8_t *raw, size_t len,
                            struct mail_buf *out);
void mail_text_decoder_finish(struct mail_text_decoder *t, struct mail_buf *out);
void mail_text_decoder_free(struct mail_text_decoder *t);

/* ---- dates ---- */

/*
 * Parses a Date header value (RFC 5322 §3.3 and the usual broken forms: missing weekday or seconds,
 * two-digit years, zone names or none, comments, asctime(), ISO 8601). Sets *time_r (UTC seconds)
 * and *tz_minutes_r (offset east of UTC). Returns 0, or -1 when no date can be recognised.
 */
int mail_date_parse(const uint8_t *s, size_t len, int64_t *time_r, int *tz_minutes_r,
                    const char **error_r);

/* ---- threading (RFC 5256, RFC 8474) ---- */

/*
 * Extracts the next "<...>" message id from s[*pos..len), ignoring comments and junk between ids.
 * Returns true and sets *id / *id_len (including the angle brackets), advancing *pos.
 */
bool mail_msgid_next(const uint8_t *s, size_t len, size_t *pos, const uint8_t **id, size_t *id_len);

/*
 * Appends the RFC 5256 §2.1 base subject of a raw Subject value: encoded words decoded, whitespace
 * collapsed, "Re:", "Fw:", "Fwd:", "[blob]" leaders and "(fwd)" trailers removed, "[Fwd: ...]"
 * unwrapped. Case is kept (compare with mail_utf8_fold if needed).
 */
void mail_base_subject(const uint8_t *subject, size_t len, struct mail_buf *out);

#endif
