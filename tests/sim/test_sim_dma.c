/* Tests for driver/sim/src/sim_dma.c: the DMA region registry and its translation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "sim_internal.h"

static void map_translate_unmap(void **state)
{
    struct sim_dma d;
    struct sim_dma_cache c = {0, NULL};
    uint8_t *a = aligned_alloc(4096, 3 * 4096), *b = aligned_alloc(4096, 4096);
    uint64_t ia, ib;

    (void)state;
    assert_int_equal(nvl__sim_dma_init(&d), 0);
    assert_int_equal(nvl__sim_dma_map(&d, a, 3 * 4096, &ia), 0);
    assert_int_equal(nvl__sim_dma_map(&d, b, 4096, &ib), 0);
    /* IOVAs are never the virtual address, and live above the user address space. */
    assert_true(ia != (uint64_t)(uintptr_t)a);
    assert_true(ia >= (1ull << 48));
    assert_true(ib > ia + 3 * 4096);
    assert_ptr_equal(nvl__sim_dma_xlate(&d, &c, ia, 1), a);
    assert_ptr_equal(nvl__sim_dma_xlate(&d, &c, ia + 5000, 100), a + 5000);
    assert_ptr_equal(nvl__sim_dma_xlate(&d, NULL, ia + 3 * 4096 - 8, 8), a + 3 * 4096 - 8);
    assert_ptr_equal(nvl__sim_dma_xlate(&d, &c, ib + 4095, 1), b + 4095);
    /* Crossing the end of a region, the guard gap, and addresses below every region. */
    assert_null(nvl__sim_dma_xlate(&d, &c, ia + 3 * 4096 - 8, 9));
    assert_null(nvl__sim_dma_xlate(&d, &c, ia + 3 * 4096, 1));
    assert_null(nvl__sim_dma_xlate(&d, &c, ia - 1, 1));
    assert_null(nvl__sim_dma_xlate(&d, &c, (uint64_t)(uintptr_t)a, 1));
    assert_null(nvl__sim_dma_xlate(&d, &c, UINT64_MAX, 1));
    /* Unmap needs the exact triple. */
    assert_int_equal(nvl__sim_dma_unmap(&d, a, 4096, ia), -EINVAL);
    assert_int_equal(nvl__sim_dma_unmap(&d, b, 3 * 4096, ia), -EINVAL);
    assert_int_equal(nvl__sim_dma_unmap(&d, a, 3 * 4096, ia + 4096), -EINVAL);
    assert_int_equal(nvl__sim_dma_unmap(&d, a, 3 * 4096, ia), 0);
    /* The cache must not keep a removed region alive. */
    assert_null(nvl__sim_dma_xlate(&d, &c, ia, 1));
    assert_ptr_equal(nvl__sim_dma_xlate(&d, &c, ib, 1), b);
    assert_int_equal(nvl__sim_dma_unmap(&d, a, 3 * 4096, ia), -EINVAL);
    nvl__sim_dma_fini(&d);
    free(a);
    free(b);
}

static void map_rejects_unaligned(void **state)
{
    struct sim_dma d;
    uint8_t *a = aligned_alloc(4096, 2 * 4096);
    uint64_t iova;

    (void)state;
    assert_int_equal(nvl__sim_dma_init(&d), 0);
    assert_int_equal(nvl__sim_dma_map(&d, a + 8, 4096, &iova), -EINVAL);
    assert_int_equal(nvl__sim_dma_map(&d, a, 100, &iova), -EINVAL);
    assert_int_equal(nvl__sim_dma_map(&d, a, 0, &iova), -EINVAL);
    assert_int_equal(nvl__sim_dma_map(&d, NULL, 4096, &iova), -EINVAL);
    nvl__sim_dma_fini(&d);
    free(a);
}

/* Many regions: binary search finds every one, and retired tables are reclaimed. */
static void many_regions(void **state)
{
    enum { N = 300 };
    struct sim_dma d;
    struct sim_dma_cache c = {0, NULL};
    uint8_t *mem = aligned_alloc(4096, N * 4096);
    uint64_t iova[N];
    struct sim_dma_table **ret;
    uint32_t n, i;

    (void)state;
    assert_int_equal(nvl__sim_dma_init(&d), 0);
    for (i = 0; i < N; i++)
        assert_int_equal(nvl__sim_dma_map(&d, mem + i * 4096, 4096, &iova[i]), 0);
    for (i = 0; i < N; i++)
        assert_ptr_equal(nvl__sim_dma_xlate(&d, &c, iova[(i * 7) % N] + 17, 8),
                         mem + ((i * 7) % N) * 4096 + 17);
    for (i = 0; i < N; i += 2)
        assert_int_equal(nvl__sim_dma_unmap(&d, mem + i * 4096, 4096, iova[i]), 0);
    for (i = 0; i < N; i++) {
        uint8_t *p = nvl__sim_dma_xlate(&d, &c, iova[i], 4096);

        if (i % 2)
            assert_ptr_equal(p, mem + i * 4096);
        else
            assert_null(p);
    }
    ret = nvl__sim_dma_take_retired(&d, &n);
    assert_int_equal(n, N + N / 2);
    nvl__sim_dma_free_retired(ret, n);
    nvl__sim_dma_fini(&d);
    free(mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(map_translate_unmap),
        cmocka_unit_test(map_rejects_unaligned),
        cmocka_unit_test(many_regions),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
