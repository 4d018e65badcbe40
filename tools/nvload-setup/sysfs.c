/* sysfs and config-space access for nvload-setup, relative to configurable roots. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "setup.h"

static void copy_root(char *dst, const char *env, const char *def)
{
    const char *v = getenv(env);

    snprintf(dst, PATH_MAX, "%s", v && *v ? v : def);
    /* "/sys/" and "/sys" name the same root; keep paths free of "//". */
    size_t n = strlen(dst);
    while (n > 1 && dst[n - 1] == '/')
        dst[--n] = '\0';
}

void nvl_setup_env_init(struct nvl_setup_env *e)
{
    memset(e, 0, sizeof(*e));
    copy_root(e->sys, "NVL_SYSFS_ROOT", "/sys");
    copy_root(e->proc, "NVL_PROC_ROOT", "/proc");
    copy_root(e->dev, "NVL_DEV_ROOT", "/dev");
    copy_root(e->modprobe, "NVL_MODPROBE", "modprobe");
    e->real =
        strcmp(e->sys, "/sys") == 0 && strcmp(e->proc, "/proc") == 0 && strcmp(e->dev, "/dev") == 0;
    e->wait_ms = 10000;
    e->out = stdout;
}

int nvl_setup_fail(struct nvl_setup_env *e, int err, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(e->err, sizeof(e->err), fmt, ap);
    va_end(ap);
    return err;
}

static int hexfield(const char *s, size_t n, unsigned *v)
{
    *v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!isxdigit((unsigned char)s[i]))
            return -1;
        *v = *v * 16 + (unsigned)(isdigit((unsigned char)s[i])
                                      ? s[i] - '0'
                                      : tolower((unsigned char)s[i]) - 'a' + 10);
    }
    return 0;
}

int nvl_setup_parse_bdf(const char *in, char out[NVL_SETUP_BDF_LEN])
{
    unsigned dom = 0, bus, dev, fn;
    size_t len = in ? strlen(in) : 0;
    const char *p = in;

    /* [domain:]bus:device.function, hexadecimal: the domain 1-8 digits, bus and device two,
     * function one (0-7), device at most 0x1f. */
    if (len < 7 || len > 16)
        return -EINVAL;
    if (len > 7) {
        size_t dlen = len - 8;
        if (dlen < 1 || dlen > 8 || hexfield(p, dlen, &dom) || p[dlen] != ':')
            return -EINVAL;
        p += dlen + 1;
    }
    if (hexfield(p, 2, &bus) || p[2] != ':' || hexfield(p + 3, 2, &dev) || p[5] != '.' ||
        hexfield(p + 6, 1, &fn))
        return -EINVAL;
    if (dev > 0x1f || fn > 7)
        return -EINVAL;
    snprintf(out, NVL_SETUP_BDF_LEN, "%04x:%02x:%02x.%x", dom, bus, dev, fn);
    return 0;
}

char *nvl_setup_path(char buf[PATH_MAX], const char *root, const char *fmt, ...)
{
    va_list ap;
    int n = snprintf(buf, PATH_MAX, "%s/", root);

    va_start(ap, fmt);
    vsnprintf(buf + n, PATH_MAX - (size_t)n, fmt, ap);
    va_end(ap);
    return buf;
}

int nvl_setup_read_attr(const char *path, char *buf, size_t len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    ssize_t n;

    if (fd < 0)
        return -errno;
    n = read(fd, buf, len - 1);
    int err = n < 0 ? -errno : 0;
    close(fd);
    if (err)
        return err;
    buf[n] = '\0';
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    return 0;
}

int nvl_setup_write_attr(struct nvl_setup_env *e, const char *path, const char *value)
{
    /* O_TRUNC is ignored by sysfs, and makes the fake trees of the tests behave like it. */
    int fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC);
    size_t len = strlen(value);

    if (fd < 0)
        return -errno;
    /* sysfs takes one write per value; a short write is an error, not a partial success. */
    ssize_t n = write(fd, value, len);
    int err = n < 0 ? -errno : (size_t)n != len ? -EIO : 0;
    if (close(fd) != 0 && !err)
        err = -errno;
    if (!err && e->write_hook)
        e->write_hook(e, path, value);
    return err;
}

int nvl_setup_link_name(const char *path, char *buf, size_t len)
{
    char target[PATH_MAX];
    ssize_t n = readlink(path, target, sizeof(target) - 1);

    if (n < 0)
        return -errno;
    target[n] = '\0';
    const char *slash = strrchr(target, '/');
    snprintf(buf, len, "%s", slash ? slash + 1 : target);
    return 0;
}

int nvl_setup_exists(const char *path)
{
    return access(path, F_OK) == 0;
}

int nvl_setup_driver(struct nvl_setup_env *e, const char *bdf, char *buf, size_t len)
{
    char p[PATH_MAX];
    int rc =
        nvl_setup_link_name(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver", bdf), buf, len);

    if (rc == -ENOENT) {
        buf[0] = '\0';
        return 0;
    }
    return rc;
}

int nvl_setup_iommu_group(struct nvl_setup_env *e, const char *bdf)
{
    char p[PATH_MAX], name[NVL_SETUP_NAME_LEN];
    char *end;
    int rc = nvl_setup_link_name(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/iommu_group", bdf),
                                 name, sizeof(name));

    if (rc)
        return rc;
    long g = strtol(name, &end, 10);
    if (*end || g < 0 || g > 1000000)
        return -EINVAL;
    return (int)g;
}

int nvl_setup_group_is_noiommu(struct nvl_setup_env *e, int group)
{
    char p[PATH_MAX], name[NVL_SETUP_NAME_LEN];

    /* vfio names the fake group it creates for a device without an IOMMU "vfio-noiommu". */
    if (nvl_setup_read_attr(nvl_setup_path(p, e->sys, "kernel/iommu_groups/%d/name", group), name,
                            sizeof(name)) != 0)
        return 0;
    return strcmp(name, "vfio-noiommu") == 0;
}

void nvl_setup_group_node(struct nvl_setup_env *e, int group, int noiommu, char buf[PATH_MAX])
{
    nvl_setup_path(buf, e->dev, "vfio/%s%d", noiommu ? "noiommu-" : "", group);
}

int nvl_setup_config_read(struct nvl_setup_env *e, const char *bdf, unsigned off, void *v, size_t n)
{
    char p[PATH_MAX];
    int fd =
        open(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/config", bdf), O_RDONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    ssize_t got = pread(fd, v, n, off);
    int err = got < 0 ? -errno : (size_t)got != n ? -EIO : 0;
    close(fd);
    return err;
}

int nvl_setup_config_write(struct nvl_setup_env *e, const char *bdf, unsigned off, const void *v,
                           size_t n)
{
    char p[PATH_MAX];
    int fd =
        open(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/config", bdf), O_WRONLY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    ssize_t put = pwrite(fd, v, n, off);
    int err = put < 0 ? -errno : (size_t)put != n ? -EIO : 0;
    close(fd);
    return err;
}

int nvl_setup_check_nvme(struct nvl_setup_env *e, const char *bdf, unsigned *vendor,
                         unsigned *device)
{
    char p[PATH_MAX], buf[32];
    unsigned long cls;
    char *end;

    if (!nvl_setup_exists(nvl_setup_path(p, e->sys, "bus/pci/devices/%s", bdf)))
        return nvl_setup_fail(
            e, -ENODEV, "no PCI device %s (nvload-setup --list shows the NVMe controllers)", bdf);
    int rc = nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/class", bdf), buf,
                                 sizeof(buf));
    if (rc)
        return nvl_setup_fail(e, rc, "cannot read the class of %s: %s", bdf, strerror(-rc));
    errno = 0;
    cls = strtoul(buf, &end, 16);
    if (errno || end == buf || *end)
        return nvl_setup_fail(e, -EINVAL, "%s: unreadable PCI class '%s'", bdf, buf);
    if (cls != NVL_SETUP_NVME_CLASS)
        return nvl_setup_fail(e, -ENOTSUP,
                              "%s is not an NVMe controller: its PCI class is 0x%06lx, NVMe is "
                              "0x%06x",
                              bdf, cls, NVL_SETUP_NVME_CLASS);
    if (vendor && nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/vendor", bdf),
                                      buf, sizeof(buf)) == 0)
        *vendor = (unsigned)strtoul(buf, NULL, 16);
    if (device && nvl_setup_read_attr(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/device", bdf),
                                      buf, sizeof(buf)) == 0)
        *device = (unsigned)strtoul(buf, NULL, 16);
    return 0;
}
