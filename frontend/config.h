/*
 * config: cimapd's options, from command-line flags and CIMAP_* environment variables (12-factor;
 * a flag wins over its variable). One table in config.c lists every option with its variable,
 * default and help text; `cimapd --help` prints it.
 */
#ifndef CIMAP_CONFIG_H
#define CIMAP_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "frontend/parser.h"
#include "frontend/proxy.h"

#define CONFIG_MAX_LISTEN 16
#define CONFIG_MAX_TRUSTED 32

/* Limits applied to one connection; the preauth set applies until LOGIN succeeds. */
struct conn_limits {
    struct parser_limits parser;
    uint64_t max_buffered_literal; /* largest literal kept in memory for a command */
    uint32_t idle_timeout_s;       /* preauth: pre-auth timeout; auth: autologout */
    uint32_t max_commands;         /* commands allowed in this state (0 = unlimited) */
};

struct config {
    char *redis_url;
    const char *listen[CONFIG_MAX_LISTEN];
    size_t listen_count;
    bool demo_data;
    bool debug;             /* log the IMAP transcript, passwords masked */
    uint32_t max_connections;
    uint32_t max_queued;    /* pipelined commands parsed ahead of the running one */
    size_t output_max;      /* a client whose unsent output passes this is disconnected */
    uint32_t login_fail_delay_ms; /* delay before a failed LOGIN answer, times the failure count */
    uint32_t max_login_failures;  /* disconnect after this many failures */
    uint32_t workers;       /* password-hashing threads */
    uint64_t append_limit;  /* APPENDLIMIT (RFC 7889): largest message APPEND accepts */
    uint32_t kdf_cost;      /* PBKDF2 iterations for users this process creates (--demo-data) */
    uint32_t redis_pool;
    uint32_t redis_timeout_ms;
    struct conn_limits preauth;
    struct conn_limits auth;
    char *owned_listen[CONFIG_MAX_LISTEN]; /* storage behind listen[] from the environment */
    /* TLS */
    const char *listen_tls[CONFIG_MAX_LISTEN]; /* implicit-TLS (IMAPS) listeners */
    size_t listen_tls_count;
    char *owned_listen_tls[CONFIG_MAX_LISTEN];
    char *tls_cert;         /* PEM certificate chain; enables STARTTLS and --listen-tls */
    char *tls_key;          /* PEM private key */
    bool allow_plaintext_auth; /* LOGIN/AUTHENTICATE without TLS from non-loopback peers */
    /* Operations (issue 10) */
    char *http_listen;      /* --http ADDR:PORT: /healthz, /readyz, /metrics; NULL = none */
    bool proxy_protocol;    /* every IMAP/IMAPS connection starts with a PROXY v1/v2 header */
    struct proxy_cidr proxy_trusted[CONFIG_MAX_TRUSTED]; /* peers allowed to send one */
    size_t proxy_trusted_count; /* 0 after config_load means loopback only (filled in) */
    uint32_t drain_grace_s; /* SIGTERM: longest wait for running commands */
    uint32_t max_user_connections; /* per user across the live front ends; 0 = unlimited */
    uint32_t lease_ttl_s;   /* heartbeat lease of this front end in Redis */
    uint32_t cache_ttl_s;   /* column caches (colcache.h) live this long; 0 = none */
    uint32_t login_throttle_user; /* failed logins per user per window; 0 = off */
    uint32_t login_throttle_addr; /* failed logins per client address (IPv6: /64) per window */
    uint32_t login_throttle_window_s;
};

/*
 * Fills cfg from the environment, then argv. Returns 0; 1 when --help or --version printed
 * (exit 0); -1 with a message on stderr for bad usage (exit 64). cfg must be config_free()d.
 */
int config_load(struct config *cfg, int argc, char **argv);

/* Frees what config_load allocated. */
void config_free(struct config *cfg);

#endif
