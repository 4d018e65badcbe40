/* The fake sysfs tree and kernel emulation for nvload-setup's tests (see fake_sysfs.h). */
#define _XOPEN_SOURCE 700
#include "fake_sysfs.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void die(const char *what, const char *path)
{
    fprintf(stderr, "fake_sysfs: %s %s: %s\n", what, path, strerror(errno));
    abort();
}

static void path_of(struct fake *f, const char *rel, char out[PATH_MAX])
{
    if (snprintf(out, PATH_MAX, "%s/%s", f->root, rel) >= PATH_MAX) {
        errno = ENAMETOOLONG;
        die("path", rel);
    }
}

static void mkdir_p(const char *path)
{
    char tmp[PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
            die("mkdir", tmp);
        *p = '/';
    }
    if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
        die("mkdir", tmp);
}

static void mkdir_parent(const char *path)
{
    char tmp[PATH_MAX];

    snprintf(tmp, sizeof(tmp), "%s", path);
    char *slash = strrchr(tmp, '/');
    if (slash && slash != tmp) {
        *slash = '\0';
        mkdir_p(tmp);
    }
}

void fake_mkdir(struct fake *f, const char *rel)
{
    char p[PATH_MAX];

    path_of(f, rel, p);
    mkdir_p(p);
}

/* Writes text to the file rel, creating its directories; mode is fopen's "w" or "a". */
static void put(struct fake *f, const char *rel, const char *text, const char *mode)
{
    char p[PATH_MAX];

    path_of(f, rel, p);
    mkdir_parent(p);
    FILE *fp = fopen(p, mode);
    if (!fp)
        die("fopen", p);
    fputs(text, fp);
    fclose(fp);
}

void fake_write(struct fake *f, const char *rel, const char *content)
{
    put(f, rel, content, "w");
}

static void append(struct fake *f, const char *rel, const char *line)
{
    put(f, rel, line, "a");
}

void fake_link(struct fake *f, const char *rel, const char *target)
{
    char p[PATH_MAX];

    path_of(f, rel, p);
    mkdir_parent(p);
    unlink(p);
    if (symlink(target, p) != 0)
        die("symlink", p);
}

int fake_exists(struct fake *f, const char *rel)
{
    char p[PATH_MAX];

    path_of(f, rel, p);
    return access(p, F_OK) == 0;
}

void fake_rename(struct fake *f, const char *from, const char *to)
{
    char a[PATH_MAX], b[PATH_MAX];

    path_of(f, from, a);
    path_of(f, to, b);
    if (rename(a, b) != 0)
        die("rename", a);
}

const char *fake_read(struct fake *f, const char *rel)
{
    static char buf[4096];
    char p[PATH_MAX];

    path_of(f, rel, p);
    buf[0] = '\0';
    FILE *fp = fopen(p, "r");
    if (!fp)
        return buf;
    size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
    fclose(fp);
    buf[n] = '\0';
    while (n > 0 && buf[n - 1] == '\n')
        buf[--n] = '\0';
    return buf;
}

const char *fake_driver(struct fake *f, const char *bdf)
{
    static char name[64];
    char rel[PATH_MAX], p[PATH_MAX], target[PATH_MAX];

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver", bdf);
    path_of(f, rel, p);
    ssize_t n = readlink(p, target, sizeof(target) - 1);
    name[0] = '\0';
    if (n > 0) {
        target[n] = '\0';
        snprintf(name, sizeof(name), "%s", strrchr(target, '/') + 1);
    }
    return name;
}

void fake_pci_driver(struct fake *f, const char *name)
{
    char rel[PATH_MAX];

    snprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s/bind", name);
    fake_write(f, rel, "");
    snprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s/unbind", name);
    fake_write(f, rel, "");
}

static void bind_driver(struct fake *f, const char *bdf, const char *driver)
{
    char rel[PATH_MAX], target[PATH_MAX];

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver", bdf);
    snprintf(target, sizeof(target), "../../drivers/%s", driver);
    fake_link(f, rel, target);
}

static void set_group(struct fake *f, const char *bdf, int group, const char *name)
{
    char rel[PATH_MAX], target[PATH_MAX];

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/iommu_group", bdf);
    snprintf(target, sizeof(target), "../../../kernel/iommu_groups/%d", group);
    fake_link(f, rel, target);
    snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/devices/%s", group, bdf);
    fake_link(f, rel, "../../../../bus/pci/devices/x");
    if (name) {
        snprintf(rel, sizeof(rel), "sys/kernel/iommu_groups/%d/name", group);
        fake_write(f, rel, name);
    }
}

void fake_pci(struct fake *f, const char *bdf, unsigned cls, const char *driver, int group)
{
    char rel[PATH_MAX], val[32];
    uint8_t cfg[256] = {0};

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/class", bdf);
    snprintf(val, sizeof(val), "0x%06x\n", cls);
    fake_write(f, rel, val);
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/vendor", bdf);
    fake_write(f, rel, "0x1b36\n");
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/device", bdf);
    fake_write(f, rel, "0x0010\n");
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver_override", bdf);
    fake_write(f, rel, "(null)\n");
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/power/control", bdf);
    fake_write(f, rel, "auto\n");
    /* Status: capability list; PM capability at 0x40 in D3hot (PMCSR = 3). */
    cfg[0x06] = 0x10;
    cfg[0x34] = 0x40;
    cfg[0x40] = 0x01;
    cfg[0x41] = 0x00;
    cfg[0x44] = 0x03;
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/config", bdf);
    char p[PATH_MAX];
    path_of(f, rel, p);
    mkdir_parent(p);
    FILE *fp = fopen(p, "w");
    if (!fp)
        die("fopen", p);
    fwrite(cfg, 1, sizeof(cfg), fp);
    fclose(fp);
    if (driver[0]) {
        fake_pci_driver(f, driver);
        bind_driver(f, bdf, driver);
    }
    if (group >= 0)
        set_group(f, bdf, group, NULL);
}

void fake_ns(struct fake *f, const char *bdf, const char *ctrl, const char *entry, const char *disk,
             const char *majmin)
{
    char rel[PATH_MAX], val[32];

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/nvme/%s/%s/nsid", bdf, ctrl, entry);
    fake_write(f, rel, "1\n");
    snprintf(rel, sizeof(rel), "sys/block/%s/dev", disk);
    snprintf(val, sizeof(val), "%s\n", majmin);
    fake_write(f, rel, val);
    snprintf(rel, sizeof(rel), "sys/block/%s/size", disk);
    fake_write(f, rel, "2097152\n");
    snprintf(rel, sizeof(rel), "sys/block/%s/holders", disk);
    fake_mkdir(f, rel);
    snprintf(rel, sizeof(rel), "dev/%s", disk);
    fake_write(f, rel, "");
}

void fake_part(struct fake *f, const char *disk, const char *part, const char *majmin)
{
    char rel[PATH_MAX], val[32];

    snprintf(rel, sizeof(rel), "sys/block/%s/%s/dev", disk, part);
    snprintf(val, sizeof(val), "%s\n", majmin);
    fake_write(f, rel, val);
    snprintf(rel, sizeof(rel), "sys/block/%s/%s/partition", disk, part);
    fake_write(f, rel, "1\n");
    snprintf(rel, sizeof(rel), "sys/block/%s/%s/size", disk, part);
    fake_write(f, rel, "1024\n");
    snprintf(rel, sizeof(rel), "sys/block/%s/%s/holders", disk, part);
    fake_mkdir(f, rel);
}

void fake_mount(struct fake *f, const char *majmin, const char *mountpoint, const char *source)
{
    static int id = 20;
    char line[512];

    snprintf(line, sizeof(line), "%d 1 %s / %s rw,relatime shared:1 - ext4 %s rw\n", id++, majmin,
             mountpoint, source);
    append(f, "proc/self/mountinfo", line);
}

void fake_swap(struct fake *f, const char *path)
{
    char line[512];

    snprintf(line, sizeof(line), "%s                              partition\t8388604\t0\t-2\n",
             path);
    append(f, "proc/swaps", line);
}

void fake_holder(struct fake *f, const char *sysdir, const char *holder, const char *majmin,
                 const char *dm_name, const char *dm_uuid)
{
    char rel[PATH_MAX], val[160];

    snprintf(rel, sizeof(rel), "sys/%s/holders/%s", sysdir, holder);
    fake_link(f, rel, "../../../../virtual/block/x");
    snprintf(rel, sizeof(rel), "sys/block/%s/dev", holder);
    snprintf(val, sizeof(val), "%s\n", majmin);
    fake_write(f, rel, val);
    snprintf(rel, sizeof(rel), "sys/block/%s/holders", holder);
    fake_mkdir(f, rel);
    if (dm_name) {
        snprintf(rel, sizeof(rel), "sys/block/%s/dm/name", holder);
        snprintf(val, sizeof(val), "%s\n", dm_name);
        fake_write(f, rel, val);
        snprintf(rel, sizeof(rel), "sys/block/%s/dm/uuid", holder);
        snprintf(val, sizeof(val), "%s\n", dm_uuid);
        fake_write(f, rel, val);
    }
}

void fake_vfio_module(struct fake *f, int with_noiommu_param)
{
    fake_mkdir(f, "sys/module/vfio");
    fake_mkdir(f, "sys/module/vfio_iommu_type1");
    if (with_noiommu_param)
        fake_write(f, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode", "N\n");
}

uint16_t fake_config16(struct fake *f, const char *bdf, unsigned off)
{
    char rel[PATH_MAX], p[PATH_MAX];
    uint16_t v = 0;

    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/config", bdf);
    path_of(f, rel, p);
    int fd = open(p, O_RDONLY);
    if (fd < 0 || pread(fd, &v, 2, off) != 2)
        die("pread", p);
    close(fd);
    return v;
}

static int ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);

    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The kernel's side of the sysfs writes nvload-setup makes. */
static void fake_kernel(struct nvl_setup_env *e, const char *path, const char *value)
{
    struct fake *f = e->hook_arg;
    char rel[PATH_MAX], bdf[NVL_SETUP_BDF_LEN], drv[64];

    if (ends_with(path, "/driver/unbind")) {
        snprintf(rel, sizeof(rel), "%s/sys/bus/pci/devices/%s/driver", f->root, value);
        unlink(rel);
        return;
    }
    if (!ends_with(path, "/bus/pci/drivers_probe"))
        return;
    snprintf(bdf, sizeof(bdf), "%s", value);
    if (fake_driver(f, bdf)[0])
        return;
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/driver_override", bdf);
    snprintf(drv, sizeof(drv), "%s", fake_read(f, rel));
    if (!drv[0] || strcmp(drv, "(null)") == 0)
        snprintf(drv, sizeof(drv), "nvme");
    snprintf(rel, sizeof(rel), "sys/bus/pci/drivers/%s", drv);
    if (!fake_exists(f, rel))
        return;
    if (strcmp(drv, "vfio-pci") != 0) {
        bind_driver(f, bdf, drv);
        return;
    }
    if (f->refuse_vfio)
        return;
    /* vfio-pci: a device behind an IOMMU keeps its group; without one, vfio makes a no-IOMMU
     * group when enable_unsafe_noiommu_mode is on, and refuses the device otherwise. */
    char p[PATH_MAX], target[PATH_MAX], node[PATH_MAX];
    snprintf(rel, sizeof(rel), "sys/bus/pci/devices/%s/iommu_group", bdf);
    path_of(f, rel, p);
    ssize_t n = readlink(p, target, sizeof(target) - 1);
    if (n > 0) {
        target[n] = '\0';
        snprintf(node, sizeof(node), "dev/vfio/%s", strrchr(target, '/') + 1);
    } else {
        const char *flag = fake_read(f, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode");
        if (flag[0] != 'Y' && flag[0] != '1')
            return;
        int g = f->next_group++;
        set_group(f, bdf, g, "vfio-noiommu");
        snprintf(node, sizeof(node), "dev/vfio/noiommu-%d", g);
    }
    bind_driver(f, bdf, "vfio-pci");
    fake_write(f, node, "");
}

void fake_init(struct fake *f)
{
    memset(f, 0, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "%s/nvl-setup-test.XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(f->root))
        die("mkdtemp", f->root);
    fake_mkdir(f, "sys/bus/pci/devices");
    fake_mkdir(f, "sys/kernel/iommu_groups");
    fake_mkdir(f, "sys/block");
    fake_mkdir(f, "dev/vfio");
    fake_write(f, "sys/bus/pci/drivers_probe", "");
    fake_write(f, "proc/self/mountinfo", "");
    fake_write(f, "proc/swaps", "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");

    char p[PATH_MAX];
    path_of(f, "sys", p);
    setenv("NVL_SYSFS_ROOT", p, 1);
    path_of(f, "proc", p);
    setenv("NVL_PROC_ROOT", p, 1);
    path_of(f, "dev", p);
    setenv("NVL_DEV_ROOT", p, 1);
    setenv("NVL_MODPROBE", "false", 1);
    nvl_setup_env_init(&f->env);
    f->env.wait_ms = 30;
    f->env.out = fopen("/dev/null", "w");
    f->env.write_hook = fake_kernel;
    f->env.hook_arg = f;
    f->next_group = 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

void fake_fini(struct fake *f)
{
    if (f->env.out)
        fclose(f->env.out);
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}
