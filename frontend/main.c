/*
 * cimapd: configuration, the event base, the Redis store, the worker pool, listeners and signals.
 * SIGTERM/SIGINT drain: stop accepting, BYE to clients between commands, let running commands
 * finish, exit when the last connection is gone or after the grace period. SIGHUP re-reads the
 * TLS certificate and key. Nothing here holds mail state: all of it lives in Redis (DESIGN.md).
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/dns.h>
#include <event2/event.h>

#include "frontend/config.h"
#include "frontend/conn.h"
#include "frontend/fleet.h"
#include "frontend/frontend.h"
#include "frontend/http.h"
#include "frontend/listener.h"
#include "frontend/log.h"
#include "frontend/pubsub.h"
#include "frontend/startup.h"
#include "frontend/store.h"
#include "frontend/tls.h"
#include "frontend/workers.h"

struct process {
    struct frontend fe;
    struct listener *listeners[2 * CONFIG_MAX_LISTEN]; /* --listen, then --listen-tls */
    struct event *sig_term;
    struct event *sig_int;
    struct event *sig_hup;  /* reloads the TLS certificate and key */
    struct event *drain_check;
    int drain_ticks;
    bool leaving;           /* drain over: giving the fleet lease back, then exit */
    struct http_server *http; /* --http: /healthz, /readyz, /metrics */
};

static void close_listeners(struct process *p)
{
    for (size_t i = 0; i < 2 * CONFIG_MAX_LISTEN; i++)
        listener_free(&p->listeners[i]);
}

static void left_fleet(void *arg)
{
    struct process *p = arg;
    event_base_loopexit(p->fe.base, NULL);
}

static void drain_check_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct process *p = arg;
    if (p->leaving)
        return;
    size_t left = conn_table_count(p->fe.conns);
    if (left == 0 || ++p->drain_ticks > (int)p->fe.cfg->drain_grace_s * 10) {
        log_write(LOG_INFO, "shutdown", "connections_left=%zu", left);
        p->leaving = true;
        if (p->fe.fleet != NULL)
            fleet_leave(p->fe.fleet, left_fleet, p);
        else
            event_base_loopexit(p->fe.base, NULL);
        return;
    }
    /* Commands that finished since, and IDLEs between updates, get their BYE now. */
    conn_table_shutdown(p->fe.conns, "Server shutting down");
    struct timeval tv = {0, 100000};
    evtimer_add(p->drain_check, &tv);
}

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)what;
    struct process *p = arg;
    if (p->fe.draining) {
        log_write(LOG_WARN, "shutdown.forced", "signal=%d", (int)sig);
        event_base_loopexit(p->fe.base, NULL);
        return;
    }
    log_write(LOG_INFO, "shutdown.drain", "signal=%d connections=%zu", (int)sig,
              conn_table_count(p->fe.conns));
    p->fe.draining = true;
    close_listeners(p);
    conn_table_shutdown(p->fe.conns, "Server shutting down");
    struct timeval tv = {0, 0};
    evtimer_add(p->drain_check, &tv);
}

/* SIGHUP: new TLS connections use the re-read certificate and key; on error the old ones stay. */
static void hup_cb(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    struct process *p = arg;
    if (p->fe.tls == NULL) {
        log_write(LOG_INFO, "reload", "tls=none");
        return;
    }
    const char *error = NULL;
    if (tls_server_reload(p->fe.tls, &error) != 0) {
        char q[600];
        log_write(LOG_ERROR, "reload.failed", "error=%s", log_quote(q, sizeof(q), error, strlen(error)));
        return;
    }
    log_write(LOG_INFO, "reload", "tls=ok");
}

int main(int argc, char **argv)
{
    struct config cfg;
    int rc = config_load(&cfg, argc, argv);
    if (rc != 0) {
        config_free(&cfg);
        return rc > 0 ? 0 : 64; /* EX_USAGE */
    }
    signal(SIGPIPE, SIG_IGN);

    struct process p;
    memset(&p, 0, sizeof(p));
    p.fe.cfg = &cfg;
    if (cfg.tls_cert != NULL) {
        const char *tls_error = NULL;
        p.fe.tls = tls_server_new(cfg.tls_cert, cfg.tls_key, &tls_error);
        if (p.fe.tls == NULL) {
            fprintf(stderr, "cimapd: --tls-cert/--tls-key: %s\n", tls_error);
            config_free(&cfg);
            return 64;
        }
    }
    /* The epoll changelist folds the add/delete pairs of one loop turn (hiredis re-arms its read
     * event after every reply, bufferevents toggle EPOLLOUT per answer) into at most one
     * epoll_ctl per fd. Its one caveat, fds cloned with dup(), does not apply: cimapd never dups. */
    struct event_config *ecfg = event_config_new();
    if (ecfg != NULL) {
        (void)event_config_set_flag(ecfg, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
        p.fe.base = event_base_new_with_config(ecfg);
        event_config_free(ecfg);
    }
    if (p.fe.base == NULL)
        p.fe.base = event_base_new();
    if (p.fe.base == NULL) {
        fprintf(stderr, "cimapd: cannot create the event base\n");
        return 71;
    }
    p.fe.dns = evdns_base_new(p.fe.base, EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (p.fe.dns == NULL) {
        log_write(LOG_WARN, "dns", "msg=\"no resolv.conf nameservers; only numeric Redis hosts\"");
        p.fe.dns = evdns_base_new(p.fe.base, 0);
    }
    struct store_config scfg;
    store_config_defaults(&scfg);
    scfg.url = cfg.redis_url;
    scfg.pool_size = cfg.redis_pool;
    scfg.timeout_ms = cfg.redis_timeout_ms;
    const char *error = NULL;
    p.fe.store = store_new(p.fe.base, p.fe.dns, &scfg, &error);
    if (p.fe.store == NULL) {
        fprintf(stderr, "cimapd: --redis: %s\n", error);
        return 64;
    }
    p.fe.workers = workers_new(p.fe.base, cfg.workers, 1024, &error);
    if (p.fe.workers == NULL) {
        fprintf(stderr, "cimapd: worker pool: %s\n", error);
        return 71;
    }
    p.fe.conns = conn_table_new();
    p.fe.pubsub = pubsub_new(p.fe.base, p.fe.dns, cfg.redis_url, conn_pubsub_wake, NULL, &error);
    if (p.fe.pubsub == NULL) {
        fprintf(stderr, "cimapd: --redis: %s\n", error);
        return 64;
    }
    p.fe.fleet = fleet_new(&p.fe);
    if (p.fe.fleet == NULL) {
        fprintf(stderr, "cimapd: out of memory\n");
        return 71;
    }
    int exit_code = 0;
    if (cfg.http_listen != NULL) {
        p.http = http_open(&p.fe, cfg.http_listen, &error);
        if (p.http == NULL) {
            fprintf(stderr, "cimapd: --http %s: %s\n", cfg.http_listen, error);
            exit_code = 71;
            goto out;
        }
    }
    for (size_t i = 0; i < cfg.listen_count; i++) {
        p.listeners[i] = listener_open(&p.fe, cfg.listen[i], false, &error);
        if (p.listeners[i] == NULL) {
            fprintf(stderr, "cimapd: --listen %s: %s\n", cfg.listen[i], error);
            exit_code = 71;
            goto out;
        }
    }
    for (size_t i = 0; i < cfg.listen_tls_count; i++) {
        struct listener **l = &p.listeners[CONFIG_MAX_LISTEN + i];
        *l = listener_open(&p.fe, cfg.listen_tls[i], true, &error);
        if (*l == NULL) {
            fprintf(stderr, "cimapd: --listen-tls %s: %s\n", cfg.listen_tls[i], error);
            exit_code = 71;
            goto out;
        }
    }
    p.sig_term = evsignal_new(p.fe.base, SIGTERM, signal_cb, &p);
    p.sig_int = evsignal_new(p.fe.base, SIGINT, signal_cb, &p);
    p.sig_hup = evsignal_new(p.fe.base, SIGHUP, hup_cb, &p);
    p.drain_check = evtimer_new(p.fe.base, drain_check_cb, &p);
    if (p.sig_term == NULL || p.sig_int == NULL || p.sig_hup == NULL || p.drain_check == NULL ||
        evsignal_add(p.sig_term, NULL) != 0 || evsignal_add(p.sig_int, NULL) != 0 ||
        evsignal_add(p.sig_hup, NULL) != 0 ||
        startup_begin(&p.fe) != 0) {
        fprintf(stderr, "cimapd: cannot set up signals\n");
        exit_code = 71;
        goto out;
    }
    log_write(LOG_INFO, "start", "version=%s redis=%s frontend_id=%s proxy_protocol=%d",
              CIMAP_VERSION, cfg.redis_url, fleet_id(p.fe.fleet), cfg.proxy_protocol ? 1 : 0);
    event_base_dispatch(p.fe.base);

out:
    close_listeners(&p);
    startup_end();
    /* Connections still open after the grace period are dropped; one more loop turn frees them. */
    conn_table_close_all(p.fe.conns);
    event_base_loop(p.fe.base, EVLOOP_NONBLOCK);
    http_free(&p.http);
    fleet_free(&p.fe.fleet);
    if (p.sig_term != NULL)
        event_free(p.sig_term);
    if (p.sig_int != NULL)
        event_free(p.sig_int);
    if (p.sig_hup != NULL)
        event_free(p.sig_hup);
    if (p.drain_check != NULL)
        event_free(p.drain_check);
    workers_free(&p.fe.workers);
    pubsub_free(&p.fe.pubsub);
    store_free(&p.fe.store);
    conn_table_free(&p.fe.conns);
    tls_server_free(&p.fe.tls);
    evdns_base_free(p.fe.dns, 0);
    event_base_free(p.fe.base);
    config_free(&cfg);
    return exit_code;
}
