/* Staging slots and NVMe target facts, set up by the core before the backend starts. */
#ifndef NVL_LOADER_SLOTS_H
#define NVL_LOADER_SLOTS_H

#include "backend.h"

/* Allocates l->opts.n_slots user slots (and the bounce slots an NVMe backend needs), pinned; for
 * an NVMe target, DMA-mapped for l->opts.ctrl with each slot's PRP list built here, once. With a
 * CUDA device, every slot is also mapped for the GPU (slot.device). */
int nvl__slots_create(struct nvl_loader *l);
void nvl__slots_destroy(struct nvl_loader *l);

/* The NVMe-target half of the above (slots_dma.c): slots in driver DMA memory with PRP lists,
 * plus the bounce slots of NVL_BACKEND_NEEDS_CTRL backends. */
int nvl__slots_create_dma(struct nvl_loader *l);
void nvl__slots_destroy_dma(struct nvl_loader *l);

/* For an NVMe target: resolves the namespace and fills l->nsid, l->block_size, l->capacity. */
int nvl__target_nvme_info(struct nvl_loader *l);

#endif
