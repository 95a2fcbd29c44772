/*
 * The HTTP port: health, readiness and metrics for operators and orchestrators (http.h). One
 * evhttp on its own listening socket, on the same event loop as the IMAP connections, so
 * /healthz answering means the loop is not stuck. Scrapes read counters that the modules keep
 * (store, pub/sub, connection table, fleet) at request time; nothing here counts on its own.
 * Deliberately not here: authentication (bind it to a private address), TLS, anything that
 * changes state.
 */
#include "frontend/http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include "frontend/conn.h"
#include "frontend/fleet.h"
#include "frontend/frontend.h"
#include "frontend/listener.h"
#include "frontend/log.h"
#include "frontend/metrics.h"
#include "frontend/pubsub.h"
#include "frontend/startup.h"
#include "frontend/store.h"

struct http_server {
    struct frontend *fe;
    struct evhttp *http;
    time_t started;
};

bool http_ready(const struct frontend *fe, const char **reason_r)
{
    struct store_stats ss;
    if (fe->draining) {
        *reason_r = "draining";
        return false;
    }
    if (fe->store == NULL || !store_ready(fe->store)) {
        *reason_r = "redis not reachable (or scripts not loaded)";
        return false;
    }
    store_get_stats(fe->store, &ss);
    struct fleet_redis_info ri = {0};
    if (fe->fleet != NULL)
        fleet_get_redis_info(fe->fleet, &ri);
    /* The fleet's poll is the fresher answer; the store's is from its last (re)connect. */
    if (ri.known ? !ri.policy_noeviction : !ss.policy_ok) {
        *reason_r = "redis maxmemory-policy is not noeviction (eviction would delete mail)";
        return false;
    }
    if (fe->pubsub == NULL || !pubsub_ready(fe->pubsub)) {
        *reason_r = "redis pub/sub not subscribed";
        return false;
    }
    if (!startup_schema_accepted()) {
        *reason_r = "keyspace schema not checked yet";
        return false;
    }
    if (fe->fleet != NULL && !fleet_lease_held(fe->fleet)) {
        *reason_r = "front-end lease not held in redis";
        return false;
    }
    *reason_r = "ready";
    return true;
}

static void send_text(struct evhttp_request *req, int code, const char *reason,
                      const char *content_type, struct evbuffer *body)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", content_type);
    evhttp_add_header(h, "Cache-Control", "no-store");
    evhttp_send_reply(req, code, reason, body);
}

static void write_counter(struct evbuffer *out, const char *name, const char *help, uint64_t v)
{
    metrics_write_header(out, name, "counter", help);
    metrics_write_sample(out, name, NULL, (double)v);
}

static void write_gauge(struct evbuffer *out, const char *name, const char *help, double v)
{
    metrics_write_header(out, name, "gauge", help);
    metrics_write_sample(out, name, NULL, v);
}

static void render_connections(struct evbuffer *out, const struct frontend *fe)
{
    struct conn_table_stats cs;
    conn_table_get_stats(fe->conns, &cs);
    metrics_write_header(out, "cimap_connections", "gauge",
                         "Open client connections, by state (idle: running IDLE).");
    metrics_write_sample(out, "cimap_connections", "state=\"proxy_header\"", (double)cs.proxy_header);
    metrics_write_sample(out, "cimap_connections", "state=\"not_authenticated\"", (double)cs.not_auth);
    metrics_write_sample(out, "cimap_connections", "state=\"authenticated\"", (double)cs.auth);
    metrics_write_sample(out, "cimap_connections", "state=\"selected\"", (double)cs.selected);
    metrics_write_sample(out, "cimap_connections", "state=\"idle\"", (double)cs.idle);
    metrics_write_sample(out, "cimap_connections", "state=\"closing\"", (double)cs.closing);
    write_gauge(out, "cimap_connections_tls", "Open client connections running over TLS.",
                (double)cs.tls);
}

static void render_redis(struct evbuffer *out, const struct frontend *fe)
{
    struct store_stats ss;
    store_get_stats(fe->store, &ss);
    write_counter(out, "cimap_redis_requests_total", "Redis round trips (commands and scripts sent).",
                  ss.requests);
    metrics_write_header(out, "cimap_redis_errors_total", "counter",
                         "Redis requests that failed, by kind (error: an error reply; unavailable: "
                         "down, loading, OOM, busy, read-only, timeout).");
    metrics_write_sample(out, "cimap_redis_errors_total", "kind=\"error\"", (double)ss.errors);
    metrics_write_sample(out, "cimap_redis_errors_total", "kind=\"unavailable\"", (double)ss.unavailable);
    metrics_write_sample(out, "cimap_redis_errors_total", "kind=\"timeout\"", (double)ss.timeouts);
    write_counter(out, "cimap_redis_reconnects_total", "Redis command connections re-established.",
                  ss.reconnects);
    write_counter(out, "cimap_redis_noscript_retries_total",
                  "EVALSHA answered NOSCRIPT and retried as EVAL.", ss.noscript_retries);
    write_gauge(out, "cimap_redis_connections", "Redis command connections ready now.",
                (double)ss.connected);

    struct pubsub_stats ps;
    pubsub_get_stats(fe->pubsub, &ps);
    write_counter(out, "cimap_pubsub_wakeups_total", "Pub/sub wake-up messages received.",
                  ps.messages);
    write_counter(out, "cimap_pubsub_resyncs_total", "Resynchronisations after a (re)subscribe.",
                  ps.resyncs);
    write_counter(out, "cimap_pubsub_reconnects_total", "Pub/sub connections re-established.",
                  ps.reconnects);
    write_gauge(out, "cimap_pubsub_channels", "User channels subscribed now.", (double)ps.channels);
    write_gauge(out, "cimap_pubsub_connected", "1 when the pub/sub connection is subscribed.",
                ps.connected ? 1 : 0);

    struct fleet_redis_info ri = {0};
    snprintf(ri.policy, sizeof(ri.policy), "unknown");
    snprintf(ri.appendfsync, sizeof(ri.appendfsync), "unknown");
    if (fe->fleet != NULL)
        fleet_get_redis_info(fe->fleet, &ri);
    char policy[80], fsync[48], labels[200];
    snprintf(labels, sizeof(labels), "appendonly=\"%s\",appendfsync=\"%s\",maxmemory_policy=\"%s\"",
             !ri.known ? "unknown" : ri.appendonly ? "yes" : "no",
             metrics_escape(fsync, sizeof(fsync), ri.appendfsync, strlen(ri.appendfsync)),
             metrics_escape(policy, sizeof(policy), ri.policy, strlen(ri.policy)));
    metrics_write_header(out, "cimap_redis_persistence_info", "gauge",
                         "Redis persistence and eviction settings as last polled (value 1).");
    metrics_write_sample(out, "cimap_redis_persistence_info", labels, 1);
    write_gauge(out, "cimap_frontends_live", "Front ends holding a live lease in Redis.",
                (double)ri.frontends_live);
}

static void render_metrics(struct http_server *h, struct evbuffer *out)
{
    const struct frontend *fe = h->fe;
    metrics_render(out);
    render_connections(out, fe);
    render_redis(out, fe);
    const char *reason = NULL;
    write_gauge(out, "cimap_ready", "1 when /readyz answers 200.", http_ready(fe, &reason) ? 1 : 0);
    write_gauge(out, "cimap_draining", "1 after SIGTERM/SIGINT, while connections drain.",
                fe->draining ? 1 : 0);
    write_gauge(out, "cimap_start_time_seconds", "Start time of the process, unix seconds.",
                (double)h->started);
    metrics_write_header(out, "cimap_build_info", "gauge", "Build of this cimapd (value 1).");
    char labels[160];
    char id[FLEET_ID_MAX * 2 + 2];
    const char *fid = fe->fleet != NULL ? fleet_id(fe->fleet) : "";
    snprintf(labels, sizeof(labels), "version=\"%s\",frontend_id=\"%s\"", CIMAP_VERSION,
             metrics_escape(id, sizeof(id), fid, strlen(fid)));
    metrics_write_sample(out, "cimap_build_info", labels, 1);
}

static void request_cb(struct evhttp_request *req, void *arg)
{
    struct http_server *h = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    struct evbuffer *body = evbuffer_new();
    if (body == NULL) {
        evhttp_send_error(req, 500, "out of memory");
        return;
    }
    if (path == NULL)
        path = "";
    if (strcmp(path, "/healthz") == 0) {
        evbuffer_add_printf(body, "ok\n");
        send_text(req, 200, "OK", "text/plain; charset=utf-8", body);
    } else if (strcmp(path, "/readyz") == 0) {
        const char *reason = NULL;
        bool ready = http_ready(h->fe, &reason);
        evbuffer_add_printf(body, "%s\n", reason);
        send_text(req, ready ? 200 : 503, ready ? "OK" : "Service Unavailable",
                  "text/plain; charset=utf-8", body);
    } else if (strcmp(path, "/metrics") == 0) {
        render_metrics(h, body);
        send_text(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", body);
    } else {
        evbuffer_add_printf(body, "not found\n");
        send_text(req, 404, "Not Found", "text/plain; charset=utf-8", body);
    }
    evbuffer_free(body);
}

struct http_server *http_open(struct frontend *fe, const char *addr, const char **error_r)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (listener_parse_addr(addr, &ss, &len, error_r) != 0)
        return NULL;
    struct http_server *h = calloc(1, sizeof(*h));
    if (h == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    h->fe = fe;
    h->started = time(NULL);
    h->http = evhttp_new(fe->base);
    struct evconnlistener *evl = NULL;
    if (h->http != NULL)
        evl = evconnlistener_new_bind(fe->base, NULL, NULL,
                                      LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                      128, (struct sockaddr *)&ss, (int)len);
    if (evl == NULL || evhttp_bind_listener(h->http, evl) == NULL) {
        if (evl != NULL)
            evconnlistener_free(evl);
        *error_r = "cannot bind (address in use or not permitted?)";
        http_free(&h);
        return NULL;
    }
    evhttp_set_allowed_methods(h->http, EVHTTP_REQ_GET | EVHTTP_REQ_HEAD);
    evhttp_set_max_headers_size(h->http, 8192);
    evhttp_set_max_body_size(h->http, 0);
    evhttp_set_timeout(h->http, 10);
    evhttp_set_gencb(h->http, request_cb, h);
    log_write(LOG_INFO, "http.listen", "addr=%s", addr);
    return h;
}

void http_free(struct http_server **hp)
{
    if (hp == NULL || *hp == NULL)
        return;
    struct http_server *h = *hp;
    if (h->http != NULL)
        evhttp_free(h->http);
    free(h);
    *hp = NULL;
}
