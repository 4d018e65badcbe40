/* nvinfer serve: GET /metrics in the Prometheus text exposition format (version 0.0.4).
 *
 * Counters only go up; a rate such as tokens per second over a window is
 * rate(nvl_serve_tokens_generated_total[1m]) / rate(nvl_serve_generation_seconds_total[1m]) in
 * Prometheus. The gauge nvl_serve_tokens_per_second is the rate of the last finished request, for
 * a glance without a Prometheus server. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "serve.h"

static const unsigned response_codes[SERVE_CODE_SLOTS - 1] = {200, 400, 401, 404, 405,
                                                              413, 500, 503, 0};

static const char *const route_names[SERVE_ROUTE_COUNT] = {
    [SERVE_ROUTE_HEALTH] = "/health",
    [SERVE_ROUTE_METRICS] = "/metrics",
    [SERVE_ROUTE_MODELS] = "/v1/models",
    [SERVE_ROUTE_MODEL] = "/v1/models/{id}",
    [SERVE_ROUTE_CHAT] = "/v1/chat/completions",
    [SERVE_ROUTE_COMPLETION] = "/v1/completions",
    [SERVE_ROUTE_OLLAMA_GENERATE] = "/api/generate",
    [SERVE_ROUTE_OLLAMA_CHAT] = "/api/chat",
    [SERVE_ROUTE_OLLAMA_TAGS] = "/api/tags",
    [SERVE_ROUTE_OLLAMA_SHOW] = "/api/show",
    [SERVE_ROUTE_OLLAMA_VERSION] = "/api/version",
    [SERVE_ROUTE_ROOT] = "/",
    [SERVE_ROUTE_OTHER] = "other",
};

const char *serve_route_name(enum serve_route_id id)
{
    return (unsigned)id < SERVE_ROUTE_COUNT ? route_names[id] : "other";
}

void serve_metrics_count_response(struct serve_metrics *m, unsigned code)
{
    size_t slot = SERVE_CODE_SLOTS - 1; /* other */
    for (size_t i = 0; i < SERVE_CODE_SLOTS - 1; i++)
        if (response_codes[i] == code)
            slot = i;
    atomic_fetch_add(&m->responses[slot], 1);
}

/* Label values escape backslash, double quote and newline. */
static int put_label(struct serve_buf *b, const char *v)
{
    for (; *v; v++) {
        int rc;
        if (*v == '\\' || *v == '"')
            rc = serve_buf_printf(b, "\\%c", *v);
        else if (*v == '\n')
            rc = serve_buf_puts(b, "\\n");
        else
            rc = serve_buf_append(b, v, 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int metric_head(struct serve_buf *b, const char *name, const char *type, const char *help)
{
    return serve_buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static int metric_u64(struct serve_buf *b, const char *name, const char *type, const char *help,
                      uint64_t v)
{
    int rc = metric_head(b, name, type, help);
    return rc ? rc : serve_buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

static int metric_f64(struct serve_buf *b, const char *name, const char *type, const char *help,
                      double v)
{
    int rc = metric_head(b, name, type, help);
    return rc ? rc : serve_buf_printf(b, "%s %.6f\n", name, v);
}

int serve_metrics_render(struct serve_server *srv, struct serve_buf *b)
{
    struct serve_metrics *m = &srv->metrics;
    struct serve_sched_stats st;
    serve_sched_stats(srv->sched, &st);
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    const uint64_t now = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
    int rc = 0;

    rc |= metric_head(b, "nvl_serve_backend_info", "gauge",
                      "The inference backend and the path the weights take to it (always 1).");
    rc |= serve_buf_puts(b, "nvl_serve_backend_info{backend=\"");
    rc |= put_label(b, srv->info.backend);
    rc |= serve_buf_puts(b, "\",data_path=\"");
    rc |= put_label(b, srv->info.data_path);
    rc |= serve_buf_puts(b, "\",source=\"");
    rc |= put_label(b, srv->info.source);
    rc |= serve_buf_puts(b, "\",loader=\"");
    rc |= put_label(b, srv->info.loader);
    rc |= serve_buf_puts(b, "\",kernels=\"");
    rc |= put_label(b, srv->info.kernels);
    rc |= serve_buf_puts(b, "\",model=\"");
    rc |= put_label(b, srv->info.id);
    rc |= serve_buf_puts(b, "\"} 1\n");

    if (strcmp(srv->info.backend, "gpu") == 0) {
        static const char *const tier[3] = {"vram", "ram", "stream"};
        rc |= metric_head(b, "nvl_serve_gpu_layers", "gauge",
                          "Layers by where the GPU reads them: resident in VRAM, in pinned RAM "
                          "(copied each token), or streamed through the Layer Loader.");
        for (int t = 0; t < 3; t++)
            rc |= serve_buf_printf(b, "nvl_serve_gpu_layers{tier=\"%s\"} %d\n", tier[t],
                                   srv->info.gpu_layers[t]);
    }

    rc |= metric_head(b, "nvl_serve_requests_total", "counter", "HTTP requests by endpoint.");
    for (int i = 0; i < SERVE_ROUTE_COUNT; i++)
        rc |= serve_buf_printf(b, "nvl_serve_requests_total{endpoint=\"%s\"} %llu\n",
                               route_names[i], (unsigned long long)atomic_load(&m->requests[i]));
    rc |= metric_head(b, "nvl_serve_responses_total", "counter", "HTTP responses by status code.");
    for (int i = 0; i < SERVE_CODE_SLOTS - 1; i++) {
        unsigned long long v = atomic_load(&m->responses[i]);
        if (response_codes[i])
            rc |= serve_buf_printf(b, "nvl_serve_responses_total{code=\"%u\"} %llu\n",
                                   response_codes[i], v);
        else
            rc |= serve_buf_printf(b, "nvl_serve_responses_total{code=\"other\"} %llu\n", v);
    }

    rc |= metric_u64(b, "nvl_serve_tokens_generated_total", "counter",
                     "Tokens generated (end-of-generation tokens not counted).",
                     atomic_load(&m->tokens_generated));
    rc |= metric_u64(b, "nvl_serve_prompt_tokens_total", "counter",
                     "Prompt tokens evaluated by the model.", atomic_load(&m->prompt_tokens));
    rc |= metric_u64(b, "nvl_serve_prompt_tokens_cached_total", "counter",
                     "Prompt tokens reused from a worker's KV cache instead of evaluated.",
                     atomic_load(&m->prompt_tokens_cached));
    rc |= metric_f64(b, "nvl_serve_generation_seconds_total", "counter",
                     "Time spent sampling and evaluating generated tokens.",
                     (double)atomic_load(&m->generate_ns) / 1e9);
    rc |= metric_f64(b, "nvl_serve_prompt_seconds_total", "counter",
                     "Time spent evaluating prompts.", (double)atomic_load(&m->prompt_ns) / 1e9);
    rc |= metric_f64(b, "nvl_serve_tokens_per_second", "gauge",
                     "Generation speed of the last finished request.",
                     (double)atomic_load(&m->last_tokens_per_s_milli) / 1000.0);
    rc |= metric_u64(b, "nvl_serve_jobs_completed_total", "counter",
                     "Generation requests a worker finished (cancelled ones included).",
                     atomic_load(&m->jobs_completed));
    rc |= metric_u64(b, "nvl_serve_client_disconnects_total", "counter",
                     "Generation requests cancelled because the client went away.",
                     atomic_load(&m->disconnects));
    rc |= metric_u64(b, "nvl_serve_bytes_streamed_total", "counter",
                     "Bytes of generation response bodies sent to clients.",
                     atomic_load(&m->bytes_streamed));
    rc |= metric_u64(b, "nvl_serve_queue_depth", "gauge", "Requests waiting for a worker.",
                     (uint64_t)st.queued);
    rc |= metric_u64(b, "nvl_serve_queue_capacity", "gauge",
                     "Requests that may wait before new ones get 503 (--queue).",
                     (uint64_t)st.capacity);
    rc |= metric_u64(b, "nvl_serve_requests_active", "gauge", "Requests being generated.",
                     (uint64_t)st.active);
    rc |= metric_u64(b, "nvl_serve_workers", "gauge",
                     "Inference workers, each with its own KV cache (--parallel).",
                     (uint64_t)st.workers);
    rc |= metric_u64(b, "nvl_serve_draining", "gauge", "1 after SIGTERM, while draining.",
                     atomic_load(&srv->draining) ? 1 : 0);
    rc |= metric_f64(b, "nvl_serve_uptime_seconds", "gauge", "Seconds since the server started.",
                     (double)(now - m->t_start) / 1e9);
    return rc ? -ENOMEM : 0;
}
