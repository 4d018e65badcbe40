/* Thin wrappers over struct nvl_transport_ops, so that callers need not check for NULL. */
#include "nvl_driver/transport.h"

#include <errno.h>
#include <stddef.h>

int nvl_transport_dma_map(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    if (!t || !t->ops || !t->ops->dma_map || !vaddr || !len || !iova)
        return -EINVAL;
    return t->ops->dma_map(t, vaddr, len, iova);
}

int nvl_transport_dma_unmap(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    if (!t || !t->ops || !t->ops->dma_unmap || !vaddr || !len)
        return -EINVAL;
    return t->ops->dma_unmap(t, vaddr, len, iova);
}

int nvl_transport_reset(struct nvl_transport *t)
{
    if (!t || !t->ops)
        return -EINVAL;
    if (!t->ops->reset)
        return -EOPNOTSUPP;
    return t->ops->reset(t);
}

void nvl_transport_destroy(struct nvl_transport *t)
{
    if (t && t->ops && t->ops->destroy)
        t->ops->destroy(t);
}
