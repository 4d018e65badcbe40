/* nvload-setup sysfs.c: BDF parsing, the NVMe class check, configurable roots. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "fake_sysfs.h"
#include "setup.h"

static void test_parse_bdf_accepts(void **state)
{
    static const char *cases[][2] = {
        {"0000:01:00.0", "0000:01:00.0"}, {"01:00.0", "0000:01:00.0"},
        {"0000:AB:1f.7", "0000:ab:1f.7"}, {"10000:e1:00.0", "10000:e1:00.0"},
        {"1:02:03.4", "0001:02:03.4"},
    };
    char out[NVL_SETUP_BDF_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(nvl_setup_parse_bdf(cases[i][0], out), 0);
        assert_string_equal(out, cases[i][1]);
    }
}

static void test_parse_bdf_rejects(void **state)
{
    static const char *bad[] = {
        "",
        "0000:01:00",
        "0000:01:00.",
        "0000:01:20.0",
        "0000:01:00.8",
        "0000:01:00.0x",
        "g000:01:00.0",
        "0000-01:00.0",
        "0000:01-00.0",
        "123456789:00:00.0",
        ":01:00.0",
        "0000:1:00.0",
        "0000:01:0.0",
        "0000:01:00:0",
        " 0000:01:00.0",
    };
    char out[NVL_SETUP_BDF_LEN];

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(nvl_setup_parse_bdf(bad[i], out), -EINVAL);
    assert_int_equal(nvl_setup_parse_bdf(NULL, out), -EINVAL);
}

static void test_check_nvme(void **state)
{
    struct fake f;
    unsigned vendor = 0, device = 0;

    (void)state;
    fake_init(&f);
    fake_pci(&f, "0000:01:00.0", 0x010802, "nvme", 3);
    fake_pci(&f, "0000:02:00.0", 0x010601, "ahci", 4); /* SATA AHCI */
    fake_pci(&f, "0000:03:00.0", 0x010801, "", -1);    /* NVM, but not NVMe programming i/f */

    assert_int_equal(nvl_setup_check_nvme(&f.env, "0000:01:00.0", &vendor, &device), 0);
    assert_int_equal(vendor, 0x1b36);
    assert_int_equal(device, 0x0010);

    assert_int_equal(nvl_setup_check_nvme(&f.env, "0000:02:00.0", NULL, NULL), -ENOTSUP);
    assert_non_null(strstr(f.env.err, "is not an NVMe controller"));
    assert_non_null(strstr(f.env.err, "0x010601"));
    assert_int_equal(nvl_setup_check_nvme(&f.env, "0000:03:00.0", NULL, NULL), -ENOTSUP);

    assert_int_equal(nvl_setup_check_nvme(&f.env, "0000:09:00.0", NULL, NULL), -ENODEV);
    assert_non_null(strstr(f.env.err, "no PCI device 0000:09:00.0"));

    fake_write(&f, "sys/bus/pci/devices/0000:03:00.0/class", "garbage\n");
    assert_int_equal(nvl_setup_check_nvme(&f.env, "0000:03:00.0", NULL, NULL), -EINVAL);
    fake_fini(&f);
}

static void test_env_roots(void **state)
{
    struct nvl_setup_env e;

    (void)state;
    setenv("NVL_SYSFS_ROOT", "/tmp/x/sys/", 1);
    setenv("NVL_PROC_ROOT", "/tmp/x/proc", 1);
    unsetenv("NVL_DEV_ROOT");
    unsetenv("NVL_MODPROBE");
    nvl_setup_env_init(&e);
    assert_string_equal(e.sys, "/tmp/x/sys");
    assert_string_equal(e.proc, "/tmp/x/proc");
    assert_string_equal(e.dev, "/dev");
    assert_string_equal(e.modprobe, "modprobe");
    assert_int_equal(e.real, 0);

    unsetenv("NVL_SYSFS_ROOT");
    unsetenv("NVL_PROC_ROOT");
    nvl_setup_env_init(&e);
    assert_string_equal(e.sys, "/sys");
    assert_int_equal(e.real, 1);
}

static void test_groups_and_config(void **state)
{
    struct fake f;
    char node[PATH_MAX], want[PATH_MAX];
    uint16_t v = 0;

    (void)state;
    fake_init(&f);
    fake_pci(&f, "0000:01:00.0", 0x010802, "nvme", 17);
    fake_pci(&f, "0000:02:00.0", 0x010802, "nvme", -1);
    assert_int_equal(nvl_setup_iommu_group(&f.env, "0000:01:00.0"), 17);
    assert_int_equal(nvl_setup_iommu_group(&f.env, "0000:02:00.0"), -ENOENT);
    assert_int_equal(nvl_setup_group_is_noiommu(&f.env, 17), 0);
    fake_write(&f, "sys/kernel/iommu_groups/17/name", "vfio-noiommu\n");
    assert_int_equal(nvl_setup_group_is_noiommu(&f.env, 17), 1);
    nvl_setup_group_node(&f.env, 17, 1, node);
    snprintf(want, sizeof(want), "%s/dev/vfio/noiommu-17", f.root);
    assert_string_equal(node, want);

    assert_int_equal(nvl_setup_config_read(&f.env, "0000:01:00.0", 0x44, &v, 2), 0);
    assert_int_equal(v, 3);
    v = 0x1234;
    assert_int_equal(nvl_setup_config_write(&f.env, "0000:01:00.0", 0x04, &v, 2), 0);
    assert_int_equal(fake_config16(&f, "0000:01:00.0", 0x04), 0x1234);
    fake_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_bdf_accepts), cmocka_unit_test(test_parse_bdf_rejects),
        cmocka_unit_test(test_check_nvme),        cmocka_unit_test(test_env_roots),
        cmocka_unit_test(test_groups_and_config),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
