/* Loads and stores of memory that another agent (the CPU, the NVMe controller or the sim's
 * threads) writes or reads, each with the ordering it needs. Every access of the engine to such
 * memory goes through here or through doorbell.cuh; docs/memory-ordering.md explains why each
 * fence is where it is.
 *
 * All of this memory is pinned host memory mapped into the GPU. A plain (weak) load of it may be
 * served from the GPU's caches and a polling loop on it may never see the other agent's store, so
 * loads are ld.relaxed.sys: a fresh read at system scope every time (each one a PCIe round trip,
 * which is why the CQ is polled 32 entries per warp-wide load, see queue.cuh). */
#ifndef NVL_DEVICE_SYSMEM_CUH
#define NVL_DEVICE_SYSMEM_CUH

#include <stdint.h>

/* A 32-bit load that sees the latest value another agent stored (no ordering of its own). */
static __device__ __forceinline__ uint32_t nvl_dev_ld_sys_u32(const void *p)
{
    uint32_t v;

    asm volatile("ld.relaxed.sys.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
    return v;
}

/* A 64-bit single-copy-atomic load at system scope. Used for CQE bytes 8..15 (sqhd, sqid, cid,
 * status + phase) so one load returns the phase tag together with the fields it publishes. */
static __device__ __forceinline__ uint64_t nvl_dev_ld_sys_u64(const void *p)
{
    uint64_t v;

    asm volatile("ld.relaxed.sys.global.u64 %0, [%1];" : "=l"(v) : "l"(p) : "memory");
    return v;
}

/* Acquire fence at system scope: after a relaxed load observed another agent's publishing store
 * (a CQE's phase tag, ctl.producer), loads issued after this fence see everything that agent
 * wrote before publishing (the request descriptor; for a CQE, the data the controller DMAed
 * before it, which PCIe orders ahead of the CQE write). */
static __device__ __forceinline__ void nvl_dev_fence_acquire_sys(void)
{
    asm volatile("fence.acq_rel.sys;" ::: "memory");
}

/* Stores a 32-bit word that another agent polls, with release semantics at system scope: every
 * store of this thread before it (and, through fence cumulativity, every store this thread has
 * observed, e.g. other lanes' work published to it by __syncwarp or an atomic) is visible to the
 * reader before the word is. Used for request completion entries and notify words. */
static __device__ __forceinline__ void nvl_dev_st_release_sys_u32(void *p, uint32_t v)
{
    asm volatile("st.release.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* A relaxed system-scope 32-bit store: for a value whose publication a later
 * nvl_dev_st_release_sys_u32 orders (a completion's status before its seq). */
static __device__ __forceinline__ void nvl_dev_st_sys_u32(void *p, uint32_t v)
{
    asm volatile("st.relaxed.sys.global.u32 [%0], %1;" ::"l"(p), "r"(v) : "memory");
}

/* The GPU's nanosecond clock (%globaltimer), for timeouts. */
static __device__ __forceinline__ uint64_t nvl_dev_now_ns(void)
{
    uint64_t t;

    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
}

#endif
