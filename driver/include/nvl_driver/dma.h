/* DMA memory: page-aligned, pinned host buffers made reachable by the controller through the
 * active transport.
 *
 * A buffer is backed by 2 MiB hugepages when it asks for them and the system has them
 * (MAP_HUGETLB), otherwise by 4 KiB pages; it is mlock'd so its physical pages cannot move, and
 * mapped through nvl_transport's dma_map. Under an IOMMU (and on the sim) the whole buffer gets
 * one contiguous IOVA range; in no-IOMMU mode the bus addresses are physical and each backing
 * page ("chunk") may lie anywhere, so addresses are looked up per chunk. nvl_dma_iova() hides
 * the difference. */
#ifndef NVL_DRIVER_DMA_H
#define NVL_DRIVER_DMA_H

#include <stddef.h>
#include <stdint.h>

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NVL_DMA_HUGEPAGE 2097152u /* size of the hugepages tried with NVL_DMA_TRY_HUGE */

enum nvl_dma_flags {
    NVL_DMA_TRY_HUGE = 1u << 0, /* back with 2 MiB hugepages when available */
    NVL_DMA_CONTIG = 1u << 1,   /* the whole buffer must have one contiguous IOVA range
                                   (NVMe queues with CAP.CQR=1); fails with -ENOMEM if the
                                   transport cannot provide it */
    NVL_DMA_NO_MAP = 1u << 2,   /* allocate and pin only; not registered with a transport */
};

struct nvl_dma {
    void *vaddr;          /* page-aligned CPU address of the buffer */
    uint64_t iova;        /* bus address of vaddr (of byte 0) */
    size_t len;           /* usable bytes, a multiple of the chunk size */
    size_t chunk;         /* backing page size: 4096 or NVL_DMA_HUGEPAGE */
    size_t n_chunks;      /* len / chunk */
    uint64_t *chunk_iova; /* bus address of each chunk; chunk_iova[i] = iova + i * chunk when
                             contiguous */
    int contiguous;       /* 1: one IOVA range covers the buffer */
    int huge;             /* 1: backed by hugepages */
    struct nvl_transport *transport; /* transport it is mapped through; NULL if NVL_DMA_NO_MAP */
    int n_maps;                      /* number of dma_map calls to undo (1 or n_chunks) */
};

/* Allocates len bytes (rounded up to the backing page size), zeroed, pinned and mapped through
 * t (t may be NULL with NVL_DMA_NO_MAP). Returns 0 or -errno (-ENOMEM, -EPERM when mlock is not
 * allowed: raise RLIMIT_MEMLOCK or run nvload-setup --user). */
int nvl_dma_create(struct nvl_transport *t, size_t len, unsigned flags, struct nvl_dma **out);

/* Unmaps, unpins and frees. NULL is a no-op. */
void nvl_dma_destroy(struct nvl_dma *dma);

/* Bus address of byte off of the buffer (off < len). Within one chunk addresses are contiguous;
 * a caller that needs a range [off, off + n) contiguous checks nvl_dma_contig_at(). */
static inline uint64_t nvl_dma_iova(const struct nvl_dma *dma, size_t off)
{
    if (dma->contiguous)
        return dma->iova + off;
    return dma->chunk_iova[off / dma->chunk] + off % dma->chunk;
}

/* Whether bytes [off, off + n) have contiguous bus addresses. */
int nvl_dma_contig_at(const struct nvl_dma *dma, size_t off, size_t n);

#ifdef __cplusplus
}
#endif

#endif
