/* Tests for driver/src/iova.c: alignment, splitting, merging on free, exhaustion. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "iova.h"

#define MIB (1ull << 20)

static void alignment_and_split(void **state)
{
    struct nvl_iova_alloc a;
    uint64_t x, y, z;

    (void)state;
    nvl__iova_init(&a);
    nvl__iova_add(&a, 0x1000, 64 * MIB);
    assert_int_equal(nvl__iova_get(&a, 4096, &x), 0);
    assert_int_equal(x, 0x1000);
    /* 12 KiB rounds its alignment up to 16 KiB. */
    assert_int_equal(nvl__iova_get(&a, 12288, &y), 0);
    assert_int_equal(y, 0x4000);
    /* 3 MiB: aligned to 2 MiB (the cap), not 4 MiB. */
    assert_int_equal(nvl__iova_get(&a, 3 * MIB, &z), 0);
    assert_int_equal(z, 2 * MIB);
    /* Free extents: [0x2000, 0x4000), [0x7000, 2 MiB), [5 MiB, 64 MiB). */
    assert_int_equal(a.n_free, 3);
    assert_int_equal(a.free_list[0].start, 0x2000);
    assert_int_equal(a.free_list[0].end, 0x4000);
    assert_int_equal(a.free_list[1].start, 0x7000);
    assert_int_equal(a.free_list[2].start, 5 * MIB);
    assert_int_equal(nvl__iova_get(&a, 100, &x), -EINVAL);
}

static void free_merges(void **state)
{
    struct nvl_iova_alloc a;
    uint64_t x, y, z;

    (void)state;
    nvl__iova_init(&a);
    nvl__iova_add(&a, 0, 16 * MIB);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &x), 0);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &y), 0);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &z), 0);
    assert_int_equal(x, 0);
    assert_int_equal(y, 2 * MIB);
    assert_int_equal(z, 4 * MIB);
    nvl__iova_put(&a, x, 2 * MIB);
    nvl__iova_put(&a, z, 2 * MIB); /* merges with [6, 16) MiB */
    assert_int_equal(a.n_free, 2);
    nvl__iova_put(&a, y, 2 * MIB); /* bridges the two */
    assert_int_equal(a.n_free, 1);
    assert_int_equal(a.free_list[0].start, 0);
    assert_int_equal(a.free_list[0].end, 16 * MIB);
}

static void exhaustion_and_ranges(void **state)
{
    struct nvl_iova_alloc a;
    uint64_t x;

    (void)state;
    nvl__iova_init(&a);
    assert_int_equal(nvl__iova_get(&a, 4096, &x), -ENOSPC);
    /* Two usable ranges with a hole (as an MSI window makes): a 2 MiB buffer skips the small
     * range. */
    nvl__iova_add(&a, 0x1000, 0x100000);
    nvl__iova_add(&a, 0x10000000, 0x10400000);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &x), 0);
    assert_int_equal(x, 0x10000000);
    assert_int_equal(nvl__iova_get(&a, 4 * MIB, &x), -ENOSPC);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &x), 0);
    assert_int_equal(x, 0x10200000);
    assert_int_equal(nvl__iova_get(&a, 2 * MIB, &x), -ENOSPC);
    /* 0xff000 bytes would need 1 MiB alignment, which [0x1000, 1 MiB) cannot give; 512 KiB
     * fits at its 512 KiB-aligned address. */
    assert_int_equal(nvl__iova_get(&a, 0xff000, &x), -ENOSPC);
    assert_int_equal(nvl__iova_get(&a, 0x80000, &x), 0);
    assert_int_equal(x, 0x80000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(alignment_and_split),
        cmocka_unit_test(free_merges),
        cmocka_unit_test(exhaustion_and_ranges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
