/* A fake sysfs/procfs/dev tree for nvload-setup's tests, with a write hook that plays the
 * kernel: unbind removes the driver link, drivers_probe binds driver_override (or nvme), vfio-pci
 * creates the group node, and in no-IOMMU mode a vfio-noiommu group. */
#ifndef NVL_TEST_FAKE_SYSFS_H
#define NVL_TEST_FAKE_SYSFS_H

#include <stdint.h>

#include "setup.h"

struct fake {
    char root[256]; /* the temporary directory; short, so paths under it fit PATH_MAX */
    struct nvl_setup_env env;
    int refuse_vfio; /* drivers_probe leaves the device unbound instead of binding vfio-pci */
    int next_group;  /* number of the next no-IOMMU group vfio creates */
};

/* Creates the tree in a new temporary directory and points env at it (wait_ms small, output to
 * /dev/null, the kernel hook installed, modprobe = "false"). */
void fake_init(struct fake *f);
/* Removes the tree and closes env.out. */
void fake_fini(struct fake *f);

/* Files relative to the fake root ("sys/...", "proc/...", "dev/..."). */
void fake_write(struct fake *f, const char *rel, const char *content);
void fake_link(struct fake *f, const char *rel, const char *target);
void fake_mkdir(struct fake *f, const char *rel);
int fake_exists(struct fake *f, const char *rel);
void fake_rename(struct fake *f, const char *from, const char *to);
/* Contents of a small file without the trailing newline ("" when missing); a static buffer. */
const char *fake_read(struct fake *f, const char *rel);
/* Name of the driver bdf is bound to, "" when none; a static buffer. */
const char *fake_driver(struct fake *f, const char *bdf);

/* A PCI function of class cls bound to driver ("" for none), in IOMMU group `group` (-1: none).
 * Its config space has the PM capability at 0x40, in D3hot, and COMMAND = 0. Registers the
 * driver on the bus. */
void fake_pci(struct fake *f, const char *bdf, unsigned cls, const char *driver, int group);
/* Registers a PCI driver (bus/pci/drivers/NAME). */
void fake_pci_driver(struct fake *f, const char *name);
/* A namespace of controller ctrl ("nvme0") of bdf: the controller's entry `entry` ("nvme0n1", or
 * "nvme0c0n1" under multipath) and the block device disk ("nvme0n1") with its /dev node. */
void fake_ns(struct fake *f, const char *bdf, const char *ctrl, const char *entry, const char *disk,
             const char *majmin);
void fake_part(struct fake *f, const char *disk, const char *part, const char *majmin);
/* A line of proc/self/mountinfo. */
void fake_mount(struct fake *f, const char *majmin, const char *mountpoint, const char *source);
void fake_swap(struct fake *f, const char *path);
/* holder (dm-N / mdN) holds the block device at sysdir ("block/nvme0n1/nvme0n1p2"). */
void fake_holder(struct fake *f, const char *sysdir, const char *holder, const char *majmin,
                 const char *dm_name, const char *dm_uuid);
/* vfio is loaded (module/vfio...) with or without its no-IOMMU parameter. */
void fake_vfio_module(struct fake *f, int with_noiommu_param);

/* Config-space fields of bdf. */
uint16_t fake_config16(struct fake *f, const char *bdf, unsigned off);

#endif
