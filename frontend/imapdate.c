/*
 * IMAP date-time conversion without the C library's locale- and timezone-dependent functions:
 * days from civil date by the usual proleptic Gregorian arithmetic.
 */
#include "frontend/imapdate.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Days since 1970-01-01 of year-month-day (month 1..12). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y_r, unsigned *m_r, unsigned *d_r)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    *y_r = y + (m <= 2);
    *m_r = m;
    *d_r = d;
}

static bool digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return true;
}

static unsigned days_in_month(int64_t y, unsigned m)
{
    static const unsigned dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return m == 2 && leap ? 29 : dim[m - 1];
}

/* "d-Mon-yyyy" or "dd-Mon-yyyy" (space-padded day too); returns chars used, 0 on error. */
static size_t parse_date(const char *s, size_t len, int64_t *days_r)
{
    size_t i = 0;
    unsigned day = 0;
    if (len >= 2 && s[0] == ' ' && digits(s + 1, 1, &day))
        i = 2;
    else if (len >= 2 && digits(s, 2, &day) && s[1] != '-')
        i = 2;
    else if (len >= 1 && digits(s, 1, &day))
        i = 1;
    else
        return 0;
    if (len < i + 9 || s[i] != '-' || s[i + 4] != '-')
        return 0;
    unsigned m = 0;
    for (unsigned k = 0; k < 12; k++) {
        if (strncasecmp(s + i + 1, months[k], 3) == 0)
            m = k + 1;
    }
    unsigned year = 0;
    if (m == 0 || !digits(s + i + 5, 4, &year) || year < 1900 || day < 1 ||
        day > days_in_month(year, m))
        return 0;
    *days_r = days_from_civil(year, m, day);
    return i + 9;
}

int imapdate_parse_day(const char *s, size_t len, int64_t *time_r)
{
    int64_t days = 0;
    size_t used = parse_date(s, len, &days);
    if (used == 0 || used != len)
        return -1;
    *time_r = days * 86400;
    return 0;
}

int imapdate_parse(const char *s, size_t len, int64_t *time_r)
{
    if (len != IMAPDATE_LEN)
        return -1;
    int64_t days = 0;
    if (parse_date(s, 11, &days) != 11 || s[11] != ' ' || s[14] != ':' || s[17] != ':' ||
        s[20] != ' ' || (s[21] != '+' && s[21] != '-'))
        return -1;
    unsigned hh = 0, mm = 0, ss = 0, zh = 0, zm = 0;
    if (!digits(s + 12, 2, &hh) || !digits(s + 15, 2, &mm) || !digits(s + 18, 2, &ss) ||
        !digits(s + 22, 2, &zh) || !digits(s + 24, 2, &zm) || hh > 23 || mm > 59 || ss > 60 ||
        zh > 23 || zm > 59)
        return -1;
    int64_t offset = (int64_t)zh * 3600 + (int64_t)zm * 60;
    if (s[21] == '-')
        offset = -offset;
    *time_r = days * 86400 + hh * 3600 + mm * 60 + ss - offset;
    return 0;
}

void imapdate_format(int64_t t, char out[IMAPDATE_LEN + 1])
{
    int64_t days = t >= 0 ? t / 86400 : -((-t + 86399) / 86400);
    int64_t secs = t - days * 86400;
    int64_t y = 0;
    unsigned m = 0, d = 0;
    civil_from_days(days, &y, &m, &d);
    if (y < 0 || y > 9999) { /* not representable: clamp to the format's range */
        y = y < 0 ? 0 : 9999;
    }
    unsigned hh = (unsigned)(secs / 3600), mi = (unsigned)(secs / 60 % 60), ss = (unsigned)(secs % 60);
    char buf[64];
    snprintf(buf, sizeof(buf), "%02u-%s-%04u %02u:%02u:%02u +0000", d % 100u, months[(m - 1) % 12],
             (unsigned)y, hh % 100u, mi, ss);
    memcpy(out, buf, IMAPDATE_LEN);
    out[IMAPDATE_LEN] = '\0';
}
