/*
 * One client connection: input → parser → queue of parsed commands → the running command's
 * steps → reply writer → bufferevent. See conn.h for the command model.
 *
 * Input is parsed straight out of the bufferevent's input buffer, one contiguous chunk at a time;
 * the parser copies what it keeps into the command's arena. Reading stops whenever parsing has to
 * pause (queue full, a non-pipelinable command pending, a literal waiting for its turn), so a
 * client can never make us buffer more than one socket read beyond the limits.
 *
 * Async results come back through conn_table_lookup(token): the token names a slot and the
 * generation of the command that asked, so replies for a closed connection or a finished command
 * are dropped. Freeing is deferred to the next loop turn (conn_kill), never done inside one of the
 * connection's own callbacks.
 *
 * This file: the registry, accessors, selected state and wake-ups, timers and closing, running
 * commands, accept and PROXY. Input parsing is in conn_input.c, waiting in conn_wait.c, the TLS
 * region in conn_tls.c (conn_private.h holds what they share). Deliberately not here: the command
 * semantics (cmd_*.c), the mailbox view (selected.h, updates.c).
 */

#include "frontend/conn_private.h"

/* The process's one registry: async callbacks carry only a token, so they find it here. */
static struct conn_table *registry;

/* ------------------------------------------------------------------ registry */

struct conn_table *conn_table_new(void)
{
    assert(registry == NULL);
    struct conn_table *t = calloc(1, sizeof(*t));
    if (t == NULL)
        abort();
    t->watch = watchers_new();
    registry = t;
    return t;
}

void conn_table_free(struct conn_table **tp)
{
    if (tp == NULL || *tp == NULL)
        return;
    struct conn_table *t = *tp;
    assert(t->count == 0); /* conn_table_close_all() and a loop turn first */
    free(t->slots);
    free(t->free_slots);
    watchers_free(&t->watch);
    free(t);
    registry = NULL;
    *tp = NULL;
}

size_t conn_table_count(const struct conn_table *t)
{
    return t->count;
}

static void table_insert(struct conn_table *t, struct conn *c)
{
    if (t->free_count == 0) {
        uint32_t ncap = t->cap == 0 ? 64 : t->cap * 2;
        struct conn **ns = realloc(t->slots, ncap * sizeof(*ns));
        uint32_t *nf = realloc(t->free_slots, ncap * sizeof(*nf));
        if (ns == NULL || nf == NULL)
            abort();
        t->slots = ns;
        t->free_slots = nf;
        for (uint32_t i = ncap; i > t->cap; i--) {
            t->slots[i - 1] = NULL;
            t->free_slots[t->free_count++] = i - 1;
        }
        t->cap = ncap;
    }
    c->slot = t->free_slots[--t->free_count];
    c->gen = ++t->gen_counter;
    c->sid = ((uint64_t)c->gen << 32) | c->slot;
    t->slots[c->slot] = c;
    t->count++;
}

static void table_remove(struct conn_table *t, struct conn *c)
{
    assert(t->slots[c->slot] == c);
    t->slots[c->slot] = NULL;
    t->free_slots[t->free_count++] = c->slot;
    t->count--;
}

uint64_t conn_token(const struct conn *c)
{
    return ((uint64_t)c->gen << 32) | c->slot;
}

/* The connection whose running command asked with token, or NULL when it is gone. */
struct conn *conn_table_lookup(uint64_t token)
{
    if (registry == NULL)
        return NULL;
    uint32_t slot = (uint32_t)token;
    uint32_t gen = (uint32_t)(token >> 32);
    if (slot >= registry->cap)
        return NULL;
    struct conn *c = registry->slots[slot];
    if (c == NULL || c->gen != gen || c->dead || c->running == NULL)
        return NULL;
    return c;
}

/* The connection of session token sid, or NULL when it is gone. */
static struct conn *session_lookup(uint64_t sid)
{
    if (registry == NULL)
        return NULL;
    uint32_t slot = (uint32_t)sid;
    if (slot >= registry->cap)
        return NULL;
    struct conn *c = registry->slots[slot];
    if (c == NULL || c->sid != sid || c->dead)
        return NULL;
    return c;
}

void conn_table_close_all(struct conn_table *t)
{
    for (uint32_t i = 0; i < t->cap; i++) {
        if (t->slots[i] != NULL)
            conn_kill(t->slots[i]);
    }
}

void conn_table_shutdown(struct conn_table *t, const char *text)
{
    for (uint32_t i = 0; i < t->cap; i++) {
        struct conn *c = t->slots[i];
        if (c == NULL || c->dead || c->closing)
            continue;
        if (c->proxy != NULL) {
            conn_kill(c);
            continue;
        }
        /* IDLE runs until the client says DONE: end it too, but only between its updates. */
        bool idling = c->running != NULL && (c->running->desc->flags & CMD_F_IDLE) && c->want_line;
        if (c->running == NULL || idling) {
            reply_bye(c, "UNAVAILABLE", text);
            metrics_inc(METRICS_DRAIN_BYE);
            conn_close_after_output(c);
        }
    }
}

void conn_table_get_stats(const struct conn_table *t, struct conn_table_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (uint32_t i = 0; i < t->cap; i++) {
        const struct conn *c = t->slots[i];
        if (c == NULL || c->dead)
            continue;
        if (c->tls)
            out->tls++;
        if (c->proxy != NULL)
            out->proxy_header++;
        else if (c->closing)
            out->closing++;
        else if (c->state == CONN_STATE_NOT_AUTH)
            out->not_auth++;
        else if (c->state == CONN_STATE_SELECTED)
            out->selected++;
        else
            out->auth++;
        if (!c->closing && c->running != NULL && (c->running->desc->flags & CMD_F_IDLE))
            out->idle++;
    }
}

/* ------------------------------------------------------------------ accessors */

struct frontend *conn_frontend(const struct conn *c)
{
    return c->fe;
}

struct evbuffer *conn_output(struct conn *c)
{
    return bufferevent_get_output(c->bev);
}

enum conn_state conn_get_state(const struct conn *c)
{
    return c->state;
}

uint64_t conn_id(const struct conn *c)
{
    return c->id;
}

const char *conn_user(const struct conn *c)
{
    return c->user;
}

const char *conn_nsid(const struct conn *c)
{
    return c->user != NULL ? c->nsid : NULL;
}

const char *conn_peer(const struct conn *c)
{
    return c->peer;
}

const struct sockaddr *conn_peer_addr(const struct conn *c)
{
    return (const struct sockaddr *)&c->addr;
}

bool conn_is_debug(const struct conn *c)
{
    return c->fe->cfg->debug;
}

bool conn_output_full(const struct conn *c)
{
    return evbuffer_get_length(bufferevent_get_output(c->bev)) > DRAIN_HIGH;
}

void conn_set_authenticated(struct conn *c, const char *login, const char *nsid)
{
    free(c->user);
    c->user = strdup(login);
    if (c->user == NULL)
        abort();
    strncpy(c->nsid, nsid, sizeof(c->nsid) - 1);
    c->nsid[sizeof(c->nsid) - 1] = '\0';
    c->state = CONN_STATE_AUTH;
    c->limits = &c->fe->cfg->auth;
    c->commands_in_state = 0;
    parser_set_limits(c->parser, &c->limits->parser);
}

struct selected *conn_selected(struct conn *c)
{
    return c->selected;
}

/* Starts or stops listening to the user's wake-ups (the first/last local session subscribes). */
static void set_watching(struct conn *c, bool on)
{
    if (on == c->watching || c->user == NULL)
        return;
    struct watchers *w = c->fe->conns->watch;
    bool edge = on ? watchers_add(w, c->nsid, c->sid) : watchers_remove(w, c->nsid, c->sid);
    c->watching = on;
    if (edge && c->fe->pubsub != NULL) {
        if (on)
            pubsub_watch(c->fe->pubsub, c->nsid);
        else
            pubsub_unwatch(c->fe->pubsub, c->nsid);
    }
}

void conn_select(struct conn *c, struct selected *sel)
{
    selected_free(&c->selected);
    c->selected = sel;
    c->state = CONN_STATE_SELECTED;
    c->updates_pending = false;
    set_watching(c, true);
}

void conn_unselect(struct conn *c)
{
    selected_free(&c->selected);
    if (c->state == CONN_STATE_SELECTED)
        c->state = CONN_STATE_AUTH;
    set_watching(c, false);
}

const struct user_limits *conn_user_limits(const struct conn *c)
{
    return &c->ulimits;
}

void conn_set_user_limits(struct conn *c, const struct user_limits *l)
{
    c->ulimits = *l;
}

struct mbxcache *conn_mbxcache(struct conn *c)
{
    if (c->mbxcache == NULL) {
        c->mbxcache = calloc(1, sizeof(*c->mbxcache));
        if (c->mbxcache == NULL)
            abort();
    }
    return c->mbxcache;
}

bool conn_take_updates_pending(struct conn *c)
{
    bool was = c->updates_pending;
    c->updates_pending = false;
    return was;
}

/*
 * A wake-up for this session: remember it, and if the running command sleeps waiting for a line
 * with a wake-up step (IDLE), run that step now.
 */
static void conn_wake(struct conn *c)
{
    c->updates_pending = true;
    struct cmd_ctx *ctx = c->running;
    if (ctx == NULL || ctx->on_wake == NULL || !c->want_line || ctx->next == NULL || c->closing)
        return;
    c->want_line = false;
    ctx->next = NULL;
    c->updates_pending = false;
    conn_after_step(c, ctx->on_wake(ctx));
}

struct wake_args {
    const char *payload;
    size_t len;
    bool resync;
};

static void wake_one(uint64_t sid, void *arg)
{
    const struct wake_args *w = arg;
    struct conn *c = session_lookup(sid);
    if (c == NULL || c->selected == NULL)
        return;
    if (!w->resync) {
        /* "<mbxid> <modseq>": only the selected mailbox, only news */
        if (w->len < KEYS_MBXID_LEN + 2 || memcmp(w->payload, c->selected->mbxid, KEYS_MBXID_LEN) != 0)
            return;
        uint64_t modseq = 0;
        for (size_t i = KEYS_MBXID_LEN + 1; i < w->len && w->payload[i] >= '0' && w->payload[i] <= '9'; i++)
            modseq = modseq * 10 + (uint64_t)(w->payload[i] - '0');
        if (modseq <= c->selected->highestmodseq)
            return;
    }
    conn_wake(c);
}

void conn_pubsub_wake(const char *nsid, const char *payload, size_t len, bool resync, void *arg)
{
    (void)arg;
    if (registry == NULL)
        return;
    struct wake_args w = {payload, len, resync};
    watchers_each(registry->watch, nsid, wake_one, &w);
}

unsigned conn_count_auth_failure(struct conn *c)
{
    return ++c->auth_failures;
}

/* ------------------------------------------------------------------ timers and closing */

static void arm_idle_timer(struct conn *c)
{
    struct timeval tv = {(time_t)c->limits->idle_timeout_s, 0};
    evtimer_add(c->idle_timer, &tv);
}

static void idle_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->dead || c->closing)
        return;
    if (c->proxy != NULL) {
        conn_kill(c); /* no PROXY header in time: nothing to say to a proxy */
        return;
    }
    if (c->running != NULL && !(c->running->desc->flags & CMD_F_IDLE)) {
        arm_idle_timer(c); /* a long command is not idleness; IDLE is (RFC 2177) */
        return;
    }
    log_write(LOG_INFO, "conn.timeout", "conn=%llu peer=%s state=%s", (unsigned long long)c->id,
              c->peer, c->state == CONN_STATE_NOT_AUTH ? "preauth" : "auth");
    reply_bye(c, NULL, c->state == CONN_STATE_NOT_AUTH ? "Timed out waiting for login"
                                                       : "Autologout; idle for too long");
    conn_close_after_output(c);
}

static void ctx_free(struct cmd_ctx *ctx);

static void free_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct conn *c = arg;
    if (c->running != NULL) {
        ctx_free(c->running);
        c->running = NULL;
    }
    while (c->q_len > 0) {
        struct qitem *it = &c->queue[c->q_head];
        imap_command_free(&it->cmd);
        free(it->tag);
        c->q_head = (c->q_head + 1) % c->q_cap;
        c->q_len--;
    }
    free(c->queue);
    parser_free(&c->parser);
    bufferevent_free(c->bev);
    event_free(c->idle_timer);
    event_free(c->wait_timer);
    free(c->user);
    selected_free(&c->selected);
    free(c->proxy);
    free(c->mbxcache);
    free(c);
}

/* Marks the connection dead and frees it on the next loop turn (never inside its callbacks). */
void conn_kill(struct conn *c)
{
    if (c->dead)
        return;
    c->dead = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
    evtimer_del(c->idle_timer);
    evtimer_del(c->wait_timer);
    set_watching(c, false);
    if (c->user != NULL)
        fleet_user_release(c->fe, c->nsid); /* the slot fleet_user_acquire took at login */
    table_remove(c->fe->conns, c);
    log_write(LOG_INFO, "conn.close", "conn=%llu peer=%s user=%s", (unsigned long long)c->id,
              c->peer, c->user != NULL ? c->user : "-");
    if (event_base_once(c->fe->base, -1, EV_TIMEOUT, free_cb, c, NULL) != 0)
        abort(); /* cannot happen short of OOM; leaking would be silent */
}

void conn_close_after_output(struct conn *c)
{
    if (c->dead)
        return;
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ);
    /* Before its handshake a TLS connection cannot flush anything: close at once. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0 || (c->tls && !c->tls_ready)) {
        conn_kill_when_flushed(c);
        return;
    }
    bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
    bufferevent_enable(c->bev, EV_WRITE);
}

/* ------------------------------------------------------------------ transcript */

static void render_args(struct evbuffer *out, const struct imap_arg *args, size_t argc,
                        size_t depth)
{
    for (size_t i = 0; i < argc && evbuffer_get_length(out) < 300; i++) {
        const struct imap_arg *a = &args[i];
        if (i > 0)
            evbuffer_add(out, " ", 1);
        switch (a->type) {
        case IMAP_ARG_ATOM:
            evbuffer_add(out, a->str, a->len > 100 ? 100 : a->len);
            break;
        case IMAP_ARG_NIL:
            evbuffer_add(out, "NIL", 3);
            break;
        case IMAP_ARG_QUOTED:
        case IMAP_ARG_LITERAL:
            if (a->type == IMAP_ARG_LITERAL)
                evbuffer_add_printf(out, "{%zu}", a->len);
            else
                reply_string(out, a->str, a->len > 100 ? 100 : a->len);
            break;
        case IMAP_ARG_LIST:
            evbuffer_add(out, "(", 1);
            if (depth < 4)
                render_args(out, a->list, a->count, depth + 1);
            evbuffer_add(out, ")", 1);
            break;
        }
    }
}

static void log_client_line(struct conn *c, const struct imap_command *cmd, bool sensitive)
{
    struct evbuffer *b = evbuffer_new();
    if (b == NULL)
        return;
    evbuffer_add_printf(b, "%s %s ", cmd->tag, cmd->name);
    if (sensitive)
        evbuffer_add(b, "***", 3);
    else
        render_args(b, cmd->args, cmd->argc, 0);
    char q[512];
    size_t len = evbuffer_get_length(b);
    const char *p = (const char *)evbuffer_pullup(b, -1);
    log_write(LOG_DEBUG, "imap.c", "conn=%llu line=%s", (unsigned long long)c->id,
              log_quote(q, sizeof(q), p, len));
    evbuffer_free(b);
}

/* ------------------------------------------------------------------ the queue */

bool conn_queue_full(const struct conn *c)
{
    return c->q_len + 1 >= c->q_cap; /* one slot kept for an error item */
}

void conn_queue_push(struct conn *c, struct qitem it)
{
    assert(c->q_len < c->q_cap);
    c->queue[(c->q_head + c->q_len) % c->q_cap] = it;
    c->q_len++;
}

void conn_queue_error(struct conn *c, const char *tag, const char *status, const char *code,
                        const char *text, bool fatal)
{
    struct qitem it = {NULL, NULL, status, code, text, fatal};
    if (tag != NULL) {
        it.tag = strdup(tag);
        if (it.tag == NULL)
            abort();
    }
    conn_queue_push(c, it);
}

/* ------------------------------------------------------------------ running commands */

#define CONN_SLOW_COMMAND_MS 1000.0 /* a command taking longer is logged at info level */

static double elapsed_ms(const struct timespec *since)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - since->tv_sec) * 1e3 + (double)(now.tv_nsec - since->tv_nsec) / 1e6;
}

/* Frees a command context and everything it owns. */
static void ctx_free(struct cmd_ctx *ctx)
{
    if (ctx->cleanup != NULL)
        ctx->cleanup(ctx);
    imap_command_free(&ctx->cmd);
    arena_free(&ctx->own_arena);
    free(ctx);
}

static void finish_command(struct conn *c)
{
    struct cmd_ctx *ctx = c->running;
    double ms = elapsed_ms(&c->started);
    /* Every command is counted in /metrics; the log names only failed and slow ones unless
     * --debug (a write(2) per command would be the largest cost of a STATUS or NOOP). */
    bool notable = ctx->result == NULL || strcmp(ctx->result, "OK") != 0 || ms >= CONN_SLOW_COMMAND_MS;
    log_write(notable ? LOG_INFO : LOG_DEBUG, "command", "conn=%llu user=%s command=%s%s result=%s ms=%.3f",
              (unsigned long long)c->id, c->user != NULL ? c->user : "-", ctx->uid ? "UID " : "",
              ctx->desc->name, ctx->result != NULL ? ctx->result : "-", ms);
    metrics_command(ctx->desc->name, ctx->uid, ctx->result, ms);
    if (ctx->desc->flags & CMD_F_NO_PIPELINE)
        c->pipeline_blocked = false;
    ctx_free(ctx);
    c->running = NULL;
    c->input_paused = false;
    c->gen = ++c->fe->conns->gen_counter; /* stale tokens of this command now miss */
    if (c->closing || c->dead)
        return;
    if (c->fe->draining && c->q_len == 0) {
        reply_bye(c, "UNAVAILABLE", "Server shutting down");
        conn_close_after_output(c);
        return;
    }
    arm_idle_timer(c);
}

void conn_after_step(struct conn *c, enum cmd_status st)
{
    if (c->dead)
        return;
    switch (st) {
    case CMD_WAIT:
        /* An early command may wait for nothing but the rest of its own line. */
        assert(c->running != NULL && (c->running->next != NULL || c->running->early));
        if (c->running->next == NULL && c->running->complete) {
            conn_early_run(c); /* it waited on a step while its line completed */
            return;
        }
        if (!c->in_pump)
            conn_pump(c);
        else
            conn_update_reading(c);
        return;
    case CMD_DONE:
        finish_command(c);
        break;
    case CMD_ERR:
        log_write(LOG_ERROR, "command.error", "conn=%llu command=%s", (unsigned long long)c->id,
                  c->running->desc->name);
        metrics_inc(METRICS_COMMAND_ERRORS);
        finish_command(c);
        reply_bye(c, "SERVERBUG", "Internal error, closing connection");
        conn_close_after_output(c);
        return;
    }
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) > c->fe->cfg->output_max) {
        log_write(LOG_WARN, "conn.slow_reader", "conn=%llu peer=%s", (unsigned long long)c->id,
                  c->peer);
        conn_kill(c);
        return;
    }
    if (!c->in_pump)
        conn_pump(c);
}

static bool resolve_command(struct conn *c, struct cmd_ctx *ctx)
{
    const struct imap_command *cmd = ctx->cmd;
    const struct cmd_desc *desc;
    ctx->args = cmd->args;
    ctx->argc = cmd->argc;
    if (strcasecmp(cmd->name, "UID") == 0) {
        if (cmd->argc < 1 || cmd->args[0].type != IMAP_ARG_ATOM) {
            reply_status(c, cmd->tag, "BAD", NULL, "UID needs a command");
            return false;
        }
        desc = commands_find(cmd->args[0].str, cmd->args[0].len);
        if (desc == NULL || !(desc->flags & CMD_F_UID)) {
            reply_status(c, cmd->tag, "BAD", NULL, "Unknown UID command");
            return false;
        }
        ctx->uid = true;
        ctx->args++;
        ctx->argc--;
    } else {
        desc = commands_find(cmd->name, strlen(cmd->name));
        if (desc == NULL) {
            reply_status(c, cmd->tag, "BAD", NULL, "Unknown command");
            return false;
        }
    }
    if (!(desc->states & c->state)) {
        reply_status(c, cmd->tag, "BAD", NULL,
                      c->state == CONN_STATE_NOT_AUTH ? "Log in first"
                                                      : "Command not valid in this state");
        return false;
    }
    if (ctx->argc < (size_t)desc->min_args ||
        (desc->max_args >= 0 && ctx->argc > (size_t)desc->max_args)) {
        reply_status(c, cmd->tag, "BAD", NULL, "Wrong number of arguments");
        return false;
    }
    ctx->desc = desc;
    return true;
}

void conn_start_next(struct conn *c)
{
    struct qitem it = c->queue[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    if (it.cmd == NULL) {
        reply_status(c, it.tag, it.status, it.code, it.text);
        free(it.tag);
        if (it.fatal) {
            reply_bye(c, NULL, it.text);
            conn_close_after_output(c);
        }
        return;
    }
    const struct cmd_desc *maybe = commands_find(it.cmd->name, strlen(it.cmd->name));
    bool sensitive = maybe != NULL && (maybe->flags & CMD_F_SENSITIVE);
    if (log_enabled(LOG_DEBUG) && c->fe->cfg->debug)
        log_client_line(c, it.cmd, sensitive);

    uint32_t max_cmds = c->limits->max_commands;
    if (max_cmds != 0 && ++c->commands_in_state > max_cmds) {
        imap_command_free(&it.cmd);
        reply_bye(c, "LIMIT", "Too many commands before login");
        conn_close_after_output(c);
        return;
    }

    struct cmd_ctx *ctx = calloc(1, sizeof(*ctx));
    if (ctx == NULL)
        abort();
    ctx->conn = c;
    ctx->cmd = it.cmd;
    ctx->arena = it.cmd->arena;
    ctx->tag = it.cmd->tag;
    if (!resolve_command(c, ctx)) {
        if (maybe != NULL && (maybe->flags & CMD_F_NO_PIPELINE))
            c->pipeline_blocked = false;
        imap_command_free(&ctx->cmd);
        free(ctx);
        return;
    }
    c->running = ctx;
    clock_gettime(CLOCK_MONOTONIC, &c->started);
    if (ctx->desc->flags & CMD_F_IDLE)
        arm_idle_timer(c);
    else
        evtimer_del(c->idle_timer);
    conn_after_step(c, ctx->desc->run(ctx));
}

/* Continues the running command with its next step; res is lent to the step, if any. */
void conn_run_next_step(struct conn *c, const struct store_result *res)
{
    struct cmd_ctx *ctx = c->running;
    cmd_step *next = ctx->next;
    assert(next != NULL);
    ctx->next = NULL;
    ctx->store = res;
    enum cmd_status st = next(ctx);
    if (c->running == ctx)
        ctx->store = NULL; /* borrowed: gone after the callback */
    conn_after_step(c, st);
}

/* ------------------------------------------------------------------ accept */

static void format_peer(char *out, size_t size, const struct sockaddr *sa)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof(host));
        port = ntohs(in->sin_port);
        snprintf(out, size, "%s:%u", host, port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof(host));
        port = ntohs(in6->sin6_port);
        snprintf(out, size, "[%s]:%u", host, port);
    } else {
        snprintf(out, size, "unix");
    }
}

/* Counts the bytes a client socket reads and writes (TLS records included). */
static void count_in_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    (void)arg;
    metrics_add(METRICS_BYTES_IN, info->n_added);
}

static void count_out_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    (void)arg;
    metrics_add(METRICS_BYTES_OUT, info->n_deleted);
}

/* Greets a new connection (after its PROXY header, if any), or refuses it. */
static void conn_begin(struct conn *c)
{
    struct frontend *fe = c->fe;
    if (fe->draining || conn_table_count(fe->conns) > fe->cfg->max_connections) {
        metrics_inc(METRICS_CONN_REFUSED);
        reply_bye(c, "UNAVAILABLE", fe->draining ? "Server shutting down" : "Too many connections");
        conn_close_after_output(c);
        return;
    }
    reply_greeting(c);
    bufferevent_enable(c->bev, EV_READ | EV_WRITE);
    arm_idle_timer(c);
}

/*
 * The PROXY header is complete: from now on the client is the address it names (logs, the
 * loopback exemption, throttling). Then TLS (IMAPS) or the greeting, exactly as without a proxy.
 */
static void proxy_done(struct conn *c, const struct proxy_info *info)
{
    char via[sizeof(c->peer)];
    memcpy(via, c->peer, sizeof(via));
    if (!info->local) {
        memset(&c->addr, 0, sizeof(c->addr));
        memcpy(&c->addr, &info->src, info->src_len);
        format_peer(c->peer, sizeof(c->peer), (const struct sockaddr *)&c->addr);
        c->loopback = conn_addr_is_loopback((const struct sockaddr *)&c->addr);
    }
    free(c->proxy);
    c->proxy = NULL;
    metrics_inc(METRICS_PROXY_OK);
    log_write(LOG_INFO, "conn.proxy", "conn=%llu peer=%s proxy=%s version=%d local=%d",
              (unsigned long long)c->id, c->peer, via, info->version, info->local ? 1 : 0);
    if (c->tls_after_proxy) {
        const char *error = NULL;
        if (conn_wrap_tls(c, &error) != 0) {
            log_write(LOG_ERROR, "conn.tls_failed", "peer=%s error=\"%s\"", c->peer, error);
            conn_kill(c);
            return;
        }
    }
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_begin(c);
    if (c->dead || c->closing)
        return;
    if (c->tls) {
        /* A ClientHello that came with the header is already buffered below the filter, which
         * only looks when more arrives: make it look now. */
        struct bufferevent *sock = bufferevent_get_underlying(c->bev);
        if (evbuffer_get_length(bufferevent_get_input(sock)) > 0)
            bufferevent_trigger(sock, EV_READ, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
    } else if (evbuffer_get_length(bufferevent_get_input(c->bev)) > 0) {
        conn_pump(c);
    }
}

/* Reads the PROXY header, never a byte past it (those belong to TLS or IMAP). */
static void proxy_read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    struct proxy_info info;
    enum proxy_result r = PROXY_NEED_MORE;
    const char *error = NULL;
    while (r == PROXY_NEED_MORE && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        size_t used = 0;
        r = proxy_feed(c->proxy, v.iov_base, v.iov_len, &used, &info, &error);
        evbuffer_drain(in, used);
    }
    if (r == PROXY_NEED_MORE)
        return;
    if (r == PROXY_ERROR) {
        log_write(LOG_WARN, "conn.proxy_error", "conn=%llu peer=%s error=\"%s\"",
                  (unsigned long long)c->id, c->peer, error);
        metrics_inc(METRICS_PROXY_REJECTED);
        conn_kill(c);
        return;
    }
    proxy_done(c, &info);
}

int conn_accept(struct frontend *fe, int fd, const struct sockaddr *addr, int addrlen,
                bool implicit_tls)
{
    const struct config *cfg = fe->cfg;
    if (cfg->proxy_protocol &&
        !proxy_cidr_match(cfg->proxy_trusted, cfg->proxy_trusted_count, addr)) {
        /* Only a trusted proxy may name the client; anyone else could claim any address. */
        char peer[INET6_ADDRSTRLEN + 8];
        format_peer(peer, sizeof(peer), addr);
        log_write(LOG_WARN, "conn.proxy_untrusted", "peer=%s", peer);
        metrics_inc(METRICS_PROXY_REJECTED);
        metrics_inc(METRICS_CONN_REFUSED);
        close(fd);
        return 0;
    }
    int one = 1;
    /* Dead peers of long IDLEs are found by TCP keepalive: first probe after 5 minutes idle, then
     * every minute, dropped after 5 unanswered (best effort: these only tune the kernel). */
    int idle_s = 300, intvl_s = 60, cnt = 5;
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl_s, sizeof(intvl_s));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));

    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        close(fd);
        return -1;
    }
    c->fe = fe;
    user_limits_default(&c->ulimits);
    c->id = ++fe->next_conn_id;
    c->state = CONN_STATE_NOT_AUTH;
    c->limits = &cfg->preauth;
    format_peer(c->peer, sizeof(c->peer), addr);
    c->loopback = conn_addr_is_loopback(addr);
    if (addrlen > 0)
        memcpy(&c->addr, addr, (size_t)addrlen < sizeof(c->addr) ? (size_t)addrlen : sizeof(c->addr));
    bool proxy = cfg->proxy_protocol;
    if (proxy) {
        c->proxy = malloc(sizeof(*c->proxy));
        if (c->proxy != NULL)
            proxy_parser_init(c->proxy);
        c->tls_after_proxy = implicit_tls;
    }
    c->q_cap = cfg->max_queued + 1;
    c->queue = calloc(c->q_cap, sizeof(*c->queue));
    c->parser = parser_new(&c->limits->parser);
    c->bev = bufferevent_socket_new(fe->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (c->bev != NULL) {
        evbuffer_add_cb(bufferevent_get_input(c->bev), count_in_cb, NULL);
        evbuffer_add_cb(bufferevent_get_output(c->bev), count_out_cb, NULL);
    }
    const char *tls_error = NULL;
    bool tls_failed = implicit_tls && !proxy && c->bev != NULL && conn_wrap_tls(c, &tls_error) != 0;
    if (tls_failed)
        log_write(LOG_ERROR, "conn.tls_failed", "peer=%s error=\"%s\"", c->peer, tls_error);
    c->idle_timer = evtimer_new(fe->base, idle_cb, c);
    c->wait_timer = evtimer_new(fe->base, conn_wait_timer_cb, c);
    if (c->queue == NULL || c->parser == NULL || c->bev == NULL || c->idle_timer == NULL ||
        c->wait_timer == NULL || tls_failed || (proxy && c->proxy == NULL)) {
        if (c->bev != NULL)
            bufferevent_free(c->bev);
        else
            close(fd);
        parser_free(&c->parser);
        free(c->queue);
        if (c->idle_timer != NULL)
            event_free(c->idle_timer);
        if (c->wait_timer != NULL)
            event_free(c->wait_timer);
        free(c->proxy);
        free(c);
        return -1;
    }
    table_insert(fe->conns, c);
    metrics_inc(METRICS_CONN_ACCEPTED);
    log_write(LOG_INFO, "conn.open", "conn=%llu peer=%s", (unsigned long long)c->id, c->peer);
    if (proxy) {
        /* Nothing is said before the header: the greeting (or TLS) follows it. */
        bufferevent_setcb(c->bev, proxy_read_cb, NULL, conn_event_cb, c);
        bufferevent_enable(c->bev, EV_READ);
        arm_idle_timer(c);
        return 0;
    }
    bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
    conn_begin(c);
    return 0;
}
