/*
 * What a running command waits on: Redis replies (single commands, MULTI/EXEC read batches,
 * scripts), worker-pool results, raw lines, timers and output drain. Every result finds its
 * connection through a token and is dropped when the connection or the command is gone.
 */

#include "frontend/conn_private.h"

/* ------------------------------------------------------------------ waiting */

static void store_done(const struct store_result *res, uint64_t token)
{
    struct conn *c = conn_table_lookup(token);
    if (c == NULL || c->running->next == NULL)
        return;
    conn_run_next_step(c, res);
}

enum cmd_status conn_redis(struct cmd_ctx *ctx, cmd_step *next, int argc, const char *const *argv,
                           const size_t *argvlen)
{
    struct conn *c = ctx->conn;
    ctx->next = next;
    store_command(c->fe->store, c->id, store_done, conn_token(c), argc, argv, argvlen);
    return CMD_WAIT;
}

enum cmd_status conn_eval(struct cmd_ctx *ctx, cmd_step *next, enum lua_script_id script,
                          int nkeys, int argc, const char *const *argv, const size_t *argvlen)
{
    struct conn *c = ctx->conn;
    ctx->next = next;
    store_eval(c->fe->store, c->id, script, store_done, conn_token(c), nkeys, argc, argv, argvlen);
    return CMD_WAIT;
}

/* Replies to MULTI and the queued commands of a transaction: EXEC's reply carries them all. */
static void store_ignore(const struct store_result *res, uint64_t token)
{
    (void)res;
    (void)token;
}

enum cmd_status conn_redis_tx(struct cmd_ctx *ctx, cmd_step *next, size_t n, const int *argc,
                              const char *const *const *argv, const size_t *const *argvlen)
{
    struct conn *c = ctx->conn;
    static const char *const multi[] = {"MULTI"};
    static const size_t multi_len[] = {5};
    static const char *const exec[] = {"EXEC"};
    static const size_t exec_len[] = {4};
    ctx->next = next;
    /* Issued back to back on one connection (same shard), so nothing else lands in between. */
    store_command(c->fe->store, c->id, store_ignore, 0, 1, multi, multi_len);
    for (size_t i = 0; i < n; i++)
        store_command(c->fe->store, c->id, store_ignore, 0, argc[i], argv[i], argvlen[i]);
    store_command(c->fe->store, c->id, store_done, conn_token(c), 1, exec, exec_len);
    return CMD_WAIT;
}

struct work_wrap {
    void (*work)(void *job);
    void (*free_job)(void *job);
    void *job;
};

static void work_run(void *arg)
{
    struct work_wrap *w = arg;
    w->work(w->job);
}

static void work_done(void *arg, uint64_t token)
{
    struct work_wrap *w = arg;
    void *job = w->job;
    void (*free_job)(void *) = w->free_job;
    free(w);
    struct conn *c = conn_table_lookup(token);
    if (c == NULL || c->running->next == NULL) {
        free_job(job);
        return;
    }
    c->running->job = job;
    conn_run_next_step(c, NULL);
}

enum cmd_status conn_work(struct cmd_ctx *ctx, cmd_step *next, void (*work)(void *job),
                          void (*free_job)(void *job), void *job, bool *full_r)
{
    struct conn *c = ctx->conn;
    struct work_wrap *w = malloc(sizeof(*w));
    if (w == NULL)
        abort();
    *w = (struct work_wrap){work, free_job, job};
    *full_r = false;
    if (workers_submit(c->fe->workers, work_run, work_done, w, conn_token(c)) != 0) {
        free(w);
        free_job(job);
        *full_r = true;
        return CMD_DONE;
    }
    ctx->next = next;
    return CMD_WAIT;
}

enum cmd_status conn_read_line(struct cmd_ctx *ctx, cmd_step *next)
{
    struct conn *c = ctx->conn;
    assert(ctx->desc->flags & CMD_F_NO_PIPELINE);
    ctx->next = next;
    c->want_line = true; /* conn_after_step pumps: the line may already be buffered */
    return CMD_WAIT;
}

void conn_wait_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->dead || c->running == NULL || c->running->next == NULL)
        return;
    conn_run_next_step(c, NULL);
}

enum cmd_status conn_sleep(struct cmd_ctx *ctx, cmd_step *next, uint32_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    ctx->next = next;
    evtimer_add(ctx->conn->wait_timer, &tv);
    return CMD_WAIT;
}

enum cmd_status conn_wait_drain(struct cmd_ctx *ctx, cmd_step *next)
{
    struct conn *c = ctx->conn;
    ctx->next = next;
    c->waiting_drain = true;
    bufferevent_setwatermark(c->bev, EV_WRITE, DRAIN_LOW, 0);
    bufferevent_enable(c->bev, EV_WRITE);
    return CMD_WAIT;
}
