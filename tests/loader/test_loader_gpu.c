/* GPU-side tests of the loader that every backend must pass on a machine with a CUDA device (the
 * accelerator machine; skipped elsewhere): the streaming pattern of the model runtime.
 *
 *   - Slot reads whose completion a CUDA stream waits for on the GPU (nvl_read_stream_wait), then
 *     a device-to-device copy out of the slot's device mapping on that stream, issued before the
 *     read has completed, with no CPU wait in between. The copy must see the read's bytes.
 *   - Device destinations (nvl_dst_device) and load_layer into device memory.
 * Each runs on the file backend, and on cpu-nvme and gpu-nvme against a memory-backed sim. */
#include "loader_test_util.h"

#include <cuda_runtime_api.h>

#define BYTES (24 * TU_MIB)

static bool have_gpu(void)
{
    int n = 0;

    return cudaGetDeviceCount(&n) == cudaSuccess && n > 0;
}

/* Streams three layers through two slots: read k+1 is in flight while k is consumed. */
static void stream_layers(struct nvl_loader *l, const uint8_t *ref)
{
    const uint64_t layer = 5 * TU_MIB + 123;
    struct nvl_extent e[3];
    struct nvl_read *r[3];
    uint64_t off[3];
    uint8_t *dev, *host = malloc(layer);
    cudaStream_t s;

    assert_non_null(host);
    assert_int_equal(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
    assert_int_equal(cudaMalloc((void **)&dev, 3 * layer), cudaSuccess);
    for (int k = 0; k < 3; k++)
        e[k] = (struct nvl_extent){777 + (uint64_t)k * layer, layer};
    assert_int_equal(nvl_loader_read_async(l, &e[0], 1, nvl_dst_slot(0), &r[0]), 0);
    off[0] = nvl_read_offset(r[0], 0);
    for (int k = 0; k < 3; k++) {
        uint8_t *slot = nvl_loader_slot_device(l, (uint32_t)k % 2);

        assert_non_null(slot);
        if (k + 1 < 3) {
            if (k >= 1) {
                /* Slot (k+1)%2 held layer k-1: its consumer must be done before refilling. */
                assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
                assert_int_equal(nvl_loader_wait(r[k - 1], NULL), 0);
            }
            assert_int_equal(nvl_loader_read_async(l, &e[k + 1], 1,
                                                   nvl_dst_slot((uint32_t)(k + 1) % 2), &r[k + 1]),
                             0);
            off[k + 1] = nvl_read_offset(r[k + 1], 0);
        }
        assert_int_equal(nvl_read_stream_wait(r[k], s), 0);
        assert_int_equal(cudaMemcpyAsync(dev + (uint64_t)k * layer, slot + off[k], layer,
                                         cudaMemcpyDeviceToDevice, s),
                         cudaSuccess);
    }
    assert_int_equal(cudaStreamSynchronize(s), cudaSuccess);
    assert_int_equal(nvl_loader_wait(r[1], NULL), 0);
    assert_int_equal(nvl_loader_wait(r[2], NULL), 0);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(cudaMemcpy(host, dev + (uint64_t)k * layer, layer, cudaMemcpyDeviceToHost),
                         cudaSuccess);
        assert_memory_equal(host, ref + e[k].offset, layer);
    }
    cudaFree(dev);
    cudaStreamDestroy(s);
    free(host);
}

static void device_dst(struct nvl_loader *l, const uint8_t *ref)
{
    struct nvl_extent e[2] = {{5, 3 * TU_MIB + 1}, {4 * TU_MIB + 17, 1000}};
    uint64_t len = e[0].len + e[1].len;
    uint8_t *dev, *host = malloc(len);
    struct nvl_read *r;

    assert_non_null(host);
    assert_int_equal(cudaMalloc((void **)&dev, len), cudaSuccess);
    assert_int_equal(nvl_loader_read_async(l, e, 2, nvl_dst_device(dev, len), &r), 0);
    assert_int_equal(nvl_loader_wait(r, NULL), 0);
    assert_int_equal(cudaMemcpy(host, dev, len, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(host, ref + e[0].offset, e[0].len);
    assert_memory_equal(host + e[0].len, ref + e[1].offset, e[1].len);
    assert_int_equal(nvl_loader_load_layer(l, 2, 2 * TU_MIB, dev, NULL), 0);
    assert_int_equal(cudaMemcpy(host, dev, 2 * TU_MIB, cudaMemcpyDeviceToHost), cudaSuccess);
    assert_memory_equal(host, ref + 2 * nvl_loader_block_size(l), 2 * TU_MIB);
    cudaFree(dev);
    free(host);
}

static struct nvl_loader *make(enum nvl_loader_backend b, struct nvl_ctrl *ctrl, const char *path)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l = NULL;

    nvl_loader_opts_init(&o);
    o.backend = b;
    o.ctrl = ctrl;
    o.path = path;
    o.n_slots = 2;
    o.slot_bytes = 8 * TU_MIB;
    if (nvl_loader_create(&o, &l))
        return NULL;
    return l;
}

static void run_all(struct nvl_loader *l, const uint8_t *ref)
{
    stream_layers(l, ref);
    device_dst(l, ref);
}

static void test_file(void **state)
{
    uint8_t *ref;
    char *path = tu_pattern_file(BYTES, 31, &ref);
    struct nvl_loader *l = make(NVL_LOADER_FILE, NULL, path);

    (void)state;
    assert_non_null(l);
    run_all(l, ref);
    nvl_loader_destroy(l);
    unlink(path);
    free(path);
    free(ref);
}

static void on_sim(enum nvl_loader_backend b)
{
    struct nvl_loader *l;
    struct tu_sim t;

    tu_sim_up(&t, false, BYTES, 4, 64, NULL);
    l = make(b, t.ctrl, NULL);
    if (!l) {
        tu_sim_down(&t);
        skip();
    }
    run_all(l, t.ref);
    nvl_loader_destroy(l);
    tu_sim_assert_clean(&t);
    tu_sim_down(&t);
}

static void test_cpu_nvme(void **state)
{
    (void)state;
    on_sim(NVL_LOADER_CPU_NVME);
}

static void test_gpu_nvme(void **state)
{
    (void)state;
    on_sim(NVL_LOADER_GPU_NVME);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_file),
        cmocka_unit_test(test_cpu_nvme),
        cmocka_unit_test(test_gpu_nvme),
    };

    if (!have_gpu()) {
        printf("SKIP: no CUDA device\n");
        return 77;
    }
    return cmocka_run_group_tests(tests, NULL, NULL);
}
