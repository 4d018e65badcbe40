/* nvinfer serve: an OpenAI- and Ollama-compatible HTTP server on one loaded model.
 *
 * Threads (docs/serve.md has the whole picture):
 *   - libmicrohttpd's listening thread accepts connections and gives each its own thread
 *     (MHD_USE_THREAD_PER_CONNECTION). A connection thread parses the request, checks the API key
 *     and the body size, tokenizes the prompt and submits a job to the scheduler, then waits for
 *     the job's output on a per-job byte queue. It never runs the model.
 *   - The scheduler owns N worker threads, one per inference session (KV cache). A worker takes
 *     the oldest queued job, evaluates its prompt (reusing the longest prefix its KV cache already
 *     holds), samples tokens and appends the formatted response bytes (SSE events, NDJSON lines or
 *     a whole JSON body) to the job's output queue, signalling an eventfd.
 *   - The main thread waits for SIGTERM/SIGINT, then drains: new generation requests get 503,
 *     queued and running jobs finish, and the process exits 0.
 *
 * Files: serve.c (options, start-up, drain), serve_http.c (routes, auth, bodies, streaming),
 * serve_api.c (OpenAI/Ollama JSON in and out), serve_sched.c (queue, workers, generation),
 * serve_text.c (byte buffers, UTF-8, stop strings), serve_metrics.c (Prometheus text). */
#ifndef NVINFER_SERVE_H
#define NVINFER_SERVE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvinfer.h"

/* `nvinfer serve ...`: returns the process exit status. */
int nvinfer_serve(int argc, char **argv);

/* ------------------------------------------------------------------------------------------ */
/* Text: growable byte buffers, UTF-8, stop strings (serve_text.c; no dependencies, unit-tested) */

struct serve_buf {
    char *data; /* NUL-terminated when len > 0 or after serve_buf_reserve */
    size_t len;
    size_t cap;
};

/* Returns 0 or -ENOMEM. */
int serve_buf_reserve(struct serve_buf *b, size_t extra);
int serve_buf_append(struct serve_buf *b, const void *data, size_t len);
int serve_buf_puts(struct serve_buf *b, const char *s);
int serve_buf_printf(struct serve_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
void serve_buf_fini(struct serve_buf *b);

/* Bytes at the end of s[0..len) that begin a UTF-8 sequence but do not complete it (0..3): text
 * handed out must stop before them until the next token completes the character. */
size_t serve_utf8_incomplete_tail(const char *s, size_t len);
/* Appends s[0..len) to out with every invalid UTF-8 sequence (and every NUL byte) replaced by
 * U+FFFD, so the JSON writer never emits bytes a client's decoder rejects. Returns 0 or -ENOMEM. */
int serve_utf8_sanitize(struct serve_buf *out, const char *s, size_t len);
/* Whether s[0..len) is valid UTF-8 without NUL bytes. */
bool serve_utf8_valid(const char *s, size_t len);

/* Generated text with stop strings. Text goes in token piece by token piece; what comes out is
 * the part no stop string can still claim: a suffix that is a prefix of a stop string is held
 * back, as is an incomplete UTF-8 character, so a stop string never leaks into a stream, not even
 * in part. When a stop string appears the text ends just before it. */
struct serve_stop {
    char **strs; /* the stop strings (owned), none empty */
    size_t *lens;
    size_t n;
    struct serve_buf text; /* everything generated, cut at the stop string once one is found */
    size_t emitted;        /* text[0..emitted) has been handed out */
    bool hit;              /* a stop string was found */
};

/* Takes copies of the non-empty strings. Returns 0 or -ENOMEM. */
int serve_stop_init(struct serve_stop *s, const char *const *strs, size_t n);
void serve_stop_fini(struct serve_stop *s);
/* Appends a piece and reports the text that became safe to hand out: text.data[*off..*off+*len).
 * After a hit no more pieces may be pushed. Returns 0 or -ENOMEM. */
int serve_stop_push(struct serve_stop *s, const char *piece, size_t len, size_t *off,
                    size_t *out_len);
/* At the end of generation (no hit): everything not handed out yet. */
void serve_stop_flush(struct serve_stop *s, size_t *off, size_t *out_len);

/* ------------------------------------------------------------------------------------------ */
/* Jobs: one generation request, shared by its connection thread and a worker */

enum serve_api {
    SERVE_API_CHAT = 0,       /* POST /v1/chat/completions */
    SERVE_API_COMPLETION = 1, /* POST /v1/completions */
    SERVE_API_OLLAMA_GENERATE = 2,
    SERVE_API_OLLAMA_CHAT = 3,
};

enum serve_finish {
    SERVE_FINISH_STOP = 0,      /* end-of-generation token or a stop string */
    SERVE_FINISH_LENGTH = 1,    /* max_tokens, or the context is full */
    SERVE_FINISH_CANCELLED = 2, /* the client went away */
    SERVE_FINISH_ERROR = 3,     /* the model failed */
};

struct serve_job {
    /* Set by the connection thread before submission, read-only afterwards. */
    enum serve_api api;
    bool stream;
    bool include_usage; /* OpenAI stream_options.include_usage */
    int32_t *prompt;    /* prompt token ids (owned) */
    int32_t n_prompt;   /* >= 1 */
    int32_t n_predict;  /* < 0: until end of generation or a full context */
    char **stop;        /* stop strings (owned) */
    size_t n_stop;      /* count of stop */
    struct nvl_sampler_params sampling;
    char id[48];          /* "chatcmpl-...", "cmpl-..." */
    int64_t created;      /* Unix seconds */
    uint64_t t_received;  /* CLOCK_MONOTONIC ns, for Ollama's total_duration */
    const char *model_id; /* the served model's name (the server's) */

    /* Output queue, under mu: the worker appends, the connection thread takes. */
    pthread_mutex_t mu;
    int evfd;             /* eventfd: signalled after each append and at the end */
    struct serve_buf out; /* response bytes not yet taken: out.data[out_off..out.len) */
    size_t out_off;
    bool done;            /* the worker has finished; out holds the rest */
    unsigned http_status; /* for non-streaming responses: 200, or 500 on a model error */
    atomic_bool cancel;   /* the client went away: stop between tokens */
    atomic_int refs;      /* connection, response, worker */

    /* Results, written by the worker before done. */
    int32_t n_generated; /* tokens sampled, the end-of-generation token excluded */
    int32_t n_cached;    /* prompt tokens reused from the KV cache */
    int32_t n_evaluated; /* prompt tokens evaluated (fewer than the rest when cancelled) */
    enum serve_finish finish;
    uint64_t prompt_ns;   /* prompt evaluation */
    uint64_t generate_ns; /* first sample to the end */

    struct serve_job *next;    /* scheduler queue link */
    struct serve_sched *sched; /* counts the job as alive */
};

struct serve_sched;

/* Returns a job with one reference, or NULL. The scheduler counts it as alive until its last
 * reference is dropped (drain waits for that). */
struct serve_job *serve_job_create(struct serve_sched *sched);
void serve_job_get(struct serve_job *job);
void serve_job_put(struct serve_job *job);
/* Worker side: append bytes and wake the connection thread. Returns 0 or -ENOMEM. */
int serve_job_emit(struct serve_job *job, const void *data, size_t len);
/* Worker side: mark the job finished and wake the connection thread. */
void serve_job_finish(struct serve_job *job);

/* ------------------------------------------------------------------------------------------ */
/* Metrics (serve_metrics.c) */

enum serve_route_id {
    SERVE_ROUTE_HEALTH = 0,
    SERVE_ROUTE_METRICS,
    SERVE_ROUTE_MODELS,
    SERVE_ROUTE_MODEL,
    SERVE_ROUTE_CHAT,
    SERVE_ROUTE_COMPLETION,
    SERVE_ROUTE_OLLAMA_GENERATE,
    SERVE_ROUTE_OLLAMA_CHAT,
    SERVE_ROUTE_OLLAMA_TAGS,
    SERVE_ROUTE_OLLAMA_SHOW,
    SERVE_ROUTE_OLLAMA_VERSION,
    SERVE_ROUTE_ROOT,
    SERVE_ROUTE_OTHER, /* no such route */
    SERVE_ROUTE_COUNT,
};

const char *serve_route_name(enum serve_route_id id);

/* Status codes the server answers with, counted by code. */
enum { SERVE_CODE_SLOTS = 10 };

struct serve_metrics {
    atomic_uint_fast64_t requests[SERVE_ROUTE_COUNT];
    atomic_uint_fast64_t responses[SERVE_CODE_SLOTS];
    atomic_uint_fast64_t tokens_generated;
    atomic_uint_fast64_t prompt_tokens;        /* evaluated */
    atomic_uint_fast64_t prompt_tokens_cached; /* reused from a KV cache */
    atomic_uint_fast64_t generate_ns;
    atomic_uint_fast64_t prompt_ns;
    atomic_uint_fast64_t bytes_streamed;
    atomic_uint_fast64_t disconnects;
    atomic_uint_fast64_t jobs_completed;
    atomic_uint_fast64_t last_tokens_per_s_milli; /* of the last finished job, x1000 */
    uint64_t t_start;                             /* CLOCK_MONOTONIC ns */
};

void serve_metrics_count_response(struct serve_metrics *m, unsigned code);

/* ------------------------------------------------------------------------------------------ */
/* Scheduler (serve_sched.c) */

struct serve_sched_stats {
    int32_t queued;   /* jobs waiting for a worker */
    int32_t active;   /* jobs being generated */
    int32_t capacity; /* queue length */
    int32_t workers;
    int32_t jobs_alive; /* jobs not yet freed (responses still being sent included) */
};

/* Starts n_workers workers; worker 0 uses m->session, the others get sessions of their own with
 * the same parameters. Returns 0 or -errno. */
int serve_sched_create(struct nvinfer_model *m, const struct nvl_session_params *sp,
                       int32_t n_workers, int32_t queue_len, struct serve_metrics *metrics,
                       struct serve_sched **out);
/* Stops the workers (after the queue is empty) and frees their sessions but not m->session. */
void serve_sched_destroy(struct serve_sched *s);
/* Queues a job (taking a reference). Returns 0, -EAGAIN when queue_len jobs already wait for a
 * busy worker, or -ESHUTDOWN while draining. */
int serve_sched_submit(struct serve_sched *s, struct serve_job *job);
/* Refuse new jobs from now on. */
void serve_sched_drain(struct serve_sched *s);
void serve_sched_stats(struct serve_sched *s, struct serve_sched_stats *st);
/* Cancels every queued and running job (the drain timeout). */
void serve_sched_cancel_all(struct serve_sched *s);
/* Waits until no job is queued, running or being sent, up to timeout_ms. Returns true if idle. */
bool serve_sched_wait_idle(struct serve_sched *s, int timeout_ms);

/* ------------------------------------------------------------------------------------------ */
/* Server (serve_http.c) */

struct serve_model_info {
    const char *id;        /* model name clients use */
    const char *path;      /* GGUF file */
    uint64_t file_size;    /* bytes */
    int64_t mtime;         /* Unix seconds */
    uint64_t n_params;     /* parameters (elements of every tensor) */
    char quant[16];        /* "Q4_1", ...: the type that holds most of the bytes */
    const char *jinja;     /* the file's chat template, or "" */
    const char *backend;   /* "cpu" or "gpu" */
    char data_path[48];    /* where the weights are read from during inference: "mmap" (the
                              file's page cache), "ram" (read from a drive at start), or the GPU
                              tiers in use ("vram", "vram+ram+stream", ...) */
    const char *source;    /* "file", "nvme" or "sim": where the model comes from */
    const char *loader;    /* the Layer Loader backend asked for (--backend), "auto", or "none"
                              when no loader reads during inference */
    const char *kernels;   /* "avx2", "generic" or "cuda" */
    int32_t gpu_layers[3]; /* GPU: layers in VRAM, pinned RAM, streamed */
    int32_t n_ctx;         /* context length of each session */
};

struct serve_config {
    const char *api_key; /* NULL: no authentication */
    size_t max_body;     /* bytes */
    bool verbose;
};

struct serve_server {
    struct serve_config cfg;
    struct serve_model_info info;
    struct nvinfer_model *m;
    struct serve_sched *sched;
    struct serve_metrics metrics;
    struct nvl_sampler_params defaults; /* sampling of requests that set nothing */
    bool defaults_seed_set;             /* --seed: requests without a seed use it */
    int32_t default_n_predict;          /* -n: max_tokens of requests without one; -1 */
    atomic_bool draining;
    atomic_uint_fast64_t id_counter;
    uint64_t id_salt;
};

/* Parses a generation request body for an API and fills in the job (prompt, sampling, stop...).
 * On a client error returns -EINVAL with a message in err; -ENOMEM otherwise. For Ollama requests
 * with nothing to generate (an empty prompt: Ollama's "load the model" call) returns 1 and leaves
 * the job without a prompt. (serve_api.c) */
int serve_api_parse(struct serve_server *srv, enum serve_api api, const char *body, size_t len,
                    struct serve_job *job, char *err, size_t err_len);
/* The body of the Ollama answer to a request with nothing to generate. */
int serve_api_ollama_load(struct serve_server *srv, struct serve_job *job, struct serve_buf *out);
/* Worker side: the opening bytes of a stream (OpenAI chat's role delta), a piece of text, and the
 * end of the response (final chunk, usage and [DONE], or the whole non-streaming body). */
int serve_api_stream_begin(struct serve_job *job, struct serve_buf *out);
int serve_api_stream_text(struct serve_job *job, const char *text, size_t len,
                          struct serve_buf *out);
int serve_api_end(struct serve_job *job, const char *text, size_t len, struct serve_buf *out);
/* An error inside a stream that has already started. */
int serve_api_stream_error(struct serve_job *job, const char *msg, struct serve_buf *out);
/* GET /v1/models, /v1/models/ID, /api/tags; POST /api/show. */
int serve_api_models(struct serve_server *srv, struct serve_buf *out);
int serve_api_model(struct serve_server *srv, struct serve_buf *out);
int serve_api_tags(struct serve_server *srv, struct serve_buf *out);
int serve_api_show(struct serve_server *srv, const char *body, size_t len, struct serve_buf *out,
                   char *err, size_t err_len);
/* Error bodies: OpenAI's {"error": {"message", "type", "code"}} and Ollama's {"error": "..."}. */
int serve_api_error_openai(struct serve_buf *out, const char *type, const char *code,
                           const char *msg);
int serve_api_error_ollama(struct serve_buf *out, const char *msg);
/* Prometheus text of /metrics (serve_metrics.c). */
int serve_metrics_render(struct serve_server *srv, struct serve_buf *out);

struct MHD_Daemon;
/* Starts libmicrohttpd on an already listening socket. Returns NULL after logging. */
struct MHD_Daemon *serve_http_start(struct serve_server *srv, int listen_fd,
                                    unsigned max_connections, bool ipv6);
void serve_http_stop(struct MHD_Daemon *d);

#endif
