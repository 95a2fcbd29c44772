/*
 * imapdate: IMAP date-time (RFC 3501 §9 date-time: "dd-Mon-yyyy hh:mm:ss +zzzz", day possibly
 * space-padded) to and from unix time. Pure; thread-safe.
 */
#ifndef CIMAP_IMAPDATE_H
#define CIMAP_IMAPDATE_H

#include <stddef.h>
#include <stdint.h>

#define IMAPDATE_LEN 26 /* "dd-Mon-yyyy hh:mm:ss +zzzz" */

/* Parses s (len bytes, no quotes) into unix seconds. Returns 0, or -1 when malformed. */
int imapdate_parse(const char *s, size_t len, int64_t *time_r);

/* Writes t as a date-time in UTC ("+0000") with its NUL into out. */
void imapdate_format(int64_t t, char out[IMAPDATE_LEN + 1]);

/* Parses an RFC 3501 date ("d-Mon-yyyy", SEARCH SINCE/BEFORE/ON) as the start of that day, UTC. */
int imapdate_parse_day(const char *s, size_t len, int64_t *time_r);

#endif
