/* The GPU I/O engine against the strict software controller (needs a CUDA device; exits 77,
 * skipped, without one).
 *
 * The sim's backing memory is seeded with random bytes here, so every read is checked against
 * memory the engine's read path never touched. The sim counts every protocol rule the engine
 * breaks (doorbell values, PRP layout, CIDs, CQ overflow, DMA outside registered memory); each
 * test that injects no fault requires zero. Covered: reads of every shape, queue wrap-around many
 * times over, several queue pairs, out-of-order completions, doorbell coalescing, request groups
 * and their GPU-side notify word, a compute stream waiting on the GPU, stop draining everything
 * posted, restart with the ring state rolling on and the hand-back to the CPU driver, and the
 * failure paths: NVMe error status, invalid request, lost completion (timeout) and CSTS.CFS, each
 * reported as a status word without a hang, then recovery through a controller reset. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cuda_runtime_api.h>

#include "nvl_driver.h"
#include "nvl_host.h"
#include "nvl_sim.h"

#define PAGE 4096u

struct env {
    struct nvl_sim *sim;
    struct nvl_ctrl *c;
    struct nvl_host_engine *e;
    struct nvl_dma *buf; /* destination, DMA memory */
    struct nvl_dma *list;
    uint64_t *list_iova;
    uint32_t buf_id;
    uint8_t *mem; /* the sim's backing memory */
    size_t mem_len;
    uint32_t lba;
    int faults; /* a test that injects faults expects the sim to count their effects */
};

static uint64_t rng = 0x9e3779b97f4a7c15ull;

static uint64_t rnd(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The flat PRP list of a DMA buffer, built the way the loader builds a slot's. */
static void build_list(struct env *v)
{
    struct nvl_transport *t = nvl_sim_transport(v->sim);
    uint64_t n_pages = v->buf->len / PAGE;
    uint64_t list_bytes = (n_pages * 8 + PAGE - 1) / PAGE * PAGE;
    uint64_t *l;

    assert_int_equal(nvl_dma_create(t, list_bytes, 0, &v->list), 0);
    l = v->list->vaddr;
    for (uint64_t i = 0; i < n_pages; i++)
        l[i] = nvl_dma_iova(v->buf, i * PAGE);
    v->list_iova = calloc(list_bytes / PAGE, sizeof(uint64_t));
    assert_non_null(v->list_iova);
    for (uint64_t j = 0; j < list_bytes / PAGE; j++)
        v->list_iova[j] = nvl_dma_iova(v->list, j * PAGE);
}

static void env_init_opts(struct env *v, const char *spec, uint32_t queues, uint32_t depth,
                          size_t buf_bytes, const struct nvl_host_engine_opts *eo)
{
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts o;
    char err[128];

    memset(v, 0, sizeof(*v));
    nvl_sim_opts_init(&so);
    assert_int_equal(nvl_sim_opts_parse(&so, spec, err, sizeof(err)), 0);
    assert_int_equal(nvl_sim_create(&so, &v->sim), 0);
    v->mem = nvl_sim_mem(v->sim, &v->mem_len);
    assert_non_null(v->mem);
    for (size_t i = 0; i < v->mem_len; i += 8) {
        uint64_t x = rnd();

        memcpy(v->mem + i, &x, 8);
    }
    nvl_ctrl_opts_init(&o);
    o.n_io_queues = queues;
    o.io_queue_depth = depth;
    assert_int_equal(nvl_ctrl_create(nvl_sim_transport(v->sim), &o, &v->c), 0);
    v->lba = nvl_ctrl_get_info(v->c)->lba_size;
    assert_int_equal(
        nvl_dma_create(nvl_sim_transport(v->sim), buf_bytes, NVL_DMA_TRY_HUGE, &v->buf), 0);
    build_list(v);
    assert_int_equal(nvl_host_engine_create(v->c, eo, &v->e), 0);
    assert_int_equal(
        nvl_host_engine_add_buf(v->e, v->list->vaddr, v->list_iova, v->buf->len, &v->buf_id), 0);
}

static void env_init(struct env *v, const char *spec, uint32_t queues, uint32_t depth,
                     size_t buf_bytes)
{
    env_init_opts(v, spec, queues, depth, buf_bytes, NULL);
}

static void env_fini(struct env *v)
{
    struct nvl_sim_stats st;

    nvl_host_engine_destroy(v->e);
    nvl_sim_get_stats(v->sim, &st);
    if (!v->faults) {
        for (int k = 0; k < NVL_SIM_VIOL_COUNT; k++) {
            if (st.violations[k])
                print_error("sim counted %llu %s violations\n",
                            (unsigned long long)st.violations[k],
                            nvl_sim_violation_name((enum nvl_sim_violation)k));
        }
        assert_int_equal(st.violations_total, 0);
        assert_int_equal(st.dma_faults, 0);
    }
    nvl_dma_destroy(v->list);
    nvl_dma_destroy(v->buf);
    free(v->list_iova);
    nvl_ctrl_destroy(v->c);
    nvl_sim_destroy(v->sim);
}

static struct nvl_engine_req req(struct env *v, uint64_t slba, uint32_t nlb, uint64_t buf_off)
{
    struct nvl_engine_req q;

    memset(&q, 0, sizeof(q));
    q.slba = slba;
    q.nlb = nlb;
    q.buf = (uint16_t)v->buf_id;
    q.buf_off = buf_off;
    return q;
}

static void check_data(struct env *v, const struct nvl_engine_req *q)
{
    assert_memory_equal((uint8_t *)v->buf->vaddr + q->buf_off, v->mem + q->slba * v->lba,
                        (size_t)q->nlb * v->lba);
}

/* Posts one request, waits, checks status 0 and the bytes. */
static void read_one(struct env *v, struct nvl_engine_req q)
{
    uint32_t first, st = 0xdead;

    memset((uint8_t *)v->buf->vaddr + q.buf_off, 0x5a, (size_t)q.nlb * v->lba);
    assert_int_equal(nvl_host_engine_post(v->e, &q, 1, &first), 0);
    assert_int_equal(nvl_host_engine_wait(v->e, first, 1, 10000000000ull, &st), 0);
    assert_int_equal(st, 0);
    nvl_host_engine_release(v->e, first, 1);
    check_data(v, &q);
}

/* Many requests of random shapes, a window of them in flight, each checked. */
static void random_reads(struct env *v, uint32_t count, uint32_t window, uint64_t max_bytes)
{
    const uint64_t blocks = v->mem_len / v->lba;
    const uint64_t slots = v->buf->len / window / PAGE; /* pages per window slot */
    struct nvl_engine_req *q = calloc(window, sizeof(*q));
    uint32_t *first = calloc(window, sizeof(*first));

    assert_non_null(q);
    assert_non_null(first);
    for (uint32_t i = 0; i < count + window; i++) {
        uint32_t k = i % window, st = 0xdead;

        if (i >= window) {
            assert_int_equal(nvl_host_engine_wait(v->e, first[k], 1, 10000000000ull, &st), 0);
            assert_int_equal(st, 0);
            nvl_host_engine_release(v->e, first[k], 1);
            check_data(v, &q[k]);
        }
        if (i < count) {
            uint64_t room = slots * PAGE, bytes = v->lba * (1 + rnd() % (max_bytes / v->lba));
            uint64_t off;

            bytes = bytes > room ? room / v->lba * v->lba : bytes;
            off = (uint64_t)k * slots * PAGE + (rnd() % ((room - bytes) / PAGE + 1)) * PAGE;
            q[k] = req(v, rnd() % (blocks - bytes / v->lba), (uint32_t)(bytes / v->lba), off);
            memset((uint8_t *)v->buf->vaddr + off, 0x5a, bytes);
            assert_int_equal(nvl_host_engine_post(v->e, &q[k], 1, &first[k]), 0);
        }
    }
    free(q);
    free(first);
}

static int has_gpu(void)
{
    int n = 0;

    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        cudaGetLastError();
        return 0;
    }
    return 1;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void reads_and_wraps(void **state)
{
    struct nvl_engine_qp_stats s;
    struct nvl_sim_stats ss;
    struct env v;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=512,mdts=5", 1, 32, 8u << 20);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    read_one(&v, req(&v, 0, 1, 0));             /* one block */
    read_one(&v, req(&v, 7, 8, PAGE));          /* one page */
    read_one(&v, req(&v, 1000, 256, 2 * PAGE)); /* one 128 KiB command */
    read_one(&v, req(&v, 3, 16384, 0));         /* 8 MiB: 64 commands, wraps a 32-deep queue */
    read_one(&v, req(&v, 99, 300, 5 * PAGE));   /* cuts at command boundaries of the buffer */
    /* Thousands of small and odd requests: the 32-entry queue wraps hundreds of times. */
    random_reads(&v, 3000, 8, 64 << 10);
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    nvl_host_engine_stats(v.e, &s);
    nvl_sim_get_stats(v.sim, &ss);
    print_message("  %llu commands, %llu SQ doorbells, %llu CQ doorbells, %llu polls\n",
                  (unsigned long long)s.commands, (unsigned long long)s.sq_doorbells,
                  (unsigned long long)s.cq_doorbells, (unsigned long long)s.polls);
    assert_int_equal(s.commands, ss.reads);
    assert_int_equal(s.completions, s.commands);
    assert_true(s.commands > 10 * 32);
    assert_int_equal(s.errors, 0);
    assert_int_equal(s.spurious, 0);
    env_fini(&v);
}

static void queues_groups_and_coalescing(void **state)
{
    const uint64_t big = 48u << 20;
    struct nvl_engine_qp_stats s;
    struct nvl_engine_req q[16];
    struct env v;
    uint32_t *word, *word_dev, first, st;
    void *p;

    (void)state;
    env_init(&v, "mode=mem,size=256M,lba=512,mdts=5,threads=4,queues=8", 8, 256, 64u << 20);
    assert_int_equal(cudaHostAlloc(&p, 64, cudaHostAllocMapped), cudaSuccess);
    word = p;
    *word = 0;
    assert_int_equal(cudaHostGetDevicePointer(&p, word, 0), cudaSuccess);
    word_dev = p;
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    /* One 48 MiB request shared by all eight warps, plus a group of 15 small ones, all
     * notifying the same word once the whole group has landed. */
    q[0] = req(&v, 12345, (uint32_t)(big / 512), 0);
    assert_int_equal(nvl_host_engine_post(v.e, q, 1, &first), 0);
    assert_int_equal(nvl_host_engine_wait(v.e, first, 1, 10000000000ull, &st), 0);
    assert_int_equal(st, 0);
    nvl_host_engine_release(v.e, first, 1);
    check_data(&v, &q[0]);
    for (int i = 0; i < 15; i++) {
        q[i] = req(&v, rnd() % 100000, 1 + (uint32_t)(rnd() % 2048), big + (uint64_t)i * (1 << 20));
        q[i].notify_addr = (uint64_t)(uintptr_t)word_dev;
        q[i].notify_value = 77;
    }
    assert_int_equal(nvl_host_engine_post(v.e, q, 15, &first), 0);
    for (double t0 = now_s(); __atomic_load_n(word, __ATOMIC_ACQUIRE) != 77;)
        assert_true(now_s() - t0 < 10);
    /* The word is stored by the group's last finisher, after every entry is published. */
    assert_int_equal(nvl_host_engine_poll(v.e, first, 15, &st), 0);
    assert_int_equal(st, 0);
    nvl_host_engine_release(v.e, first, 15);
    for (int i = 0; i < 15; i++)
        check_data(&v, &q[i]);
    random_reads(&v, 2000, 16, 1 << 20);
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    nvl_host_engine_stats(v.e, &s);
    print_message("  %llu commands, %llu SQ doorbells, %llu CQ doorbells\n",
                  (unsigned long long)s.commands, (unsigned long long)s.sq_doorbells,
                  (unsigned long long)s.cq_doorbells);
    /* Coalescing: the 384 commands of the big read cannot have needed one doorbell each. */
    assert_true(s.sq_doorbells < s.commands);
    assert_true(s.cq_doorbells < s.completions);
    cudaFreeHost(word);
    env_fini(&v);
}

static void out_of_order_completions(void **state)
{
    struct nvl_sim_fault f;
    struct env v;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=4096,mdts=4,threads=2", 2, 64, 16u << 20);
    memset(&f, 0, sizeof(f));
    f.kind = NVL_SIM_FAULT_DELAY;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_ANY;
    f.probability = 0.3;
    f.delay_us = 300;
    assert_int_equal(nvl_sim_fault_add(v.sim, &f), 0);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    read_one(&v, req(&v, 100, 4096, 0)); /* 16 MiB, 256 commands, a third of them late */
    random_reads(&v, 500, 8, 256 << 10);
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    env_fini(&v);
}

/* Waits for stream s with a deadline; on expiry reports what each party saw and fails. */
static void stream_sync_or_report(struct env *v, cudaStream_t s, const uint32_t *word,
                                  uint32_t first)
{
    cudaError_t err;
    uint32_t st = 0;
    double t0 = now_s();

    while ((err = cudaStreamQuery(s)) == cudaErrorNotReady) {
        if (now_s() - t0 > 10) {
            int rc = nvl_host_engine_poll(v->e, first, 1, &st);

            fail_msg("stream still waiting after 10 s: word %u, request poll %d status 0x%x, "
                     "engine state %u",
                     __atomic_load_n(word, __ATOMIC_ACQUIRE), rc, st,
                     nvl_host_engine_state(v->e, NULL));
        }
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    assert_int_equal(err, cudaSuccess);
}

/* A compute stream waits on the GPU for a request's notify word: nothing after the wait runs
 * before the data has landed, and the CPU never synchronises. */
static void stream_waits_on_gpu(void **state)
{
    const size_t bytes = 4u << 20;
    struct nvl_engine_req q;
    cudaStream_t s;
    struct env v;
    uint32_t *word, *word_dev, first, st;
    uint8_t *dev, *host_copy, *buf_dev;
    void *p;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=512,mdts=5", 2, 64, 8u << 20);
    assert_int_equal(cudaHostRegister(v.buf->vaddr, v.buf->len, cudaHostRegisterMapped),
                     cudaSuccess);
    assert_int_equal(cudaHostGetDevicePointer(&p, v.buf->vaddr, 0), cudaSuccess);
    buf_dev = p;
    assert_int_equal(cudaHostAlloc(&p, 64, cudaHostAllocMapped), cudaSuccess);
    word = p;
    *word = 0;
    assert_int_equal(cudaHostGetDevicePointer(&p, word, 0), cudaSuccess);
    word_dev = p;
    assert_int_equal(cudaMalloc(&p, bytes), cudaSuccess);
    dev = p;
    host_copy = malloc(bytes);
    assert_non_null(host_copy);
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    memset(v.buf->vaddr, 0x5a, bytes);
    assert_int_equal(nvl_host_engine_start(v.e), 0);

    print_message("  stream waits through %s\n", nvl_host_stream_mechanism());
    for (int round = 0; round < 2; round++) {
        /* Round 0 through the wait kernel, round 1 through stream memory operations. */
        if (round == 1)
            assert_int_equal(nvl_host_stream_wait_word(s, word_dev, 2, 10000000000ull), 0);
        else
            assert_int_equal(nvl_engine_wait_word_launch(word_dev, 1, 10000000000ull, NULL, s), 0);
        assert_int_equal(cudaMemcpyAsync(dev, buf_dev, bytes, cudaMemcpyDefault, s), cudaSuccess);
        /* Nothing posted yet: the stream must still be waiting. */
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        assert_int_equal(cudaStreamQuery(s), cudaErrorNotReady);
        cudaGetLastError();
        q = req(&v, 2048u * (round + 1), (uint32_t)(bytes / 512), 0);
        q.notify_addr = (uint64_t)(uintptr_t)word_dev;
        q.notify_value = (uint32_t)round + 1;
        assert_int_equal(nvl_host_engine_post(v.e, &q, 1, &first), 0);
        stream_sync_or_report(&v, s, word, first);
        assert_int_equal(cudaMemcpy(host_copy, dev, bytes, cudaMemcpyDeviceToHost), cudaSuccess);
        assert_memory_equal(host_copy, v.mem + q.slba * 512, bytes);
        assert_int_equal(nvl_host_engine_poll(v.e, first, 1, &st), 0);
        assert_int_equal(st, 0);
        nvl_host_engine_release(v.e, first, 1);
    }
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    cudaStreamDestroy(s);
    cudaFree(dev);
    cudaFreeHost(word);
    cudaHostUnregister(v.buf->vaddr);
    free(host_copy);
    env_fini(&v);
}

/* Stop drains: everything posted before the stop completes; the state rolls on over a restart;
 * the queues go back to the CPU driver where the GPU left them. */
static void stop_drains_restart_rolls_on(void **state)
{
    struct nvl_engine_req q[64];
    struct nvl_sim_stats ss;
    uint16_t status = 0xffff;
    struct env v;
    uint32_t first, st;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=512,mdts=5", 1, 16, 8u << 20);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    for (int i = 0; i < 64; i++)
        q[i] = req(&v, (uint64_t)i * 300, 256, (uint64_t)i * (128u << 10));
    assert_int_equal(nvl_host_engine_post(v.e, q, 64, &first), 0);
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    assert_int_equal(nvl_host_engine_poll(v.e, first, 64, &st), 0);
    assert_int_equal(st, 0);
    nvl_host_engine_release(v.e, first, 64);
    for (int i = 0; i < 64; i++)
        check_data(&v, &q[i]);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(nvl_host_engine_start(v.e), 0);
        random_reads(&v, 100, 4, 64 << 10);
        assert_int_equal(nvl_host_engine_stop(v.e), 0);
    }
    nvl_host_engine_destroy(v.e);
    v.e = NULL;
    /* The CPU driver carries on from the GPU's ring state (a wrong tail or phase would make
     * this read fail or the sim count a violation). */
    assert_int_equal(nvl_io_read(v.c, NULL, 500, 100, v.buf, 0, &status), 0);
    assert_int_equal(status, 0);
    assert_memory_equal(v.buf->vaddr, v.mem + 500 * 512, 100 * 512);
    nvl_sim_get_stats(v.sim, &ss);
    assert_int_equal(ss.violations_total, 0);
    env_fini(&v);
}

static void nvme_error_and_bad_request(void **state)
{
    struct nvl_sim_fault f;
    struct nvl_engine_req q[3];
    struct env v;
    uint32_t first, st;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=512,mdts=5", 1, 32, 8u << 20);
    v.faults = 1;
    memset(&f, 0, sizeof(f));
    f.kind = NVL_SIM_FAULT_STATUS;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_ANY;
    f.nth = 3;
    f.status = 0x0281; /* media error: unrecovered read error */
    assert_int_equal(nvl_sim_fault_add(v.sim, &f), 0);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    read_one(&v, req(&v, 0, 8, 0));
    read_one(&v, req(&v, 8, 8, 0));
    q[0] = req(&v, 16, 8, 0);
    assert_int_equal(nvl_host_engine_post(v.e, q, 1, &first), 0);
    assert_int_equal(nvl_host_engine_wait(v.e, first, 1, 10000000000ull, &st), 0);
    assert_int_equal(nvl_engine_st_kind(st), NVL_ENGINE_ST_NVME);
    assert_int_equal(nvl_engine_st_nvme(st) & 0x7ff, 0x0281);
    nvl_host_engine_release(v.e, first, 1);
    /* Invalid requests fail alone: past the buffer, unaligned, unknown buffer. */
    q[0] = req(&v, 0, 8, v.buf->len);
    q[1] = req(&v, 0, 8, 100);
    q[2] = req(&v, 0, 8, 0);
    q[2].buf = 200;
    for (int i = 0; i < 3; i++) {
        assert_int_equal(nvl_host_engine_post(v.e, &q[i], 1, &first), 0);
        assert_int_equal(nvl_host_engine_wait(v.e, first, 1, 10000000000ull, &st), 0);
        assert_int_equal(nvl_engine_st_kind(st), NVL_ENGINE_ST_BADREQ);
        nvl_host_engine_release(v.e, first, 1);
    }
    /* The engine carries on. */
    random_reads(&v, 200, 4, 128 << 10);
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    assert_int_equal(nvl_host_engine_state(v.e, NULL), NVL_ENGINE_STOPPED);
    env_fini(&v);
}

/* After a failure: reset the controller, recover the engine, read again. */
static void recover_and_read(struct env *v)
{
    assert_int_equal(nvl_host_engine_stop(v->e), -EIO);
    assert_int_equal(nvl_host_engine_start(v->e), -EIO);
    nvl_sim_fault_clear(v->sim);
    assert_int_equal(nvl_ctrl_reset(v->c), 0);
    assert_int_equal(nvl_host_engine_recover(v->e), 0);
    assert_int_equal(nvl_host_engine_start(v->e), 0);
    random_reads(v, 100, 4, 128 << 10);
    assert_int_equal(nvl_host_engine_stop(v->e), 0);
}

static void lost_completion_times_out(void **state)
{
    struct nvl_host_engine_opts eo;
    struct nvl_sim_fault f;
    struct nvl_engine_req q[8];
    struct env v;
    uint32_t first, st, fatal;
    double t0;

    (void)state;
    nvl_host_engine_opts_init(&eo);
    eo.timeout_ns = 300000000ull;
    env_init_opts(&v, "mode=mem,size=64M,lba=512,mdts=5", 2, 32, 8u << 20, &eo);
    v.faults = 1;
    memset(&f, 0, sizeof(f));
    f.kind = NVL_SIM_FAULT_LOSE;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_ANY;
    f.nth = 5;
    assert_int_equal(nvl_sim_fault_add(v.sim, &f), 0);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    for (int i = 0; i < 8; i++)
        q[i] = req(&v, (uint64_t)i * 1000, 512, (uint64_t)i * (256u << 10));
    t0 = now_s();
    assert_int_equal(nvl_host_engine_post(v.e, q, 8, &first), 0);
    /* Every request gets an answer; the group's status is the failure. */
    assert_int_equal(nvl_host_engine_wait(v.e, first, 8, 10000000000ull, &st), 0);
    print_message("  lost completion reported after %.0f ms\n", (now_s() - t0) * 1e3);
    assert_true(now_s() - t0 < 3.0);
    assert_true(nvl_engine_st_kind(st) == NVL_ENGINE_ST_TIMEOUT ||
                nvl_engine_st_kind(st) == NVL_ENGINE_ST_ABORTED);
    nvl_host_engine_release(v.e, first, 8);
    for (t0 = now_s(); nvl_host_engine_state(v.e, &fatal) != NVL_ENGINE_FAILED;)
        assert_true(now_s() - t0 < 5);
    assert_int_equal(nvl_engine_st_kind(fatal), NVL_ENGINE_ST_TIMEOUT);
    /* Later posts are refused rather than left hanging. */
    assert_int_equal(nvl_host_engine_post(v.e, q, 1, &first), -EIO);
    recover_and_read(&v);
    env_fini(&v);
}

static void controller_fatal_status(void **state)
{
    struct nvl_sim_fault f;
    struct nvl_engine_req q[4];
    struct env v;
    uint32_t first, st, fatal;
    double t0;

    (void)state;
    env_init(&v, "mode=mem,size=64M,lba=512,mdts=5", 2, 32, 8u << 20);
    v.faults = 1;
    /* Posted before the start: served once the kernel runs. */
    q[0] = req(&v, 0, 8, 0);
    assert_int_equal(nvl_host_engine_post(v.e, q, 1, &first), 0);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    assert_int_equal(nvl_host_engine_wait(v.e, first, 1, 10000000000ull, &st), 0);
    assert_int_equal(st, 0);
    nvl_host_engine_release(v.e, first, 1);
    check_data(&v, &q[0]);
    memset(&f, 0, sizeof(f));
    f.kind = NVL_SIM_FAULT_FATAL;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_ANY;
    f.nth = 2;
    assert_int_equal(nvl_sim_fault_add(v.sim, &f), 0);
    for (int i = 0; i < 4; i++)
        q[i] = req(&v, (uint64_t)i * 1000, 512, (uint64_t)i * (256u << 10));
    t0 = now_s();
    assert_int_equal(nvl_host_engine_post(v.e, q, 4, &first), 0);
    assert_int_equal(nvl_host_engine_wait(v.e, first, 4, 10000000000ull, &st), 0);
    print_message("  CSTS.CFS reported after %.1f ms\n", (now_s() - t0) * 1e3);
    assert_true(st != 0);
    nvl_host_engine_release(v.e, first, 4);
    for (t0 = now_s(); nvl_host_engine_state(v.e, &fatal) != NVL_ENGINE_FAILED;)
        assert_true(now_s() - t0 < 5);
    assert_int_equal(nvl_engine_st_kind(fatal), NVL_ENGINE_ST_CFS);
    recover_and_read(&v);
    env_fini(&v);
}

/* The kernel leaves when idle and the next post brings it back, however the post and the exit
 * interleave (a short idle time and random gaps aim at the window where the kernel is closing);
 * meanwhile a device-wide synchronisation returns instead of waiting on a persistent kernel. */
static void idle_exit_and_relaunch(void **state)
{
    struct nvl_host_engine_opts eo;
    struct env v;
    uint64_t launches;
    double t0;

    (void)state;
    nvl_host_engine_opts_init(&eo);
    eo.idle_exit_us = 200;
    env_init_opts(&v, "mode=mem,size=64M,lba=512,mdts=5,idle_us=0", 2, 32, 8u << 20, &eo);
    assert_int_equal(nvl_host_engine_start(v.e), 0);
    for (int i = 0; i < 1500; i++) {
        struct timespec ts = {0, (long)(rnd() % 400000)};

        read_one(&v, req(&v, rnd() % 100000, 1 + (uint32_t)(rnd() % 256), (rnd() % 64) * PAGE));
        nanosleep(&ts, NULL);
    }
    launches = nvl_host_engine_launches(v.e);
    print_message("  1500 reads, %llu kernel launches\n", (unsigned long long)launches);
    assert_true(launches > 1);
    /* Idle now: the kernel has left, so this returns (a kernel that never exits would hang it). */
    t0 = now_s();
    assert_int_equal(cudaDeviceSynchronize(), cudaSuccess);
    assert_true(now_s() - t0 < 2);
    read_one(&v, req(&v, 77, 100, 0));
    assert_int_equal(nvl_host_engine_stop(v.e), 0);
    env_fini(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(reads_and_wraps),
        cmocka_unit_test(queues_groups_and_coalescing),
        cmocka_unit_test(out_of_order_completions),
        cmocka_unit_test(stop_drains_restart_rolls_on),
        cmocka_unit_test(nvme_error_and_bad_request),
        cmocka_unit_test(lost_completion_times_out),
        cmocka_unit_test(controller_fatal_status),
        cmocka_unit_test(idle_exit_and_relaunch),
        cmocka_unit_test(stream_waits_on_gpu),
    };

    if (!has_gpu()) {
        fprintf(stderr, "test_engine: no CUDA device, skipped\n");
        return 77;
    }
    if (getenv("NVL_TEST_FILTER"))
        cmocka_set_test_filter(getenv("NVL_TEST_FILTER"));
    /* A hang is a failure, not a stuck CI job. */
    alarm(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
