/* Warp-level NVMe queue-pair operations of the engine: SQE stores and warp-parallel CQ polling,
 * on top of the ring arithmetic of nvl_driver/nvme_queue.h (the same functions the CPU driver
 * uses). One warp owns one queue pair; its ring state lives in the warp's shared memory and only
 * lane 0 changes it, between __syncwarp() barriers.
 *
 * Why warp-parallel polling: every poll of a CQ in pinned host memory is a PCIe round trip
 * (about a microsecond). Polling entry by entry reaped at most 0.85 M completions/s in the
 * project's probe on an H100; 32 lanes loading 32 consecutive CQEs in one round trip and a
 * ballot on their phase tags reached 15 M/s (docs/DESIGN.md, "GPU I/O engine"). */
#ifndef NVL_DEVICE_QUEUE_CUH
#define NVL_DEVICE_QUEUE_CUH

#include <stdint.h>

#include "nvl_device/engine.h"
#include "sysmem.cuh"

/* One CQE as the poll sees it: bytes 8..15 of the entry (sqhd, sqid, cid, status + phase). */
struct nvl_dev_cqe_tail {
    uint16_t sqhd;
    uint16_t sqid;
    uint16_t cid;
    uint16_t status; /* Status Field without the phase tag */
};

/* Warp-collective: polls the 32 CQEs from the head (fewer when the queue is shorter) with one
 * load per lane and returns how many consecutive new entries start at the head (0..32). Lane i
 * (< the returned count) gets entry head + i in *out. The ring state is not changed. When the
 * count is non-zero, an acquire fence has been executed, so what the controller wrote before
 * those CQEs (their data) is visible to this warp. */
static __device__ __forceinline__ uint32_t nvl_dev_cq_poll(const struct nvme_cq *cq, uint32_t lane,
                                                           struct nvl_dev_cqe_tail *out)
{
    uint32_t lim = cq->depth < 32u ? cq->depth : 32u;
    uint32_t idx = cq->head + lane;
    uint32_t phase = cq->phase;
    uint64_t v = 0;
    int valid = 0;
    uint32_t mask, n;

    if (idx >= cq->depth) {
        idx -= cq->depth;
        phase ^= 1u;
    }
    if (lane < lim) {
        /* Bytes 8..15 in one single-copy-atomic load: the phase tag comes with the fields it
         * publishes. The controller (and the sim) writes the status half-word last. */
        v = nvl_dev_ld_sys_u64(&cq->entries[idx].sqhd);
        valid = nvme_cqe_phase((uint16_t)(v >> 48)) == phase;
    }
    mask = __ballot_sync(0xffffffffu, valid);
    n = (~mask == 0) ? 32u : (uint32_t)(__ffs(~mask) - 1);
    if (n == 0)
        return 0;
    nvl_dev_fence_acquire_sys();
    out->sqhd = (uint16_t)v;
    out->sqid = (uint16_t)(v >> 16);
    out->cid = (uint16_t)(v >> 32);
    out->status = nvme_cqe_status((uint16_t)(v >> 48));
    return n;
}

/* Warp-collective: copies n SQEs (n <= 32) staged in shared memory into the SQ at tail, tail + 1,
 * ... with 16-byte stores, consecutive lanes writing consecutive 16-byte pieces so the stores
 * coalesce into few PCIe writes. Plain stores: the doorbell's fence publishes them
 * (doorbell.cuh). The ring's tail is not moved. */
static __device__ __forceinline__ void
nvl_dev_sq_copy(struct nvme_sq *sq, const struct nvme_sqe *stage, uint32_t n, uint32_t lane)
{
    uint32_t k;

    for (k = lane; k < 4u * n; k += 32u) {
        const uint4 *src = (const uint4 *)&stage[k / 4u] + (k % 4u);
        uint4 *dst = (uint4 *)nvme_sq_slot(sq, k / 4u) + (k % 4u);

        *dst = *src;
    }
}

#endif
