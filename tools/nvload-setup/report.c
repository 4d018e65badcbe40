/* --status and --list: what each NVMe controller is bound to, its IOMMU group, who holds it. */
#include <dirent.h>
#include <errno.h>
#include <pciaccess.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "setup.h"

static int cmp_bdf(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* The fake-tree path: every function whose class file says NVMe. */
static int enumerate_sysfs(struct nvl_setup_env *e, char (*bdfs)[NVL_SETUP_BDF_LEN], int max)
{
    char p[PATH_MAX], cls[32];
    struct dirent *de;
    int n = 0;
    DIR *d = opendir(nvl_setup_path(p, e->sys, "bus/pci/devices"));

    if (!d)
        return nvl_setup_fail(e, -errno, "cannot read %s: %s", p, strerror(errno));
    while ((de = readdir(d)) != NULL && n < max) {
        char bdf[NVL_SETUP_BDF_LEN];
        if (nvl_setup_parse_bdf(de->d_name, bdf) != 0)
            continue;
        if (nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/class", bdf), cls,
                                sizeof(cls)) == 0 &&
            strtoul(cls, NULL, 16) == NVL_SETUP_NVME_CLASS)
            memcpy(bdfs[n++], bdf, NVL_SETUP_BDF_LEN);
    }
    closedir(d);
    return n;
}

int nvl_setup_enumerate(struct nvl_setup_env *e, char (*bdfs)[NVL_SETUP_BDF_LEN], int max)
{
    int n = 0;

    if (!e->real) {
        n = enumerate_sysfs(e, bdfs, max);
    } else {
        /* libpciaccess reads /sys/bus/pci itself, so it serves only the real tree. */
        struct pci_id_match match = {
            .vendor_id = PCI_MATCH_ANY,
            .device_id = PCI_MATCH_ANY,
            .subvendor_id = PCI_MATCH_ANY,
            .subdevice_id = PCI_MATCH_ANY,
            .device_class = NVL_SETUP_NVME_CLASS,
            .device_class_mask = 0xffffff,
        };
        int rc = pci_system_init();
        if (rc)
            return nvl_setup_fail(e, -rc, "libpciaccess cannot read the PCI bus: %s", strerror(rc));
        struct pci_device_iterator *it = pci_id_match_iterator_create(&match);
        struct pci_device *dev;
        while (it && (dev = pci_device_next(it)) != NULL && n < max)
            snprintf(bdfs[n++], NVL_SETUP_BDF_LEN, "%04x:%02x:%02x.%x", dev->domain, dev->bus,
                     dev->dev, dev->func);
        pci_iterator_destroy(it);
        pci_system_cleanup();
    }
    if (n > 0)
        qsort(bdfs, (size_t)n, NVL_SETUP_BDF_LEN, cmp_bdf);
    return n;
}

static void format_size(uint64_t bytes, char *buf, size_t len)
{
    static const char *unit[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
    double v = (double)bytes;
    int u = 0;

    while (v >= 1024 && u < 5) {
        v /= 1024;
        u++;
    }
    snprintf(buf, len, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
}

static const char *mode_name(int group, int noiommu)
{
    if (group < 0)
        return "no IOMMU group";
    return noiommu ? "no-IOMMU (unsafe)" : "IOMMU";
}

int nvl_setup_status(struct nvl_setup_env *e, const char *bdf)
{
    char p[PATH_MAX], drv[NVL_SETUP_NAME_LEN], override[NVL_SETUP_NAME_LEN] = "", power[32] = "";
    char pstate[16] = "", node[PATH_MAX], size[32];
    unsigned vendor = 0, device = 0;
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];
    int rc;

    rc = nvl_setup_check_nvme(e, bdf, &vendor, &device);
    if (rc)
        return rc;
    nvl_setup_driver(e, bdf, drv, sizeof(drv));
    nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver_override", bdf),
                        override, sizeof(override));
    nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/power/control", bdf), power,
                        sizeof(power));
    nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/power_state", bdf), pstate,
                        sizeof(pstate));
    int group = nvl_setup_iommu_group(e, bdf);
    int noiommu = group >= 0 && nvl_setup_group_is_noiommu(e, group);

    fprintf(e->out, "%s: NVMe controller [%04x:%04x]\n", bdf, vendor, device);
    fprintf(e->out, "  driver:        %s%s%s%s\n", drv[0] ? drv : "(none)",
            override[0] && strcmp(override, "(null)") ? " (driver_override " : "",
            override[0] && strcmp(override, "(null)") ? override : "",
            override[0] && strcmp(override, "(null)") ? ")" : "");
    if (group >= 0)
        fprintf(e->out, "  iommu group:   %d, %s\n", group, mode_name(group, noiommu));
    else
        fprintf(e->out, "  iommu group:   none (%s)\n",
                nvl_setup_exists(nvl_setup_path(p, e->sys, "kernel/iommu_groups/0"))
                    ? "the IOMMU does not cover this device"
                    : "no IOMMU active: nvload-setup would use vfio's no-IOMMU mode");

    if (strcmp(drv, "vfio-pci") == 0 && group >= 0) {
        struct stat st;
        int pids[8];
        nvl_setup_group_node(e, group, noiommu, node);
        if (stat(node, &st) == 0) {
            int n = nvl_setup_openers(e, node, pids, 8);
            fprintf(e->out, "  vfio node:     %s (uid %u, gid %u, mode %04o), ", node,
                    (unsigned)st.st_uid, (unsigned)st.st_gid, (unsigned)(st.st_mode & 07777));
            if (n == 0)
                fprintf(e->out, "not open\n");
            for (int i = 0; i < n; i++) {
                char comm[64] = "?";
                nvl_setup_read_attr(nvl_setup_path(p, e->proc, "%d/comm", pids[i]), comm,
                                    sizeof(comm));
                fprintf(e->out, "%sopen in pid %d (%s)%s", i ? ", " : "", pids[i], comm,
                        i == n - 1 ? "\n" : "");
            }
        } else {
            fprintf(e->out, "  vfio node:     %s missing\n", node);
        }
    }
    if (power[0] || pstate[0])
        fprintf(e->out, "  power:         %s%s%s\n", pstate[0] ? pstate : "",
                pstate[0] && power[0] ? ", runtime PM " : "", power[0] ? power : "");
    uint16_t cmd;
    if (nvl_setup_config_read(e, bdf, 0x04, &cmd, 2) == 0)
        fprintf(e->out, "  pci command:   memory %s, bus master %s\n", cmd & 0x2 ? "on" : "off",
                cmd & 0x4 ? "on" : "off");

    int n = nvl_setup_blk_list(e, bdf, blk, NVL_SETUP_MAX_BLK);
    if (n > 0) {
        nvl_setup_blk_usage(e, blk, n);
        for (int i = 0; i < n; i++) {
            format_size(blk[i].bytes, size, sizeof(size));
            fprintf(e->out, "  %s %s%s (%s, %s): %s\n",
                    i ? "             " : "block devices:", blk[i].partition ? "  " : "",
                    blk[i].name, blk[i].majmin, size, blk[i].use[0] ? blk[i].use : "not in use");
        }
    } else if (strcmp(drv, "nvme") == 0) {
        fprintf(e->out, "  block devices: none yet\n");
    }

    const char *ready = strcmp(drv, "vfio-pci") == 0 ? "yes"
                        : drv[0]                     ? "no: run nvload-setup BDF to bind vfio-pci"
                                                     : "no: no driver bound";
    fprintf(e->out, "  ready for nvload: %s\n", ready);
    return 0;
}

int nvl_setup_list(struct nvl_setup_env *e)
{
    char bdfs[64][NVL_SETUP_BDF_LEN];
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];
    int n = nvl_setup_enumerate(e, bdfs, 64);

    if (n < 0)
        return n;
    if (n == 0) {
        fprintf(e->out, "no NVMe controllers found\n");
        return 0;
    }
    fprintf(e->out, "%-13s %-10s %-9s %-12s %s\n", "BDF", "ID", "DRIVER", "IOMMU GROUP",
            "BLOCK DEVICES");
    for (int i = 0; i < n; i++) {
        char p[PATH_MAX], drv[NVL_SETUP_NAME_LEN] = "", vid[16] = "?", did[16] = "?", grp[24];
        char id[16];
        nvl_setup_driver(e, bdfs[i], drv, sizeof(drv));
        nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/vendor", bdfs[i]), vid,
                            sizeof(vid));
        nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/device", bdfs[i]), did,
                            sizeof(did));
        snprintf(id, sizeof(id), "%.4s:%.4s", vid[0] == '0' && vid[1] == 'x' ? vid + 2 : vid,
                 did[0] == '0' && did[1] == 'x' ? did + 2 : did);
        int group = nvl_setup_iommu_group(e, bdfs[i]);
        if (group < 0)
            snprintf(grp, sizeof(grp), "-");
        else
            snprintf(grp, sizeof(grp), "%d%s", group,
                     nvl_setup_group_is_noiommu(e, group) ? " (noiommu)" : "");
        fprintf(e->out, "%-13s %-10s %-9s %-12s ", bdfs[i], id, drv[0] ? drv : "-", grp);
        int nb = nvl_setup_blk_list(e, bdfs[i], blk, NVL_SETUP_MAX_BLK);
        if (nb <= 0)
            fprintf(e->out, "-");
        if (nb > 0)
            nvl_setup_blk_usage(e, blk, nb);
        for (int b = 0; b < nb; b++)
            fprintf(e->out, "%s%s%s%s%s", b ? ", " : "", blk[b].name, blk[b].use[0] ? " (" : "",
                    blk[b].use, blk[b].use[0] ? ")" : "");
        fprintf(e->out, "\n");
    }
    return n;
}
