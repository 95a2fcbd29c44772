/*
 * json: streaming writer (see json.h). Values are written straight to the FILE; the only state is
 * whether the current container needs a comma before its next member.
 */
#include "admin/json.h"

#include <assert.h>
#include <inttypes.h>
#include <string.h>

void json_init(struct json *j, FILE *out)
{
    memset(j, 0, sizeof(*j));
    j->out = out;
}

static void put_string(FILE *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    fputc('"', out);
    size_t i = 0;
    while (i < len) {
        unsigned char c = p[i];
        if (c == '"' || c == '\\') {
            fputc('\\', out);
            fputc(c, out);
            i++;
        } else if (c < 0x20 || c == 0x7f) {
            fprintf(out, "\\u00%c%c", hex[c >> 4], hex[c & 15]);
            i++;
        } else if (c < 0x80) {
            fputc(c, out);
            i++;
        } else {
            /* Copy one well-formed UTF-8 sequence, or write U+FFFD for a bad byte. */
            size_t n = c >= 0xf0 && c <= 0xf4 ? 4 : c >= 0xe0 ? 3 : c >= 0xc2 && c < 0xe0 ? 2 : 0;
            bool ok = n > 0 && i + n <= len;
            for (size_t k = 1; ok && k < n; k++)
                ok = (p[i + k] & 0xc0) == 0x80;
            if (ok) {
                fwrite(p + i, 1, n, out);
                i += n;
            } else {
                fputs("\\ufffd", out);
                i++;
            }
        }
    }
    fputc('"', out);
}

static void member(struct json *j, const char *key)
{
    if (j->need_comma[j->depth])
        fputc(',', j->out);
    j->need_comma[j->depth] = true;
    if (key != NULL) {
        put_string(j->out, key, strlen(key));
        fputc(':', j->out);
    }
}

static void open_container(struct json *j, const char *key, char c)
{
    member(j, key);
    fputc(c, j->out);
    assert(j->depth < JSON_MAX_DEPTH);
    j->depth++;
    j->need_comma[j->depth] = false;
}

static void close_container(struct json *j, char c)
{
    assert(j->depth > 0);
    j->depth--;
    fputc(c, j->out);
    if (j->depth == 0)
        fputc('\n', j->out);
}

void json_object(struct json *j, const char *key)
{
    open_container(j, key, '{');
}

void json_array(struct json *j, const char *key)
{
    open_container(j, key, '[');
}

void json_end_object(struct json *j)
{
    close_container(j, '}');
}

void json_end_array(struct json *j)
{
    close_container(j, ']');
}

void json_stringn(struct json *j, const char *key, const char *s, size_t len)
{
    member(j, key);
    put_string(j->out, s, len);
}

void json_string(struct json *j, const char *key, const char *s)
{
    json_stringn(j, key, s, strlen(s));
}

void json_int(struct json *j, const char *key, int64_t v)
{
    member(j, key);
    fprintf(j->out, "%" PRId64, v);
}

void json_double(struct json *j, const char *key, double v)
{
    member(j, key);
    fprintf(j->out, "%.3f", v);
}

void json_bool(struct json *j, const char *key, bool v)
{
    member(j, key);
    fputs(v ? "true" : "false", j->out);
}

void json_null(struct json *j, const char *key)
{
    member(j, key);
    fputs("null", j->out);
}
