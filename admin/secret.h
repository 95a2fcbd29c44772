/*
 * secret: reads a password for cimap-admin, either from standard input (--password-stdin, for
 * scripts) or from the terminal with echo turned off (for people).
 */
#ifndef CIMAP_ADMIN_SECRET_H
#define CIMAP_ADMIN_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/*
 * from_stdin: reads standard input to its end; one trailing "\n" (or "\r\n") is removed; other
 * newlines are refused. Otherwise standard input must be a terminal: prompts on stderr with echo
 * off, and a second time to confirm when confirm is set. The password may contain NUL bytes, must
 * be non-empty and at most PASSWORD_MAX_LEN bytes. Returns 0 with *pw_r (malloc'd, free with
 * secret_free()) and *len_r, or -1 with *error_r (static text; always the user's input problem).
 * Echo is restored even if SIGINT/SIGTERM/SIGHUP arrive during the prompt.
 */
int secret_read(bool from_stdin, bool confirm, char **pw_r, size_t *len_r, const char **error_r);

/* Wipes and frees a password from secret_read(). NULL-safe. */
void secret_free(char *pw);

#endif
