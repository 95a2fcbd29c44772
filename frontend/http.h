/*
 * http: the operator's HTTP port (--http ADDR:PORT, libevent evhttp). GET or HEAD only:
 *   /healthz  200 "ok" while the process runs its event loop (liveness)
 *   /readyz   200 "ready" only when Redis is reachable with every script loaded, maxmemory-policy
 *             is noeviction, the pub/sub connection is subscribed, the keyspace schema was
 *             accepted, the front-end lease is held and the process is not draining; else 503
 *             with a one-line reason (readiness: a load balancer sends no new clients)
 *   /metrics  Prometheus text exposition format 0.0.4
 * Anything else is 404. Owned by main.c; event-loop thread only.
 */
#ifndef CIMAP_HTTP_H
#define CIMAP_HTTP_H

#include <stdbool.h>
#include <stddef.h>

struct frontend;
struct http_server;

/*
 * Binds addr ("ADDR:PORT", as --listen) and starts serving on fe's event base. fe is borrowed and
 * must outlive the server. NULL with *error_r (static text) when the address is bad or in use.
 */
struct http_server *http_open(struct frontend *fe, const char *addr, const char **error_r);

/* Stops serving and frees (open requests are dropped). Sets *h to NULL. NULL-safe. */
void http_free(struct http_server **h);

/*
 * The readiness verdict /readyz answers: true when ready; otherwise false with *reason_r set to
 * a static one-line reason.
 */
bool http_ready(const struct frontend *fe, const char **reason_r);

#endif
