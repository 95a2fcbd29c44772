/*
 * Listening sockets. Numeric addresses only (a listener is configuration, not a lookup).
 * When accept() fails for lack of descriptors the listener pauses for a second instead of
 * spinning; every accepted socket is handed to conn_accept().
 */
#include "frontend/listener.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <event2/listener.h>

#include "frontend/conn.h"
#include "frontend/frontend.h"
#include "frontend/log.h"

struct listener {
    struct frontend *fe;
    struct evconnlistener *evl;
    struct event *resume;
    bool tls;               /* implicit TLS (IMAPS) */
    char name[64];
};

int listener_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len_r,
                        const char **error_r)
{
    const char *colon = strrchr(text, ':');
    if (colon == NULL || colon == text || colon[1] == '\0') {
        *error_r = "expected ADDR:PORT";
        return -1;
    }
    char *end = NULL;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno != 0 || *end != '\0' || port > 65535) {
        *error_r = "bad port";
        return -1;
    }
    char host[64];
    size_t hlen = (size_t)(colon - text);
    if (text[0] == '[') {
        if (hlen < 3 || text[hlen - 1] != ']') {
            *error_r = "bad IPv6 address (use [addr]:port)";
            return -1;
        }
        text++;
        hlen -= 2;
    }
    if (hlen >= sizeof(host)) {
        *error_r = "address too long";
        return -1;
    }
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(ss, 0, sizeof(*ss));
    struct sockaddr_in *in4 = (struct sockaddr_in *)(void *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)(void *)ss;
    if (strcmp(host, "*") == 0) {
        in4->sin_family = AF_INET;
        in4->sin_addr.s_addr = htonl(INADDR_ANY);
        in4->sin_port = htons((uint16_t)port);
        *len_r = sizeof(*in4);
    } else if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        in4->sin_port = htons((uint16_t)port);
        *len_r = sizeof(*in4);
    } else if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((uint16_t)port);
        *len_r = sizeof(*in6);
    } else {
        *error_r = "not a numeric IPv4 or IPv6 address";
        return -1;
    }
    return 0;
}

static void accept_cb(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *addr,
                      int len, void *arg)
{
    (void)evl;
    struct listener *l = arg;
    if (conn_accept(l->fe, fd, addr, len, l->tls) != 0)
        log_write(LOG_ERROR, "conn.accept_failed", "listener=%s", l->name);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct listener *l = arg;
    evconnlistener_enable(l->evl);
}

static void error_cb(struct evconnlistener *evl, void *arg)
{
    struct listener *l = arg;
    int err = EVUTIL_SOCKET_ERROR();
    log_write(LOG_ERROR, "listener.error", "listener=%s error=\"%s\"", l->name, strerror(err));
    if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
        evconnlistener_disable(evl);
        struct timeval tv = {1, 0};
        evtimer_add(l->resume, &tv);
    }
}

struct listener *listener_open(struct frontend *fe, const char *text, bool implicit_tls,
                               const char **error_r)
{
    struct sockaddr_storage ss;
    socklen_t len = 0;
    if (listener_parse_addr(text, &ss, &len, error_r) != 0)
        return NULL;
    struct listener *l = calloc(1, sizeof(*l));
    if (l == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    l->fe = fe;
    l->tls = implicit_tls;
    snprintf(l->name, sizeof(l->name), "%s", text);
    l->resume = evtimer_new(fe->base, resume_cb, l);
    l->evl = evconnlistener_new_bind(fe->base, accept_cb, l,
                                     LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC,
                                     1024, (struct sockaddr *)&ss, (int)len);
    if (l->evl == NULL || l->resume == NULL) {
        *error_r = "cannot bind (address in use or not permitted?)";
        listener_free(&l);
        return NULL;
    }
    evconnlistener_set_error_cb(l->evl, error_cb);
    log_write(LOG_INFO, "listen", "addr=%s tls=%s", text,
              implicit_tls ? "implicit" : fe->tls != NULL ? "starttls" : "none");
    return l;
}

void listener_free(struct listener **lp)
{
    if (lp == NULL || *lp == NULL)
        return;
    struct listener *l = *lp;
    if (l->evl != NULL)
        evconnlistener_free(l->evl);
    if (l->resume != NULL)
        event_free(l->resume);
    free(l);
    *lp = NULL;
}
