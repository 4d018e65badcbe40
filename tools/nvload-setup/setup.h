/* nvload-setup internals: hands one NVMe controller from the kernel's nvme driver to vfio-pci
 * and back, refusing drives the system is using.
 *
 * Every path goes through an environment (struct nvl_setup_env) whose sysfs, procfs and /dev
 * roots default to the real ones and can be pointed at a fake tree (NVL_SYSFS_ROOT,
 * NVL_PROC_ROOT, NVL_DEV_ROOT), so the refusal rules and the rollback are unit-tested without
 * hardware. A test can also install a write hook that plays the kernel's part (a write to
 * drivers_probe rebinds the device in the fake tree).
 *
 * Functions return 0 or -errno and leave a sentence for the user in env->err. Progress goes to
 * env->out. */
#ifndef NVL_SETUP_H
#define NVL_SETUP_H

#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define NVL_SETUP_BDF_LEN    20 /* "0000:01:00.0" + NUL; VMD domains have more digits */
#define NVL_SETUP_NAME_LEN   64
#define NVL_SETUP_ERR_LEN    1024
#define NVL_SETUP_NVME_CLASS 0x010802u /* mass storage, non-volatile memory, NVMe */

struct nvl_setup_env;

/* Called after each successful write to a sysfs attribute with the full path and the value;
 * tests use it to emulate the kernel. NULL in production. */
typedef void (*nvl_setup_write_hook)(struct nvl_setup_env *e, const char *path, const char *value);

struct nvl_setup_env {
    char sys[PATH_MAX];          /* sysfs root ("/sys") */
    char proc[PATH_MAX];         /* procfs root ("/proc") */
    char dev[PATH_MAX];          /* device node root ("/dev") */
    char modprobe[PATH_MAX];     /* modprobe program (NVL_MODPROBE, default "modprobe") */
    int real;                    /* 1: the real roots; libpciaccess enumerates and stat() works */
    unsigned wait_ms;            /* how long to wait for the kernel to bind or create nodes */
    FILE *out;                   /* progress and reports (stdout) */
    char err[NVL_SETUP_ERR_LEN]; /* why the last call failed */
    nvl_setup_write_hook write_hook;
    void *hook_arg;
};

/* Fills e from the environment variables above; out = stdout, wait_ms = 10000. */
void nvl_setup_env_init(struct nvl_setup_env *e);

/* Sets e->err; always returns err (a negative errno) so callers can `return nvl_setup_fail(...)`.
 */
int nvl_setup_fail(struct nvl_setup_env *e, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- sysfs access (sysfs.c) -------------------------------------------------------------- */

/* Parses "DDDD:BB:DD.F" (domain of 1-8 hex digits) or "BB:DD.F" into the canonical
 * lower-case "dddd:bb:dd.f" sysfs uses. */
int nvl_setup_parse_bdf(const char *in, char out[NVL_SETUP_BDF_LEN]);

/* Path of a file under a root: nvl_setup_path(buf, e->sys, "bus/pci/devices/%s/class", bdf). */
char *nvl_setup_path(char buf[PATH_MAX], const char *root, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Reads a small attribute, trailing newline removed. Returns 0 or -errno. */
int nvl_setup_read_attr(const char *path, char *buf, size_t len);
/* Writes value to an attribute (one write call, as sysfs wants), then calls the write hook. */
int nvl_setup_write_attr(struct nvl_setup_env *e, const char *path, const char *value);
/* The last path component of a symlink's target ("nvme" for .../driver), or -errno. */
int nvl_setup_link_name(const char *path, char *buf, size_t len);
int nvl_setup_exists(const char *path);

/* The driver bound to bdf ("" when none). */
int nvl_setup_driver(struct nvl_setup_env *e, const char *bdf, char *buf, size_t len);
/* The IOMMU group number of bdf, or -ENOENT when it has none. */
int nvl_setup_iommu_group(struct nvl_setup_env *e, const char *bdf);
/* 1 when a vfio no-IOMMU group backs bdf's group (the group's name file says "vfio-noiommu"). */
int nvl_setup_group_is_noiommu(struct nvl_setup_env *e, int group);
/* Device node of the vfio group: /dev/vfio/N or /dev/vfio/noiommu-N. */
void nvl_setup_group_node(struct nvl_setup_env *e, int group, int noiommu, char buf[PATH_MAX]);

/* PCI config space through sysfs (bdf/config). */
int nvl_setup_config_read(struct nvl_setup_env *e, const char *bdf, unsigned off, void *v,
                          size_t n);
int nvl_setup_config_write(struct nvl_setup_env *e, const char *bdf, unsigned off, const void *v,
                           size_t n);

/* Checks that bdf exists and is an NVMe controller; fills vendor/device when not NULL. */
int nvl_setup_check_nvme(struct nvl_setup_env *e, const char *bdf, unsigned *vendor,
                         unsigned *device);

/* ---- block devices and who uses them (usage.c) ------------------------------------------- */

#define NVL_SETUP_MAX_BLK 64

struct nvl_setup_blk {
    char name[NVL_SETUP_NAME_LEN]; /* "nvme0n1", "nvme0n1p2" */
    char majmin[16];               /* "259:0" */
    char sysdir[160];              /* its sysfs directory, relative to the root: "block/nvme0n1" */
    uint64_t bytes;                /* size */
    int partition;                 /* 1: a partition of the preceding disk */
    char use[512];                 /* what uses it, "" when nothing */
    int is_root;                   /* it holds the root filesystem (directly or below a holder) */
};

/* Lists the block devices (namespaces and their partitions) of controller bdf. Returns the
 * count (0 when the controller is not bound to nvme) or -errno. */
int nvl_setup_blk_list(struct nvl_setup_env *e, const char *bdf, struct nvl_setup_blk *blk,
                       int max);

/* Fills blk->use for each entry: mounted (and where), swap, held by LVM/MD/dm (and what that
 * holder is used for), root filesystem. Returns the number of devices in use. */
int nvl_setup_blk_usage(struct nvl_setup_env *e, struct nvl_setup_blk *blk, int n);

/* 0 when no block device of bdf is in use; -EBUSY with the reasons in e->err otherwise. */
int nvl_setup_check_unused(struct nvl_setup_env *e, const char *bdf);

/* Process ids that hold path open (scans /proc/N/fd); returns the count found, at most max. */
int nvl_setup_openers(struct nvl_setup_env *e, const char *path, int *pids, int max);

/* ---- binding (bind.c) -------------------------------------------------------------------- */

struct nvl_setup_bind_opts {
    const char *user; /* give this user the vfio group node; NULL: root only */
};

struct nvl_setup_result {
    char old_driver[NVL_SETUP_NAME_LEN]; /* "nvme", "" when none */
    int group;                           /* IOMMU group number */
    int noiommu;                         /* 1: no-IOMMU mode */
    char node[PATH_MAX];                 /* /dev/vfio/<group> */
    int already;                         /* 1: it was bound to vfio-pci already */
};

/* Prepares bdf for nvload: the checks, unbind, vfio-pci, D0, memory + bus master, --user.
 * On failure everything done so far is undone. */
int nvl_setup_bind(struct nvl_setup_env *e, const char *bdf, const struct nvl_setup_bind_opts *o,
                   struct nvl_setup_result *r);

/* Gives bdf back to the kernel's nvme driver and waits for its namespaces' block devices. */
int nvl_setup_restore(struct nvl_setup_env *e, const char *bdf);

/* ---- reports (report.c) ------------------------------------------------------------------ */

/* Detailed state of one controller on e->out. */
int nvl_setup_status(struct nvl_setup_env *e, const char *bdf);

/* Every NVMe controller, one line each, on e->out. Returns the count or -errno. */
int nvl_setup_list(struct nvl_setup_env *e);

/* The NVMe controllers present: enumerated with libpciaccess on the real system, by scanning
 * the fake tree otherwise. Returns the count (at most max) or -errno. */
int nvl_setup_enumerate(struct nvl_setup_env *e, char (*bdfs)[NVL_SETUP_BDF_LEN], int max);

#endif
