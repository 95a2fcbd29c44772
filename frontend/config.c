/*
 * cimapd options. Every option is one row of the table below: flag, environment variable
 * (CIMAP_ + the flag in upper case with '-' as '_'), kind, default and help. The environment is
 * read first, then argv, so a flag wins. Limits come in pairs: before login (tight) and after.
 */
#include "frontend/config.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frontend/log.h"
#include "frontend/password.h"

enum opt_kind {
    OPT_STRING,
    OPT_LISTEN,
    OPT_LISTEN_TLS,
    OPT_BOOL,
    OPT_U32,
    OPT_SIZE,
    OPT_U64,
    OPT_LEVEL,
    OPT_CIDR
};

struct opt {
    const char *flag;
    enum opt_kind kind;
    size_t offset; /* into struct config */
    const char *arg;
    const char *help;
};

#define OFF(field) offsetof(struct config, field)

static const struct opt opts[] = {
    {"redis", OPT_STRING, OFF(redis_url), "URL", "Redis: redis://HOST:PORT[/DB] (default redis://127.0.0.1:6379)"},
    {"listen", OPT_LISTEN, 0, "ADDR:PORT", "IMAP listener, repeatable; IPv6 as [::1]:143 (default 0.0.0.0:143 unless --listen-tls)"},
    {"listen-tls", OPT_LISTEN_TLS, 0, "ADDR:PORT", "IMAPS (implicit TLS) listener, repeatable, e.g. 0.0.0.0:993; needs --tls-cert"},
    {"tls-cert", OPT_STRING, OFF(tls_cert), "FILE", "PEM certificate chain (leaf first); enables STARTTLS"},
    {"tls-key", OPT_STRING, OFF(tls_key), "FILE", "PEM private key of --tls-cert"},
    {"allow-plaintext-auth", OPT_BOOL, OFF(allow_plaintext_auth), NULL, "allow LOGIN/AUTHENTICATE without TLS from non-loopback clients"},
    {"demo-data", OPT_BOOL, OFF(demo_data), NULL, "create the demo user demouser/demopass if absent"},
    {"debug", OPT_BOOL, OFF(debug), NULL, "log at debug level, incl. the IMAP transcript (passwords masked)"},
    {"log-level", OPT_LEVEL, 0, "LEVEL", "debug, info, warn or error (default info)"},
    {"max-connections", OPT_U32, OFF(max_connections), "N", "client connections per process (default 10000)"},
    {"max-queued", OPT_U32, OFF(max_queued), "N", "pipelined commands parsed ahead per connection (default 16)"},
    {"output-max", OPT_SIZE, OFF(output_max), "BYTES", "unsent output before a slow reader is dropped (default 16 MiB)"},
    {"login-fail-delay", OPT_U32, OFF(login_fail_delay_ms), "MS", "delay of a failed login, times the failure count (default 1000)"},
    {"max-login-failures", OPT_U32, OFF(max_login_failures), "N", "failed logins before disconnect (default 3)"},
    {"workers", OPT_U32, OFF(workers), "N", "password-hashing threads (default 2)"},
    {"kdf-cost", OPT_U32, OFF(kdf_cost), "N", "PBKDF2 iterations for users this process creates (default 100000; lower only for tests)"},
    {"redis-pool", OPT_U32, OFF(redis_pool), "N", "Redis command connections (default 4)"},
    {"redis-timeout", OPT_U32, OFF(redis_timeout_ms), "MS", "per-request Redis timeout (default 5000)"},
    {"preauth-max-line", OPT_SIZE, OFF(preauth.parser.max_line), "BYTES", "command line limit before login (default 8192)"},
    {"preauth-max-literal", OPT_U64, OFF(preauth.parser.max_literal), "BYTES", "literal size before login; larger closes the connection (default 65536)"},
    {"preauth-max-depth", OPT_SIZE, OFF(preauth.parser.max_depth), "N", "list nesting before login (default 4)"},
    {"preauth-max-args", OPT_SIZE, OFF(preauth.parser.max_args), "N", "arguments per command before login (default 32)"},
    {"preauth-timeout", OPT_U32, OFF(preauth.idle_timeout_s), "SECONDS", "idle time allowed before login (default 60)"},
    {"preauth-max-commands", OPT_U32, OFF(preauth.max_commands), "N", "commands allowed before login (default 50)"},
    {"max-line", OPT_SIZE, OFF(auth.parser.max_line), "BYTES", "command line limit after login (default 65536)"},
    {"max-literal", OPT_U64, OFF(auth.parser.max_literal), "BYTES", "largest literal after login; larger closes the connection (default 256 MiB)"},
    {"append-limit", OPT_U64, OFF(append_limit), "BYTES", "largest message APPEND accepts, advertised as APPENDLIMIT (default 64 MiB)"},
    {"max-buffered-literal", OPT_U64, OFF(auth.max_buffered_literal), "BYTES", "largest literal held in memory for a command (default 1 MiB)"},
    {"max-depth", OPT_SIZE, OFF(auth.parser.max_depth), "N", "list nesting after login (default 16)"},
    {"max-args", OPT_SIZE, OFF(auth.parser.max_args), "N", "arguments per command after login (default 10000)"},
    {"autologout", OPT_U32, OFF(auth.idle_timeout_s), "SECONDS", "idle time allowed after login (default 1800, RFC 3501 minimum)"},
    {"http", OPT_STRING, OFF(http_listen), "ADDR:PORT", "HTTP port for /healthz, /readyz and /metrics (default none)"},
    {"proxy-protocol", OPT_BOOL, OFF(proxy_protocol), NULL, "expect a PROXY protocol v1/v2 header on every IMAP and IMAPS connection"},
    {"proxy-trusted", OPT_CIDR, 0, "CIDR", "peer network allowed to send PROXY headers, repeatable (default 127.0.0.0/8 and ::1)"},
    {"drain-grace", OPT_U32, OFF(drain_grace_s), "SECONDS", "SIGTERM: how long running commands may take to finish (default 30)"},
    {"max-user-connections", OPT_U32, OFF(max_user_connections), "N", "connections per user across all front ends, 0 = unlimited (default 100)"},
    {"lease-ttl", OPT_U32, OFF(lease_ttl_s), "SECONDS", "lifetime of this front end's heartbeat lease in Redis (default 15)"},
    {"cache-ttl", OPT_U32, OFF(cache_ttl_s), "SECONDS", "lifetime of the column caches FETCH and SEARCH build in Redis; 0 = no caches (default 604800)"},
    {"login-throttle-user", OPT_U32, OFF(login_throttle_user), "N", "failed logins per user per window across front ends, 0 = off (default 10)"},
    {"login-throttle-addr", OPT_U32, OFF(login_throttle_addr), "N", "failed logins per client address (IPv6: /64) per window, 0 = off (default 30)"},
    {"login-throttle-window", OPT_U32, OFF(login_throttle_window_s), "SECONDS", "login throttle window (default 300)"},
};

#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static void defaults(struct config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->max_connections = 10000;
    cfg->max_queued = 16;
    cfg->output_max = 16u << 20;
    cfg->login_fail_delay_ms = 1000;
    cfg->max_login_failures = 3;
    cfg->workers = 2;
    cfg->kdf_cost = PASSWORD_DEFAULT_ITERATIONS;
    cfg->append_limit = 64u << 20;
    cfg->redis_pool = 4;
    cfg->redis_timeout_ms = 5000;
    cfg->drain_grace_s = 30;
    cfg->max_user_connections = 100;
    cfg->lease_ttl_s = 15;
    cfg->cache_ttl_s = 7 * 24 * 3600;
    cfg->login_throttle_user = 10;
    cfg->login_throttle_addr = 30;
    cfg->login_throttle_window_s = 300;
    cfg->preauth = (struct conn_limits){
        .parser = {.max_line = 8192, .max_args = 32, .max_depth = 4, .max_literal = 65536},
        .max_buffered_literal = 8192,
        .idle_timeout_s = 60,
        .max_commands = 50,
    };
    cfg->auth = (struct conn_limits){
        .parser = {.max_line = 65536, .max_args = 10000, .max_depth = 16, .max_literal = 256u << 20},
        .max_buffered_literal = 1u << 20,
        .idle_timeout_s = 1800,
        .max_commands = 0,
    };
}

static void usage(FILE *out)
{
    fprintf(out, "Usage: cimapd [OPTION]...\n"
                 "A stateless IMAP front end; all state lives in Redis.\n\n"
                 "Every option can also be set as an environment variable CIMAP_<OPTION>\n"
                 "(upper case, '-' as '_', e.g. CIMAP_REDIS, CIMAP_LISTEN=a:1,b:2); flags win.\n\n");
    for (size_t i = 0; i < NOPTS; i++) {
        char left[64];
        snprintf(left, sizeof(left), "--%s%s%s", opts[i].flag, opts[i].arg ? " " : "",
                 opts[i].arg ? opts[i].arg : "");
        fprintf(out, "  %-32s %s\n", left, opts[i].help);
    }
    fprintf(out, "  %-32s %s\n  %-32s %s\n", "--help", "show this help", "--version",
            "show the version");
}

static int parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s == '\0' || *s == '-')
        return -1;
    errno = 0;
    char *end = NULL;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s)
        return -1;
    uint64_t mult = 1;
    if (*end == 'k' || *end == 'K')
        mult = 1024, end++;
    else if (*end == 'm' || *end == 'M')
        mult = 1024 * 1024, end++;
    else if (*end == 'g' || *end == 'G')
        mult = 1024 * 1024 * 1024, end++;
    if (*end != '\0' || (v != 0 && mult > UINT64_MAX / v))
        return -1;
    *out = (uint64_t)v * mult;
    return 0;
}

static int apply(struct config *cfg, const struct opt *o, const char *value, bool from_env)
{
    char *base = (char *)cfg;
    uint64_t n = 0;
    switch (o->kind) {
    case OPT_STRING: {
        char **dst = (char **)(void *)(base + o->offset);
        free(*dst);
        *dst = strdup(value);
        if (*dst == NULL)
            return -1;
        return 0;
    }
    case OPT_LISTEN:
    case OPT_LISTEN_TLS: {
        /* From the environment a comma-separated list; each flag adds one. */
        bool tls = o->kind == OPT_LISTEN_TLS;
        const char **list = tls ? cfg->listen_tls : cfg->listen;
        char **owned = tls ? cfg->owned_listen_tls : cfg->owned_listen;
        size_t *count = tls ? &cfg->listen_tls_count : &cfg->listen_count;
        char *copy = strdup(value);
        if (copy == NULL)
            return -1;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            if (*count >= CONFIG_MAX_LISTEN) {
                free(copy);
                fprintf(stderr, "cimapd: at most %d listeners\n", CONFIG_MAX_LISTEN);
                return -1;
            }
            char *one = strdup(tok);
            if (one == NULL) {
                free(copy);
                return -1;
            }
            owned[*count] = one;
            list[(*count)++] = one;
            if (!from_env)
                break;
        }
        free(copy);
        return 0;
    }
    case OPT_BOOL: {
        bool v = true;
        if (from_env)
            v = strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0;
        *(bool *)(void *)(base + o->offset) = v;
        return 0;
    }
    case OPT_LEVEL:
        if (strcmp(value, "debug") == 0)
            log_set_level(LOG_DEBUG);
        else if (strcmp(value, "info") == 0)
            log_set_level(LOG_INFO);
        else if (strcmp(value, "warn") == 0)
            log_set_level(LOG_WARN);
        else if (strcmp(value, "error") == 0)
            log_set_level(LOG_ERROR);
        else
            goto bad;
        return 0;
    case OPT_CIDR: {
        /* From the environment a comma-separated list; each flag adds one. */
        char *copy = strdup(value);
        if (copy == NULL)
            return -1;
        char *save = NULL;
        for (char *tok = strtok_r(copy, ",", &save); tok != NULL; tok = strtok_r(NULL, ",", &save)) {
            const char *why = NULL;
            if (cfg->proxy_trusted_count >= CONFIG_MAX_TRUSTED ||
                proxy_cidr_parse(tok, &cfg->proxy_trusted[cfg->proxy_trusted_count], &why) != 0) {
                fprintf(stderr, "cimapd: bad value for --%s: %s: %s\n", o->flag, tok,
                        why != NULL ? why : "too many");
                free(copy);
                return -1;
            }
            cfg->proxy_trusted_count++;
        }
        free(copy);
        return 0;
    }
    case OPT_U32:
        if (parse_u64(value, &n) != 0 || n > UINT32_MAX)
            goto bad;
        *(uint32_t *)(void *)(base + o->offset) = (uint32_t)n;
        return 0;
    case OPT_SIZE:
        if (parse_u64(value, &n) != 0 || n > SIZE_MAX)
            goto bad;
        *(size_t *)(void *)(base + o->offset) = (size_t)n;
        return 0;
    case OPT_U64:
        if (parse_u64(value, &n) != 0)
            goto bad;
        *(uint64_t *)(void *)(base + o->offset) = n;
        return 0;
    }
bad:
    fprintf(stderr, "cimapd: bad value for --%s: %s\n", o->flag, value);
    return -1;
}

static void env_name(char *out, size_t size, const char *flag)
{
    size_t o = 0;
    for (const char *p = "CIMAP_"; *p != '\0' && o + 1 < size; p++)
        out[o++] = *p;
    for (const char *p = flag; *p != '\0' && o + 1 < size; p++)
        out[o++] = *p == '-' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);
    out[o] = '\0';
}

static int validate(const struct config *cfg)
{
    if (cfg->max_queued < 1 || cfg->max_queued > 1024 || cfg->workers < 1 || cfg->workers > 64 ||
        cfg->redis_pool < 1 || cfg->redis_pool > 64 || cfg->max_connections < 1) {
        fprintf(stderr, "cimapd: --max-queued, --workers, --redis-pool, --max-connections out of range\n");
        return -1;
    }
    if (cfg->kdf_cost < PASSWORD_MIN_ITERATIONS || cfg->kdf_cost > PASSWORD_MAX_ITERATIONS) {
        fprintf(stderr, "cimapd: --kdf-cost out of range\n");
        return -1;
    }
    const struct conn_limits *sets[] = {&cfg->preauth, &cfg->auth};
    for (size_t i = 0; i < 2; i++) {
        const struct conn_limits *l = sets[i];
        if (l->parser.max_line < 64 || l->parser.max_args < 4 || l->parser.max_depth < 1 ||
            l->idle_timeout_s < 1) {
            fprintf(stderr, "cimapd: a line/args/depth/timeout limit is too small\n");
            return -1;
        }
    }
    if ((cfg->tls_cert == NULL) != (cfg->tls_key == NULL)) {
        fprintf(stderr, "cimapd: --tls-cert and --tls-key go together\n");
        return -1;
    }
    if (cfg->listen_tls_count > 0 && cfg->tls_cert == NULL) {
        fprintf(stderr, "cimapd: --listen-tls needs --tls-cert and --tls-key\n");
        return -1;
    }
    if (cfg->append_limit < 1024 || cfg->append_limit > cfg->auth.parser.max_literal) {
        fprintf(stderr, "cimapd: --append-limit must be between 1 KiB and --max-literal\n");
        return -1;
    }
    if (cfg->cache_ttl_s > 30u * 24 * 3600) {
        fprintf(stderr, "cimapd: --cache-ttl must be 0..2592000\n");
        return -1;
    }
    if (cfg->lease_ttl_s < 2 || cfg->lease_ttl_s > 3600 || cfg->drain_grace_s > 3600 ||
        cfg->login_throttle_window_s < 1 || cfg->login_throttle_window_s > 86400) {
        fprintf(stderr, "cimapd: --lease-ttl (2..3600), --drain-grace (..3600) or "
                        "--login-throttle-window (1..86400) out of range\n");
        return -1;
    }
    if (cfg->auth.idle_timeout_s < 1800)
        fprintf(stderr, "cimapd: warning: --autologout below RFC 3501's 30 minutes\n");
    return 0;
}

int config_load(struct config *cfg, int argc, char **argv)
{
    defaults(cfg);
    for (size_t i = 0; i < NOPTS; i++) {
        char name[64];
        env_name(name, sizeof(name), opts[i].flag);
        const char *v = getenv(name);
        if (v != NULL && *v != '\0' && apply(cfg, &opts[i], v, true) != 0)
            return -1;
    }
    struct option longopts[NOPTS + 3];
    for (size_t i = 0; i < NOPTS; i++)
        longopts[i] = (struct option){opts[i].flag, opts[i].kind == OPT_BOOL ? no_argument
                                                                              : required_argument,
                                      NULL, (int)(i + 256)};
    longopts[NOPTS] = (struct option){"help", no_argument, NULL, 'h'};
    longopts[NOPTS + 1] = (struct option){"version", no_argument, NULL, 'V'};
    longopts[NOPTS + 2] = (struct option){NULL, 0, NULL, 0};
    bool cli_listen = false;
    bool cli_listen_tls = false;
    bool cli_trusted = false;
    optind = 1;
    int ch;
    while ((ch = getopt_long(argc, argv, "hV", longopts, NULL)) != -1) {
        if (ch == 'h') {
            usage(stdout);
            return 1;
        }
        if (ch == 'V') {
            printf("cimapd %s\n", CIMAP_VERSION);
            return 1;
        }
        if (ch < 256 || (size_t)(ch - 256) >= NOPTS) {
            usage(stderr);
            return -1;
        }
        const struct opt *o = &opts[ch - 256];
        if (o->kind == OPT_LISTEN && !cli_listen) {
            /* flags replace listeners from the environment */
            for (size_t i = 0; i < cfg->listen_count; i++) {
                free(cfg->owned_listen[i]);
                cfg->owned_listen[i] = NULL;
            }
            cfg->listen_count = 0;
            cli_listen = true;
        }
        if (o->kind == OPT_LISTEN_TLS && !cli_listen_tls) {
            for (size_t i = 0; i < cfg->listen_tls_count; i++) {
                free(cfg->owned_listen_tls[i]);
                cfg->owned_listen_tls[i] = NULL;
            }
            cfg->listen_tls_count = 0;
            cli_listen_tls = true;
        }
        if (o->kind == OPT_CIDR && !cli_trusted) {
            cfg->proxy_trusted_count = 0; /* flags replace the environment's list */
            cli_trusted = true;
        }
        if (apply(cfg, o, o->kind == OPT_BOOL ? "1" : optarg, false) != 0)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "cimapd: unexpected argument: %s\n", argv[optind]);
        return -1;
    }
    if (cfg->debug)
        log_set_level(LOG_DEBUG);
    if (cfg->redis_url == NULL) {
        cfg->redis_url = strdup("redis://127.0.0.1:6379");
        if (cfg->redis_url == NULL)
            return -1;
    }
    if (cfg->proxy_trusted_count == 0) {
        const char *why = NULL;
        if (proxy_cidr_parse("127.0.0.0/8", &cfg->proxy_trusted[0], &why) != 0 ||
            proxy_cidr_parse("::1", &cfg->proxy_trusted[1], &why) != 0)
            return -1;
        cfg->proxy_trusted_count = 2;
    }
    if (cfg->listen_count == 0 && cfg->listen_tls_count == 0) {
        cfg->owned_listen[0] = strdup("0.0.0.0:143");
        if (cfg->owned_listen[0] == NULL)
            return -1;
        cfg->listen[0] = cfg->owned_listen[0];
        cfg->listen_count = 1;
    }
    return validate(cfg);
}

void config_free(struct config *cfg)
{
    free(cfg->redis_url);
    for (size_t i = 0; i < CONFIG_MAX_LISTEN; i++) {
        free(cfg->owned_listen[i]);
        free(cfg->owned_listen_tls[i]);
    }
    free(cfg->tls_cert);
    free(cfg->tls_key);
    free(cfg->http_listen);
    memset(cfg, 0, sizeof(*cfg));
}
