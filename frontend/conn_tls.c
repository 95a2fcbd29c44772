/*
 * The TLS region of a connection: STARTTLS (input and parser discarded before the filter is
 * added, CVE-2011-0411 class), implicit TLS, handshake events and the close_notify linger.
 */

#include "frontend/conn_private.h"

/* ------------------------------------------------------------------ TLS */

/*
 * TLS is a filter bufferevent over the socket bufferevent (tls.h); c->bev is the filter. Two
 * things differ from plaintext: nothing can be flushed before the handshake, and an empty
 * filter output does not mean the client has everything: ciphertext may still wait in the
 * socket bufferevent below, so a closing connection waits for that one too (conn_kill_when_flushed).
 */

bool conn_is_tls(const struct conn *c)
{
    return c->tls;
}

bool conn_is_loopback(const struct conn *c)
{
    return c->loopback;
}

bool conn_starttls_available(const struct conn *c)
{
    return c->state == CONN_STATE_NOT_AUTH && !c->tls && c->fe->tls != NULL;
}

bool conn_addr_is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr))
            return true;
        return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
    }
    return false;
}

/* Puts the TLS filter over c->bev. On failure c->bev is unchanged. */
int conn_wrap_tls(struct conn *c, const char **error_r)
{
    struct bufferevent *filter = tls_wrap(c->fe->tls, c->fe->base, c->bev, error_r);
    if (filter == NULL)
        return -1;
    c->bev = filter;
    c->tls = true;
    return 0;
}

int conn_start_tls(struct conn *c, const char **error_r)
{
    assert(c->running != NULL && (c->running->desc->flags & CMD_F_NO_PIPELINE));
    assert(conn_starttls_available(c));
    /* NO_PIPELINE: nothing was parsed or queued behind STARTTLS. */
    assert(c->q_len == 0 && !c->lit_pending && !c->want_line);
    struct parser *fresh = parser_new(&c->limits->parser);
    if (fresh == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    /* Drained before the filter exists, so it can never read these bytes as TLS records. */
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t dropped = evbuffer_get_length(in);
    evbuffer_drain(in, dropped);
    if (conn_wrap_tls(c, error_r) != 0) {
        parser_free(&fresh);
        return -1;
    }
    parser_free(&c->parser);
    c->parser = fresh;
    c->discarding_line = false;
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    if (c->waiting_drain)
        bufferevent_setwatermark(c->bev, EV_WRITE, DRAIN_LOW, 0);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    if (dropped > 0)
        log_write(LOG_INFO, "conn.starttls_discarded", "conn=%llu peer=%s bytes=%zu",
                  (unsigned long long)c->id, c->peer, dropped);
    return 0;
}

/* Handles TLS-specific bufferevent events; true when it did (conn_event_cb does nothing more). */
bool conn_tls_event(struct conn *c, short what)
{
    if (what & BEV_EVENT_CONNECTED) {
        c->tls_ready = true;
        metrics_inc(METRICS_TLS_HANDSHAKE_OK);
        char desc[128];
        tls_describe(c->bev, desc, sizeof(desc));
        log_write(LOG_INFO, "conn.tls", "conn=%llu peer=%s tls=\"%s\"", (unsigned long long)c->id,
                  c->peer, desc);
        return true;
    }
    if (what & BEV_EVENT_ERROR) {
        char err[256];
        if (!tls_describe_error(c->bev, err, sizeof(err)))
            return false; /* a socket error: logged as any other */
        char q[300];
        log_write(LOG_INFO, c->tls_ready ? "conn.tls_error" : "conn.tls_handshake_failed",
                  "conn=%llu peer=%s error=%s", (unsigned long long)c->id, c->peer,
                  log_quote(q, sizeof(q), err, strlen(err)));
        if (!c->tls_ready)
            metrics_inc(METRICS_TLS_HANDSHAKE_FAILED);
        conn_kill(c);
        return true;
    }
    return false;
}

static void linger_write_cb(struct bufferevent *sock, void *arg)
{
    (void)sock;
    conn_kill(arg);
}

static void linger_event_cb(struct bufferevent *sock, short what, void *arg)
{
    (void)sock;
    (void)what;
    conn_kill(arg);
}

/*
 * Kills a closing connection whose output is flushed; over TLS first says close_notify and
 * waits until the socket below has flushed too.
 */
void conn_kill_when_flushed(struct conn *c)
{
    struct bufferevent *sock = c->tls && c->tls_ready ? bufferevent_get_underlying(c->bev) : NULL;
    if (sock != NULL)
        tls_close_notify(c->bev);
    if (sock == NULL || evbuffer_get_length(bufferevent_get_output(sock)) == 0) {
        conn_kill(c);
        return;
    }
    /* The filter has nothing more to send: take over its socket's callbacks until it drains. */
    bufferevent_setcb(sock, NULL, linger_write_cb, linger_event_cb, c);
    bufferevent_setwatermark(sock, EV_WRITE, 0, 0);
    bufferevent_enable(sock, EV_WRITE);
}
