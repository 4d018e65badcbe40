/* PRP builder (NVMe 1.4 §4.3): describes a data buffer to the controller as PRP1, PRP2 and,
 * for transfers of more than two memory pages, PRP lists in DMA memory, chained across list
 * pages when one page of entries is not enough.
 *
 * Rules implemented (page = controller memory page size, CC.MPS):
 *  - PRP1 is the bus address of the first byte; it may have any dword-aligned offset into its
 *    page.
 *  - If the transfer ends within PRP1's page, PRP2 is 0. If it ends within the next page, PRP2
 *    is that page's address. Otherwise PRP2 points to a PRP list.
 *  - Every list entry is page aligned (offset 0). A list page holds page/8 entries; when more
 *    entries remain than fit, its last entry points to the next list page instead of data.
 *
 * The GPU engine pre-builds one list per staging slot at setup time with the same builder. */
#ifndef NVL_DRIVER_PRP_H
#define NVL_DRIVER_PRP_H

#include <stddef.h>
#include <stdint.h>

#include "dma.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Number of list pages needed for a transfer of len bytes whose first byte sits at offset
 * first_off within a page. 0 when PRP1 (+ PRP2) suffice. */
size_t nvl_prp_list_pages(size_t first_off, size_t len, size_t page_size);

/* Where PRP list pages go: page-aligned, IOVA-contiguous within each page. */
struct nvl_prp_list_mem {
    uint64_t *vaddr; /* CPU address of the first list page */
    uint64_t iova;   /* its bus address; list page i is at vaddr/iova + i * page_size */
    size_t pages;    /* capacity in pages */
};

/* Builds PRP1/PRP2 (and list pages in lists) for bytes [off, off + len) of buf.
 * page_size is the controller's memory page size (power of two, >= 4096, <= buf->chunk).
 * Returns 0, -EINVAL (len 0, range outside buf, bus address not dword aligned, bad page size),
 * or -ENOSPC (lists needs more pages than it has; nothing useful was built). lists may be NULL
 * when no list is needed. */
int nvl_prp_build(const struct nvl_dma *buf, size_t off, size_t len, size_t page_size,
                  const struct nvl_prp_list_mem *lists, uint64_t *prp1, uint64_t *prp2);

/* The same on a raw page table: data page i (of size page_size) has bus address page_iova[i],
 * the transfer starts at byte first_off of page 0 and spans len bytes. For callers whose data
 * is not an nvl_dma (GPU staging slots built from several buffers). */
int nvl_prp_build_pages(const uint64_t *page_iova, size_t n_pages, size_t first_off, size_t len,
                        size_t page_size, const struct nvl_prp_list_mem *lists, uint64_t *prp1,
                        uint64_t *prp2);

#ifdef __cplusplus
}
#endif

#endif
