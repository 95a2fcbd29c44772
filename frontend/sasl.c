/*
 * The SASL mechanism table and strict base64 decoding. The table lists what AUTHENTICATE offers
 * and CAPABILITY advertises (AUTH=<name>), in that order; adding a mechanism = one row here and
 * one sasl_<name>.c. Base64 is decoded by hand rather than with EVP_DecodeBlock, which accepts
 * whitespace and leaves padding to the caller: RFC 3501 §6.2.2 wants malformed base64 refused.
 */
#include "frontend/sasl.h"

#include <stdint.h>
#include <strings.h>

static const struct sasl_mech *const mechs[] = {&sasl_mech_plain, &sasl_mech_login};

#define NMECHS (sizeof(mechs) / sizeof(mechs[0]))

const struct sasl_mech *sasl_find(const char *name, size_t len)
{
    for (size_t i = 0; i < NMECHS; i++) {
        const char *m = mechs[i]->name;
        if (strncasecmp(name, m, len) == 0 && m[len] == '\0')
            return mechs[i];
    }
    return NULL;
}

size_t sasl_mech_count(void)
{
    return NMECHS;
}

const struct sasl_mech *sasl_mech_at(size_t i)
{
    return i < NMECHS ? mechs[i] : NULL;
}

/* The value of a base64 digit, or -1. */
static int b64_value(unsigned char ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    if (ch == '+')
        return 62;
    if (ch == '/')
        return 63;
    return -1;
}

int sasl_base64_decode(const char *in, size_t len, unsigned char *out, size_t *out_len_r)
{
    if (len % 4 != 0)
        return -1;
    size_t o = 0;
    for (size_t i = 0; i < len; i += 4) {
        int v[4];
        unsigned pad = 0;
        for (size_t j = 0; j < 4; j++) {
            unsigned char ch = (unsigned char)in[i + j];
            if (ch == '=') {
                if (i + 4 != len || j < 2) /* padding only in the last quantum's last two */
                    return -1;
                v[j] = 0;
                pad++;
                continue;
            }
            if (pad > 0) /* a digit after '=' */
                return -1;
            v[j] = b64_value(ch);
            if (v[j] < 0)
                return -1;
        }
        /* Canonical form: the bits that padding leaves unused must be zero (RFC 4648 §3.5). */
        if ((pad == 2 && (v[1] & 0x0f) != 0) || (pad == 1 && (v[2] & 0x03) != 0))
            return -1;
        uint32_t n = (uint32_t)v[0] << 18 | (uint32_t)v[1] << 12 | (uint32_t)v[2] << 6 |
                     (uint32_t)v[3];
        out[o++] = (unsigned char)(n >> 16);
        if (pad < 2)
            out[o++] = (unsigned char)(n >> 8);
        if (pad < 1)
            out[o++] = (unsigned char)n;
    }
    *out_len_r = o;
    return 0;
}
