/* The VFIO transport: a PCIe NVMe function bound to vfio-pci (see nvload-setup).
 *
 * Opens the function's IOMMU group (/dev/vfio/<group>, or /dev/vfio/noiommu-<group>), attaches
 * it to a new container, picks the IOMMU type, maps BAR0 through the region info, and enables
 * memory space and bus mastering in the PCI COMMAND register through the config region.
 *
 *  - type1 IOMMU: DMA buffers are mapped with VFIO_IOMMU_MAP_DMA at IOVAs from a simple
 *    allocator; the drive can reach nothing else.
 *  - no-IOMMU (VFIO_NOIOMMU_IOMMU): bus addresses are physical addresses read from
 *    /proc/self/pagemap. This needs root (CAP_SYS_ADMIN for the frame numbers and for the
 *    device) and is unsafe: the drive can DMA anywhere in memory. It is logged loudly. */
#ifndef NVL_DRIVER_VFIO_H
#define NVL_DRIVER_VFIO_H

#include "transport.h"

#ifdef __cplusplus
extern "C" {
#endif

enum nvl_vfio_mode {
    NVL_VFIO_AUTO = 0, /* type1 when the group exists, else no-IOMMU */
    NVL_VFIO_TYPE1,
    NVL_VFIO_NOIOMMU,
};

/* Opens bdf ("0000:01:00.0"). Returns 0 or -errno with a logged reason: -ENOENT (no such
 * device, or not bound to vfio-pci: run nvload-setup), -EPERM/-EACCES (no access to the group:
 * run as root or nvload-setup --user), -EBUSY (the group is open elsewhere), -EINVAL (group not
 * viable: another device of the group is bound to a host driver). */
int nvl_vfio_open(const char *bdf, enum nvl_vfio_mode mode, struct nvl_transport **out);

/* The mode an open transport runs in. */
enum nvl_vfio_mode nvl_vfio_get_mode(const struct nvl_transport *t);

#ifdef __cplusplus
}
#endif

#endif
