/*
 * The metrics registry: fixed arrays of counters and per-command counts and latency histograms,
 * rendered in the Prometheus text exposition format 0.0.4. Everything is static storage sized at
 * compile time, so an increment never allocates and a scrape costs O(metrics), not O(traffic).
 * Deliberately not here: collecting values other modules keep (http.c reads those at scrape
 * time), labels chosen at run time other than command names (no unbounded cardinality).
 */
#include "frontend/metrics.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <event2/buffer.h>

struct counter_desc {
    const char *name;
    const char *help;
};

/* Indexed by enum metrics_counter. */
static const struct counter_desc counter_descs[METRICS_COUNTER_COUNT] = {
    [METRICS_CONN_ACCEPTED] = {"cimap_connections_accepted_total", "Client connections accepted."},
    [METRICS_CONN_REFUSED] = {"cimap_connections_refused_total",
                              "Client connections closed at once: too many, draining, or an untrusted PROXY peer."},
    [METRICS_BYTES_IN] = {"cimap_client_bytes_received_total",
                          "Bytes read from client sockets (TLS records included)."},
    [METRICS_BYTES_OUT] = {"cimap_client_bytes_sent_total",
                           "Bytes written to client sockets (TLS records included)."},
    [METRICS_TLS_HANDSHAKE_OK] = {"cimap_tls_handshakes_total", NULL},
    [METRICS_TLS_HANDSHAKE_FAILED] = {"cimap_tls_handshakes_total", NULL},
    [METRICS_AUTH_OK] = {"cimap_logins_total", NULL},
    [METRICS_AUTH_FAILED] = {"cimap_logins_total", NULL},
    [METRICS_AUTH_THROTTLED] = {"cimap_logins_throttled_total",
                                "Logins refused by the cluster-wide failed-login throttle."},
    [METRICS_USER_LIMIT] = {"cimap_logins_user_limit_total",
                            "Logins refused by the cluster-wide per-user connection limit."},
    [METRICS_PROXY_OK] = {"cimap_proxy_headers_total", NULL},
    [METRICS_PROXY_REJECTED] = {"cimap_proxy_headers_total", NULL},
    [METRICS_PROTOCOL_ERRORS] = {"cimap_protocol_errors_total",
                                 "IMAP syntax errors answered BAD."},
    [METRICS_COMMAND_ERRORS] = {"cimap_command_internal_errors_total",
                                "Commands that failed internally (BYE [SERVERBUG])."},
    [METRICS_DRAIN_BYE] = {"cimap_drain_byes_total",
                           "Clients sent BYE [UNAVAILABLE] while draining."},
};

/* Latency bucket bounds in seconds and their label text (kept exact, never reformatted). */
static const double bucket_le[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                   0.25,   0.5,   1,      2.5,   5,    10,    30};
static const char *const bucket_text[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01",
                                          "0.025",  "0.05",  "0.1",    "0.25",  "0.5",
                                          "1",      "2.5",   "5",      "10",    "30"};
#define NBUCKETS (sizeof(bucket_le) / sizeof(bucket_le[0]))

enum { RESULT_OK, RESULT_NO, RESULT_BAD, RESULT_NONE, RESULT_COUNT };
static const char *const result_text[RESULT_COUNT] = {"OK", "NO", "BAD", "none"};

struct command_stats {
    const char *name; /* static; NULL = free slot */
    bool uid;
    uint64_t results[RESULT_COUNT];
    uint64_t buckets[NBUCKETS]; /* not cumulative: observations with le[i-1] < v <= le[i] */
    uint64_t count;
    double sum_s;
};

static struct {
    uint64_t counters[METRICS_COUNTER_COUNT];
    struct command_stats commands[METRICS_MAX_COMMANDS + 1]; /* the last one is "OTHER" */
} reg;

void metrics_add(enum metrics_counter c, uint64_t n)
{
    if ((unsigned)c < METRICS_COUNTER_COUNT)
        reg.counters[c] += n;
}

void metrics_inc(enum metrics_counter c)
{
    metrics_add(c, 1);
}

static struct command_stats *command_slot(const char *name, bool uid)
{
    for (size_t i = 0; i < METRICS_MAX_COMMANDS; i++) {
        struct command_stats *s = &reg.commands[i];
        if (s->name == NULL) {
            s->name = name;
            s->uid = uid;
            return s;
        }
        if (s->uid == uid && (s->name == name || strcmp(s->name, name) == 0))
            return s;
    }
    struct command_stats *other = &reg.commands[METRICS_MAX_COMMANDS];
    other->name = "OTHER";
    return other;
}

void metrics_command(const char *name, bool uid, const char *result, double ms)
{
    struct command_stats *s = command_slot(name != NULL ? name : "OTHER", uid);
    int r = RESULT_NONE;
    if (result != NULL) {
        if (strcmp(result, "OK") == 0)
            r = RESULT_OK;
        else if (strcmp(result, "NO") == 0)
            r = RESULT_NO;
        else if (strcmp(result, "BAD") == 0)
            r = RESULT_BAD;
    }
    s->results[r]++;
    double sec = ms > 0 ? ms / 1000.0 : 0;
    for (size_t i = 0; i < NBUCKETS; i++) {
        if (sec <= bucket_le[i]) {
            s->buckets[i]++;
            break;
        }
    }
    s->count++;
    s->sum_s += sec;
}

void metrics_reset(void)
{
    memset(&reg, 0, sizeof(reg));
}

const char *metrics_escape(char *out, size_t size, const char *value, size_t len)
{
    size_t o = 0;
    for (size_t i = 0; i < len && o + 3 < size; i++) {
        char ch = value[i];
        if (ch == '\\' || ch == '"') {
            out[o++] = '\\';
            out[o++] = ch;
        } else if (ch == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = ch;
        }
    }
    out[o] = '\0';
    return out;
}

void metrics_write_header(struct evbuffer *out, const char *name, const char *type,
                          const char *help)
{
    evbuffer_add_printf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void write_value(struct evbuffer *out, double value)
{
    if (isnan(value))
        evbuffer_add_printf(out, "NaN\n");
    else if (value >= 0 && value < 9007199254740992.0 &&
             value == (double)(unsigned long long)value)
        evbuffer_add_printf(out, "%llu\n", (unsigned long long)value);
    else
        evbuffer_add_printf(out, "%.9g\n", value);
}

void metrics_write_sample(struct evbuffer *out, const char *name, const char *labels,
                          double value)
{
    if (labels != NULL && *labels != '\0')
        evbuffer_add_printf(out, "%s{%s} ", name, labels);
    else
        evbuffer_add_printf(out, "%s ", name);
    write_value(out, value);
}

static void write_u64(struct evbuffer *out, const char *name, const char *labels, uint64_t v)
{
    if (labels != NULL)
        evbuffer_add_printf(out, "%s{%s} %llu\n", name, labels, (unsigned long long)v);
    else
        evbuffer_add_printf(out, "%s %llu\n", name, (unsigned long long)v);
}

/* A counter family split by one label over two enum values. */
static void write_pair(struct evbuffer *out, const char *name, const char *help,
                       const char *label, enum metrics_counter a, const char *a_value,
                       enum metrics_counter b, const char *b_value)
{
    char labels[64];
    metrics_write_header(out, name, "counter", help);
    snprintf(labels, sizeof(labels), "%s=\"%s\"", label, a_value);
    write_u64(out, name, labels, reg.counters[a]);
    snprintf(labels, sizeof(labels), "%s=\"%s\"", label, b_value);
    write_u64(out, name, labels, reg.counters[b]);
}

static void command_label(char *out, size_t size, const struct command_stats *s)
{
    char name[80];
    metrics_escape(name, sizeof(name), s->name, strlen(s->name));
    snprintf(out, size, "command=\"%s%s\"", s->uid ? "UID " : "", name);
}

static void render_commands(struct evbuffer *out)
{
    char labels[160];
    char cmd[100];
    metrics_write_header(out, "cimap_commands_total", "counter",
                         "IMAP commands finished, by command and tagged result.");
    for (size_t i = 0; i <= METRICS_MAX_COMMANDS; i++) {
        const struct command_stats *s = &reg.commands[i];
        if (s->name == NULL)
            continue;
        command_label(cmd, sizeof(cmd), s);
        for (int r = 0; r < RESULT_COUNT; r++) {
            if (s->results[r] == 0 && r != RESULT_OK)
                continue;
            snprintf(labels, sizeof(labels), "%s,result=\"%s\"", cmd, result_text[r]);
            write_u64(out, "cimap_commands_total", labels, s->results[r]);
        }
    }
    metrics_write_header(out, "cimap_command_duration_seconds", "histogram",
                         "IMAP command latency, from start to tagged reply (IDLE included).");
    for (size_t i = 0; i <= METRICS_MAX_COMMANDS; i++) {
        const struct command_stats *s = &reg.commands[i];
        if (s->name == NULL)
            continue;
        command_label(cmd, sizeof(cmd), s);
        uint64_t cumulative = 0;
        for (size_t b = 0; b < NBUCKETS; b++) {
            cumulative += s->buckets[b];
            snprintf(labels, sizeof(labels), "%s,le=\"%s\"", cmd, bucket_text[b]);
            write_u64(out, "cimap_command_duration_seconds_bucket", labels, cumulative);
        }
        snprintf(labels, sizeof(labels), "%s,le=\"+Inf\"", cmd);
        write_u64(out, "cimap_command_duration_seconds_bucket", labels, s->count);
        metrics_write_sample(out, "cimap_command_duration_seconds_sum", cmd, s->sum_s);
        write_u64(out, "cimap_command_duration_seconds_count", cmd, s->count);
    }
}

void metrics_render(struct evbuffer *out)
{
    for (int c = 0; c < METRICS_COUNTER_COUNT; c++) {
        const struct counter_desc *d = &counter_descs[c];
        if (d->help == NULL)
            continue; /* part of a labelled family below */
        metrics_write_header(out, d->name, "counter", d->help);
        write_u64(out, d->name, NULL, reg.counters[c]);
    }
    write_pair(out, "cimap_tls_handshakes_total", "TLS handshakes, by result.", "result",
               METRICS_TLS_HANDSHAKE_OK, "ok", METRICS_TLS_HANDSHAKE_FAILED, "failed");
    write_pair(out, "cimap_logins_total", "Password authentications (LOGIN, AUTHENTICATE), by result.",
               "result", METRICS_AUTH_OK, "ok", METRICS_AUTH_FAILED, "failed");
    write_pair(out, "cimap_proxy_headers_total", "PROXY protocol headers, by result.", "result",
               METRICS_PROXY_OK, "ok", METRICS_PROXY_REJECTED, "rejected");
    render_commands(out);
}
