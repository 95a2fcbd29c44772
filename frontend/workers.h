/*
 * workers: a small fixed pool of threads for CPU-heavy work that must not run on the event loop
 * (DESIGN.md rule 7: password hashing; later body search). Jobs are queued (bounded); each job's
 * work function runs on a worker thread and its done function then runs on the event-loop thread.
 * The job object is owned by the submitter: typically done() frees it. The done function gets the
 * submitter's token (never a client pointer) so it can drop the result if the client is gone.
 */
#ifndef CIMAP_WORKERS_H
#define CIMAP_WORKERS_H

#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef void workers_work_fn(void *job);                   /* worker thread */
typedef void workers_done_fn(void *job, uint64_t token);   /* event-loop thread */

/* Starts nthreads (>= 1) threads; max_queue bounds jobs waiting. NULL with *error_r on failure. */
struct workers *workers_new(struct event_base *base, unsigned nthreads, size_t max_queue,
                            const char **error_r);

/*
 * Stops the threads after the job each is running; queued jobs are not worked but their done
 * functions still run (so owners free them). Sets *w to NULL. NULL-safe. Event-loop thread only.
 */
void workers_free(struct workers **w);

/*
 * Queues a job. Returns 0, or -1 when the queue is full (the caller answers "try again later";
 * neither function is called). done is never called from inside workers_submit().
 */
int workers_submit(struct workers *w, workers_work_fn *work, workers_done_fn *done, void *job,
                   uint64_t token);

/* Jobs queued or running (for /metrics). */
size_t workers_pending(const struct workers *w);

#endif
