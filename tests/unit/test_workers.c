/*
 * Tests for frontend/workers.c on a real libevent loop: results come back with the right tokens on
 * the loop thread, a full queue answers -1, done() never runs inside workers_submit(), freeing the
 * pool hands back queued jobs unworked, and a loop can push thousands of jobs through a small queue.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "frontend/workers.h"

static pthread_t loop_thread;
static bool in_submit;

struct job {
    uint64_t input;
    uint64_t output;
    bool worked;
    bool on_worker_thread;
    int done_calls;
    uint64_t done_token;
};

static void job_work(void *arg)
{
    struct job *j = arg;
    j->on_worker_thread = !pthread_equal(pthread_self(), loop_thread);
    j->output = j->input * j->input + 1;
    j->worked = true;
}

struct counter {
    struct event_base *base;
    size_t done;
    size_t expect;
};

static struct counter *current_counter;

static void job_done(void *arg, uint64_t token)
{
    struct job *j = arg;
    assert_false(in_submit);
    assert_true(pthread_equal(pthread_self(), loop_thread));
    j->done_calls++;
    j->done_token = token;
    if (current_counter != NULL && ++current_counter->done == current_counter->expect)
        event_base_loopbreak(current_counter->base);
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
    fail_msg("event loop test timed out");
}

/* Runs the loop until the counter reaches its target; fails after 20 s. */
static void run_until_done(struct event_base *base, struct counter *c)
{
    struct timeval tv = {20, 0};
    struct event *t = evtimer_new(base, on_timeout, NULL);
    assert_non_null(t);
    assert_int_equal(evtimer_add(t, &tv), 0);
    current_counter = c;
    if (c->done < c->expect)
        assert_int_equal(event_base_dispatch(base), 0);
    current_counter = NULL;
    event_free(t);
}

static int submit(struct workers *w, workers_work_fn *work, workers_done_fn *done, void *job,
                  uint64_t token)
{
    in_submit = true;
    int rc = workers_submit(w, work, done, job, token);
    in_submit = false;
    return rc;
}

static void test_tokens(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *error = NULL;
    struct workers *w = workers_new(base, 3, 100, &error);
    assert_non_null(w);

    enum { N = 50 };
    struct job jobs[N];
    memset(jobs, 0, sizeof(jobs));
    for (size_t i = 0; i < N; i++) {
        jobs[i].input = i;
        assert_int_equal(submit(w, job_work, job_done, &jobs[i], 1000 + i), 0);
    }
    for (size_t i = 0; i < N; i++)
        assert_int_equal(jobs[i].done_calls, 0); /* nothing before the loop runs */
    assert_true(workers_pending(w) > 0);

    struct counter c = {base, 0, N};
    run_until_done(base, &c);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].done_token, 1000 + i);
        assert_true(jobs[i].worked);
        assert_true(jobs[i].on_worker_thread);
        assert_int_equal(jobs[i].output, i * i + 1);
    }
    assert_int_equal(workers_pending(w), 0);
    workers_free(&w);
    assert_null(w);
    event_base_free(base);
}

/* A job whose work blocks until released: lets tests hold the only worker. */
struct gate {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool started;
    bool open;
};

static struct gate gate;

static void gate_reset(void)
{
    pthread_mutex_lock(&gate.mutex);
    gate.started = false;
    gate.open = false;
    pthread_mutex_unlock(&gate.mutex);
}

static void gate_work(void *arg)
{
    pthread_mutex_lock(&gate.mutex);
    gate.started = true;
    pthread_cond_broadcast(&gate.cond);
    while (!gate.open)
        pthread_cond_wait(&gate.cond, &gate.mutex);
    pthread_mutex_unlock(&gate.mutex);
    job_work(arg);
}

static void gate_wait_started(void)
{
    pthread_mutex_lock(&gate.mutex);
    while (!gate.started)
        pthread_cond_wait(&gate.cond, &gate.mutex);
    pthread_mutex_unlock(&gate.mutex);
}

static void gate_open(void)
{
    pthread_mutex_lock(&gate.mutex);
    gate.open = true;
    pthread_cond_broadcast(&gate.cond);
    pthread_mutex_unlock(&gate.mutex);
}

static void test_queue_full(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *error = NULL;
    struct workers *w = workers_new(base, 1, 2, &error);
    assert_non_null(w);
    gate_reset();

    struct job jobs[4];
    memset(jobs, 0, sizeof(jobs));
    assert_int_equal(submit(w, gate_work, job_done, &jobs[0], 0), 0);
    gate_wait_started(); /* the only worker is busy: the queue is empty again */
    assert_int_equal(submit(w, job_work, job_done, &jobs[1], 1), 0);
    assert_int_equal(submit(w, job_work, job_done, &jobs[2], 2), 0);
    assert_int_equal(submit(w, job_work, job_done, &jobs[3], 3), -1);
    assert_int_equal(workers_pending(w), 3);

    gate_open();
    struct counter c = {base, 0, 3};
    run_until_done(base, &c);
    assert_int_equal(jobs[3].done_calls, 0);
    assert_false(jobs[3].worked);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(jobs[i].done_calls, 1);

    /* Room again once the backlog drained. */
    assert_int_equal(submit(w, job_work, job_done, &jobs[3], 3), 0);
    c = (struct counter){base, 0, 1};
    run_until_done(base, &c);
    assert_int_equal(jobs[3].done_calls, 1);
    workers_free(&w);
    event_base_free(base);
}

static void *open_gate_later(void *arg)
{
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    gate_open();
    return NULL;
}

static void test_free_with_pending(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *error = NULL;
    struct workers *w = workers_new(base, 1, 10, &error);
    assert_non_null(w);
    gate_reset();

    struct job jobs[4];
    memset(jobs, 0, sizeof(jobs));
    assert_int_equal(submit(w, gate_work, job_done, &jobs[0], 10), 0);
    gate_wait_started();
    for (size_t i = 1; i < 4; i++)
        assert_int_equal(submit(w, job_work, job_done, &jobs[i], 10 + i), 0);

    /* workers_free() stops the pool while job 0 runs; the gate opens only later. */
    pthread_t opener;
    assert_int_equal(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    workers_free(&w);
    assert_null(w);
    assert_int_equal(pthread_join(opener, NULL), 0);

    assert_true(jobs[0].worked);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(jobs[i].done_calls, 1);
        assert_int_equal(jobs[i].done_token, 10 + i);
    }
    for (size_t i = 1; i < 4; i++)
        assert_false(jobs[i].worked); /* queued, never worked, handed back */
    event_base_free(base);
}

static void test_free_idle_and_null(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *error = NULL;
    struct workers *w = workers_new(base, 4, 1, &error);
    assert_non_null(w);
    workers_free(&w);
    assert_null(w);
    workers_free(&w);
    assert_null(workers_new(base, 0, 1, &error));
    assert_non_null(error);
    event_base_free(base);
}

/* Many jobs pushed from the loop itself: a timer refills a small queue, done() resubmits. */
struct stream {
    struct event_base *base;
    struct workers *w;
    struct event *timer;
    struct job *jobs;
    size_t total;
    size_t next;        /* next job to submit */
    size_t done;
    uint64_t token_sum;
    size_t rejected;
};

static struct stream *current_stream;

static void stream_done(void *arg, uint64_t token);

static void stream_fill(struct stream *s)
{
    while (s->next < s->total) {
        struct job *j = &s->jobs[s->next];
        j->input = s->next;
        if (submit(s->w, job_work, stream_done, j, s->next) != 0) {
            s->rejected++;
            return;
        }
        s->next++;
    }
}

static void stream_done(void *arg, uint64_t token)
{
    struct stream *s = current_stream;
    job_done(arg, token);
    s->done++;
    s->token_sum += token;
    if (s->done == s->total)
        event_base_loopbreak(s->base);
    else
        stream_fill(s); /* submitting from inside done() is allowed */
}

static void stream_tick(evutil_socket_t fd, short what, void *arg)
{
    stream_fill(arg);
}

static void test_many_from_loop(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    const char *error = NULL;
    struct stream s = {0};
    s.base = base;
    s.total = 20000;
    s.jobs = calloc(s.total, sizeof(*s.jobs));
    assert_non_null(s.jobs);
    s.w = workers_new(base, 4, 64, &error);
    assert_non_null(s.w);
    current_stream = &s;

    struct timeval tick = {0, 1000};
    s.timer = event_new(base, -1, EV_PERSIST, stream_tick, &s);
    assert_non_null(s.timer);
    assert_int_equal(event_add(s.timer, &tick), 0);
    current_counter = NULL; /* loopbreak comes from stream_done */
    struct timeval tv = {30, 0};
    struct event *t = evtimer_new(base, on_timeout, NULL);
    assert_int_equal(evtimer_add(t, &tv), 0);
    assert_int_equal(event_base_dispatch(base), 0);
    event_free(t);
    event_free(s.timer);

    assert_int_equal(s.done, s.total);
    assert_int_equal(s.token_sum, (uint64_t)s.total * (s.total - 1) / 2);
    assert_true(s.rejected > 0); /* the small queue really filled up */
    for (size_t i = 0; i < s.total; i++) {
        assert_int_equal(s.jobs[i].done_calls, 1);
        assert_int_equal(s.jobs[i].output, (uint64_t)i * i + 1);
    }
    assert_int_equal(workers_pending(s.w), 0);
    workers_free(&s.w);
    current_stream = NULL;
    free(s.jobs);
    event_base_free(base);
}

int main(void)
{
    loop_thread = pthread_self();
    pthread_mutex_init(&gate.mutex, NULL);
    pthread_cond_init(&gate.cond, NULL);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tokens),
        cmocka_unit_test(test_queue_full),
        cmocka_unit_test(test_free_with_pending),
        cmocka_unit_test(test_free_idle_and_null),
        cmocka_unit_test(test_many_from_loop),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
