/*
 * json: a small streaming JSON writer for cimap-admin's --json output (one document per command,
 * written to stdout as it is built). Strings are escaped per RFC 8259 (control characters as
 * \u00XX; bytes that are not valid UTF-8 become U+FFFD so the output always parses). Commas are
 * placed automatically. Single-threaded; nesting up to JSON_MAX_DEPTH.
 */
#ifndef CIMAP_ADMIN_JSON_H
#define CIMAP_ADMIN_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define JSON_MAX_DEPTH 16

/* Owned by the command that prints; zero-initialise with json_init(). */
struct json {
    FILE *out;
    int depth;
    bool need_comma[JSON_MAX_DEPTH + 1];
};

void json_init(struct json *j, FILE *out);

/* Containers; key is the member name inside an object, NULL inside an array or at the top. */
void json_object(struct json *j, const char *key);
void json_array(struct json *j, const char *key);
void json_end_object(struct json *j);
/* Ends an array; a newline follows the top-level value. */
void json_end_array(struct json *j);

void json_string(struct json *j, const char *key, const char *s);
void json_stringn(struct json *j, const char *key, const char *s, size_t len);
void json_int(struct json *j, const char *key, int64_t v);
void json_double(struct json *j, const char *key, double v);
void json_bool(struct json *j, const char *key, bool v);
void json_null(struct json *j, const char *key);

#endif
