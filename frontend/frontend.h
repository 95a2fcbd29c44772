/*
 * frontend: the long-lived objects of one cimapd process, passed explicitly to whoever needs
 * them (never a global). Owned by main.c; lives until the event loop ends.
 */
#ifndef CIMAP_FRONTEND_H
#define CIMAP_FRONTEND_H

#include <stdbool.h>
#include <stdint.h>

#include "frontend/config.h"

struct event_base;
struct evdns_base;
struct store;
struct workers;
struct conn_table;
struct tls_server;
struct pubsub;
struct fleet;

struct frontend {
    struct event_base *base;
    struct evdns_base *dns;
    struct store *store;
    struct workers *workers;
    struct conn_table *conns;
    struct pubsub *pubsub;  /* the one subscriber connection (wake-ups) */
    struct tls_server *tls; /* NULL without --tls-cert (no IMAPS, no STARTTLS) */
    struct fleet *fleet;    /* heartbeat lease, per-user limits, login throttle (fleet.h) */
    const struct config *cfg;
    bool draining;          /* SIGTERM/SIGINT seen: accept nothing new */
    uint64_t next_conn_id;  /* for logs: monotonically increasing connection number */
};

#endif
