/* MMIO helpers: every access to a controller register or doorbell goes through these.
 *
 * Two kinds of "BAR" sit behind them. On hardware BAR0 is uncached device memory mapped through
 * VFIO; on the software controller (nvl_sim) it is ordinary RAM that a sim thread polls. The
 * helpers are correct for both: register stores are release stores and register loads are
 * acquire loads (C11 semantics through the __atomic builtins, which work on volatile pointers
 * in C and C++), and the doorbell write puts a store fence before the store so that SQEs
 * written to RAM are visible to the device before it sees the new tail.
 *
 * 64-bit registers (CAP, ASQ, ACQ) are accessed as two 32-bit halves, low first, as Linux does
 * (lo_hi_readq/writeq): some controllers do not accept 8-byte accesses, and the controller only
 * latches ASQ/ACQ when CC.EN goes to 1.
 *
 * CPU only; the GPU's doorbell stores live in device/. Not for use in .cu device code. */
#ifndef NVL_DRIVER_MMIO_H
#define NVL_DRIVER_MMIO_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Orders earlier stores to RAM (SQEs, PRP lists, data to be written) before a later store to
 * device memory. x86: sfence (also covers write-combining and non-temporal stores, as SPDK's
 * spdk_wmb does); arm64: dsb st, which reaches device memory (dmb would not). */
static inline void nvl_mmio_wmb(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("sfence" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("dsb st" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

/* Orders a load that observed a published flag (a CQE phase tag) before the later loads of the
 * data it publishes (the CQE body, read data). x86 keeps loads in order, so a compiler barrier
 * suffices there; arm64 needs dmb ld against DMA writes (Linux dma_rmb). */
static inline void nvl_mmio_rmb(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("dmb oshld" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_ACQUIRE);
#endif
}

/* Full fence: loads and stores before it complete before any after it. */
static inline void nvl_mmio_mb(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __asm__ __volatile__("mfence" ::: "memory");
#elif defined(__aarch64__)
    __asm__ __volatile__("dsb sy" ::: "memory");
#else
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
}

static inline volatile uint32_t *nvl_mmio_reg32(volatile void *bar, size_t off)
{
    return (volatile uint32_t *)((volatile uint8_t *)bar + off);
}

/* 32-bit register load with acquire semantics (a sim thread may have just published it). */
static inline uint32_t nvl_mmio_read32(volatile void *bar, size_t off)
{
    return __atomic_load_n(nvl_mmio_reg32(bar, off), __ATOMIC_ACQUIRE);
}

/* 32-bit register store with release semantics: stores before it (e.g. ASQ/ACQ before CC.EN)
 * are visible to a sim thread that acquires this one. */
static inline void nvl_mmio_write32(volatile void *bar, size_t off, uint32_t v)
{
    __atomic_store_n(nvl_mmio_reg32(bar, off), v, __ATOMIC_RELEASE);
}

/* 64-bit register as two 32-bit accesses, low half first. */
static inline uint64_t nvl_mmio_read64(volatile void *bar, size_t off)
{
    uint64_t lo = nvl_mmio_read32(bar, off);
    uint64_t hi = nvl_mmio_read32(bar, off + 4);

    return lo | (hi << 32);
}

static inline void nvl_mmio_write64(volatile void *bar, size_t off, uint64_t v)
{
    nvl_mmio_write32(bar, off, (uint32_t)v);
    nvl_mmio_write32(bar, off + 4, (uint32_t)(v >> 32));
}

/* Writes an SQ tail or CQ head doorbell. The fence before the store makes every SQE, PRP list
 * and write-data store issued before it visible to the controller before the controller can
 * observe the new tail (NVMe 1.4 §4.1: the controller may fetch as soon as the doorbell
 * changes). For a CQ head doorbell it orders the reads of the consumed CQEs before the slots
 * are handed back. */
static inline void nvl_mmio_doorbell_write(volatile uint32_t *db, uint32_t v)
{
    nvl_mmio_wmb();
    __atomic_store_n(db, v, __ATOMIC_RELEASE);
}

#ifdef __cplusplus
}
#endif

#endif
