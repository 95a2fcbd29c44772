/*
 * tls: the server side of TLS (IMAPS on --listen-tls, STARTTLS on --listen). The only module that
 * includes OpenSSL's SSL headers; everything here is opaque to the rest of cimapd.
 *
 * A connection always starts as a socket bufferevent; TLS is an OpenSSL *filter* bufferevent put
 * on top of it (bufferevent_openssl_filter_new), so something can still read plaintext from the
 * socket first (a PROXY protocol header before the ClientHello, the IMAP dialogue before
 * STARTTLS). Event-loop thread only.
 */
#ifndef CIMAP_TLS_H
#define CIMAP_TLS_H

#include <stdbool.h>
#include <stddef.h>

struct bufferevent;
struct event_base;
struct tls_server;

/*
 * Loads the certificate chain (PEM: the leaf first, then intermediates) and the private key (PEM)
 * into a new server context (TLS 1.2 and 1.3 only). Returns the context, or NULL with *error_r
 * when a file is unreadable, not PEM, or the key does not match the certificate. *error_r points
 * to storage that stays valid until the next call into this module. Free with tls_server_free().
 */
struct tls_server *tls_server_new(const char *cert_file, const char *key_file,
                                  const char **error_r);

/*
 * Re-reads the certificate and key files (SIGHUP). On success new connections use the new
 * context; existing connections keep the one they started with. Returns 0, or -1 with *error_r
 * (as tls_server_new) and the old context stays in use.
 */
int tls_server_reload(struct tls_server *t, const char **error_r);

/* Frees the context (connections still open keep their own reference). Sets *t to NULL. */
void tls_server_free(struct tls_server **t);

/*
 * Puts a server-side TLS filter on top of sock (which must not be read from afterwards: the
 * filter owns it and frees it with itself, BEV_OPT_CLOSE_ON_FREE). The handshake starts when
 * the client speaks. Returns the filter bufferevent (no callbacks set, reading not enabled), or
 * NULL with *error_r (static text) and sock still the caller's.
 */
struct bufferevent *tls_wrap(struct tls_server *t, struct event_base *base,
                             struct bufferevent *sock, const char **error_r);

/*
 * Queues a TLS close_notify alert (once; later calls do nothing) into the socket bufferevent
 * under a TLS bufferevent made by tls_wrap, after its handshake: an orderly end, so clients do
 * not report a truncated session. The caller still has to let that socket flush.
 */
void tls_close_notify(struct bufferevent *bev);

/*
 * Writes "<protocol> <cipher>" of a TLS bufferevent made by tls_wrap after its handshake into
 * buf (always NUL-terminated). For logs.
 */
void tls_describe(struct bufferevent *bev, char *buf, size_t size);

/*
 * Writes the OpenSSL errors recorded for a TLS bufferevent (consuming them) into buf (always
 * NUL-terminated). Returns false when none were recorded (the error was a socket error or an
 * EOF; buf is then empty). For logs after BEV_EVENT_ERROR.
 */
bool tls_describe_error(struct bufferevent *bev, char *buf, size_t size);

#endif
