/*
 * Server TLS with OpenSSL 3 and libevent's OpenSSL filter bufferevents (see tls.h for why a
 * filter and not a socket-level SSL bufferevent).
 *
 * Choices, each for a reason:
 *  - TLS 1.2 and 1.3 only (RFC 8996 deprecates 1.0/1.1); TLS 1.2 limited to forward-secret AEAD
 *    suites; TLS 1.3 suites are OpenSSL's defaults.
 *  - SSL_OP_IGNORE_UNEXPECTED_EOF: IMAP clients often close without close_notify; that is an
 *    end of the connection, not an error (OpenSSL 3 would report it as one).
 *  - SSL_MODE_RELEASE_BUFFERS: an idle connection keeps no 16 KiB read/write record buffers,
 *    which is most of a TLS connection's memory (DESIGN.md: <= 48 KiB per idle TLS connection).
 *  - No server-side session cache: a front end is one of many behind a load balancer, so a
 *    cache in one process rarely hits and costs memory per client; session tickets (stateless)
 *    still let a client resume on the same process.
 *  - Renegotiation off (TLS 1.2 client-initiated renegotiation is a DoS lever).
 * Reload (SIGHUP) builds a complete new SSL_CTX and swaps it only when loading succeeded; every
 * SSL object holds its own reference to the context it was made from.
 *
 * Deliberately not here: client certificates, SNI-selected certificates, OCSP stapling.
 */
#include "frontend/tls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

/* TLS 1.2 suites: ECDHE/DHE key exchange (forward secrecy) with AES-GCM or ChaCha20-Poly1305. */
#define TLS12_CIPHERS "ECDHE+AESGCM:ECDHE+CHACHA20:DHE+AESGCM:DHE+CHACHA20:!aNULL"

struct tls_server {
    SSL_CTX *ctx;
    char *cert_file;
    char *key_file;
};

/* The text behind the last *error_r of this module (event-loop thread only, see tls.h). */
static char last_error[512];

static const char *set_error(const char *what, const char *file)
{
    unsigned long e = ERR_peek_last_error();
    char reason[256] = "unknown error";
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    ERR_clear_error();
    snprintf(last_error, sizeof(last_error), "%s %s: %s", what, file, reason);
    return last_error;
}

static SSL_CTX *load_ctx(const char *cert_file, const char *key_file, const char **error_r)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (ctx == NULL) {
        *error_r = set_error("cannot create a TLS context for", cert_file);
        return NULL;
    }
    if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1 || SSL_CTX_set_dh_auto(ctx, 1) != 1) {
        *error_r = set_error("cannot configure TLS for", cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1) {
        *error_r = set_error("cannot load the certificate chain", cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1) {
        *error_r = set_error("cannot load the private key", key_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        *error_r = set_error("the private key does not match the certificate in", cert_file);
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct tls_server *tls_server_new(const char *cert_file, const char *key_file,
                                  const char **error_r)
{
    struct tls_server *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        *error_r = "out of memory";
        return NULL;
    }
    t->cert_file = strdup(cert_file);
    t->key_file = strdup(key_file);
    if (t->cert_file == NULL || t->key_file == NULL) {
        *error_r = "out of memory";
        tls_server_free(&t);
        return NULL;
    }
    t->ctx = load_ctx(cert_file, key_file, error_r);
    if (t->ctx == NULL) {
        tls_server_free(&t);
        return NULL;
    }
    return t;
}

int tls_server_reload(struct tls_server *t, const char **error_r)
{
    SSL_CTX *ctx = load_ctx(t->cert_file, t->key_file, error_r);
    if (ctx == NULL)
        return -1;
    SSL_CTX_free(t->ctx);
    t->ctx = ctx;
    return 0;
}

void tls_server_free(struct tls_server **tp)
{
    if (tp == NULL || *tp == NULL)
        return;
    struct tls_server *t = *tp;
    SSL_CTX_free(t->ctx);
    free(t->cert_file);
    free(t->key_file);
    free(t);
    *tp = NULL;
}

struct bufferevent *tls_wrap(struct tls_server *t, struct event_base *base,
                             struct bufferevent *sock, const char **error_r)
{
    SSL *ssl = SSL_new(t->ctx);
    if (ssl == NULL) {
        ERR_clear_error();
        *error_r = "cannot create a TLS session";
        return NULL;
    }
    /* On failure libevent frees ssl (BEV_OPT_CLOSE_ON_FREE) but leaves sock alone. */
    struct bufferevent *bev = bufferevent_openssl_filter_new(
        base, sock, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev == NULL) {
        ERR_clear_error();
        *error_r = "cannot create the TLS filter";
        return NULL;
    }
    /* With SSL_OP_IGNORE_UNEXPECTED_EOF a missing close_notify is an ordinary EOF. */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void tls_close_notify(struct bufferevent *bev)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl == NULL || (SSL_get_shutdown(ssl) & SSL_SENT_SHUTDOWN) != 0)
        return;
    /* Writes the alert through the BIO into the socket bufferevent's output; 0 = sent, the
     * peer's reply is not awaited. Errors are irrelevant on a connection being closed. */
    (void)SSL_shutdown(ssl);
    ERR_clear_error();
}

void tls_describe(struct bufferevent *bev, char *buf, size_t size)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    if (ssl == NULL) {
        snprintf(buf, size, "-");
        return;
    }
    snprintf(buf, size, "%s %s", SSL_get_version(ssl), SSL_get_cipher_name(ssl));
}

bool tls_describe_error(struct bufferevent *bev, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = '\0';
    unsigned long e;
    while ((e = bufferevent_get_openssl_error(bev)) != 0) {
        if (used + 2 >= size)
            continue; /* drain the rest */
        if (used > 0)
            buf[used++] = ';';
        ERR_error_string_n(e, buf + used, size - used);
        used += strlen(buf + used);
    }
    return used > 0;
}
