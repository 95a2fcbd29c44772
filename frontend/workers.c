/*
 * workers: a fixed pool of pthreads fed from one bounded FIFO, with results handed back to the
 * libevent loop through an eventfd.
 *
 * A job moves queue -> (a worker runs work()) -> done list -> (the loop runs done()). The mutex
 * guards both lists; the worker that finishes a job appends it to the done list and writes to the
 * eventfd; a persistent read event on the eventfd drains the done list on the loop thread. So done()
 * always runs on the loop thread, never inside workers_submit(), and never with the mutex held (a
 * done function may submit again).
 *
 * Deliberately not used: evthread locking and event_active() from worker threads. The eventfd keeps
 * libevent single-threaded, and one eventfd write wakes the loop for any number of finished jobs.
 * Worker threads start with every signal blocked, so signals stay with the loop thread.
 *
 * Not done here: cancellation of running jobs, priorities, growing the pool.
 */
#include "frontend/workers.h"

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/event.h>

/* One submitted job; owned by the pool from submit until its done() has been called. */
struct workers_job {
    workers_work_fn *work;
    workers_done_fn *done;
    void *job;
    uint64_t token;
    struct workers_job *next;
};

struct workers_list {
    struct workers_job *head;
    struct workers_job *tail;
};

/* Owned by whoever called workers_new(); freed by workers_free() on the loop thread. */
struct workers {
    struct event_base *base;
    struct event *ev;           /* EV_READ|EV_PERSIST on efd */
    int efd;                    /* eventfd: "the done list is not empty" */

    pthread_mutex_t mutex;      /* guards queue, nqueued, finished, stopping */
    pthread_cond_t cond;        /* signalled when a job is queued or stopping is set */
    struct workers_list queue;  /* submitted, not yet taken by a worker */
    size_t nqueued;
    size_t max_queue;
    struct workers_list finished; /* worked, done() not yet called */
    bool stopping;

    atomic_size_t npending;     /* submitted and done() not yet called */
    bool dispatching;           /* loop thread is inside run_done(): workers_free() not allowed */

    pthread_t *threads;
    unsigned nthreads;          /* threads successfully started */
};

static void list_push(struct workers_list *l, struct workers_job *j)
{
    j->next = NULL;
    if (l->tail != NULL)
        l->tail->next = j;
    else
        l->head = j;
    l->tail = j;
}

static struct workers_job *list_pop(struct workers_list *l)
{
    struct workers_job *j = l->head;
    if (j != NULL) {
        l->head = j->next;
        if (l->head == NULL)
            l->tail = NULL;
        j->next = NULL;
    }
    return j;
}

static struct workers_list list_take(struct workers_list *l)
{
    struct workers_list taken = *l;
    l->head = NULL;
    l->tail = NULL;
    return taken;
}

static void wake_loop(struct workers *w)
{
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the loop will wake anyway. */
    while (write(w->efd, &one, sizeof(one)) < 0 && errno == EINTR)
        ;
}

static void *worker_main(void *arg)
{
    struct workers *w = arg;
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        while (w->queue.head == NULL && !w->stopping)
            pthread_cond_wait(&w->cond, &w->mutex);
        if (w->stopping)
            break; /* queued jobs are left for workers_free() to hand back */
        struct workers_job *j = list_pop(&w->queue);
        w->nqueued--;
        pthread_mutex_unlock(&w->mutex);

        j->work(j->job);

        pthread_mutex_lock(&w->mutex);
        bool was_empty = w->finished.head == NULL;
        list_push(&w->finished, j);
        if (was_empty)
            wake_loop(w);
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

/* Calls done() for every job of the list, in order, and frees the entries. Loop thread. */
static void run_done(struct workers *w, struct workers_list l)
{
    struct workers_job *j;
    w->dispatching = true;
    while ((j = list_pop(&l)) != NULL) {
        atomic_fetch_sub(&w->npending, 1);
        j->done(j->job, j->token);
        free(j);
    }
    w->dispatching = false;
}

static void on_eventfd(evutil_socket_t fd, short what, void *arg)
{
    struct workers *w = arg;
    uint64_t n;
    while (read(fd, &n, sizeof(n)) < 0 && errno == EINTR)
        ;
    pthread_mutex_lock(&w->mutex);
    struct workers_list l = list_take(&w->finished);
    pthread_mutex_unlock(&w->mutex);
    run_done(w, l);
}

struct workers *workers_new(struct event_base *base, unsigned nthreads, size_t max_queue,
                            const char **error_r)
{
    if (nthreads == 0 || max_queue == 0) {
        *error_r = "workers: need at least one thread and a queue of at least one job";
        return NULL;
    }
    struct workers *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        *error_r = "workers: out of memory";
        return NULL;
    }
    w->base = base;
    w->max_queue = max_queue;
    atomic_init(&w->npending, 0);
    w->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->efd < 0) {
        *error_r = "workers: eventfd failed";
        free(w);
        return NULL;
    }
    w->threads = calloc(nthreads, sizeof(*w->threads));
    w->ev = event_new(base, w->efd, EV_READ | EV_PERSIST, on_eventfd, w);
    if (w->threads == NULL || w->ev == NULL || event_add(w->ev, NULL) != 0) {
        *error_r = "workers: cannot set up the completion event";
        goto fail_early;
    }
    if (pthread_mutex_init(&w->mutex, NULL) != 0) {
        *error_r = "workers: pthread_mutex_init failed";
        goto fail_early;
    }
    if (pthread_cond_init(&w->cond, NULL) != 0) {
        pthread_mutex_destroy(&w->mutex);
        *error_r = "workers: pthread_cond_init failed";
        goto fail_early;
    }

    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    for (unsigned i = 0; i < nthreads; i++) {
        if (pthread_create(&w->threads[i], NULL, worker_main, w) != 0) {
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            *error_r = "workers: pthread_create failed";
            workers_free(&w);
            return NULL;
        }
        w->nthreads++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return w;

fail_early:
    if (w->ev != NULL)
        event_free(w->ev);
    free(w->threads);
    close(w->efd);
    free(w);
    return NULL;
}

void workers_free(struct workers **wp)
{
    struct workers *w = *wp;
    if (w == NULL)
        return;
    assert(!w->dispatching); /* never free the pool from inside one of its done functions */
    *wp = NULL;

    pthread_mutex_lock(&w->mutex);
    w->stopping = true;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    for (unsigned i = 0; i < w->nthreads; i++)
        pthread_join(w->threads[i], NULL);

    /* No thread left: the lists are ours. Finished jobs first, then those never worked. */
    event_free(w->ev);
    close(w->efd);
    run_done(w, list_take(&w->finished));
    run_done(w, list_take(&w->queue));
    assert(atomic_load(&w->npending) == 0);

    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mutex);
    free(w->threads);
    free(w);
}

int workers_submit(struct workers *w, workers_work_fn *work, workers_done_fn *done, void *job,
                   uint64_t token)
{
    assert(work != NULL && done != NULL);
    struct workers_job *j = malloc(sizeof(*j));
    if (j == NULL)
        return -1;
    j->work = work;
    j->done = done;
    j->job = job;
    j->token = token;

    pthread_mutex_lock(&w->mutex);
    if (w->nqueued >= w->max_queue || w->stopping) {
        pthread_mutex_unlock(&w->mutex);
        free(j);
        return -1;
    }
    list_push(&w->queue, j);
    w->nqueued++;
    atomic_fetch_add(&w->npending, 1);
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mutex);
    return 0;
}

size_t workers_pending(const struct workers *w)
{
    return atomic_load(&w->npending);
}
