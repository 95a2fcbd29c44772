/* The shared redis-server fixture of the C integration tests (see redis_fixture.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "redis_fixture.h"

#ifndef CIMAP_REDIS_SERVER
#define CIMAP_REDIS_SERVER "/usr/bin/redis-server"
#endif

uint16_t fixture_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof(sa));
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
    socklen_t len = sizeof(sa);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
    close(fd);
    return ntohs(sa.sin_port);
}

long long fixture_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

redisContext *fixture_redis_connect(uint16_t port)
{
    struct timeval tv = {0, 300000};
    redisContext *ctx = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (ctx == NULL)
        return NULL;
    if (ctx->err != 0 || redisSetTimeout(ctx, (struct timeval){5, 0}) != REDIS_OK) {
        redisFree(ctx);
        return NULL;
    }
    return ctx;
}

bool fixture_redis_pings(uint16_t port)
{
    redisContext *ctx = fixture_redis_connect(port);
    if (ctx == NULL)
        return false;
    redisReply *r = redisCommand(ctx, "PING");
    bool ok = r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
    if (r != NULL)
        freeReplyObject(r);
    redisFree(ctx);
    return ok;
}

void fixture_redis_start(struct redis_proc *p, bool ipv6, const char *const *extra)
{
    char port[8];
    snprintf(port, sizeof(port), "%u", (unsigned)p->port);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, STDOUT_FILENO);
            dup2(devnull, STDERR_FILENO);
        }
        const char *argv[24];
        int n = 0;
        argv[n++] = "redis-server";
        argv[n++] = "--port";
        argv[n++] = port;
        argv[n++] = "--bind"; /* one argv per address: redis-server quotes each one */
        argv[n++] = "127.0.0.1";
        if (ipv6)
            argv[n++] = "::1";
        const char *fixed[] = {"--save", "", "--appendonly", "no", "--daemonize", "no",
                               "--enable-debug-command", "yes", "--dir", "/tmp"};
        for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
            argv[n++] = fixed[i];
        for (int i = 0; extra != NULL && extra[i] != NULL && n < 23; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        execv(CIMAP_REDIS_SERVER, (char *const *)argv);
        _exit(127);
    }
    p->pid = pid;
    long long deadline = fixture_now_ms() + 5000;
    while (!fixture_redis_pings(p->port)) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            p->pid = -1;
            fail_msg("redis-server exited during start-up (status %d)", status);
        }
        if (fixture_now_ms() > deadline)
            fail_msg("redis-server did not answer PING on port %u", (unsigned)p->port);
        usleep(10000);
    }
}

void fixture_redis_kill(struct redis_proc *p)
{
    if (p->pid > 0) {
        kill(p->pid, SIGCONT);
        kill(p->pid, SIGKILL);
        while (waitpid(p->pid, NULL, 0) < 0 && errno == EINTR)
            ;
        p->pid = -1;
    }
}
