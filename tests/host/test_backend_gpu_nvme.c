/* The gpu-nvme loader backend (loader/src/backend_gpu_nvme.c) end to end on a GPU, against a
 * memory-backed sim whose bytes are the reference: slot, device and host destinations, a stream
 * waiting on the read's word, and the failure paths through the loader's API: an NVMe error
 * (-EIO with the status), a lost completion (-ETIMEDOUT, needs_reset), a controller fatal status
 * (-ENXIO, needs_reset), each reported within bounded time and followed by nvl_loader_reset()
 * and a good read. Exits 77 without a CUDA device. */
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
#include "nvl_loader.h"
#include "nvl_sim.h"

#define MIB (1ull << 20)

struct env {
    struct nvl_sim *sim;
    struct nvl_ctrl *c;
    struct nvl_loader *l;
    uint8_t *mem;
    size_t mem_len;
};

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void env_init(struct env *v, uint32_t timeout_ms)
{
    struct nvl_loader_opts lo;
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts o;
    char err[128];
    uint64_t x = 0x243f6a8885a308d3ull;

    memset(v, 0, sizeof(*v));
    nvl_sim_opts_init(&so);
    assert_int_equal(
        nvl_sim_opts_parse(&so, "mode=mem,size=128M,lba=512,mdts=5,threads=2", err, sizeof(err)),
        0);
    assert_int_equal(nvl_sim_create(&so, &v->sim), 0);
    v->mem = nvl_sim_mem(v->sim, &v->mem_len);
    for (size_t i = 0; i + 8 <= v->mem_len; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(v->mem + i, &x, 8);
    }
    nvl_ctrl_opts_init(&o);
    o.n_io_queues = 4;
    o.io_queue_depth = 64;
    assert_int_equal(nvl_ctrl_create(nvl_sim_transport(v->sim), &o, &v->c), 0);
    nvl_loader_opts_init(&lo);
    lo.backend = NVL_LOADER_GPU_NVME;
    lo.ctrl = v->c;
    lo.n_slots = 2;
    lo.slot_bytes = 32 * MIB;
    lo.n_queues = 4;
    lo.timeout_ms = timeout_ms;
    assert_int_equal(nvl_loader_create(&lo, &v->l), 0);
}

static void env_fini(struct env *v)
{
    nvl_loader_destroy(v->l);
    nvl_ctrl_destroy(v->c);
    nvl_sim_destroy(v->sim);
}

/* Reads [off, off + len) into slot 0 and checks it. */
static void slot_read_ok(struct env *v, uint64_t off, uint64_t len)
{
    struct nvl_extent e = {off, len};
    struct nvl_read_stats st;
    struct nvl_read *r;
    uint64_t at;

    assert_int_equal(nvl_loader_read_async(v->l, &e, 1, nvl_dst_slot(0), &r), 0);
    at = nvl_read_offset(r, 0);
    assert_int_equal(nvl_loader_wait(r, &st), 0);
    assert_int_equal(st.bytes, len);
    assert_memory_equal((uint8_t *)nvl_loader_slot_host(v->l, 0) + at, v->mem + off, len);
}

static int read_err(struct env *v, uint64_t off, uint64_t len, struct nvl_read_stats *st)
{
    struct nvl_extent e = {off, len};
    struct nvl_read *r;

    assert_int_equal(nvl_loader_read_async(v->l, &e, 1, nvl_dst_slot(0), &r), 0);
    return nvl_loader_wait(r, st);
}

static void add_fault(struct env *v, enum nvl_sim_fault_kind kind, uint64_t nth, uint16_t status)
{
    struct nvl_sim_fault f;

    memset(&f, 0, sizeof(f));
    f.kind = kind;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_ANY;
    f.nth = nth;
    f.status = status;
    assert_int_equal(nvl_sim_fault_add(v->sim, &f), 0);
}

static void destinations(void **state)
{
    const uint64_t len = 20 * MIB + 777, off = 3 * MIB + 5;
    struct nvl_extent e[3] = {{off, len / 4}, {off + len, 4097}, {17, 100}};
    struct nvl_read *r;
    struct env v;
    uint8_t *dev, *host = malloc(len);
    uint32_t value;
    const uint32_t *word;
    cudaStream_t s;

    (void)state;
    assert_non_null(host);
    env_init(&v, 5000);
    slot_read_ok(&v, off, len);
    /* Three extents into a slot, a stream waiting on the GPU, then copying out of the slot. */
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&dev, len), cudaSuccess);
    assert_int_equal(nvl_loader_read_async(v.l, e, 3, nvl_dst_slot(1), &r), 0);
    assert_int_equal(nvl_read_gpu_word(r, &word, &value), 0);
    assert_int_equal(nvl_read_stream_wait(r, s), 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(cudaMemcpyAsync(dev + (i ? e[0].len : 0) + (i == 2 ? e[1].len : 0),
                                         (uint8_t *)nvl_loader_slot_device(v.l, 1) +
                                             nvl_read_offset(r, (uint32_t)i),
                                         e[i].len, cudaMemcpyDefault, s),
                         cudaSuccess);
    assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
    assert_int_equal(nvl_loader_wait(r, NULL), 0);
    assert_int_equal(cudaMemcpy(host, dev, e[0].len + e[1].len + e[2].len, cudaMemcpyDeviceToHost),
                     cudaSuccess);
    assert_memory_equal(host, v.mem + e[0].offset, e[0].len);
    assert_memory_equal(host + e[0].len, v.mem + e[1].offset, e[1].len);
    assert_memory_equal(host + e[0].len + e[1].len, v.mem + e[2].offset, e[2].len);
    /* Device and host destinations go through the bounce pipeline. */
    memset(host, 0, len);
    assert_int_equal(nvl_loader_load_layer(v.l, 1000, len, dev, NULL), 0);
    assert_int_equal(cudaMemcpy(host, dev, len, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(host, v.mem + 1000 * 512, len);
    memset(host, 0, len);
    assert_int_equal(nvl_loader_load_layer(v.l, 2001, len - 3, host, NULL), 0);
    assert_memory_equal(host, v.mem + 2001 * 512, len - 3);
    cudaStreamDestroy(s);
    env_fini(&v);
    cudaFree(dev);
    free(host);
}

static void nvme_error(void **state)
{
    struct nvl_read_stats st;
    struct env v;

    (void)state;
    env_init(&v, 5000);
    add_fault(&v, NVL_SIM_FAULT_STATUS, 2, 0x0281);
    assert_int_equal(read_err(&v, 0, 4 * MIB, &st), -EIO);
    assert_int_equal(st.nvme_status & 0x7ff, 0x0281);
    assert_false(nvl_loader_needs_reset(v.l));
    slot_read_ok(&v, 12345, 3 * MIB);
    env_fini(&v);
}

static void lost_completion_and_fatal(void **state)
{
    struct nvl_read_stats st;
    struct env v;
    double t0;

    (void)state;
    env_init(&v, 300);
    add_fault(&v, NVL_SIM_FAULT_LOSE, 3, 0);
    t0 = now_s();
    assert_int_equal(read_err(&v, 0, 8 * MIB, &st), -ETIMEDOUT);
    print_message("  lost completion: -ETIMEDOUT after %.0f ms\n", (now_s() - t0) * 1e3);
    assert_true(now_s() - t0 < 3);
    assert_true(nvl_loader_needs_reset(v.l));
    nvl_sim_fault_clear(v.sim);
    assert_int_equal(nvl_loader_reset(v.l), 0);
    assert_false(nvl_loader_needs_reset(v.l));
    slot_read_ok(&v, 777 * 512, 5 * MIB);

    add_fault(&v, NVL_SIM_FAULT_FATAL, 2, 0);
    t0 = now_s();
    assert_int_equal(read_err(&v, 0, 8 * MIB, &st), -ENXIO);
    print_message("  CSTS.CFS: -ENXIO after %.1f ms\n", (now_s() - t0) * 1e3);
    assert_true(nvl_loader_needs_reset(v.l));
    nvl_sim_fault_clear(v.sim);
    assert_int_equal(nvl_loader_reset(v.l), 0);
    slot_read_ok(&v, 99 * 512, 5 * MIB);
    env_fini(&v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(destinations),
        cmocka_unit_test(nvme_error),
        cmocka_unit_test(lost_completion_and_fatal),
    };
    int n = 0;

    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "test_backend_gpu_nvme: no CUDA device, skipped\n");
        return 77;
    }
    alarm(240);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
