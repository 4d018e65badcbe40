/* A first-fit IOVA allocator over sorted free extents, for the VFIO type1 transport: each DMA
 * buffer gets one bus-address range, aligned to its size (up to 2 MiB) so that controller
 * pages and hugepages line up. Not thread safe; the transport locks around it. */
#ifndef NVL_DRIVER_IOVA_H
#define NVL_DRIVER_IOVA_H

#include <stdint.h>

#define NVL_IOVA_MAX_FREE  256        /* free extents remembered */
#define NVL_IOVA_ALIGN_MAX (2u << 20) /* largest alignment handed out */

struct nvl_iova_extent {
    uint64_t start; /* first address */
    uint64_t end;   /* one past the last address */
};

struct nvl_iova_alloc {
    struct nvl_iova_extent free_list[NVL_IOVA_MAX_FREE]; /* sorted, never adjacent */
    uint32_t n_free;
    uint64_t leaked; /* bytes dropped because the list was full */
};

void nvl__iova_init(struct nvl_iova_alloc *a);
/* Adds [start, end) to the free space, merging with neighbours. */
void nvl__iova_add(struct nvl_iova_alloc *a, uint64_t start, uint64_t end);
/* Allocates len bytes (4 KiB multiple) aligned to min(next power of two >= len, 2 MiB), at
 * least 4 KiB. Returns 0 or -ENOSPC. */
int nvl__iova_get(struct nvl_iova_alloc *a, uint64_t len, uint64_t *iova);
/* Returns a range from nvl__iova_get. */
void nvl__iova_put(struct nvl_iova_alloc *a, uint64_t iova, uint64_t len);

#endif
