/*
 * mail_util: the byte buffer and small byte helpers every mail_*.c uses. Allocation failure aborts,
 * as in frontend/arena.c: the callers bound every size by the message they were given.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/mail/mail_private.h"

void mail_buf_reserve(struct mail_buf *b, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    size_t need = b->len + extra;
    if (need < b->len)
        abort();
    size_t cap = b->cap ? b->cap : 64;
    while (cap < need) {
        if (cap > SIZE_MAX / 2) {
            cap = need;
            break;
        }
        cap *= 2;
    }
    uint8_t *d = realloc(b->data, cap);
    if (d == NULL) {
        fputs("mail: out of memory\n", stderr);
        abort();
    }
    b->data = d;
    b->cap = cap;
}

void mail_buf_append(struct mail_buf *b, const void *data, size_t len)
{
    if (len == 0)
        return;
    mail_buf_reserve(b, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void mail_buf_reset(struct mail_buf *b)
{
    b->len = 0;
}

void mail_buf_free(struct mail_buf *b)
{
    if (b == NULL)
        return;
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void mail_buf_puts(struct mail_buf *b, const char *s)
{
    mail_buf_append(b, s, strlen(s));
}

void mail_buf_putu(struct mail_buf *b, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[sizeof(tmp) - 1 - n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v != 0);
    mail_buf_append(b, tmp + sizeof(tmp) - n, n);
}

void mail_buf_put_utf8(struct mail_buf *b, uint32_t cp)
{
    uint8_t t[4];
    if (cp < 0x80) {
        mail_buf_putc(b, (uint8_t)cp);
        return;
    }
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        cp = 0xFFFD;
    if (cp < 0x800) {
        t[0] = (uint8_t)(0xC0 | (cp >> 6));
        t[1] = (uint8_t)(0x80 | (cp & 0x3F));
        mail_buf_append(b, t, 2);
    } else if (cp < 0x10000) {
        t[0] = (uint8_t)(0xE0 | (cp >> 12));
        t[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        t[2] = (uint8_t)(0x80 | (cp & 0x3F));
        mail_buf_append(b, t, 3);
    } else {
        t[0] = (uint8_t)(0xF0 | (cp >> 18));
        t[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
        t[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
        t[3] = (uint8_t)(0x80 | (cp & 0x3F));
        mail_buf_append(b, t, 4);
    }
}

void mail_put_varint(struct mail_buf *b, uint64_t v)
{
    uint8_t t[10];
    size_t n = 0;
    while (v >= 0x80) {
        t[n++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    t[n++] = (uint8_t)v;
    mail_buf_append(b, t, n);
}

bool mail_span_eq(const uint8_t *s, size_t len, const char *word)
{
    size_t i = 0;
    for (; i < len; i++) {
        if (word[i] == '\0' || mail_lower(s[i]) != mail_lower((uint8_t)word[i]))
            return false;
    }
    return word[i] == '\0';
}

bool mail_span_eq2(const uint8_t *a, size_t alen, const uint8_t *b, size_t blen)
{
    if (alen != blen)
        return false;
    for (size_t i = 0; i < alen; i++) {
        if (mail_lower(a[i]) != mail_lower(b[i]))
            return false;
    }
    return true;
}

void mail_limits_default(struct mail_limits *limits)
{
    limits->max_depth = 50;
    limits->max_parts = 10000;
    limits->max_fields = 10000;
    limits->max_field_value = 256 * 1024;
    limits->max_boundary = 200;
}
