/* nvinfer serve: the HTTP side, on libmicrohttpd.
 *
 * libmicrohttpd runs one thread per connection (MHD_USE_THREAD_PER_CONNECTION), so a connection
 * thread may block: it waits for its job's output on the job's eventfd while the listening thread
 * keeps accepting. Each request goes through, in order:
 *   1. route lookup (404/405), API key check (401) and the Content-Length check (413), all on the
 *      first call, before a byte of the body is read and before any model work;
 *   2. body accumulation up to --max-body (413 when a body without a length grows past it);
 *   3. parsing and tokenizing (400), then submission to the scheduler (503 when the queue is full
 *      or the server is draining);
 *   4. the answer: a streaming response whose reader callback takes the bytes the worker appends,
 *      or, for a non-streaming request, a wait for the worker to finish.
 * While it waits, the connection thread also polls the client's socket for a hang-up (POLLRDHUP),
 * so a client that goes away cancels its job at once, whether it was queued, evaluating its
 * prompt or streaming. */
#include <errno.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "serve.h"

enum {
    IDLE_TIMEOUT_S = 60,       /* a connection with no request in flight */
    STREAM_BLOCK = 16 * 1024,  /* bytes per reader callback */
    THREAD_STACK = 512 * 1024, /* per connection thread */
    DISCARD_LIMIT = 64u << 20, /* bytes of an oversized body read before hanging up */
};

struct route {
    const char *method;
    const char *path;
    bool prefix; /* path is a prefix ("/v1/models/ID") */
    enum serve_route_id id;
};

/* Aliases without /v1 are what llama.cpp's server also accepts. */
static const struct route routes[] = {
    {"GET", "/health", false, SERVE_ROUTE_HEALTH},
    {"GET", "/metrics", false, SERVE_ROUTE_METRICS},
    {"GET", "/v1/models", false, SERVE_ROUTE_MODELS},
    {"GET", "/models", false, SERVE_ROUTE_MODELS},
    {"GET", "/v1/models/", true, SERVE_ROUTE_MODEL},
    {"POST", "/v1/chat/completions", false, SERVE_ROUTE_CHAT},
    {"POST", "/chat/completions", false, SERVE_ROUTE_CHAT},
    {"POST", "/v1/completions", false, SERVE_ROUTE_COMPLETION},
    {"POST", "/completions", false, SERVE_ROUTE_COMPLETION},
    {"POST", "/api/generate", false, SERVE_ROUTE_OLLAMA_GENERATE},
    {"POST", "/api/chat", false, SERVE_ROUTE_OLLAMA_CHAT},
    {"GET", "/api/tags", false, SERVE_ROUTE_OLLAMA_TAGS},
    {"POST", "/api/show", false, SERVE_ROUTE_OLLAMA_SHOW},
    {"GET", "/api/version", false, SERVE_ROUTE_OLLAMA_VERSION},
    {"GET", "/", false, SERVE_ROUTE_ROOT},
};

/* Per-request state, MHD's con_cls. */
struct request {
    enum serve_route_id id;
    bool post;
    struct serve_buf body;
    size_t discarded; /* bytes of an oversized body thrown away */
    bool too_large;
    bool answered; /* a response is queued */
    bool model_ok; /* GET /v1/models/ID names the served model */
    unsigned code;
    struct serve_job *job;
    uint64_t t0;
    char method[8];
    char path[64];
};

/* The reader of a streaming response. */
struct stream {
    struct serve_server *srv;
    struct serve_job *job;
    int fd; /* the client's socket */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool is_ollama_route(enum serve_route_id id)
{
    return id == SERVE_ROUTE_OLLAMA_GENERATE || id == SERVE_ROUTE_OLLAMA_CHAT ||
           id == SERVE_ROUTE_OLLAMA_TAGS || id == SERVE_ROUTE_OLLAMA_SHOW ||
           id == SERVE_ROUTE_OLLAMA_VERSION;
}

/* Finds the route; *wrong_method is set when the path exists for another method only. */
static enum serve_route_id route_find(const char *method, const char *url, bool *wrong_method)
{
    const bool head = strcmp(method, "HEAD") == 0;
    *wrong_method = false;
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        const struct route *r = &routes[i];
        bool match =
            r->prefix ? strncmp(url, r->path, strlen(r->path)) == 0 && url[strlen(r->path)] != '\0'
                      : strcmp(url, r->path) == 0;
        if (!match)
            continue;
        if (strcmp(method, r->method) == 0 || (head && strcmp(r->method, "GET") == 0))
            return r->id;
        *wrong_method = true;
    }
    return SERVE_ROUTE_OTHER;
}

/* Constant-time comparison: the time depends on the length of the expected key only. */
static bool key_equal(const char *given, size_t given_len, const char *key, size_t key_len)
{
    volatile unsigned char diff = given_len != key_len;
    for (size_t i = 0; i < key_len; i++) {
        unsigned char g = i < given_len ? (unsigned char)given[i] : 0;
        diff |= g ^ (unsigned char)key[i];
    }
    return diff == 0;
}

static bool auth_ok(const struct serve_server *srv, struct MHD_Connection *c)
{
    const char *h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return key_equal(h, strlen(h), srv->cfg.api_key, strlen(srv->cfg.api_key));
}

/* ------------------------------------------------------------------------------------------ */
/* Responses */

static enum MHD_Result respond(struct serve_server *srv, struct MHD_Connection *c,
                               struct request *rq, unsigned code, const char *ctype,
                               const char *body, size_t len, const char *hdr, const char *val)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
    if (hdr)
        MHD_add_response_header(r, hdr, val);
    enum MHD_Result ret = MHD_queue_response(c, code, r);
    MHD_destroy_response(r);
    if (ret == MHD_YES) {
        rq->answered = true;
        rq->code = code;
        serve_metrics_count_response(&srv->metrics, code);
    }
    return ret;
}

static enum MHD_Result respond_json(struct serve_server *srv, struct MHD_Connection *c,
                                    struct request *rq, unsigned code, const struct serve_buf *b)
{
    return respond(srv, c, rq, code, "application/json", b->data ? b->data : "", b->len, NULL,
                   NULL);
}

/* An error in the format of the route's API: Ollama's {"error": "..."} on /api/, OpenAI's
 * {"error": {"message", "type", "code"}} everywhere else. */
static enum MHD_Result respond_error(struct serve_server *srv, struct MHD_Connection *c,
                                     struct request *rq, unsigned code, const char *type,
                                     const char *err_code, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

static enum MHD_Result respond_error(struct serve_server *srv, struct MHD_Connection *c,
                                     struct request *rq, unsigned code, const char *type,
                                     const char *err_code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    struct serve_buf b = {0};
    int rc = is_ollama_route(rq->id) ? serve_api_error_ollama(&b, msg)
                                     : serve_api_error_openai(&b, type, err_code, msg);
    enum MHD_Result ret = MHD_NO;
    if (!rc) {
        const char *hdr = NULL, *val = NULL;
        if (code == MHD_HTTP_SERVICE_UNAVAILABLE) {
            hdr = MHD_HTTP_HEADER_RETRY_AFTER;
            val = "1";
        } else if (code == MHD_HTTP_UNAUTHORIZED) {
            hdr = MHD_HTTP_HEADER_WWW_AUTHENTICATE;
            val = "Bearer";
        }
        ret = respond(srv, c, rq, code, "application/json", b.data, b.len, hdr, val);
    }
    serve_buf_fini(&b);
    return ret;
}

/* ------------------------------------------------------------------------------------------ */
/* Waiting for a job */

/* Waits until the worker signals the job or the client hangs up. Returns 0 or -ECONNRESET. */
static int job_wait(struct serve_job *job, int fd)
{
    struct pollfd p[2] = {
        {.fd = job->evfd, .events = POLLIN},
        {.fd = fd, .events = POLLRDHUP},
    };
    for (;;) {
        int n = poll(p, fd >= 0 ? 2 : 1, -1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (fd >= 0 && (p[1].revents & (POLLRDHUP | POLLHUP | POLLERR)))
            return -ECONNRESET;
        if (p[0].revents & POLLIN) {
            uint64_t v;
            ssize_t r = read(job->evfd, &v, sizeof(v));
            (void)r; /* EAGAIN only: another reader cannot exist */
            return 0;
        }
    }
}

static int connection_fd(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    return ci ? ci->connect_fd : -1;
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    struct serve_job *job = st->job;
    for (;;) {
        pthread_mutex_lock(&job->mu);
        size_t avail = job->out.len - job->out_off;
        if (avail) {
            size_t n = avail < max ? avail : max;
            memcpy(buf, job->out.data + job->out_off, n);
            job->out_off += n;
            if (job->out_off == job->out.len)
                job->out.len = job->out_off = 0;
            pthread_mutex_unlock(&job->mu);
            atomic_fetch_add(&st->srv->metrics.bytes_streamed, n);
            return (ssize_t)n;
        }
        bool done = job->done;
        pthread_mutex_unlock(&job->mu);
        if (done)
            return job->finish == SERVE_FINISH_CANCELLED ? MHD_CONTENT_READER_END_WITH_ERROR
                                                         : MHD_CONTENT_READER_END_OF_STREAM;
        if (job_wait(job, st->fd)) {
            atomic_store(&job->cancel, true);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void stream_free(void *cls)
{
    struct stream *st = cls;
    serve_job_put(st->job);
    free(st);
}

/* ------------------------------------------------------------------------------------------ */
/* Generation requests */

static enum serve_api route_api(enum serve_route_id id)
{
    switch (id) {
    case SERVE_ROUTE_CHAT:
        return SERVE_API_CHAT;
    case SERVE_ROUTE_COMPLETION:
        return SERVE_API_COMPLETION;
    case SERVE_ROUTE_OLLAMA_GENERATE:
        return SERVE_API_OLLAMA_GENERATE;
    default:
        return SERVE_API_OLLAMA_CHAT;
    }
}

static enum MHD_Result handle_generate(struct serve_server *srv, struct MHD_Connection *c,
                                       struct request *rq)
{
    if (atomic_load(&srv->draining))
        return respond_error(srv, c, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error",
                             "shutting_down", "the server is shutting down");
    struct serve_job *job = serve_job_create(srv->sched);
    if (!job)
        return MHD_NO;
    rq->job = job;
    job->t_received = rq->t0;

    char err[512] = "";
    const enum serve_api api = route_api(rq->id);
    int rc = serve_api_parse(srv, api, rq->body.data, rq->body.len, job, err, sizeof(err));
    if (rc == -EINVAL)
        return respond_error(srv, c, rq, MHD_HTTP_BAD_REQUEST, "invalid_request_error", NULL, "%s",
                             err);
    if (rc < 0)
        return respond_error(srv, c, rq, MHD_HTTP_INTERNAL_SERVER_ERROR, "server_error", NULL,
                             "out of memory");
    if (rc == 1) {
        struct serve_buf b = {0};
        enum MHD_Result ret = MHD_NO;
        if (!serve_api_ollama_load(srv, job, &b))
            ret = respond(srv, c, rq, MHD_HTTP_OK,
                          job->stream ? "application/x-ndjson" : "application/json", b.data, b.len,
                          NULL, NULL);
        serve_buf_fini(&b);
        return ret;
    }

    rc = serve_sched_submit(srv->sched, job);
    if (rc == -EAGAIN) {
        struct serve_sched_stats st;
        serve_sched_stats(srv->sched, &st);
        return respond_error(srv, c, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error", "queue_full",
                             "the request queue is full (%d waiting, --queue %d); retry later",
                             st.queued, st.capacity);
    }
    if (rc)
        return respond_error(srv, c, rq, MHD_HTTP_SERVICE_UNAVAILABLE, "server_error",
                             "shutting_down", "the server is shutting down");

    /* The job may run for longer than the idle timeout; on_completed restores it. */
    MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, 0u);
    const int fd = connection_fd(c);

    if (job->stream) {
        struct stream *st = calloc(1, sizeof(*st));
        if (!st) {
            atomic_store(&job->cancel, true);
            return MHD_NO;
        }
        st->srv = srv;
        st->job = job;
        st->fd = fd;
        serve_job_get(job);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, STREAM_BLOCK,
                                                                   stream_read, st, stream_free);
        if (!r) {
            stream_free(st);
            atomic_store(&job->cancel, true);
            return MHD_NO;
        }
        const bool sse = api == SERVE_API_CHAT || api == SERVE_API_COMPLETION;
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE,
                                sse ? "text/event-stream" : "application/x-ndjson");
        MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        MHD_add_response_header(r, "X-Accel-Buffering", "no");
        enum MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, r);
        MHD_destroy_response(r);
        if (ret == MHD_YES) {
            rq->answered = true;
            rq->code = MHD_HTTP_OK;
            serve_metrics_count_response(&srv->metrics, MHD_HTTP_OK);
        } else {
            atomic_store(&job->cancel, true);
        }
        return ret;
    }

    for (;;) {
        pthread_mutex_lock(&job->mu);
        bool done = job->done;
        pthread_mutex_unlock(&job->mu);
        if (done)
            break;
        if (job_wait(job, fd)) {
            atomic_store(&job->cancel, true);
            return MHD_NO; /* the client is gone: close without an answer */
        }
    }
    /* done: the worker no longer touches out. */
    atomic_fetch_add(&srv->metrics.bytes_streamed, job->out.len - job->out_off);
    return respond(srv, c, rq, job->http_status, "application/json",
                   job->out.data ? job->out.data + job->out_off : "", job->out.len - job->out_off,
                   NULL, NULL);
}

/* ------------------------------------------------------------------------------------------ */
/* Dispatch */

static enum MHD_Result handle(struct serve_server *srv, struct MHD_Connection *c,
                              struct request *rq)
{
    struct serve_buf b = {0};
    enum MHD_Result ret = MHD_NO;
    char err[512] = "";
    int rc = 0;
    switch (rq->id) {
    case SERVE_ROUTE_CHAT:
    case SERVE_ROUTE_COMPLETION:
    case SERVE_ROUTE_OLLAMA_GENERATE:
    case SERVE_ROUTE_OLLAMA_CHAT:
        return handle_generate(srv, c, rq);
    case SERVE_ROUTE_HEALTH: {
        const bool draining = atomic_load(&srv->draining);
        const char *body = draining ? "{\"status\":\"draining\"}" : "{\"status\":\"ok\"}";
        return respond(srv, c, rq, draining ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK,
                       "application/json", body, strlen(body), NULL, NULL);
    }
    case SERVE_ROUTE_METRICS:
        rc = serve_metrics_render(srv, &b);
        if (!rc)
            ret = respond(srv, c, rq, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                          b.data, b.len, NULL, NULL);
        break;
    case SERVE_ROUTE_MODELS:
        rc = serve_api_models(srv, &b);
        if (!rc)
            ret = respond_json(srv, c, rq, MHD_HTTP_OK, &b);
        break;
    case SERVE_ROUTE_MODEL:
        if (!rq->model_ok) {
            ret = respond_error(srv, c, rq, MHD_HTTP_NOT_FOUND, "invalid_request_error",
                                "model_not_found", "no such model (this server has '%s')",
                                srv->info.id);
            break;
        }
        rc = serve_api_model(srv, &b);
        if (!rc)
            ret = respond_json(srv, c, rq, MHD_HTTP_OK, &b);
        break;
    case SERVE_ROUTE_OLLAMA_TAGS:
        rc = serve_api_tags(srv, &b);
        if (!rc)
            ret = respond_json(srv, c, rq, MHD_HTTP_OK, &b);
        break;
    case SERVE_ROUTE_OLLAMA_SHOW:
        rc = serve_api_show(srv, rq->body.data, rq->body.len, &b, err, sizeof(err));
        if (rc == -EINVAL)
            ret = respond_error(srv, c, rq, MHD_HTTP_BAD_REQUEST, "invalid_request_error", NULL,
                                "%s", err);
        else if (!rc)
            ret = respond_json(srv, c, rq, MHD_HTTP_OK, &b);
        break;
    case SERVE_ROUTE_OLLAMA_VERSION: {
        const char *body = "{\"version\":\"" NVL_VERSION "\"}";
        ret = respond(srv, c, rq, MHD_HTTP_OK, "application/json", body, strlen(body), NULL, NULL);
        break;
    }
    case SERVE_ROUTE_ROOT: {
        const char *body = "nvload is running\n";
        ret = respond(srv, c, rq, MHD_HTTP_OK, "text/plain", body, strlen(body), NULL, NULL);
        break;
    }
    default:
        break;
    }
    serve_buf_fini(&b);
    return ret;
}

/* First call of a request: everything that can be refused before reading the body. */
static enum MHD_Result on_headers(struct serve_server *srv, struct MHD_Connection *c,
                                  struct request *rq, const char *url, const char *method)
{
    bool wrong_method;
    rq->id = route_find(method, url, &wrong_method);
    rq->post = strcmp(method, "POST") == 0;
    snprintf(rq->method, sizeof(rq->method), "%s", method);
    snprintf(rq->path, sizeof(rq->path), "%s", url); /* for the log only: may be cut short */
    rq->model_ok =
        rq->id == SERVE_ROUTE_MODEL && strcmp(url + strlen("/v1/models/"), srv->info.id) == 0;
    atomic_fetch_add(&srv->metrics.requests[rq->id], 1);

    if (rq->id == SERVE_ROUTE_OTHER && wrong_method)
        return respond_error(srv, c, rq, MHD_HTTP_METHOD_NOT_ALLOWED, "invalid_request_error", NULL,
                             "%s is not allowed on %.64s", method, url);
    if (rq->id == SERVE_ROUTE_OTHER)
        return respond_error(srv, c, rq, MHD_HTTP_NOT_FOUND, "invalid_request_error", NULL,
                             "no endpoint %.64s", url);
    if (srv->cfg.api_key && rq->id != SERVE_ROUTE_HEALTH && !auth_ok(srv, c))
        return respond_error(srv, c, rq, MHD_HTTP_UNAUTHORIZED, "authentication_error",
                             "invalid_api_key",
                             "a valid API key is required (Authorization: Bearer KEY)");
    const char *cl =
        MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end;
        errno = 0;
        unsigned long long n = strtoull(cl, &end, 10);
        if (errno || end == cl || n > srv->cfg.max_body)
            return respond_error(
                srv, c, rq, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error", "body_too_large",
                "the request body exceeds %zu bytes (--max-body)", srv->cfg.max_body);
    }
    return MHD_YES;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)version;
    struct serve_server *srv = cls;
    struct request *rq = *con_cls;
    if (!rq) {
        rq = calloc(1, sizeof(*rq));
        if (!rq)
            return MHD_NO;
        rq->t0 = now_ns();
        *con_cls = rq;
        return on_headers(srv, c, rq, url, method);
    }
    if (rq->answered) {
        /* Refused on the headers: the rest of the body is not read (MHD closes afterwards). */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rq->too_large || n > srv->cfg.max_body - rq->body.len) {
            /* A body without Content-Length that grew too large: MHD accepts no response in
             * the middle of an upload, so the rest is read and dropped (up to a bound). */
            rq->too_large = true;
            serve_buf_fini(&rq->body);
            rq->discarded += n;
            return rq->discarded > DISCARD_LIMIT ? MHD_NO : MHD_YES;
        }
        return serve_buf_append(&rq->body, upload_data, n) ? MHD_NO : MHD_YES;
    }
    if (rq->too_large)
        return respond_error(srv, c, rq, MHD_HTTP_CONTENT_TOO_LARGE, "invalid_request_error",
                             "body_too_large", "the request body exceeds %zu bytes (--max-body)",
                             srv->cfg.max_body);
    return handle(srv, c, rq);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct serve_server *srv = cls;
    struct request *rq = *con_cls;
    if (!rq)
        return;
    *con_cls = NULL;
    if (rq->job) {
        if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
            atomic_store(&rq->job->cancel, true);
        MHD_set_connection_option(c, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)IDLE_TIMEOUT_S);
    }
    if (srv->cfg.verbose) {
        double s = (double)(now_ns() - rq->t0) / 1e9;
        /* A job's results may be read once it is done (the worker may still run it when the
         * client is gone). */
        bool done = false;
        if (rq->job) {
            pthread_mutex_lock(&rq->job->mu);
            done = rq->job->done;
            pthread_mutex_unlock(&rq->job->mu);
        }
        if (done)
            fprintf(stderr,
                    "nvinfer serve: %s %s %u%s, %.3f s, %d prompt tokens (%d cached), %d "
                    "generated\n",
                    rq->method, rq->path, rq->code,
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)", s,
                    rq->job->n_prompt, rq->job->n_cached, rq->job->n_generated);
        else
            fprintf(stderr, "nvinfer serve: %s %s %u%s, %.3f s\n", rq->method, rq->path, rq->code,
                    toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)", s);
    }
    serve_job_put(rq->job);
    serve_buf_fini(&rq->body);
    free(rq);
}

static void on_mhd_log(void *cls, const char *fmt, va_list ap)
{
    struct serve_server *srv = cls;
    if (!srv->cfg.verbose)
        return;
    fputs("nvinfer serve: libmicrohttpd: ", stderr);
    vfprintf(stderr, fmt, ap);
}

struct MHD_Daemon *serve_http_start(struct serve_server *srv, int listen_fd,
                                    unsigned max_connections, bool ipv6)
{
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_POLL | MHD_USE_ERROR_LOG;
    if (ipv6)
        flags |= MHD_USE_IPv6;
    /* The logger goes first so that it catches errors about the other options. */
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, srv, MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, srv,
        MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_NOTIFY_COMPLETED, on_completed, srv,
        MHD_OPTION_CONNECTION_LIMIT, max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)IDLE_TIMEOUT_S, MHD_OPTION_THREAD_STACK_SIZE, (size_t)THREAD_STACK,
        MHD_OPTION_END);
    if (!d)
        fprintf(stderr, "nvinfer serve: libmicrohttpd failed to start\n");
    return d;
}

void serve_http_stop(struct MHD_Daemon *d)
{
    if (d)
        MHD_stop_daemon(d);
}
