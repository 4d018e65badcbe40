/* The transport: how the controller code reaches a controller's BAR0 and makes memory visible
 * to its DMA. Implemented by VFIO (vfio.h, a real PCIe function) and by the software controller
 * (nvl_sim). The controller code (ctrl.h) talks only to this interface. */
#ifndef NVL_DRIVER_TRANSPORT_H
#define NVL_DRIVER_TRANSPORT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_transport;

struct nvl_transport_ops {
    /* Makes [vaddr, vaddr + len) reachable by the controller's DMA and returns the bus address
     * (IOVA) of vaddr. The range is mapped to one contiguous IOVA range, or the call fails with
     * -ERANGE when the transport cannot give that for this memory (no-IOMMU mode with pages
     * that are not physically contiguous); nvl_dma then maps page by page. vaddr and len are
     * multiples of 4 KiB; the memory is pinned (mlock'd) by the caller. Returns 0 or -errno. */
    int (*dma_map)(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova);
    /* Undoes one dma_map with the same arguments. Returns 0 or -errno. */
    int (*dma_unmap)(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova);
    /* Function-level reset of the controller (VFIO_DEVICE_RESET); may be NULL. */
    int (*reset)(struct nvl_transport *t);
    /* Unmaps BAR0, closes everything, frees t. */
    void (*destroy)(struct nvl_transport *t);
};

struct nvl_transport {
    const char *name;    /* BDF "0000:01:00.0" or "sim": the log prefix */
    volatile void *bar0; /* mapped BAR0 (the sim: its register page, in RAM) */
    size_t bar0_len;     /* bytes mapped at bar0 */
    const struct nvl_transport_ops *ops;
    void *priv; /* the implementation's state */
};

/* Convenience wrappers that check for NULL. nvl_transport_destroy(NULL) is a no-op. */
int nvl_transport_dma_map(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova);
int nvl_transport_dma_unmap(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova);
/* Returns -EOPNOTSUPP when the transport has no reset. */
int nvl_transport_reset(struct nvl_transport *t);
void nvl_transport_destroy(struct nvl_transport *t);

#ifdef __cplusplus
}
#endif

#endif
