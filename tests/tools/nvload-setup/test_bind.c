/* nvload-setup bind.c: bind and restore against the fake tree, whose write hook plays the
 * kernel; every failure must leave the controller as it was. Also runs the program itself for
 * its exit codes and messages. */
#include <errno.h>
#include <pwd.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "fake_sysfs.h"
#include "setup.h"

#define BDF "0000:01:00.0"

static int setup(void **state)
{
    static struct fake f;

    fake_init(&f);
    fake_pci(&f, BDF, 0x010802, "nvme", 5);
    fake_ns(&f, BDF, "nvme0", "nvme0n1", "nvme0n1", "259:0");
    fake_pci_driver(&f, "vfio-pci");
    fake_vfio_module(&f, 1);
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fake_fini(*state);
    return 0;
}

/* The controller is exactly as setup() left it. */
static void assert_untouched(struct fake *f)
{
    assert_string_equal(fake_driver(f, BDF), "nvme");
    const char *ov = fake_read(f, "sys/bus/pci/devices/" BDF "/driver_override");
    assert_true(strcmp(ov, "(null)") == 0 || ov[0] == '\0');
    assert_string_equal(fake_read(f, "sys/bus/pci/devices/" BDF "/power/control"), "auto");
    assert_int_equal(fake_config16(f, BDF, 0x04), 0);
}

static void test_bind_iommu(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    char want[PATH_MAX];

    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), 0);
    assert_string_equal(r.old_driver, "nvme");
    assert_int_equal(r.already, 0);
    assert_int_equal(r.noiommu, 0);
    assert_int_equal(r.group, 5);
    snprintf(want, sizeof(want), "%s/dev/vfio/5", f->root);
    assert_string_equal(r.node, want);
    assert_string_equal(fake_driver(f, BDF), "vfio-pci");
    assert_string_equal(fake_read(f, "sys/bus/pci/devices/" BDF "/driver_override"), "vfio-pci");
    assert_string_equal(fake_read(f, "sys/bus/pci/devices/" BDF "/power/control"), "on");
    /* Memory space and bus master on; PMCSR back to D0 (it started in D3hot). */
    assert_int_equal(fake_config16(f, BDF, 0x04) & 0x6, 0x6);
    assert_int_equal(fake_config16(f, BDF, 0x44) & 0x3, 0);

    /* Again: already bound, nothing to undo or redo. */
    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), 0);
    assert_int_equal(r.already, 1);
    assert_string_equal(fake_driver(f, BDF), "vfio-pci");
}

static void test_bind_refuses_mounted(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;

    fake_mount(f, "259:0", "/scratch", "/dev/nvme0n1");
    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1 is mounted at /scratch"));
    assert_untouched(f);
}

static void test_bind_refuses_non_nvme(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;

    fake_pci(f, "0000:00:1f.2", 0x010601, "ahci", 9);
    assert_int_equal(nvl_setup_bind(&f->env, "0000:00:1f.2", NULL, &r), -ENOTSUP);
    assert_non_null(strstr(f->env.err, "not an NVMe controller"));
    assert_string_equal(fake_driver(f, "0000:00:1f.2"), "ahci");
    assert_int_equal(nvl_setup_bind(&f->env, "0000:07:00.0", NULL, &r), -ENODEV);
}

static void test_bind_vfio_missing(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;

    fake_rename(f, "sys/bus/pci/drivers/vfio-pci", "vfio-pci.unloaded");
    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), -ENOENT);
    assert_non_null(strstr(f->env.err, "the vfio-pci driver is not available"));
    assert_non_null(strstr(f->env.err, "'false vfio-pci' failed"));
    assert_untouched(f);
}

static void test_bind_loads_vfio(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    char script[PATH_MAX], body[PATH_MAX * 2];

    /* A modprobe that registers the driver, as the real one would. */
    fake_rename(f, "sys/bus/pci/drivers/vfio-pci", "vfio-pci.unloaded");
    snprintf(body, sizeof(body),
             "#!/bin/sh\n[ \"$1\" = vfio-pci ] && mv %s/vfio-pci.unloaded "
             "%s/sys/bus/pci/drivers/vfio-pci\n",
             f->root, f->root);
    fake_write(f, "modprobe", body);
    snprintf(script, sizeof(script), "%s/modprobe", f->root);
    chmod(script, 0755);
    snprintf(f->env.modprobe, sizeof(f->env.modprobe), "%s", script);
    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), 0);
    assert_string_equal(fake_driver(f, BDF), "vfio-pci");
}

static void test_bind_rollback(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;

    /* vfio-pci does not take the device: everything goes back. */
    f->refuse_vfio = 1;
    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), -ETIMEDOUT);
    assert_non_null(strstr(f->env.err, "vfio-pci did not bind " BDF));
    assert_untouched(f);
}

static void test_bind_noiommu(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    char want[PATH_MAX];

    fake_pci(f, "0000:02:00.0", 0x010802, "nvme", -1);
    assert_int_equal(nvl_setup_bind(&f->env, "0000:02:00.0", NULL, &r), 0);
    assert_int_equal(r.noiommu, 1);
    snprintf(want, sizeof(want), "%s/dev/vfio/noiommu-%d", f->root, r.group);
    assert_string_equal(r.node, want);
    assert_string_equal(fake_read(f, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"), "1");
    assert_string_equal(fake_driver(f, "0000:02:00.0"), "vfio-pci");
}

static void test_bind_noiommu_rollback(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;

    fake_pci(f, "0000:02:00.0", 0x010802, "nvme", -1);
    f->refuse_vfio = 1;
    assert_int_equal(nvl_setup_bind(&f->env, "0000:02:00.0", NULL, &r), -ETIMEDOUT);
    /* The unsafe mode nvload-setup turned on is off again. */
    assert_string_equal(fake_read(f, "sys/module/vfio/parameters/enable_unsafe_noiommu_mode"), "0");
    assert_string_equal(fake_driver(f, "0000:02:00.0"), "nvme");
}

static void test_bind_noiommu_unsupported(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    char p[PATH_MAX];

    fake_pci(f, "0000:02:00.0", 0x010802, "nvme", -1);
    snprintf(p, sizeof(p), "%s/sys/module/vfio/parameters/enable_unsafe_noiommu_mode", f->root);
    unlink(p);
    assert_int_equal(nvl_setup_bind(&f->env, "0000:02:00.0", NULL, &r), -ENOTSUP);
    assert_non_null(strstr(f->env.err, "CONFIG_VFIO_NOIOMMU"));
    assert_non_null(strstr(f->env.err, "intel_iommu=on"));
    assert_string_equal(fake_driver(f, "0000:02:00.0"), "nvme");
}

static void test_bind_user(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    struct nvl_setup_bind_opts o = {0};
    struct passwd *me = getpwuid(getuid());
    struct stat st;

    assert_non_null(me);
    o.user = "no-such-user-nvload";
    assert_int_equal(nvl_setup_bind(&f->env, BDF, &o, &r), -ENOENT);
    assert_non_null(strstr(f->env.err, "no user named 'no-such-user-nvload'"));
    assert_untouched(f);

    o.user = me->pw_name;
    assert_int_equal(nvl_setup_bind(&f->env, BDF, &o, &r), 0);
    assert_int_equal(stat(r.node, &st), 0);
    assert_int_equal(st.st_uid, me->pw_uid);
    assert_int_equal(st.st_mode & 0777, 0660);
}

static void test_restore(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_result r;
    char target[PATH_MAX];

    assert_int_equal(nvl_setup_bind(&f->env, BDF, NULL, &r), 0);
    /* Open in a process: vfio-pci's remove would block, so restore refuses. */
    snprintf(target, sizeof(target), "%s", r.node);
    fake_write(f, "proc/4242/comm", "nvinfer\n");
    fake_link(f, "proc/4242/fd/9", target);
    assert_int_equal(nvl_setup_restore(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "pid 4242 (nvinfer)"));
    assert_string_equal(fake_driver(f, BDF), "vfio-pci");

    char p[PATH_MAX];
    snprintf(p, sizeof(p), "%s/proc/4242/fd/9", f->root);
    unlink(p);
    assert_int_equal(nvl_setup_restore(&f->env, BDF), 0);
    assert_string_equal(fake_driver(f, BDF), "nvme");
    assert_string_equal(fake_read(f, "sys/bus/pci/devices/" BDF "/driver_override"), "");
    /* Already on nvme: a second restore has nothing to do. */
    assert_int_equal(nvl_setup_restore(&f->env, BDF), 0);
}

/* Runs nvload-setup with args against the fake tree; returns the exit status, stderr in err. */
static int run_tool(struct fake *f, const char *args, char *err, size_t len)
{
    char cmd[PATH_MAX * 2], errfile[PATH_MAX];

    snprintf(errfile, sizeof(errfile), "%s/stderr", f->root);
    snprintf(cmd, sizeof(cmd), "%s %s >/dev/null 2>%s", NVL_SETUP_BIN, args, errfile);
    int st = system(cmd);
    snprintf(err, len, "%s", fake_read(f, "stderr"));
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_program(void **state)
{
    struct fake *f = *state;
    char err[4096];

    fake_pci(f, "0000:00:1f.2", 0x010601, "ahci", 9);
    assert_int_equal(run_tool(f, "zz:00.0", err, sizeof(err)), 1);
    assert_non_null(strstr(err, "invalid PCI address 'zz:00.0'"));
    assert_int_equal(run_tool(f, "0000:00:1f.2", err, sizeof(err)), 1);
    assert_non_null(strstr(err, "not an NVMe controller"));
    assert_int_equal(run_tool(f, "0000:05:00.0", err, sizeof(err)), 1);
    assert_non_null(strstr(err, "no PCI device"));
    assert_int_equal(run_tool(f, "", err, sizeof(err)), 2);
    assert_int_equal(run_tool(f, "--list " BDF, err, sizeof(err)), 2);
    assert_int_equal(run_tool(f, "--status --restore " BDF, err, sizeof(err)), 2);
    assert_int_equal(run_tool(f, "--status " BDF, err, sizeof(err)), 0);
    assert_int_equal(run_tool(f, "--list", err, sizeof(err)), 0);
    /* The program sees no kernel hook: with a mounted drive it must refuse before writing. */
    fake_mount(f, "259:0", "/", "/dev/nvme0n1");
    assert_int_equal(run_tool(f, BDF, err, sizeof(err)), 1);
    assert_non_null(strstr(err, "root filesystem"));
    assert_untouched(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_bind_iommu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_refuses_mounted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_refuses_non_nvme, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_vfio_missing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_loads_vfio, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_noiommu, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_noiommu_rollback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_noiommu_unsupported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bind_user, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restore, setup, teardown),
        cmocka_unit_test_setup_teardown(test_program, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
