/*
 * mail_bench: parse throughput of the message model (a benchmark, not a test). Reports MB/s and
 * messages/s for: the fixture set, a 10 MB plain text message, a 10 MB message with many parts
 * (text, quoted-printable and base64 leaves), both fed in 64 KiB chunks as an APPEND literal
 * would arrive; then FETCH-side work: view open + BODYSTRUCTURE + ENVELOPE per stored parse.
 * Usage: mail_bench [fixture-dir]   (single core, wall clock, best of a few rounds)
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "frontend/mail/mail.h"

#ifndef MAIL_FIXTURE_DIR
#define MAIL_FIXTURE_DIR "tests/fixtures/mail"
#endif

struct msg {
    uint8_t *data;
    size_t len;
};

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static size_t parse_chunked(const struct msg *m, struct mail_buf *blob)
{
    const char *err;
    struct mail_parser *p = mail_parser_new(NULL);
    for (size_t off = 0; off < m->len; off += 65536)
        mail_parser_feed(p, m->data + off, m->len - off < 65536 ? m->len - off : 65536);
    mail_buf_reset(blob);
    if (mail_parser_finish(p, blob, &err) != 0) {
        fprintf(stderr, "parse failed: %s\n", err);
        exit(1);
    }
    mail_parser_free(&p);
    return blob->len;
}

static void bench_parse(const char *what, const struct msg *msgs, size_t n, double min_seconds)
{
    struct mail_buf blob = { 0 };
    size_t bytes = 0, blob_bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += msgs[i].len;
    double best = 1e9;
    size_t rounds_total = 0;
    double t_all = now();
    while (now() - t_all < min_seconds || rounds_total < 3) {
        double t0 = now();
        blob_bytes = 0;
        for (size_t i = 0; i < n; i++)
            blob_bytes += parse_chunked(&msgs[i], &blob);
        double dt = now() - t0;
        if (dt < best)
            best = dt;
        rounds_total++;
    }
    printf("%-34s %8.1f MB/s %10.0f msg/s  (%zu msgs, %.2f MB, stored parse %zu bytes)\n", what,
           (double)bytes / best / 1e6, (double)n / best, n, (double)bytes / 1e6, blob_bytes);
    mail_buf_free(&blob);
}

static void bench_render(const struct msg *msgs, size_t n)
{
    struct mail_buf *blobs = calloc(n, sizeof(*blobs)), out = { 0 };
    const char *err;
    for (size_t i = 0; i < n; i++)
        parse_chunked(&msgs[i], &blobs[i]);
    size_t iters = 0;
    double t0 = now();
    while (now() - t0 < 1.0) {
        for (size_t i = 0; i < n; i++) {
            struct mail_view *v;
            if (mail_view_open(blobs[i].data, blobs[i].len, &v, &err) != 0)
                exit(1);
            mail_buf_reset(&out);
            mail_render_envelope(v, mail_view_root(v), 0, &out);
            mail_render_bodystructure(v, MAIL_RENDER_EXTENSIONS, &out);
            mail_view_free(&v);
        }
        iters += n;
    }
    double dt = now() - t0;
    printf("%-34s %10.0f msg/s  (%.2f us each)\n", "view + ENVELOPE + BODYSTRUCTURE", (double)iters / dt,
           dt / (double)iters * 1e6);
    iters = 0;
    t0 = now();
    while (now() - t0 < 1.0) {
        for (size_t i = 0; i < n; i++) {
            struct mail_view *v;
            if (mail_view_open(blobs[i].data, blobs[i].len, &v, &err) != 0)
                exit(1);
            mail_buf_reset(&out);
            mail_render_envelope(v, mail_view_root(v), 0, &out);
            mail_view_free(&v);
        }
        iters += n;
    }
    dt = now() - t0;
    printf("%-34s %10.0f msg/s  (%.2f us each)\n", "view + ENVELOPE", (double)iters / dt,
           dt / (double)iters * 1e6);
    for (size_t i = 0; i < n; i++)
        mail_buf_free(&blobs[i]);
    free(blobs);
    mail_buf_free(&out);
}

static struct msg gen_plain(size_t size)
{
    struct mail_buf b = { 0 };
    const char *hdr = "From: Bench <bench@example.com>\r\nTo: you@example.com\r\nSubject: plain\r\n"
                      "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <plain@bench>\r\n"
                      "Content-Type: text/plain; charset=us-ascii\r\n\r\n";
    mail_buf_append(&b, hdr, strlen(hdr));
    const char *line = "The quick brown fox jumps over the lazy dog, again and again and again.\r\n";
    while (b.len < size)
        mail_buf_append(&b, line, strlen(line));
    return (struct msg){ b.data, b.len };
}

static struct msg gen_many_parts(size_t size)
{
    struct mail_buf b = { 0 };
    const char *hdr = "From: Bench <bench@example.com>\r\nSubject: many parts\r\n"
                      "Content-Type: multipart/mixed; boundary=\"----=_bench_boundary_0001\"\r\n\r\n";
    mail_buf_append(&b, hdr, strlen(hdr));
    const char *b64line = "QmVuY2htYXJrIGRhdGEgZm9yIHRoZSBtZXNzYWdlIG1vZGVsIG9mIGNpbWFwLCBiYXNlNjQgbGlu\r\n";
    const char *qpline = "Caf=C3=A9 au lait, na=C3=AFve r=C3=A9sum=C3=A9 and a soft break here =\r\n";
    const char *txt = "Plain text line in a small part of a large multipart message.\r\n";
    int k = 0;
    while (b.len < size) {
        mail_buf_append(&b, "--", 2);
        mail_buf_append(&b, "----=_bench_boundary_0001\r\n", 27);
        const char *h, *line;
        switch (k++ % 3) {
        case 0:
            h = "Content-Type: text/plain; charset=utf-8\r\n\r\n";
            line = txt;
            break;
        case 1:
            h = "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n";
            line = qpline;
            break;
        default:
            h = "Content-Type: application/octet-stream; name=\"blob.bin\"\r\n"
                "Content-Disposition: attachment; filename=\"blob.bin\"\r\n"
                "Content-Transfer-Encoding: base64\r\n\r\n";
            line = b64line;
            break;
        }
        mail_buf_append(&b, h, strlen(h));
        for (int l = 0; l < 60; l++)
            mail_buf_append(&b, line, strlen(line));
    }
    mail_buf_append(&b, "------=_bench_boundary_0001--\r\n", 31);
    return (struct msg){ b.data, b.len };
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : MAIL_FIXTURE_DIR;
    struct msg fx[256];
    size_t n = 0;
    DIR *d = opendir(dir);
    if (d == NULL) {
        perror(dir);
        return 1;
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL && n < 256) {
        size_t l = strlen(e->d_name);
        if (l < 5 || strcmp(e->d_name + l - 4, ".eml") != 0)
            continue;
        char path[1024];
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (f == NULL)
            continue;
        struct mail_buf b = { 0 };
        uint8_t tmp[65536];
        size_t r;
        while ((r = fread(tmp, 1, sizeof(tmp), f)) > 0)
            mail_buf_append(&b, tmp, r);
        fclose(f);
        fx[n++] = (struct msg){ b.data, b.len };
    }
    closedir(d);

    bench_parse("fixtures (all)", fx, n, 1.0);
    struct msg plain = gen_plain(10 * 1000 * 1000);
    bench_parse("10 MB text/plain", &plain, 1, 1.0);
    struct msg many = gen_many_parts(10 * 1000 * 1000);
    bench_parse("10 MB multipart (text/QP/base64)", &many, 1, 1.0);
    bench_render(fx, n);

    for (size_t i = 0; i < n; i++)
        free(fx[i].data);
    free(plain.data);
    free(many.data);
    return 0;
}
