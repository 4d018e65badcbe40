/* nvme_spec.h and nvme_queue.h compiled as CUDA C++: the ring operations run on the host (as
 * nvcc compiles them) and, when a GPU is present, in a kernel; both must agree with the values
 * worked out by hand. Without a GPU the device half is skipped (exit 77 after the host half). */
#include <cstdio>
#include <cstring>

#include <cuda_runtime.h>

#include "nvl_driver/nvme_queue.h"
#include "nvl_driver/nvme_spec.h"

/* Runs the out-of-order scenario of test_nvme_queue.c; returns 0 when every step matched,
 * otherwise the number of the first step that did not. */
NVL_HD static int ring_scenario(struct nvme_sqe *sring, struct nvme_cqe *cring, uint64_t *words)
{
    uint32_t sdb = 0, cdb = 0;
    struct nvme_sq sq;
    struct nvme_cq cq;
    struct nvme_cid_map m;
    struct nvme_sqe cmd;
    uint16_t cids[3];
    const uint16_t order[3] = {2, 0, 1};
    int i;

    memset(&cmd, 0, sizeof(cmd));
    for (i = 0; i < 4; i++)
        cring[i].status = 0;
    nvme_sq_init(&sq, sring, 4, &sdb, 1);
    nvme_cq_init(&cq, cring, 4, &cdb, 1);
    nvme_cid_map_init(&m, words, 3);
    for (i = 0; i < 3; i++) {
        cids[i] = nvme_cid_alloc(&m);
        if (cids[i] != i)
            return 1;
        cmd.cid = cids[i];
        nvme_sq_write(&sq, &cmd);
        nvme_sq_advance(&sq, 1);
    }
    if (!nvme_sq_full(&sq) || nvme_cid_alloc(&m) != NVME_CID_NONE)
        return 2;
    for (i = 0; i < 3; i++) {
        cring[i].cid = cids[order[i]];
        cring[i].sqhd = 3;
        cring[i].status = nvme_cqe_status_make(0, 1);
    }
    for (i = 0; i < 3; i++) {
        if (!nvme_cq_ready(&cq))
            return 3;
        if (nvme_sq_update_head(&sq, nvme_cq_head_entry(&cq)->sqhd) ||
            nvme_cid_free(&m, nvme_cq_head_entry(&cq)->cid))
            return 4;
        nvme_cq_advance(&cq);
    }
    if (nvme_cq_ready(&cq) || m.used || nvme_sq_free(&sq) != 3)
        return 5;
    if (nvme_sq_tail_db_offset(1, 2) != 0x1020 || nvme_cap_timeout_ms(0x0f000000ull) != 7500)
        return 6;
    return 0;
}

__global__ void ring_kernel(struct nvme_sqe *sring, struct nvme_cqe *cring, uint64_t *words,
                            int *result)
{
    *result = ring_scenario(sring, cring, words);
}

int main()
{
    static struct nvme_sqe sring[4];
    static struct nvme_cqe cring[4];
    static uint64_t words[1];
    struct nvme_sqe *d_sring;
    struct nvme_cqe *d_cring;
    uint64_t *d_words;
    int *d_result, result = -1, n = 0;

    result = ring_scenario(sring, cring, words);
    if (result) {
        fprintf(stderr, "host: step %d failed\n", result);
        return 1;
    }
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0) {
        fprintf(stderr, "no GPU: device half skipped\n");
        return 77;
    }
    if (cudaMalloc(&d_sring, sizeof(sring)) || cudaMalloc(&d_cring, sizeof(cring)) ||
        cudaMalloc(&d_words, sizeof(words)) || cudaMalloc(&d_result, sizeof(int)))
        return 1;
    ring_kernel<<<1, 1>>>(d_sring, d_cring, d_words, d_result);
    if (cudaMemcpy(&result, d_result, sizeof(int), cudaMemcpyDeviceToHost) != cudaSuccess)
        return 1;
    if (result) {
        fprintf(stderr, "device: step %d failed\n", result);
        return 1;
    }
    return 0;
}
