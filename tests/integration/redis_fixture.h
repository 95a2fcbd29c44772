/*
 * redis_fixture: a private redis-server for the C integration tests (test_store, test_pubsub):
 * a free loopback port, start (fork/exec, no persistence, DEBUG enabled, killed with this process
 * via PR_SET_PDEATHSIG), PING, kill. Failures abort the running cmocka test.
 */
#ifndef CIMAP_REDIS_FIXTURE_H
#define CIMAP_REDIS_FIXTURE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include <hiredis/hiredis.h>

struct redis_proc {
    pid_t pid; /* -1 when not running */
    uint16_t port;
};

/* A loopback TCP port that was free a moment ago. */
uint16_t fixture_free_port(void);

/* Monotonic milliseconds. */
long long fixture_now_ms(void);

/* A synchronous connection to 127.0.0.1:port (5 s command timeout), or NULL. Caller frees. */
redisContext *fixture_redis_connect(uint16_t port);

/* True when redis on port answers PONG. */
bool fixture_redis_pings(uint16_t port);

/*
 * Starts redis-server on p->port (also on ::1 when ipv6), with extra arguments (NULL-terminated
 * array or NULL), and waits until it answers PING (fails the test after 5 s).
 */
void fixture_redis_start(struct redis_proc *p, bool ipv6, const char *const *extra);

/* SIGKILLs it (after SIGCONT, in case a scenario stopped it) and reaps it. No-op when not running. */
void fixture_redis_kill(struct redis_proc *p);

#endif
