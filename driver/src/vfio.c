/* The VFIO transport (linux/vfio.h uAPI): a PCIe NVMe function bound to vfio-pci. */
#include "nvl_driver/vfio.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "iova.h"
#include "nvl_driver/log.h"

#define PCI_COMMAND_OFF    0x04
#define PCI_COMMAND_MEMORY 0x2
#define PCI_COMMAND_MASTER 0x4
#define PCI_CLASS_PROG_OFF 0x09 /* prog-if, subclass, class: 02 08 01 for NVMe */
#define VFIO_MAX_RANGES    16

struct vfio_priv {
    struct nvl_transport t; /* embedded; t.priv points back here */
    char bdf[32];           /* the log prefix */
    enum nvl_vfio_mode mode;
    int container; /* /dev/vfio/vfio */
    int group;     /* /dev/vfio/<n> or noiommu-<n> */
    int device;    /* device fd from the group */
    int pagemap;   /* /proc/self/pagemap, no-IOMMU only */
    void *bar0;    /* mmap of region 0 */
    size_t bar0_len;
    uint64_t cfg_off;           /* file offset of the config region */
    int can_reset;              /* VFIO_DEVICE_FLAGS_RESET */
    pthread_mutex_t lock;       /* guards iova */
    struct nvl_iova_alloc iova; /* type1 bus addresses */
};

/* ---- IOVA space (iova.c does the bookkeeping) ----------------------------------------- */

static void iova_insert(struct vfio_priv *v, uint64_t start, uint64_t end)
{
    nvl__iova_add(&v->iova, start, end);
}

static int iova_alloc(struct vfio_priv *v, uint64_t len, uint64_t *iova)
{
    int rc;

    pthread_mutex_lock(&v->lock);
    rc = nvl__iova_get(&v->iova, len, iova);
    pthread_mutex_unlock(&v->lock);
    return rc;
}

static void iova_free(struct vfio_priv *v, uint64_t iova, uint64_t len)
{
    pthread_mutex_lock(&v->lock);
    nvl__iova_put(&v->iova, iova, len);
    pthread_mutex_unlock(&v->lock);
}

/* Seeds the allocator from the IOMMU's usable ranges (VFIO_IOMMU_GET_INFO capability), or a
 * conservative default below the x86 MSI window when the kernel does not report them. Page 0
 * is never handed out, so a zero address always means "unset". */
static void iova_seed(struct vfio_priv *v)
{
    struct vfio_iommu_type1_info *info;
    uint32_t argsz = sizeof(*info), n = 0, i;
    uint64_t ranges[VFIO_MAX_RANGES][2];

    info = calloc(1, argsz);
    if (info) {
        info->argsz = argsz;
        if (ioctl(v->container, VFIO_IOMMU_GET_INFO, info) == 0 && info->argsz > argsz) {
            argsz = info->argsz;
            free(info);
            info = calloc(1, argsz);
            if (info) {
                info->argsz = argsz;
                if (ioctl(v->container, VFIO_IOMMU_GET_INFO, info)) {
                    free(info);
                    info = NULL;
                }
            }
        }
    }
    if (info && (info->flags & VFIO_IOMMU_INFO_CAPS) && info->cap_offset) {
        uint32_t off = info->cap_offset;

        while (off && off + sizeof(struct vfio_info_cap_header) <= argsz) {
            struct vfio_info_cap_header *h = (void *)((uint8_t *)info + off);

            if (h->id == VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE) {
                struct vfio_iommu_type1_info_cap_iova_range *r = (void *)h;

                for (i = 0; i < r->nr_iovas && n < VFIO_MAX_RANGES; i++, n++) {
                    ranges[n][0] = r->iova_ranges[i].start;
                    ranges[n][1] = r->iova_ranges[i].end; /* inclusive */
                }
            }
            off = h->next;
        }
    }
    free(info);
    if (n == 0) {
        ranges[0][0] = 0;
        ranges[0][1] = 0xfedfffffull;
        n = 1;
    }
    for (i = 0; i < n; i++) {
        uint64_t s = ranges[i][0] < 4096 ? 4096 : ranges[i][0];
        uint64_t e = ranges[i][1] > (1ull << 47) ? (1ull << 47) : ranges[i][1] + 1;

        if (e > s)
            iova_insert(v, s, e);
    }
}

/* ---- transport ops ----------------------------------------------------------------------- */

static int vfio_map_type1(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    struct vfio_priv *v = t->priv;
    struct vfio_iommu_type1_dma_map m;
    int rc;

    rc = iova_alloc(v, len, iova);
    if (rc) {
        nvl_log_error(v->bdf, "out of IOVA space for %zu bytes", len);
        return rc;
    }
    memset(&m, 0, sizeof(m));
    m.argsz = sizeof(m);
    m.flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;
    m.vaddr = (uintptr_t)vaddr;
    m.iova = *iova;
    m.size = len;
    if (ioctl(v->container, VFIO_IOMMU_MAP_DMA, &m)) {
        rc = -errno;
        nvl_log_error(v->bdf, "VFIO_IOMMU_MAP_DMA of %zu bytes failed: %s%s", len, nvl_strerror(rc),
                      rc == -ENOMEM ? " (locked-memory limit? see ulimit -l / nvload-setup)" : "");
        iova_free(v, *iova, len);
        return rc;
    }
    return 0;
}

static int vfio_unmap_type1(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    struct vfio_priv *v = t->priv;
    struct vfio_iommu_type1_dma_unmap u;

    (void)vaddr;
    memset(&u, 0, sizeof(u));
    u.argsz = sizeof(u);
    u.iova = iova;
    u.size = len;
    if (ioctl(v->container, VFIO_IOMMU_UNMAP_DMA, &u)) {
        int rc = -errno;

        nvl_log_error(v->bdf, "VFIO_IOMMU_UNMAP_DMA at 0x%llx failed: %s", (unsigned long long)iova,
                      nvl_strerror(rc));
        return rc;
    }
    iova_free(v, iova, len);
    return 0;
}

static int vfio_map_noiommu(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    struct vfio_priv *v = t->priv;
    uint64_t entries[512], first = 0;
    size_t pages = (len + 4095) / 4096, done = 0, i;
    int rc;

    /* One transport mapping must be one bus-contiguous range: read the frame numbers in
     * batches and tell nvl_dma (-ERANGE) when the pages are scattered. */
    while (done < pages) {
        size_t n = pages - done < 512 ? pages - done : 512;
        off_t pos = (off_t)(((uintptr_t)vaddr / 4096 + done) * sizeof(uint64_t));
        ssize_t got = pread(v->pagemap, entries, n * sizeof(uint64_t), pos);

        if (got != (ssize_t)(n * sizeof(uint64_t))) {
            rc = got < 0 ? -errno : -EIO;
            nvl_log_error(v->bdf, "cannot read /proc/self/pagemap: %s", nvl_strerror(rc));
            return rc;
        }
        for (i = 0; i < n; i++) {
            uint64_t pfn = entries[i] & ((1ull << 55) - 1);

            if (!(entries[i] & (1ull << 63)))
                return -EFAULT; /* not present: the caller pins before mapping */
            if (pfn == 0) {
                nvl_log_error(v->bdf, "/proc/self/pagemap hides physical addresses: no-IOMMU "
                                      "mode needs root (CAP_SYS_ADMIN)");
                return -EPERM;
            }
            if (done + i == 0)
                first = pfn * 4096;
            else if (pfn * 4096 != first + (done + i) * 4096)
                return -ERANGE;
        }
        done += n;
    }
    *iova = first + ((uintptr_t)vaddr & 4095);
    return 0;
}

static int vfio_unmap_noiommu(struct nvl_transport *t, void *vaddr, size_t len, uint64_t iova)
{
    (void)t;
    (void)vaddr;
    (void)len;
    (void)iova;
    return 0;
}

static int vfio_cfg_read16(struct vfio_priv *v, uint32_t off, uint16_t *val)
{
    if (pread(v->device, val, 2, (off_t)(v->cfg_off + off)) != 2)
        return -EIO;
    return 0;
}

/* Memory space + bus mastering in PCI COMMAND. vfio-pci clears bus mastering on open and a
 * function reset clears both, so this runs after each. */
static int vfio_enable_bus_master(struct vfio_priv *v)
{
    uint16_t cmd;

    if (vfio_cfg_read16(v, PCI_COMMAND_OFF, &cmd))
        return -EIO;
    cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    if (pwrite(v->device, &cmd, 2, (off_t)(v->cfg_off + PCI_COMMAND_OFF)) != 2)
        return -EIO;
    if (vfio_cfg_read16(v, PCI_COMMAND_OFF, &cmd) ||
        (cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) !=
            (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) {
        nvl_log_error(v->bdf, "PCI COMMAND did not take memory space + bus master (0x%04x)", cmd);
        return -EIO;
    }
    return 0;
}

static int vfio_reset(struct nvl_transport *t)
{
    struct vfio_priv *v = t->priv;
    int rc;

    if (!v->can_reset)
        return -EOPNOTSUPP;
    if (ioctl(v->device, VFIO_DEVICE_RESET)) {
        rc = -errno;
        nvl_log_error(v->bdf, "VFIO_DEVICE_RESET failed: %s", nvl_strerror(rc));
        return rc;
    }
    return vfio_enable_bus_master(v);
}

static void vfio_destroy(struct nvl_transport *t)
{
    struct vfio_priv *v;

    if (!t)
        return;
    v = t->priv;
    if (v->bar0)
        munmap(v->bar0, v->bar0_len);
    if (v->device >= 0)
        close(v->device);
    if (v->group >= 0) {
        ioctl(v->group, VFIO_GROUP_UNSET_CONTAINER);
        close(v->group);
    }
    if (v->container >= 0)
        close(v->container);
    if (v->pagemap >= 0)
        close(v->pagemap);
    pthread_mutex_destroy(&v->lock);
    free(v);
}

static const struct nvl_transport_ops vfio_type1_ops = {
    .dma_map = vfio_map_type1,
    .dma_unmap = vfio_unmap_type1,
    .reset = vfio_reset,
    .destroy = vfio_destroy,
};

static const struct nvl_transport_ops vfio_noiommu_ops = {
    .dma_map = vfio_map_noiommu,
    .dma_unmap = vfio_unmap_noiommu,
    .reset = vfio_reset,
    .destroy = vfio_destroy,
};

/* ---- open -------------------------------------------------------------------------------- */

/* Basename of the symlink /sys/bus/pci/devices/<bdf>/<link>, or -errno. */
static int sysfs_link_name(const char *bdf, const char *link, char *out, size_t n)
{
    char path[PATH_MAX], target[PATH_MAX];
    const char *base;
    ssize_t len;

    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s/%s", bdf, link);
    len = readlink(path, target, sizeof(target) - 1);
    if (len < 0)
        return -errno;
    target[len] = '\0';
    base = strrchr(target, '/');
    base = base ? base + 1 : target;
    if (strlen(base) >= n)
        return -ENAMETOOLONG;
    memcpy(out, base, strlen(base) + 1);
    return 0;
}

static int valid_bdf(const char *bdf)
{
    unsigned d, b, s, f;
    char tail;

    return bdf && strlen(bdf) == 12 && sscanf(bdf, "%4x:%2x:%2x.%1x%c", &d, &b, &s, &f, &tail) == 4;
}

/* Opens the group and the container and sets the IOMMU type. */
static int vfio_open_group(struct vfio_priv *v, enum nvl_vfio_mode mode, const char *group)
{
    struct vfio_group_status st = {.argsz = sizeof(st)};
    char path[64];
    int iommu, rc;

    snprintf(path, sizeof(path), "/dev/vfio/%s", group);
    if (mode == NVL_VFIO_AUTO)
        mode = access(path, F_OK) == 0 ? NVL_VFIO_TYPE1 : NVL_VFIO_NOIOMMU;
    if (mode == NVL_VFIO_NOIOMMU)
        snprintf(path, sizeof(path), "/dev/vfio/noiommu-%s", group);
    v->mode = mode;
    v->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
    if (v->container < 0) {
        rc = -errno;
        nvl_log_error(v->bdf, "cannot open /dev/vfio/vfio: %s (is the vfio module loaded?)",
                      nvl_strerror(rc));
        return rc;
    }
    if (ioctl(v->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION) {
        nvl_log_error(v->bdf, "unsupported VFIO API version");
        return -EINVAL;
    }
    v->group = open(path, O_RDWR | O_CLOEXEC);
    if (v->group < 0) {
        rc = -errno;
        if (rc == -ENOENT)
            nvl_log_error(v->bdf, "%s does not exist: %s", path,
                          mode == NVL_VFIO_NOIOMMU
                              ? "no IOMMU group and no no-IOMMU group (vfio not in "
                                "no-IOMMU mode?); run nvload-setup"
                              : "the device is not bound to vfio-pci; run nvload-setup");
        else if (rc == -EACCES || rc == -EPERM)
            nvl_log_error(v->bdf,
                          "permission denied on %s: run as root or "
                          "nvload-setup --user <you>",
                          path);
        else if (rc == -EBUSY)
            nvl_log_error(v->bdf, "%s is busy: another process has the group open", path);
        else
            nvl_log_error(v->bdf, "cannot open %s: %s", path, nvl_strerror(rc));
        return rc;
    }
    if (ioctl(v->group, VFIO_GROUP_GET_STATUS, &st)) {
        rc = -errno;
        nvl_log_error(v->bdf, "VFIO_GROUP_GET_STATUS: %s", nvl_strerror(rc));
        return rc;
    }
    if (!(st.flags & VFIO_GROUP_FLAGS_VIABLE)) {
        nvl_log_error(v->bdf,
                      "IOMMU group %s is not viable: every device in it must be bound "
                      "to vfio-pci (or no driver); see nvload-setup --list",
                      group);
        return -EINVAL;
    }
    if (ioctl(v->group, VFIO_GROUP_SET_CONTAINER, &v->container)) {
        rc = -errno;
        nvl_log_error(v->bdf, "VFIO_GROUP_SET_CONTAINER: %s", nvl_strerror(rc));
        return rc;
    }
    if (mode == NVL_VFIO_NOIOMMU) {
        iommu = VFIO_NOIOMMU_IOMMU;
    } else {
        iommu = ioctl(v->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) == 1
                    ? VFIO_TYPE1v2_IOMMU
                    : VFIO_TYPE1_IOMMU;
    }
    if (ioctl(v->container, VFIO_CHECK_EXTENSION, iommu) != 1 ||
        ioctl(v->container, VFIO_SET_IOMMU, iommu)) {
        rc = -errno ? -errno : -EINVAL;
        nvl_log_error(v->bdf, "cannot set IOMMU type %d: %s", iommu, nvl_strerror(rc));
        return rc;
    }
    if (mode == NVL_VFIO_NOIOMMU) {
        nvl_log_warn(v->bdf, "no-IOMMU mode: UNSAFE. The controller can DMA to any physical "
                             "memory and bus addresses come from /proc/self/pagemap, which needs "
                             "root. Use an IOMMU for anything but testing.");
        v->pagemap = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
        if (v->pagemap < 0) {
            rc = -errno;
            nvl_log_error(v->bdf, "cannot open /proc/self/pagemap: %s", nvl_strerror(rc));
            return rc;
        }
    } else {
        iova_seed(v);
    }
    return 0;
}

/* Opens the device, maps BAR0, checks it is NVMe, enables bus mastering. */
static int vfio_open_device(struct vfio_priv *v)
{
    struct vfio_device_info dev = {.argsz = sizeof(dev)};
    struct vfio_region_info bar = {.argsz = sizeof(bar)};
    struct vfio_region_info cfg = {.argsz = sizeof(cfg)};
    uint8_t class_code[3];
    int rc;

    v->device = ioctl(v->group, VFIO_GROUP_GET_DEVICE_FD, v->bdf);
    if (v->device < 0) {
        rc = -errno;
        nvl_log_error(v->bdf, "cannot get the device from its group: %s%s", nvl_strerror(rc),
                      rc == -EBUSY ? " (in use by another process)" : "");
        return rc;
    }
    if (ioctl(v->device, VFIO_DEVICE_GET_INFO, &dev)) {
        rc = -errno;
        nvl_log_error(v->bdf, "VFIO_DEVICE_GET_INFO: %s", nvl_strerror(rc));
        return rc;
    }
    if (!(dev.flags & VFIO_DEVICE_FLAGS_PCI) || dev.num_regions <= VFIO_PCI_CONFIG_REGION_INDEX) {
        nvl_log_error(v->bdf, "not a PCI device");
        return -ENODEV;
    }
    v->can_reset = !!(dev.flags & VFIO_DEVICE_FLAGS_RESET);
    cfg.index = VFIO_PCI_CONFIG_REGION_INDEX;
    if (ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &cfg)) {
        rc = -errno;
        nvl_log_error(v->bdf, "config region info: %s", nvl_strerror(rc));
        return rc;
    }
    v->cfg_off = cfg.offset;
    if (pread(v->device, class_code, 3, (off_t)(v->cfg_off + PCI_CLASS_PROG_OFF)) != 3) {
        nvl_log_error(v->bdf, "cannot read the PCI class code");
        return -EIO;
    }
    if (class_code[2] != 0x01 || class_code[1] != 0x08 || class_code[0] != 0x02) {
        nvl_log_error(v->bdf, "class %02x%02x%02x is not an NVMe controller (010802)",
                      class_code[2], class_code[1], class_code[0]);
        return -ENODEV;
    }
    bar.index = VFIO_PCI_BAR0_REGION_INDEX;
    if (ioctl(v->device, VFIO_DEVICE_GET_REGION_INFO, &bar)) {
        rc = -errno;
        nvl_log_error(v->bdf, "BAR0 region info: %s", nvl_strerror(rc));
        return rc;
    }
    if (!(bar.flags & VFIO_REGION_INFO_FLAG_MMAP) || bar.size < 0x2000) {
        nvl_log_error(v->bdf, "BAR0 (%llu bytes) cannot be mmap'd", (unsigned long long)bar.size);
        return -ENODEV;
    }
    v->bar0 =
        mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, v->device, (off_t)bar.offset);
    if (v->bar0 == MAP_FAILED) {
        rc = -errno;
        v->bar0 = NULL;
        nvl_log_error(v->bdf, "mmap of BAR0 failed: %s", nvl_strerror(rc));
        return rc;
    }
    v->bar0_len = bar.size;
    return vfio_enable_bus_master(v);
}

int nvl_vfio_open(const char *bdf, enum nvl_vfio_mode mode, struct nvl_transport **out)
{
    char group[32], driver[64], path[PATH_MAX];
    struct vfio_priv *v;
    struct stat st;
    int rc;

    if (!out)
        return -EINVAL;
    *out = NULL;
    if (!valid_bdf(bdf)) {
        nvl_log_error("vfio", "'%s' is not a PCI address of the form 0000:01:00.0",
                      bdf ? bdf : "(null)");
        return -EINVAL;
    }
    snprintf(path, sizeof(path), "/sys/bus/pci/devices/%s", bdf);
    if (stat(path, &st)) {
        nvl_log_error(bdf, "no such PCI device");
        return -ENOENT;
    }
    rc = sysfs_link_name(bdf, "driver", driver, sizeof(driver));
    if (rc || strcmp(driver, "vfio-pci")) {
        nvl_log_error(bdf, "bound to %s, not vfio-pci: run nvload-setup %s first",
                      rc ? "no driver" : driver, bdf);
        return -ENOENT;
    }
    rc = sysfs_link_name(bdf, "iommu_group", group, sizeof(group));
    if (rc) {
        nvl_log_error(bdf, "no IOMMU group (vfio-pci needs an IOMMU or no-IOMMU mode)");
        return -ENOENT;
    }
    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->container = v->group = v->device = v->pagemap = -1;
    snprintf(v->bdf, sizeof(v->bdf), "%s", bdf);
    rc = pthread_mutex_init(&v->lock, NULL);
    if (rc) {
        free(v);
        return -rc;
    }
    rc = vfio_open_group(v, mode, group);
    if (rc)
        goto err_destroy;
    rc = vfio_open_device(v);
    if (rc)
        goto err_destroy;
    v->t.name = v->bdf;
    v->t.bar0 = v->bar0;
    v->t.bar0_len = v->bar0_len;
    v->t.ops = v->mode == NVL_VFIO_NOIOMMU ? &vfio_noiommu_ops : &vfio_type1_ops;
    v->t.priv = v;
    nvl_log_info(bdf, "VFIO %s, group %s, BAR0 %zu bytes, FLR %s",
                 v->mode == NVL_VFIO_NOIOMMU ? "no-IOMMU" : "type1", group, v->bar0_len,
                 v->can_reset ? "yes" : "no");
    *out = &v->t;
    return 0;

err_destroy:
    /* vfio_destroy undoes whatever part of the open happened (fds start at -1). */
    v->t.priv = v;
    vfio_destroy(&v->t);
    return rc;
}

enum nvl_vfio_mode nvl_vfio_get_mode(const struct nvl_transport *t)
{
    const struct vfio_priv *v = t->priv;

    return v->mode;
}
