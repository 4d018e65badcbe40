/* Fork-join thread pool: see threadpool.h. */
#include "threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#else
#define cpu_relax() ((void)0)
#endif

/* Polls of the generation counter before a worker sleeps. A pause takes 10-140 cycles depending
 * on the CPU, so this is some 10-100 us: longer than the gap between two operations of a forward
 * pass, far shorter than the gap between two tokens, and short enough that a pool with more
 * threads than free cores does not spend its cores spinning. */
#define POOL_SPIN_ITERS 2000

struct pool_worker {
    struct nvl_threadpool *pool;
    pthread_t thread;
    int ith;
};

struct nvl_threadpool {
    int n_threads;
    struct pool_worker *workers; /* [n_threads - 1]; the caller is thread 0 */

    /* The current step. Written by the caller before it bumps `generation`. */
    nvl_threadpool_fn fn;
    void *ctx;
    bool stop;

    atomic_uint generation; /* bumped once per step: workers wait for it to move */
    atomic_int n_done;      /* workers that finished the current step */
    atomic_int n_sleeping;  /* workers blocked (or about to block) on `wake` */

    pthread_mutex_t lock;
    pthread_cond_t wake;
};

/* Waits until the generation moves past `seen`, spinning first, then sleeping. */
static unsigned pool_wait_step(struct nvl_threadpool *p, unsigned seen)
{
    for (int i = 0; i < POOL_SPIN_ITERS; i++) {
        unsigned g = atomic_load_explicit(&p->generation, memory_order_acquire);
        if (g != seen)
            return g;
        cpu_relax();
    }
    pthread_mutex_lock(&p->lock);
    /* Announce the sleep before the final check (both seq_cst): either the caller sees
     * n_sleeping > 0 and broadcasts under the lock, or this load sees the new generation. */
    atomic_fetch_add(&p->n_sleeping, 1);
    unsigned g;
    while ((g = atomic_load(&p->generation)) == seen)
        pthread_cond_wait(&p->wake, &p->lock);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->lock);
    return g;
}

static void *pool_worker_main(void *arg)
{
    struct pool_worker *w = arg;
    struct nvl_threadpool *p = w->pool;
    unsigned seen = 0;
    for (;;) {
        seen = pool_wait_step(p, seen);
        if (p->stop)
            return NULL;
        p->fn(p->ctx, w->ith, p->n_threads);
        atomic_fetch_add_explicit(&p->n_done, 1, memory_order_release);
    }
}

int nvl_threadpool_create(int n_threads, struct nvl_threadpool **out)
{
    *out = NULL;
    if (n_threads < 1)
        return -EINVAL;
    struct nvl_threadpool *p = calloc(1, sizeof(*p));
    if (!p)
        return -ENOMEM;
    p->n_threads = n_threads;
    atomic_init(&p->generation, 0);
    atomic_init(&p->n_done, 0);
    atomic_init(&p->n_sleeping, 0);
    int err = -ENOMEM;
    p->workers = calloc((size_t)n_threads, sizeof(*p->workers));
    if (!p->workers)
        goto err_free_pool;
    err = -pthread_mutex_init(&p->lock, NULL);
    if (err)
        goto err_free_workers;
    err = -pthread_cond_init(&p->wake, NULL);
    if (err)
        goto err_destroy_lock;

    int started = 0;
    for (; started < n_threads - 1; started++) {
        struct pool_worker *w = &p->workers[started];
        w->pool = p;
        w->ith = started + 1;
        err = -pthread_create(&w->thread, NULL, pool_worker_main, w);
        if (err)
            goto err_join_workers;
    }
    *out = p;
    return 0;

err_join_workers:
    p->n_threads = started + 1;
    nvl_threadpool_destroy(p);
    return err;
err_destroy_lock:
    pthread_mutex_destroy(&p->lock);
err_free_workers:
    free(p->workers);
err_free_pool:
    free(p);
    return err;
}

/* Publishes the step and wakes sleepers. */
static void pool_start_step(struct nvl_threadpool *p)
{
    atomic_store_explicit(&p->n_done, 0, memory_order_relaxed);
    atomic_fetch_add(&p->generation, 1);
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->lock);
    }
}

void nvl_threadpool_destroy(struct nvl_threadpool *pool)
{
    if (!pool)
        return;
    pool->stop = true;
    pool_start_step(pool);
    for (int i = 0; i < pool->n_threads - 1; i++)
        pthread_join(pool->workers[i].thread, NULL);
    pthread_cond_destroy(&pool->wake);
    pthread_mutex_destroy(&pool->lock);
    free(pool->workers);
    free(pool);
}

int nvl_threadpool_size(const struct nvl_threadpool *pool)
{
    return pool->n_threads;
}

void nvl_threadpool_run(struct nvl_threadpool *pool, nvl_threadpool_fn fn, void *ctx)
{
    if (pool->n_threads == 1) {
        fn(ctx, 0, 1);
        return;
    }
    pool->fn = fn;
    pool->ctx = ctx;
    pool_start_step(pool);
    fn(ctx, 0, pool->n_threads);
    /* With more threads than free cores a worker may be descheduled: yield instead of burning the
     * core it needs. */
    int spins = 0;
    while (atomic_load_explicit(&pool->n_done, memory_order_acquire) != pool->n_threads - 1) {
        if (++spins < POOL_SPIN_ITERS)
            cpu_relax();
        else
            sched_yield();
    }
}
