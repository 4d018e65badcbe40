/* nvinfer serve: jobs, the request queue and the inference workers.
 *
 * One model, N workers, each with its own session (KV cache and thread pool). Jobs wait in one
 * FIFO of bounded length; a worker takes the oldest, so with one worker the requests are served
 * strictly in arrival order. A worker keeps its KV cache between jobs and evaluates only what
 * differs from the cached tokens, so a chat client that resends the conversation pays for the
 * new turn only. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "serve.h"

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ------------------------------------------------------------------------------------------ */
/* Jobs */

static void sched_job_alive(struct serve_sched *s, int delta);

struct serve_job *serve_job_create(struct serve_sched *sched)
{
    struct serve_job *job = calloc(1, sizeof(*job));
    if (!job)
        return NULL;
    job->evfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (job->evfd < 0)
        goto err_free;
    if (pthread_mutex_init(&job->mu, NULL))
        goto err_close;
    atomic_init(&job->cancel, false);
    atomic_init(&job->refs, 1);
    job->n_predict = -1;
    job->http_status = 200;
    job->sched = sched;
    sched_job_alive(sched, 1);
    return job;

err_close:
    close(job->evfd);
err_free:
    free(job);
    return NULL;
}

void serve_job_get(struct serve_job *job)
{
    atomic_fetch_add(&job->refs, 1);
}

void serve_job_put(struct serve_job *job)
{
    if (!job || atomic_fetch_sub(&job->refs, 1) != 1)
        return;
    for (size_t i = 0; i < job->n_stop; i++)
        free(job->stop[i]);
    free(job->stop);
    free(job->prompt);
    serve_buf_fini(&job->out);
    pthread_mutex_destroy(&job->mu);
    close(job->evfd);
    struct serve_sched *sched = job->sched;
    free(job);
    sched_job_alive(sched, -1);
}

static void job_wake(struct serve_job *job)
{
    const uint64_t one = 1;
    /* The counter only saturates after 2^64 - 2 wakes; a full one is already a wake-up. */
    ssize_t n = write(job->evfd, &one, sizeof(one));
    (void)n;
}

int serve_job_emit(struct serve_job *job, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    pthread_mutex_lock(&job->mu);
    int rc = serve_buf_append(&job->out, data, len);
    pthread_mutex_unlock(&job->mu);
    if (!rc)
        job_wake(job);
    return rc;
}

void serve_job_finish(struct serve_job *job)
{
    pthread_mutex_lock(&job->mu);
    job->done = true;
    pthread_mutex_unlock(&job->mu);
    job_wake(job);
}

/* ------------------------------------------------------------------------------------------ */
/* Scheduler */

struct serve_worker {
    struct serve_sched *sched;
    struct nvl_session *session;
    bool own_session; /* created here (worker 0 borrows the CLI's) */
    pthread_t thread;
    bool started;
};

struct serve_sched {
    struct nvinfer_model *m;
    struct serve_metrics *metrics;
    pthread_mutex_t mu;
    pthread_cond_t work; /* a job was queued, or stopping */
    pthread_cond_t idle; /* a job finished or was freed */
    struct serve_job *head, *tail;
    int32_t queued, active, capacity;
    int32_t jobs_alive;
    bool draining, stopping;
    struct serve_worker *workers;
    int32_t n_workers;
    /* The running job of each worker, for cancel_all. */
    struct serve_job **running;
};

static void sched_job_alive(struct serve_sched *s, int delta)
{
    pthread_mutex_lock(&s->mu);
    s->jobs_alive += delta;
    if (delta < 0)
        pthread_cond_broadcast(&s->idle);
    pthread_mutex_unlock(&s->mu);
}

int serve_sched_submit(struct serve_sched *s, struct serve_job *job)
{
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    if (s->draining || s->stopping)
        rc = -ESHUTDOWN;
    else if (s->queued >= s->capacity + (s->n_workers - s->active))
        rc = -EAGAIN; /* an idle worker takes a job at once: it does not count as waiting */
    if (rc) {
        pthread_mutex_unlock(&s->mu);
        return rc;
    }
    serve_job_get(job);
    job->next = NULL;
    if (s->tail)
        s->tail->next = job;
    else
        s->head = job;
    s->tail = job;
    s->queued++;
    pthread_cond_signal(&s->work);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void serve_sched_drain(struct serve_sched *s)
{
    pthread_mutex_lock(&s->mu);
    s->draining = true;
    pthread_mutex_unlock(&s->mu);
}

void serve_sched_stats(struct serve_sched *s, struct serve_sched_stats *st)
{
    pthread_mutex_lock(&s->mu);
    st->queued = s->queued;
    st->active = s->active;
    st->capacity = s->capacity;
    st->workers = s->n_workers;
    st->jobs_alive = s->jobs_alive;
    pthread_mutex_unlock(&s->mu);
}

void serve_sched_cancel_all(struct serve_sched *s)
{
    pthread_mutex_lock(&s->mu);
    for (struct serve_job *j = s->head; j; j = j->next)
        atomic_store(&j->cancel, true);
    for (int32_t i = 0; i < s->n_workers; i++)
        if (s->running[i])
            atomic_store(&s->running[i]->cancel, true);
    pthread_mutex_unlock(&s->mu);
}

bool serve_sched_wait_idle(struct serve_sched *s, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->mu);
    int rc = 0;
    while (rc != ETIMEDOUT && (s->queued || s->active || s->jobs_alive))
        rc = pthread_cond_timedwait(&s->idle, &s->mu, &deadline);
    bool idle = !s->queued && !s->active && !s->jobs_alive;
    pthread_mutex_unlock(&s->mu);
    return idle;
}

/* ------------------------------------------------------------------------------------------ */
/* Generation */

struct gen_ctx {
    struct serve_job *job;
    const struct nvl_vocab *vocab;
    struct serve_stop stop;
    struct serve_buf chunk; /* formatted bytes of one step */
    int32_t n_tokens;
    bool stop_hit;
    bool failed; /* out of memory while formatting */
};

/* Hands text that became safe to the stream (streaming) or just keeps it (non-streaming: the
 * whole text goes into the body at the end). */
static int gen_emit(struct gen_ctx *g, size_t off, size_t len)
{
    if (!g->job->stream || len == 0)
        return 0;
    g->chunk.len = 0;
    int rc = serve_api_stream_text(g->job, g->stop.text.data + off, len, &g->chunk);
    if (!rc)
        rc = serve_job_emit(g->job, g->chunk.data, g->chunk.len);
    return rc;
}

static int gen_on_token(void *ctx, int32_t token)
{
    struct gen_ctx *g = ctx;
    g->n_tokens++;
    size_t len = 0;
    const char *piece = nvl_vocab_token_piece(g->vocab, token, false, &len);
    size_t off, out_len;
    if (serve_stop_push(&g->stop, piece ? piece : "", piece ? len : 0, &off, &out_len) ||
        gen_emit(g, off, out_len)) {
        g->failed = true;
        return 1;
    }
    if (g->stop.hit) {
        g->stop_hit = true;
        return 1;
    }
    return atomic_load(&g->job->cancel) ? 1 : 0;
}

/* Evaluates the prompt after the longest prefix the session already holds, in chunks so that a
 * cancelled job stops between them. Leaves the last token's logits for the first sample. */
static int gen_prompt(struct serve_worker *w, struct serve_job *job, struct nvl_sampler *smp)
{
    struct nvl_session *ses = w->session;
    const int32_t *cached = nvl_session_tokens(ses);
    int32_t n_past = nvl_session_n_past(ses);
    int32_t prefix = 0;
    while (prefix < job->n_prompt && prefix < n_past && cached[prefix] == job->prompt[prefix])
        prefix++;
    if (prefix == job->n_prompt)
        prefix--; /* at least one token must be evaluated for fresh logits */
    int rc = nvl_session_truncate(ses, prefix);
    if (rc)
        return rc;
    job->n_cached = prefix;

    for (int32_t i = 0; i < job->n_prompt; i++)
        nvl_sampler_accept(smp, job->prompt[i]);
    enum { CHUNK = 256 };
    for (int32_t i = prefix; i < job->n_prompt; i += CHUNK) {
        if (atomic_load(&job->cancel))
            return -ECANCELED;
        int32_t n = job->n_prompt - i < CHUNK ? job->n_prompt - i : CHUNK;
        rc = nvl_session_eval(ses, job->prompt + i, n, false);
        if (rc) {
            /* Leave the cache consistent for the next job: forget this prompt. */
            nvl_session_truncate(ses, prefix);
            return rc;
        }
        job->n_evaluated += n;
    }
    return 0;
}

static void worker_run_job(struct serve_worker *w, struct serve_job *job)
{
    struct serve_sched *s = w->sched;
    struct nvinfer_model *m = s->m;
    struct gen_ctx g = {.job = job, .vocab = m->vocab};
    struct nvl_sampler *smp = NULL;
    int rc;

    job->finish = SERVE_FINISH_ERROR;
    if (serve_stop_init(&g.stop, (const char *const *)job->stop, job->n_stop))
        goto out_error;
    rc = nvl_sampler_create(&job->sampling, nvl_llama_hparams(m->model)->n_vocab, &smp);
    if (rc)
        goto out_error;

    if (job->stream) {
        rc = serve_api_stream_begin(job, &g.chunk);
        if (!rc)
            rc = serve_job_emit(job, g.chunk.data, g.chunk.len);
        if (rc)
            goto out_error;
    }

    uint64_t t0 = now_ns();
    rc = gen_prompt(w, job, smp);
    job->prompt_ns = now_ns() - t0;
    if (rc == -ECANCELED) {
        job->finish = SERVE_FINISH_CANCELLED;
        goto out;
    }
    if (rc)
        goto out_error;

    struct nvl_generate_params gp = {
        .n_predict = job->n_predict,
        .eog_tokens = m->eog,
        .n_eog_tokens = m->n_eog,
    };
    struct nvl_generate_stats st;
    rc = nvl_generate(w->session, smp, NULL, 0, &gp, gen_on_token, &g, &st);
    job->generate_ns = st.generate_ns;
    job->n_generated = g.n_tokens;
    if (rc || g.failed)
        goto out_error;
    if (g.stop_hit || st.stop == NVL_STOP_EOG)
        job->finish = SERVE_FINISH_STOP;
    else if (st.stop == NVL_STOP_CALLBACK)
        job->finish = SERVE_FINISH_CANCELLED;
    else
        job->finish = SERVE_FINISH_LENGTH;

    size_t off, len;
    serve_stop_flush(&g.stop, &off, &len);
    if (job->finish != SERVE_FINISH_CANCELLED) {
        if (gen_emit(&g, off, len))
            goto out_error;
        g.chunk.len = 0;
        if (serve_api_end(job, g.stop.text.data ? g.stop.text.data : "", g.stop.text.len,
                          &g.chunk) ||
            serve_job_emit(job, g.chunk.data, g.chunk.len))
            goto out_error;
    }
    goto out;

out_error:
    job->finish = SERVE_FINISH_ERROR;
    job->http_status = 500;
    g.chunk.len = 0;
    if (job->stream)
        serve_api_stream_error(job, "generation failed in the model runtime", &g.chunk);
    else if (job->api == SERVE_API_OLLAMA_CHAT || job->api == SERVE_API_OLLAMA_GENERATE)
        serve_api_error_ollama(&g.chunk, "generation failed in the model runtime");
    else
        serve_api_error_openai(&g.chunk, "server_error", NULL,
                               "generation failed in the model runtime");
    if (!job->stream) {
        /* Replace whatever a partial body holds with the error. */
        pthread_mutex_lock(&job->mu);
        job->out.len = 0;
        job->out_off = 0;
        pthread_mutex_unlock(&job->mu);
    }
    serve_job_emit(job, g.chunk.data, g.chunk.len);
out : {
    struct serve_metrics *mt = s->metrics;
    atomic_fetch_add(&mt->tokens_generated, (uint64_t)job->n_generated);
    atomic_fetch_add(&mt->prompt_tokens, (uint64_t)job->n_evaluated);
    atomic_fetch_add(&mt->prompt_tokens_cached, (uint64_t)job->n_cached);
    atomic_fetch_add(&mt->generate_ns, job->generate_ns);
    atomic_fetch_add(&mt->prompt_ns, job->prompt_ns);
    if (job->finish == SERVE_FINISH_CANCELLED)
        atomic_fetch_add(&mt->disconnects, 1);
    atomic_fetch_add(&mt->jobs_completed, 1);
    if (job->generate_ns && job->n_generated > 1)
        atomic_store(&mt->last_tokens_per_s_milli,
                     (uint64_t)(1e12 * job->n_generated / (double)job->generate_ns));
}
    nvl_sampler_destroy(smp);
    serve_stop_fini(&g.stop);
    serve_buf_fini(&g.chunk);
}

static void *worker_main(void *arg)
{
    struct serve_worker *w = arg;
    struct serve_sched *s = w->sched;
    const int32_t index = (int32_t)(w - s->workers);
    for (;;) {
        pthread_mutex_lock(&s->mu);
        while (!s->head && !s->stopping)
            pthread_cond_wait(&s->work, &s->mu);
        struct serve_job *job = s->head;
        if (!job) {
            pthread_mutex_unlock(&s->mu);
            break;
        }
        s->head = job->next;
        if (!s->head)
            s->tail = NULL;
        s->queued--;
        s->active++;
        s->running[index] = job;
        pthread_mutex_unlock(&s->mu);

        if (atomic_load(&job->cancel)) {
            /* The client left while the job was queued. */
            job->finish = SERVE_FINISH_CANCELLED;
            atomic_fetch_add(&s->metrics->disconnects, 1);
            atomic_fetch_add(&s->metrics->jobs_completed, 1);
        } else {
            worker_run_job(w, job);
        }

        /* The worker is free before the client can see the answer, so a client that reads
         * /metrics after its answer never finds its own request still active. */
        pthread_mutex_lock(&s->mu);
        s->active--;
        s->running[index] = NULL;
        pthread_cond_broadcast(&s->idle);
        pthread_mutex_unlock(&s->mu);
        serve_job_finish(job);
        serve_job_put(job);
    }
    return NULL;
}

int serve_sched_create(struct nvinfer_model *m, const struct nvl_session_params *sp,
                       int32_t n_workers, int32_t queue_len, struct serve_metrics *metrics,
                       struct serve_sched **out)
{
    struct serve_sched *s = calloc(1, sizeof(*s));
    if (!s)
        return -ENOMEM;
    int rc = -ENOMEM;
    s->m = m;
    s->metrics = metrics;
    s->capacity = queue_len;
    s->workers = calloc((size_t)n_workers, sizeof(*s->workers));
    s->running = calloc((size_t)n_workers, sizeof(*s->running));
    if (!s->workers || !s->running)
        goto err_free;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->idle, &ca);
    pthread_condattr_destroy(&ca);
    pthread_cond_init(&s->work, NULL);

    for (int32_t i = 0; i < n_workers; i++) {
        struct serve_worker *w = &s->workers[i];
        w->sched = s;
        if (i == 0) {
            w->session = m->session;
        } else {
            rc = nvl_session_create(m->model, sp, &w->session);
            if (rc)
                goto err_stop;
            w->own_session = true;
        }
        s->n_workers = i + 1;
        rc = -pthread_create(&w->thread, NULL, worker_main, w);
        if (rc)
            goto err_stop;
        w->started = true;
    }
    *out = s;
    return 0;

err_stop:
    serve_sched_destroy(s);
    return rc;
err_free:
    free(s->running);
    free(s->workers);
    free(s);
    return rc;
}

void serve_sched_destroy(struct serve_sched *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    for (int32_t i = 0; i < s->n_workers; i++) {
        struct serve_worker *w = &s->workers[i];
        if (w->started)
            pthread_join(w->thread, NULL);
        if (w->own_session)
            nvl_session_destroy(w->session);
    }
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s->running);
    free(s->workers);
    free(s);
}
