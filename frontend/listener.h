/*
 * listener: the IMAP listening sockets (evconnlistener). Accepted sockets go to conn_accept().
 * Owned by main.c.
 */
#ifndef CIMAP_LISTENER_H
#define CIMAP_LISTENER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

struct frontend;
struct listener;

/*
 * Parses "ADDR:PORT" (IPv4 "127.0.0.1:143", IPv6 "[::1]:143", "*:143" for every IPv4 address)
 * into *ss. Returns 0, or -1 with *error_r (static text).
 */
int listener_parse_addr(const char *text, struct sockaddr_storage *ss, socklen_t *len_r,
                        const char **error_r);

/*
 * Binds and starts accepting on text; with implicit_tls every connection starts with a TLS
 * handshake (IMAPS; fe->tls must be set). NULL with *error_r on failure (static text).
 */
struct listener *listener_open(struct frontend *fe, const char *text, bool implicit_tls,
                               const char **error_r);

/* Stops accepting and closes the socket; sets *l to NULL. NULL-safe. */
void listener_free(struct listener **l);

#endif
