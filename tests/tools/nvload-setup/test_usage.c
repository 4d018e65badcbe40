/* nvload-setup usage.c: the block devices of a controller and the refusal rules (mounted, root
 * filesystem, swap, LVM/MD/dm holders), and who holds a vfio group open. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "fake_sysfs.h"
#include "setup.h"

#define BDF "0000:01:00.0"

/* A controller with nvme0n1 and partitions p1..p3, and a second unrelated drive nvme1n1. */
static int setup(void **state)
{
    static struct fake f;

    fake_init(&f);
    fake_pci(&f, BDF, 0x010802, "nvme", 5);
    fake_ns(&f, BDF, "nvme0", "nvme0n1", "nvme0n1", "259:0");
    fake_part(&f, "nvme0n1", "nvme0n1p1", "259:1");
    fake_part(&f, "nvme0n1", "nvme0n1p2", "259:2");
    fake_part(&f, "nvme0n1", "nvme0n1p3", "259:3");
    fake_pci(&f, "0000:02:00.0", 0x010802, "nvme", 6);
    fake_ns(&f, "0000:02:00.0", "nvme1", "nvme1n1", "nvme1n1", "259:4");
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    fake_fini(*state);
    return 0;
}

static void test_blk_list(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];
    int n = nvl_setup_blk_list(&f->env, BDF, blk, NVL_SETUP_MAX_BLK);
    int seen = 0;

    assert_int_equal(n, 4);
    for (int i = 0; i < n; i++) {
        if (strcmp(blk[i].name, "nvme0n1") == 0) {
            assert_string_equal(blk[i].majmin, "259:0");
            assert_int_equal(blk[i].partition, 0);
            assert_int_equal(blk[i].bytes, 2097152ull * 512);
            seen |= 1;
        } else if (strcmp(blk[i].name, "nvme0n1p2") == 0) {
            assert_string_equal(blk[i].majmin, "259:2");
            assert_int_equal(blk[i].partition, 1);
            seen |= 2;
        }
    }
    assert_int_equal(seen, 3);
    /* Not bound to nvme: no namespaces to look at. */
    fake_pci(f, "0000:03:00.0", 0x010802, "vfio-pci", 7);
    assert_int_equal(nvl_setup_blk_list(&f->env, "0000:03:00.0", blk, NVL_SETUP_MAX_BLK), 0);
}

static void test_multipath_names(void **state)
{
    struct fake *f = *state;
    struct nvl_setup_blk blk[NVL_SETUP_MAX_BLK];

    /* Native multipath: the controller holds the hidden path nvme4c2n1; users see nvme4n1. */
    fake_pci(f, "0000:04:00.0", 0x010802, "nvme", 8);
    fake_ns(f, "0000:04:00.0", "nvme2", "nvme4c2n1", "nvme4n1", "259:9");
    fake_write(f, "sys/bus/pci/devices/0000:04:00.0/nvme/nvme2/ng2n1/dev", "240:0\n");
    assert_int_equal(nvl_setup_blk_list(&f->env, "0000:04:00.0", blk, NVL_SETUP_MAX_BLK), 1);
    assert_string_equal(blk[0].name, "nvme4n1");
    assert_string_equal(blk[0].majmin, "259:9");
}

static void test_unused_passes(void **state)
{
    struct fake *f = *state;

    /* Mounts and swap of another drive do not matter. */
    fake_mount(f, "259:4", "/other", "/dev/nvme1n1");
    fake_swap(f, "/dev/nvme1n1");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), 0);
}

static void test_mounted_partition(void **state)
{
    struct fake *f = *state;

    fake_mount(f, "259:1", "/data", "/dev/nvme0n1p1");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1p1 is mounted at /data"));
    assert_null(strstr(f->env.err, "root filesystem"));
}

static void test_root_filesystem(void **state)
{
    struct fake *f = *state;

    fake_mount(f, "259:2", "/", "/dev/nvme0n1p2");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "mounted at / (the root filesystem)"));
    assert_non_null(strstr(f->env.err, "It holds the root filesystem"));
}

static void test_mount_by_source(void **state)
{
    struct fake *f = *state;

    /* btrfs shows an anonymous device number; the mount source names the partition. */
    fake_mount(f, "0:35", "/home", "/dev/nvme0n1p3");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1p3 is mounted at /home"));
}

static void test_swap(void **state)
{
    struct fake *f = *state;

    fake_swap(f, "/dev/nvme0n1p3");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1p3 is in use as swap"));
}

static void test_lvm_root(void **state)
{
    struct fake *f = *state;

    fake_holder(f, "block/nvme0n1/nvme0n1p2", "dm-0", "253:0", "vg0-root",
                "LVM-abcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcdefabcd");
    fake_mount(f, "253:0", "/", "/dev/mapper/vg0-root");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1p2 is a member of LVM volume vg0-root (dm-0), "
                                       "which is mounted at / (the root filesystem)"));
    assert_non_null(strstr(f->env.err, "It holds the root filesystem"));
}

static void test_crypt_swap_chain(void **state)
{
    struct fake *f = *state;

    /* p3 -> dm-crypt dm-1 -> swap on it. */
    fake_holder(f, "block/nvme0n1/nvme0n1p3", "dm-1", "253:1", "cryptswap",
                "CRYPT-PLAIN-cryptswap");
    fake_swap(f, "/dev/dm-1");
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "a member of dm-crypt volume cryptswap (dm-1), which is in "
                                       "use as swap"));
}

static void test_md_member(void **state)
{
    struct fake *f = *state;

    /* An idle array member is refused too: the array would lose a disk. */
    fake_holder(f, "block/nvme0n1", "md0", "9:0", NULL, NULL);
    assert_int_equal(nvl_setup_check_unused(&f->env, BDF), -EBUSY);
    assert_non_null(strstr(f->env.err, "/dev/nvme0n1 is a member of MD RAID array md0"));
}

static void test_openers(void **state)
{
    struct fake *f = *state;
    int pids[4];

    fake_write(f, "proc/123/comm", "nvinfer\n");
    fake_link(f, "proc/123/fd/0", "/dev/null");
    fake_link(f, "proc/123/fd/7", "/dev/vfio/5");
    fake_link(f, "proc/456/fd/3", "/dev/vfio/50");
    fake_mkdir(f, "proc/self");
    assert_int_equal(nvl_setup_openers(&f->env, "/dev/vfio/5", pids, 4), 1);
    assert_int_equal(pids[0], 123);
    assert_int_equal(nvl_setup_openers(&f->env, "/dev/vfio/6", pids, 4), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_blk_list, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multipath_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unused_passes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mounted_partition, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_filesystem, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mount_by_source, setup, teardown),
        cmocka_unit_test_setup_teardown(test_swap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lvm_root, setup, teardown),
        cmocka_unit_test_setup_teardown(test_crypt_swap_chain, setup, teardown),
        cmocka_unit_test_setup_teardown(test_md_member, setup, teardown),
        cmocka_unit_test_setup_teardown(test_openers, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
