/* Binding a controller to vfio-pci and giving it back to nvme, with rollback.
 *
 * nvl_setup_bind records each change it makes in struct bind_undo; when a later step fails it
 * undoes them in reverse order, so a failed run leaves the controller with the driver,
 * driver_override and vfio no-IOMMU setting it had before. */
#include <dirent.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "setup.h"

#define PCI_COMMAND           0x04
#define PCI_COMMAND_MEMORY    0x2
#define PCI_COMMAND_MASTER    0x4
#define PCI_STATUS            0x06
#define PCI_STATUS_CAP_LIST   0x10
#define PCI_CAPABILITY_LIST   0x34
#define PCI_CAP_ID_PM         0x01
#define PCI_PM_CTRL           4 /* PMCSR, from the capability's start */
#define PCI_PM_STATE_MASK     0x3
#define PCI_PM_D3HOT_DELAY_US 10000 /* PCI PM 1.2 §5.6.1: 10 ms after leaving D3hot */

struct bind_undo {
    char old_driver[NVL_SETUP_NAME_LEN]; /* driver we unbound, "" if none */
    int unbound;
    char old_override[NVL_SETUP_NAME_LEN]; /* driver_override before us, "" if none */
    int override_set;
    int noiommu_set;    /* we turned vfio's enable_unsafe_noiommu_mode on */
    char old_power[16]; /* power/control before us */
    int power_set;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    nanosleep(&ts, NULL);
}

static int driver_is(struct nvl_setup_env *e, const char *bdf, const char *want)
{
    char drv[NVL_SETUP_NAME_LEN];

    return nvl_setup_driver(e, bdf, drv, sizeof(drv)) == 0 && strcmp(drv, want) == 0;
}

/* Polls until bdf is bound to want or e->wait_ms passes. */
static int wait_driver(struct nvl_setup_env *e, const char *bdf, const char *want)
{
    for (unsigned t = 0;; t += 10) {
        if (driver_is(e, bdf, want))
            return 0;
        if (t >= e->wait_ms)
            return -ETIMEDOUT;
        sleep_ms(10);
    }
}

static int wait_path(struct nvl_setup_env *e, const char *path)
{
    for (unsigned t = 0;; t += 10) {
        if (nvl_setup_exists(path))
            return 0;
        if (t >= e->wait_ms)
            return -ETIMEDOUT;
        sleep_ms(10);
    }
}

/* Runs `modprobe module`; returns 0 or -errno, the reason in e->err. */
static int run_modprobe(struct nvl_setup_env *e, const char *module)
{
    int status;
    pid_t pid;

    fflush(NULL);
    pid = fork();
    if (pid < 0)
        return nvl_setup_fail(e, -errno, "fork: %s", strerror(errno));
    if (pid == 0) {
        execlp(e->modprobe, e->modprobe, module, (char *)NULL);
        _exit(127);
    }
    if (waitpid(pid, &status, 0) < 0)
        return nvl_setup_fail(e, -errno, "waitpid: %s", strerror(errno));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return nvl_setup_fail(e, -ENOENT, "cannot run '%s %s' (is kmod installed?)", e->modprobe,
                              module);
    return nvl_setup_fail(e, -ENOENT, "'%s %s' failed (exit status %d)", e->modprobe, module,
                          WIFEXITED(status) ? WEXITSTATUS(status) : -1);
}

/* Makes sure a driver is registered on the PCI bus, loading its module when it is not. */
static int ensure_pci_driver(struct nvl_setup_env *e, const char *driver, const char *module)
{
    char p[PATH_MAX];

    if (nvl_setup_exists(nvl_setup_path(p, e->sys, "bus/pci/drivers/%s", driver)))
        return 0;
    int rc = run_modprobe(e, module);
    if (rc == 0 && nvl_setup_exists(p))
        return 0;
    char why[NVL_SETUP_ERR_LEN];
    snprintf(why, sizeof(why), "%s", rc ? e->err : "the module loaded but registered no driver");
    return nvl_setup_fail(e, -ENOENT,
                          "the %s driver is not available: %s. The kernel needs %s (Debian and "
                          "Ubuntu kernels ship it as a module)",
                          driver, why,
                          strcmp(driver, "nvme") == 0 ? "CONFIG_BLK_DEV_NVME" : "CONFIG_VFIO_PCI");
}

static int ensure_module(struct nvl_setup_env *e, const char *module)
{
    char p[PATH_MAX];

    if (nvl_setup_exists(nvl_setup_path(p, e->sys, "module/%s", module)))
        return 0;
    int rc = run_modprobe(e, module);
    if (rc)
        return nvl_setup_fail(e, rc, "the %s module is not available: %s", module, e->err);
    return 0;
}

static int read_override(struct nvl_setup_env *e, const char *bdf, char *buf, size_t len)
{
    char p[PATH_MAX];
    int rc = nvl_setup_read_attr(
        nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver_override", bdf), buf, len);

    /* The kernel shows an unset override as "(null)". */
    if (rc == 0 && strcmp(buf, "(null)") == 0)
        buf[0] = '\0';
    return rc;
}

/* Sets driver_override ("" clears it: the kernel takes a lone newline as "none"). */
static int write_override(struct nvl_setup_env *e, const char *bdf, const char *driver)
{
    char p[PATH_MAX];

    return nvl_setup_write_attr(
        e, nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver_override", bdf),
        driver[0] ? driver : "\n");
}

static int unbind(struct nvl_setup_env *e, const char *bdf)
{
    char p[PATH_MAX];

    if (!nvl_setup_exists(nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver", bdf)))
        return 0;
    return nvl_setup_write_attr(
        e, nvl_setup_path(p, e->sys, "bus/pci/devices/%s/driver/unbind", bdf), bdf);
}

static int probe(struct nvl_setup_env *e, const char *bdf)
{
    char p[PATH_MAX];

    return nvl_setup_write_attr(e, nvl_setup_path(p, e->sys, "bus/pci/drivers_probe"), bdf);
}

static int noiommu_param(struct nvl_setup_env *e, char p[PATH_MAX])
{
    nvl_setup_path(p, e->sys, "module/vfio/parameters/enable_unsafe_noiommu_mode");
    return nvl_setup_exists(p);
}

/* Undoes what u records, in reverse order. Best effort: it reports what it could not undo. */
static void rollback(struct nvl_setup_env *e, const char *bdf, const struct bind_undo *u)
{
    char p[PATH_MAX];

    if (u->power_set)
        nvl_setup_write_attr(e, nvl_setup_path(p, e->sys, "bus/pci/devices/%s/power/control", bdf),
                             u->old_power);
    if (u->override_set || u->unbound) {
        if (!driver_is(e, bdf, u->old_driver))
            unbind(e, bdf);
        if (u->override_set)
            write_override(e, bdf, u->old_override);
        if (u->unbound && u->old_driver[0] && !driver_is(e, bdf, u->old_driver)) {
            probe(e, bdf);
            if (wait_driver(e, bdf, u->old_driver) != 0)
                fprintf(stderr, "nvload-setup: rollback: %s did not go back to %s\n", bdf,
                        u->old_driver);
        }
    }
    if (u->noiommu_set && noiommu_param(e, p))
        nvl_setup_write_attr(e, p, "0");
}

/* Finds a PCI capability in config space; returns its offset or 0. */
static unsigned find_cap(struct nvl_setup_env *e, const char *bdf, uint8_t id)
{
    uint16_t status = 0;
    uint8_t ptr = 0, hdr[2];

    if (nvl_setup_config_read(e, bdf, PCI_STATUS, &status, 2) || !(status & PCI_STATUS_CAP_LIST) ||
        nvl_setup_config_read(e, bdf, PCI_CAPABILITY_LIST, &ptr, 1))
        return 0;
    /* At most 48 capabilities fit in the 192 bytes after the header: bounds a looping list. */
    for (int i = 0; i < 48 && ptr >= 0x40; i++) {
        ptr &= ~3u;
        if (nvl_setup_config_read(e, bdf, ptr, hdr, 2))
            return 0;
        if (hdr[0] == id)
            return ptr;
        ptr = hdr[1];
    }
    return 0;
}

/* Keeps the function in D0: runtime PM off (power/control = on), and PMCSR back to D0 if it
 * is in a sleep state. vfio-pci puts idle functions into D3hot otherwise. */
static int force_d0(struct nvl_setup_env *e, const char *bdf, struct bind_undo *u)
{
    char p[PATH_MAX];
    uint16_t pmcsr;

    nvl_setup_path(p, e->sys, "bus/pci/devices/%s/power/control", bdf);
    if (nvl_setup_exists(p)) {
        if (nvl_setup_read_attr(p, u->old_power, sizeof(u->old_power)) == 0 &&
            strcmp(u->old_power, "on") != 0) {
            int rc = nvl_setup_write_attr(e, p, "on");
            if (rc)
                return nvl_setup_fail(e, rc, "cannot write %s: %s", p, strerror(-rc));
            u->power_set = 1;
        }
    }
    unsigned pm = find_cap(e, bdf, PCI_CAP_ID_PM);
    if (!pm)
        return 0; /* no PM capability: the function is always in D0 */
    if (nvl_setup_config_read(e, bdf, pm + PCI_PM_CTRL, &pmcsr, 2))
        return nvl_setup_fail(e, -EIO, "cannot read the power state of %s", bdf);
    if ((pmcsr & PCI_PM_STATE_MASK) == 0)
        return 0;
    unsigned from = pmcsr & PCI_PM_STATE_MASK;
    pmcsr &= (uint16_t)~PCI_PM_STATE_MASK;
    if (nvl_setup_config_write(e, bdf, pm + PCI_PM_CTRL, &pmcsr, 2))
        return nvl_setup_fail(e, -EIO, "cannot write the power state of %s", bdf);
    usleep(PCI_PM_D3HOT_DELAY_US);
    if (nvl_setup_config_read(e, bdf, pm + PCI_PM_CTRL, &pmcsr, 2) ||
        (pmcsr & PCI_PM_STATE_MASK) != 0)
        return nvl_setup_fail(e, -EIO, "%s stays in D%u after a write of D0 to its PMCSR", bdf,
                              pmcsr & PCI_PM_STATE_MASK);
    fprintf(e->out, "%s: woke from D%u to D0\n", bdf, from);
    return 0;
}

/* Sets memory space and bus master in the PCI COMMAND register. */
static int enable_command(struct nvl_setup_env *e, const char *bdf)
{
    uint16_t cmd = 0;

    if (nvl_setup_config_read(e, bdf, PCI_COMMAND, &cmd, 2))
        return nvl_setup_fail(e, -EIO, "cannot read the PCI command register of %s", bdf);
    if ((cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) ==
        (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
        return 0;
    cmd |= PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    if (nvl_setup_config_write(e, bdf, PCI_COMMAND, &cmd, 2) ||
        nvl_setup_config_read(e, bdf, PCI_COMMAND, &cmd, 2))
        return nvl_setup_fail(e, -EIO, "cannot write the PCI command register of %s", bdf);
    if ((cmd & (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER)) !=
        (PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER))
        return nvl_setup_fail(e, -EIO, "%s refuses memory space or bus mastering (COMMAND 0x%04x)",
                              bdf, cmd);
    return 0;
}

/* Warns about other devices in the IOMMU group: VFIO opens a group only when every member is
 * bound to vfio-pci (or to no driver, or is a bridge). */
static void check_group_viable(struct nvl_setup_env *e, const char *bdf, int group)
{
    char p[PATH_MAX], drv[NVL_SETUP_NAME_LEN];

    nvl_setup_path(p, e->sys, "kernel/iommu_groups/%d/devices", group);
    DIR *d = opendir(p);
    if (!d)
        return;
    for (struct dirent *de; (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.' || strcmp(de->d_name, bdf) == 0)
            continue;
        if (nvl_setup_driver(e, de->d_name, drv, sizeof(drv)) != 0 || !drv[0] ||
            strcmp(drv, "vfio-pci") == 0 || strcmp(drv, "pcieport") == 0 ||
            strcmp(drv, "pci-stub") == 0)
            continue;
        fprintf(stderr,
                "nvload-setup: warning: IOMMU group %d also holds %s, bound to %s; VFIO opens the "
                "group only when all its devices are bound to vfio-pci or unbound\n",
                group, de->d_name, drv);
    }
    closedir(d);
}

/* Gives the group's device node to user: owner user, group the user's primary group, 0660. */
static int give_to_user(struct nvl_setup_env *e, const char *node, const char *user, int noiommu)
{
    struct passwd *pw = getpwnam(user);

    if (!pw)
        return nvl_setup_fail(e, -ENOENT, "no user named '%s'", user);
    if (chown(node, pw->pw_uid, pw->pw_gid) != 0)
        return nvl_setup_fail(e, -errno, "chown %s to %s: %s", node, user, strerror(errno));
    if (chmod(node, 0660) != 0)
        return nvl_setup_fail(e, -errno, "chmod %s: %s", node, strerror(errno));
    fprintf(e->out,
            "%s: owned by %s; nvload needs a memlock limit large enough for its DMA "
            "buffers (e.g. '%s - memlock unlimited' in /etc/security/limits.conf)\n",
            node, user, user);
    if (noiommu)
        fprintf(stderr,
                "nvload-setup: warning: in no-IOMMU mode opening the group needs "
                "CAP_SYS_RAWIO and physical addresses need CAP_SYS_ADMIN: %s still "
                "needs root to run nvload\n",
                user);
    return 0;
}

int nvl_setup_bind(struct nvl_setup_env *e, const char *bdf, const struct nvl_setup_bind_opts *o,
                   struct nvl_setup_result *r)
{
    struct bind_undo u;
    char p[PATH_MAX], flag[8];
    int rc;

    memset(&u, 0, sizeof(u));
    memset(r, 0, sizeof(*r));
    rc = nvl_setup_check_nvme(e, bdf, NULL, NULL);
    if (rc)
        return rc;
    if (o && o->user && !getpwnam(o->user))
        return nvl_setup_fail(e, -ENOENT, "no user named '%s'", o->user);
    rc = nvl_setup_driver(e, bdf, r->old_driver, sizeof(r->old_driver));
    if (rc)
        return nvl_setup_fail(e, rc, "cannot read the driver of %s: %s", bdf, strerror(-rc));
    r->already = strcmp(r->old_driver, "vfio-pci") == 0;

    if (!r->already) {
        /* Refusals first: nothing has changed yet. */
        rc = nvl_setup_check_unused(e, bdf);
        if (rc)
            return rc;
        rc = ensure_pci_driver(e, "vfio-pci", "vfio-pci");
        if (rc)
            return rc;
    }

    /* IOMMU or not: a function behind an IOMMU has an iommu_group before vfio binds it. */
    int group = nvl_setup_iommu_group(e, bdf);
    r->noiommu = group < 0 || nvl_setup_group_is_noiommu(e, group);
    if (!r->noiommu) {
        rc = ensure_module(e, "vfio_iommu_type1");
        if (rc)
            return rc;
    } else if (!r->already) {
        if (!noiommu_param(e, p))
            return nvl_setup_fail(e, -ENOTSUP,
                                  "%s has no IOMMU group and this kernel's vfio has no no-IOMMU "
                                  "mode (CONFIG_VFIO_NOIOMMU). Enable the IOMMU (intel_iommu=on or "
                                  "amd_iommu=on on the kernel command line, VT-d/AMD-Vi in the "
                                  "firmware) or use a kernel built with CONFIG_VFIO_NOIOMMU",
                                  bdf);
        if (nvl_setup_read_attr(p, flag, sizeof(flag)) == 0 && flag[0] != 'Y' && flag[0] != '1') {
            rc = nvl_setup_write_attr(e, p, "1");
            if (rc)
                return nvl_setup_fail(e, rc, "cannot enable vfio's no-IOMMU mode (%s): %s", p,
                                      strerror(-rc));
            u.noiommu_set = 1;
        }
        fprintf(stderr, "nvload-setup: warning: no IOMMU: using vfio's unsafe no-IOMMU mode. The "
                        "drive can DMA anywhere in memory and nvload must run as root\n");
    }

    if (!r->already) {
        rc = read_override(e, bdf, u.old_override, sizeof(u.old_override));
        if (rc && rc != -ENOENT) {
            nvl_setup_fail(e, rc, "cannot read driver_override of %s: %s", bdf, strerror(-rc));
            goto err_rollback;
        }
        if (r->old_driver[0]) {
            rc = unbind(e, bdf);
            if (rc) {
                nvl_setup_fail(e, rc, "cannot unbind %s from %s: %s%s", bdf, r->old_driver,
                               strerror(-rc), rc == -EACCES ? " (run as root)" : "");
                goto err_rollback;
            }
            snprintf(u.old_driver, sizeof(u.old_driver), "%s", r->old_driver);
            u.unbound = 1;
            fprintf(e->out, "%s: unbound from %s\n", bdf, r->old_driver);
        }
        rc = write_override(e, bdf, "vfio-pci");
        if (rc) {
            nvl_setup_fail(e, rc, "cannot set driver_override of %s: %s", bdf, strerror(-rc));
            goto err_rollback;
        }
        u.override_set = 1;
        rc = probe(e, bdf);
        if (rc == 0)
            rc = wait_driver(e, bdf, "vfio-pci");
        if (rc) {
            nvl_setup_fail(e, rc, "vfio-pci did not bind %s (%s); see dmesg", bdf, strerror(-rc));
            goto err_rollback;
        }
    }

    group = nvl_setup_iommu_group(e, bdf);
    if (group < 0) {
        rc = nvl_setup_fail(e, -ENODEV, "%s is bound to vfio-pci but has no IOMMU group", bdf);
        goto err_rollback;
    }
    r->group = group;
    r->noiommu = nvl_setup_group_is_noiommu(e, group);
    nvl_setup_group_node(e, group, r->noiommu, r->node);
    if (wait_path(e, r->node) != 0) {
        rc = nvl_setup_fail(e, -ENODEV, "%s did not appear within %u ms", r->node, e->wait_ms);
        goto err_rollback;
    }
    if (!r->noiommu)
        check_group_viable(e, bdf, group);

    rc = force_d0(e, bdf, &u);
    if (rc)
        goto err_rollback;
    rc = enable_command(e, bdf);
    if (rc)
        goto err_rollback;
    if (o && o->user) {
        rc = give_to_user(e, r->node, o->user, r->noiommu);
        if (rc)
            goto err_rollback;
    }
    return 0;

err_rollback:
    rollback(e, bdf, &u);
    return rc;
}

/* Prints "pid N (comm)" for the processes holding the group node, into buf. */
static int describe_openers(struct nvl_setup_env *e, const char *node, char *buf, size_t len)
{
    int pids[8];
    int n = nvl_setup_openers(e, node, pids, 8);
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < n && used < len; i++) {
        char p[PATH_MAX], comm[64] = "?";
        nvl_setup_read_attr(nvl_setup_path(p, e->proc, "%d/comm", pids[i]), comm, sizeof(comm));
        used +=
            (size_t)snprintf(buf + used, len - used, "%spid %d (%s)", i ? ", " : "", pids[i], comm);
    }
    return n;
}

int nvl_setup_restore(struct nvl_setup_env *e, const char *bdf)
{
    char drv[NVL_SETUP_NAME_LEN], old_override[NVL_SETUP_NAME_LEN] = "";
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];
    int rc;

    rc = nvl_setup_check_nvme(e, bdf, NULL, NULL);
    if (rc)
        return rc;
    rc = nvl_setup_driver(e, bdf, drv, sizeof(drv));
    if (rc)
        return nvl_setup_fail(e, rc, "cannot read the driver of %s: %s", bdf, strerror(-rc));

    if (strcmp(drv, "nvme") != 0) {
        if (strcmp(drv, "vfio-pci") == 0) {
            int group = nvl_setup_iommu_group(e, bdf);
            char node[PATH_MAX], who[512];
            if (group >= 0) {
                nvl_setup_group_node(e, group, nvl_setup_group_is_noiommu(e, group), node);
                /* vfio-pci's remove waits for the last user to close the device: refuse rather
                 * than hang. */
                if (describe_openers(e, node, who, sizeof(who)) > 0)
                    return nvl_setup_fail(e, -EBUSY, "%s is in use: %s is open in %s", bdf, node,
                                          who);
            }
        }
        rc = ensure_pci_driver(e, "nvme", "nvme");
        if (rc)
            return rc;
        read_override(e, bdf, old_override, sizeof(old_override));
        if (drv[0]) {
            rc = unbind(e, bdf);
            if (rc)
                return nvl_setup_fail(e, rc, "cannot unbind %s from %s: %s", bdf, drv,
                                      strerror(-rc));
            fprintf(e->out, "%s: unbound from %s\n", bdf, drv);
        }
        rc = write_override(e, bdf, "");
        if (rc == 0)
            rc = probe(e, bdf);
        if (rc == 0)
            rc = wait_driver(e, bdf, "nvme");
        if (rc) {
            nvl_setup_fail(e, rc, "nvme did not bind %s (%s); see dmesg", bdf, strerror(-rc));
            /* Put it back where it was rather than leave it without a driver. */
            write_override(e, bdf, old_override);
            if (drv[0]) {
                probe(e, bdf);
                wait_driver(e, bdf, drv);
            }
            return rc;
        }
        fprintf(e->out, "%s: bound to nvme\n", bdf);
    }

    /* The nvme driver scans namespaces asynchronously: wait for the block devices and their
     * nodes. A controller may have no namespace at all, so running out of time is a warning. */
    for (unsigned t = 0;; t += 10) {
        int n = nvl_setup_blk_list(e, bdf, blk, NVL_SETUP_MAX_BLK);
        int ready = n > 0;
        for (int i = 0; i < n && ready; i++) {
            char node[PATH_MAX];
            ready = nvl_setup_exists(nvl_setup_path(node, e->dev, "%s", blk[i].name));
        }
        if (ready) {
            for (int i = 0; i < n; i++)
                fprintf(e->out, "%s: /dev/%s\n", bdf, blk[i].name);
            return 0;
        }
        if (t >= e->wait_ms) {
            fprintf(stderr,
                    "nvload-setup: warning: %s is bound to nvme but no namespace block "
                    "device appeared within %u ms\n",
                    bdf, e->wait_ms);
            return 0;
        }
        sleep_ms(10);
    }
}
