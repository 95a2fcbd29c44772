/*
 * secret: password input for cimap-admin.
 *
 * --password-stdin reads raw bytes with read(2) (no stdio buffering of secrets, NUL bytes kept) and
 * strips exactly one trailing newline, like `docker login --password-stdin`. The interactive prompt
 * uses termios to turn echo off on the terminal and puts it back on every exit path, including a
 * signal during the prompt (the handler restores the saved mode and re-raises). Buffers are wiped
 * with OPENSSL_cleanse before they are freed.
 *
 * Not done here: reading from /dev/tty when stdin is redirected (use --password-stdin), password
 * quality rules.
 */
#include "admin/secret.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "frontend/password.h"

#define SECRET_BUF (PASSWORD_MAX_LEN + 3) /* room to notice "too long" and a "\r\n" */

static struct termios saved_termios;
static volatile sig_atomic_t echo_off;

static void restore_echo(void)
{
    if (echo_off) {
        tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_termios);
        echo_off = 0;
    }
}

static void on_signal(int sig)
{
    restore_echo(); /* tcsetattr is async-signal-safe */
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Reads up to max bytes from fd until EOF (stop_at_newline: or the first '\n', not stored). */
static int read_bytes(char *buf, size_t max, bool stop_at_newline, size_t *len_r,
                      const char **error_r)
{
    size_t len = 0;
    for (;;) {
        char c;
        ssize_t n = read(STDIN_FILENO, stop_at_newline ? &c : buf + len,
                         stop_at_newline ? 1 : max - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            *error_r = "cannot read the password";
            return -1;
        }
        if (n == 0)
            break;
        if (stop_at_newline) {
            if (c == '\n')
                break;
            if (len == max) {
                *error_r = "password too long";
                return -1;
            }
            buf[len++] = c;
        } else {
            len += (size_t)n;
            if (len == max) {
                *error_r = "password too long";
                return -1;
            }
        }
    }
    *len_r = len;
    return 0;
}

static int check_password(const char *pw, size_t len, const char **error_r)
{
    if (len == 0) {
        *error_r = "empty password";
        return -1;
    }
    if (len > PASSWORD_MAX_LEN) {
        *error_r = "password too long";
        return -1;
    }
    if (memchr(pw, '\n', len) != NULL || memchr(pw, '\r', len) != NULL) {
        *error_r = "password contains a line break";
        return -1;
    }
    return 0;
}

static int prompt(const char *text, char *buf, size_t *len_r, const char **error_r)
{
    /* Echo off (dropping typeahead) before the prompt shows, so no answer typed after it is lost. */
    struct termios t = saved_termios;
    t.c_lflag &= ~(tcflag_t)ECHO;
    t.c_lflag |= ECHONL;
    echo_off = 1;
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) != 0) {
        echo_off = 0;
        *error_r = "cannot turn off terminal echo";
        return -1;
    }
    if (fputs(text, stderr) == EOF || fflush(stderr) == EOF) {
        restore_echo();
        *error_r = "cannot write the prompt";
        return -1;
    }
    int rc = read_bytes(buf, SECRET_BUF, true, len_r, error_r);
    restore_echo();
    if (rc == 0 && *len_r > 0 && buf[*len_r - 1] == '\r')
        (*len_r)--;
    return rc;
}

static int read_tty(bool confirm, char *buf, size_t *len_r, const char **error_r)
{
    if (!isatty(STDIN_FILENO)) {
        *error_r = "standard input is not a terminal: use --password-stdin";
        return -1;
    }
    if (tcgetattr(STDIN_FILENO, &saved_termios) != 0) {
        *error_r = "cannot read the terminal settings";
        return -1;
    }
    struct sigaction sa, old_int, old_term, old_hup;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sigaction(SIGHUP, &sa, &old_hup);

    int rc = prompt("Password: ", buf, len_r, error_r);
    if (rc == 0 && confirm) {
        char *again = calloc(1, SECRET_BUF);
        size_t again_len = 0;
        if (again == NULL) {
            *error_r = "out of memory";
            rc = -1;
        } else {
            rc = prompt("Password (again): ", again, &again_len, error_r);
            if (rc == 0 && (again_len != *len_r || CRYPTO_memcmp(again, buf, again_len) != 0)) {
                *error_r = "passwords do not match";
                rc = -1;
            }
            OPENSSL_cleanse(again, SECRET_BUF);
            free(again);
        }
    }
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGHUP, &old_hup, NULL);
    return rc;
}

int secret_read(bool from_stdin, bool confirm, char **pw_r, size_t *len_r, const char **error_r)
{
    *pw_r = NULL;
    *len_r = 0;
    char *buf = calloc(1, SECRET_BUF);
    if (buf == NULL) {
        *error_r = "out of memory";
        return -1;
    }
    size_t len = 0;
    int rc;
    if (from_stdin) {
        rc = read_bytes(buf, SECRET_BUF, false, &len, error_r);
        if (rc == 0 && len > 0 && buf[len - 1] == '\n') {
            len--;
            if (len > 0 && buf[len - 1] == '\r')
                len--;
        }
    } else {
        rc = read_tty(confirm, buf, &len, error_r);
    }
    if (rc == 0)
        rc = check_password(buf, len, error_r);
    if (rc != 0) {
        secret_free(buf);
        return -1;
    }
    *pw_r = buf;
    *len_r = len;
    return 0;
}

void secret_free(char *pw)
{
    if (pw == NULL)
        return;
    OPENSSL_cleanse(pw, SECRET_BUF); /* the whole buffer: bytes past len may hold a "\r\n" */
    free(pw);
}
