/* Staging slots for NVMe targets: driver DMA memory, PRP lists built once. */
#include "slots.h"

#include <errno.h>

int nvl__slots_create_dma(struct nvl_loader *l)
{
    (void)l;
    return -ENOTSUP;
}

void nvl__slots_destroy_dma(struct nvl_loader *l)
{
    (void)l;
}

int nvl__target_nvme_info(struct nvl_loader *l)
{
    (void)l;
    return -ENOTSUP;
}
