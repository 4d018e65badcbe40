/* The GPU's only doorbell store. Every SQ tail and CQ head doorbell the engine rings goes through
 * nvl_dev_doorbell_write(); nothing else in device/ writes to BAR0 (or to the sim's register
 * page, which stands in for it), and nothing in device/ ever reads it.
 *
 * Ordering (docs/memory-ordering.md, "Doorbells"):
 *  - SQ tail: the SQEs were written by several lanes with plain stores to pinned host memory.
 *    Each lane executes __threadfence_system() (fence.sc.sys), which completes its own stores at
 *    system scope, the warp converges with __syncwarp(), and only then does lane 0 store the
 *    doorbell. The controller, woken by the doorbell, fetches SQEs that are already in memory.
 *  - CQ head: the CQEs were read (their values are in registers) before the fence, so the
 *    controller cannot overwrite an entry the warp is still reading.
 *  - The store itself is st.mmio.relaxed.sys: a strong system-scope store that the GPU neither
 *    caches, merges nor elides (PTX ISA 8.2+, sm_70+; what prior art uses for BAR doorbells).
 *    Hardware doorbells are 32-bit registers and are written as one 32-bit store. */
#ifndef NVL_DEVICE_DOORBELL_CUH
#define NVL_DEVICE_DOORBELL_CUH

#include <stdint.h>

/* Warp-collective: every lane of the warp must call it with the same arguments. */
static __device__ __forceinline__ void nvl_dev_doorbell_write(volatile uint32_t *db, uint32_t value)
{
    __threadfence_system();
    __syncwarp();
    if ((threadIdx.x & 31u) == 0)
        asm volatile("st.mmio.relaxed.sys.global.u32 [%0], %1;" ::"l"(db), "r"(value) : "memory");
    __syncwarp();
}

#endif
