/*
 * Connection input: the pump that feeds the parser from the socket buffer, queues parsed commands,
 * decides literals (incl. the literal hooks that let APPEND stream) and hands raw lines to a waiting
 * command; and the bufferevent callbacks. Never recursive: steps that finish synchronously inside
 * the pump only return to it.
 */

#include "frontend/conn_private.h"

#include <event2/bufferevent_struct.h>
#include <event2/event.h>

/* ------------------------------------------------------------------ literals */

/* Decides a literal the parser stopped at; called only when nothing else is running or queued. */
static struct cmd_ctx *early_start(struct conn *c, const struct cmd_desc *d, const char *tag)
{
    struct cmd_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        abort();
    ctx->conn = c;
    ctx->desc = d;
    ctx->early = true;
    ctx->own_arena = arena_new(1024);
    ctx->arena = ctx->own_arena;
    ctx->tag = arena_strndup(ctx->arena, tag, strlen(tag));
    c->running = ctx;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    evtimer_del(c->idle_timer);
    return ctx;
}

/* A literal of a command with a literal hook; returns false when the default policy applies. */
static bool decide_literal_hook(struct conn *c, const struct parser_literal_info *li)
{
    const struct cmd_desc *d = li->name != NULL ? commands_find(li->name, strlen(li->name)) : NULL;
    if (d == NULL || d->literal == NULL || !(d->states & c->state) || li->tag == NULL)
        return false;
    struct cmd_ctx *ctx = c->running != NULL ? c->running : early_start(c, d, li->tag);
    assert(ctx->early && ctx->desc == d);
    switch (d->literal(ctx, li)) {
    case LIT_ACCEPT:
        parser_literal_accept(c->parser);
        break;
    case LIT_STREAM:
        parser_literal_stream(c->parser);
        c->literal_left = li->size;
        break;
    case LIT_REJECT:
        parser_literal_reject(c->parser);
        conn_after_step(c, CMD_DONE);
        return true;
    }
    if (li->sync)
        reply_continue(c, "Ready for literal data");
    return true;
}

/* Hands a streamed literal's bytes to the running command's hook. */
static void literal_data(struct conn *c, const uint8_t *data, size_t len)
{
    struct cmd_ctx *ctx = c->running;
    assert(ctx != NULL && ctx->early && ctx->desc->literal_data != NULL && len <= c->literal_left);
    c->literal_left -= len;
    if (ctx->desc->literal_data(ctx, data, len, c->literal_left == 0))
        c->input_paused = true;
}

/* The line of an early command is complete: its arguments are final. */
static void early_complete(struct conn *c, struct imap_command *cmd)
{
    struct cmd_ctx *ctx = c->running;
    ctx->cmd = cmd;
    ctx->args = cmd->args;
    ctx->argc = cmd->argc;
    ctx->complete = true;
    if (ctx->next == NULL)
        conn_early_run(c);
    /* else the pending step runs first; conn_after_step calls conn_early_run when it is done */
}

/* Runs a complete early command: the generic argument count check, then its handler. */
void conn_early_run(struct conn *c)
{
    struct cmd_ctx *ctx = c->running;
    if (ctx->argc < (size_t)ctx->desc->min_args ||
        (ctx->desc->max_args >= 0 && ctx->argc > (size_t)ctx->desc->max_args)) {
        reply_tagged(ctx, "BAD", NULL, "Wrong number of arguments");
        conn_after_step(c, CMD_DONE);
        return;
    }
    conn_after_step(c, ctx->desc->run(ctx));
}

void conn_resume_input(struct cmd_ctx *ctx)
{
    ctx->conn->input_paused = false;
}

static void decide_literal(struct conn *c)
{
    const struct parser_literal_info *li = parser_literal(c->parser);
    if (decide_literal_hook(c, li))
        return;
    if (li->size <= c->limits->max_buffered_literal) {
        parser_literal_accept(c->parser);
        if (li->sync)
            reply_continue(c, "Ready for literal data");
        return;
    }
    /* RFC 7888 §4 / RFC 4469: refuse a literal we will not hold; a non-synchronizing one has its
     * bytes read and discarded by the parser, a synchronizing one is simply never sent. */
    char *tag = li->tag != NULL ? strdup(li->tag) : NULL;
    parser_literal_reject(c->parser);
    conn_queue_error(c, tag, "NO", "TOOBIG", "Literal too large", false);
    free(tag);
}

/* ------------------------------------------------------------------ input */

static void handle_parser_error(struct conn *c)
{
    const char *why = parser_error(c->parser);
    const char *tag = parser_error_tag(c->parser);
    bool fatal = parser_error_fatal(c->parser);
    log_write(LOG_INFO, "imap.parse_error", "conn=%llu error=\"%s\" fatal=%d",
              (unsigned long long)c->id, why, fatal);
    conn_queue_error(c, tag, "BAD", NULL, why, fatal);
    metrics_inc(METRICS_PROTOCOL_ERRORS);
    if (fatal)
        c->pipeline_blocked = true; /* parse nothing more: the stream is not trusted */
}

void conn_update_reading(struct conn *c)
{
    if (c->dead || c->closing)
        return;
    bool wanted = c->want_line ||
                  !(c->pipeline_blocked || conn_queue_full(c) || c->lit_pending || c->input_paused);
    if (wanted)
        bufferevent_enable(c->bev, EV_READ);
    else
        bufferevent_disable(c->bev, EV_READ);
}

/*
 * Delivers one raw line to a command waiting in conn_read_line. Returns false when no complete
 * line is buffered yet (an over-long partial line is dropped as it arrives, never buffered).
 */
static bool take_line(struct conn *c, struct evbuffer *in)
{
    size_t max = c->limits->parser.max_line;
    struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
    if (eol.pos < 0) {
        size_t have = evbuffer_get_length(in);
        if (have > max) {
            evbuffer_drain(in, have);
            c->discarding_line = true;
        }
        return false;
    }
    size_t len = (size_t)eol.pos;
    struct cmd_ctx *ctx = c->running;
    if (c->discarding_line || len > max + 1) {
        evbuffer_drain(in, len + 1);
        c->discarding_line = false;
        ctx->line = NULL;
        ctx->line_len = 0;
    } else {
        char *line = arena_alloc(ctx->arena, len + 1);
        evbuffer_remove(in, line, len);
        evbuffer_drain(in, 1);
        if (len > 0 && line[len - 1] == '\r')
            len--;
        line[len] = '\0';
        ctx->line = line;
        ctx->line_len = len;
    }
    c->want_line = false;
    return true;
}

/*
 * Moves the connection forward as far as it can without waiting: starts queued commands, decides
 * pending literals, parses more input. Never recursive: steps that finish synchronously inside
 * it only return here.
 */
void conn_pump(struct conn *c)
{
    if (c->in_pump)
        return;
    c->in_pump = true;
    while (!c->dead) {
        /* Fetched each turn: a step (STARTTLS) may have replaced c->bev. */
        struct evbuffer *in = bufferevent_get_input(c->bev);
        if (c->closing) {
            evbuffer_drain(in, evbuffer_get_length(in));
            break;
        }
        if (c->running == NULL && c->q_len > 0) {
            conn_start_next(c);
            continue;
        }
        if (c->running != NULL && c->want_line) {
            if (!take_line(c, in))
                break;
            conn_run_next_step(c, NULL);
            continue;
        }
        if (c->pipeline_blocked || conn_queue_full(c))
            break;
        if (c->input_paused)
            break;
        if (c->lit_pending) {
            /* Its "+" must not land inside another command's response. */
            /* Only the command whose line is being parsed may take it (an early command that is
             * not complete yet); a literal of a later, pipelined command waits its turn. */
            bool own = c->running != NULL && c->running->early && !c->running->complete;
            if ((c->running != NULL && !own) || c->q_len > 0)
                break;
            c->lit_pending = false;
            decide_literal(c);
            continue;
        }
        if (evbuffer_get_length(in) == 0)
            break;
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = 0;
        enum parser_result r = parser_feed(c->parser, v.iov_base, v.iov_len, &used);
        switch (r) {
        case PARSER_NEED_MORE:
            evbuffer_drain(in, used);
            assert(used == v.iov_len); /* the parser keeps nothing unconsumed */
            break;
        case PARSER_COMMAND: {
            evbuffer_drain(in, used);
            struct imap_command *cmd = parser_take_command(c->parser);
            if (c->running != NULL && c->running->early && !c->running->complete) {
                early_complete(c, cmd);
                break;
            }
            const struct cmd_desc *d = commands_find(cmd->name, strlen(cmd->name));
            if (d != NULL && (d->flags & CMD_F_NO_PIPELINE))
                c->pipeline_blocked = true;
            conn_queue_push(c, (struct qitem){cmd, NULL, NULL, NULL, NULL, false});
            break;
        }
        case PARSER_LITERAL:
            evbuffer_drain(in, used);
            c->lit_pending = true;
            break;
        case PARSER_LITERAL_DATA: {
            const uint8_t *chunk = NULL;
            size_t chunk_len = 0;
            parser_literal_chunk(c->parser, &chunk, &chunk_len);
            literal_data(c, chunk, chunk_len); /* the hook copies what it keeps */
            evbuffer_drain(in, used);
            break;
        }
        case PARSER_ERROR:
            evbuffer_drain(in, used);
            handle_parser_error(c);
            break;
        }
    }
    c->in_pump = false;
    conn_update_reading(c);
    conn_flush_output(c);
}

/*
 * Writes what the commands just answered to a plain socket now, instead of on the next loop
 * turn's writable event: a short answer (STATUS, NOOP, a tagged OK) leaves before epoll is asked
 * again, which saves an epoll round and two epoll_ctl calls on every command's critical path. Only
 * when nothing else cares about the write: no TLS filter, not closing, no command waiting for the
 * output to drain, an answer small enough to go in one write. Partial writes and errors are left
 * to the bufferevent, which still has its write event armed for the rest.
 */
void conn_flush_output(struct conn *c)
{
    if (c->dead || c->tls || c->closing || c->waiting_drain || c->bev == NULL)
        return;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t len = evbuffer_get_length(out);
    if (len == 0 || len > CONN_FLUSH_MAX || !(bufferevent_get_enabled(c->bev) & EV_WRITE))
        return;
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    if (fd < 0)
        return;
    /* A socket bufferevent keeps its output's drain side frozen except while it writes itself. */
    (void)evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, fd);
    (void)evbuffer_freeze(out, 1);
    if (n <= 0)
        return;
    if (evbuffer_get_length(out) == 0)
        event_del(&c->bev->ev_write); /* nothing left: the armed write event would only wake us */
}

/* ------------------------------------------------------------------ bufferevent callbacks */

void conn_read_cb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    conn_pump(arg);
}

void conn_write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    size_t pending = evbuffer_get_length(bufferevent_get_output(bev));
    if (c->closing) {
        if (pending == 0)
            conn_kill_when_flushed(c);
        return;
    }
    if (c->waiting_drain && pending <= DRAIN_LOW) {
        c->waiting_drain = false;
        bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
        if (c->running != NULL && c->running->next != NULL)
            conn_run_next_step(c, NULL);
    }
}

void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    struct conn *c = arg;
    if (c->tls && conn_tls_event(c, what))
        return;
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)) {
        if (what & BEV_EVENT_ERROR)
            log_write(LOG_INFO, "conn.error", "conn=%llu error=\"%s\"", (unsigned long long)c->id,
                      strerror(EVUTIL_SOCKET_ERROR()));
        conn_kill(c);
    }
}
