/* A fixed pool of worker threads for the CPU forward pass.
 *
 * nvl_threadpool_run() runs one function on every thread at once (the caller is thread 0) and
 * returns when all have finished: a fork-join step per operation. A forward pass issues a few
 * hundred of them per token, so a step must cost microseconds, not a futex round trip: workers
 * spin briefly on a generation counter before they sleep on a condition variable. */
#ifndef NVL_MODEL_THREADPOOL_H
#define NVL_MODEL_THREADPOOL_H

struct nvl_threadpool;

/* fn(ctx, ith, nth) runs once on each of the nth threads, ith = 0 .. nth-1. */
typedef void (*nvl_threadpool_fn)(void *ctx, int ith, int nth);

/* n_threads >= 1 counts the caller. Returns 0, -EINVAL, -ENOMEM or -errno of pthread_create. */
int nvl_threadpool_create(int n_threads, struct nvl_threadpool **out);
/* Stops and joins the workers; NULL is a no-op. */
void nvl_threadpool_destroy(struct nvl_threadpool *pool);
int nvl_threadpool_size(const struct nvl_threadpool *pool);
/* Not reentrant: one caller at a time, and fn must not call run on the same pool. */
void nvl_threadpool_run(struct nvl_threadpool *pool, nvl_threadpool_fn fn, void *ctx);

#endif
