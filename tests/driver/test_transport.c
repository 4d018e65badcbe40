/* Tests for driver/src/transport.c: the NULL-safe wrappers. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "nvl_driver.h"

static int destroyed;

static int map_ok(struct nvl_transport *t, void *vaddr, size_t len, uint64_t *iova)
{
    (void)t;
    (void)len;
    *iova = (uintptr_t)vaddr + 1;
    return 0;
}

static void count_destroy(struct nvl_transport *t)
{
    (void)t;
    destroyed++;
}

static const struct nvl_transport_ops ops = {
    .dma_map = map_ok,
    .destroy = count_destroy,
};

static void wrappers(void **state)
{
    struct nvl_transport t = {.name = "t", .ops = &ops};
    char buf[8];
    uint64_t iova = 0;

    (void)state;
    assert_int_equal(nvl_transport_dma_map(&t, buf, sizeof(buf), &iova), 0);
    assert_int_equal(iova, (uintptr_t)buf + 1);
    assert_int_equal(nvl_transport_dma_map(NULL, buf, sizeof(buf), &iova), -EINVAL);
    assert_int_equal(nvl_transport_dma_map(&t, buf, 0, &iova), -EINVAL);
    assert_int_equal(nvl_transport_dma_unmap(&t, buf, sizeof(buf), iova), -EINVAL); /* no op */
    assert_int_equal(nvl_transport_reset(&t), -EOPNOTSUPP);
    assert_int_equal(nvl_transport_reset(NULL), -EINVAL);
    nvl_transport_destroy(NULL);
    assert_int_equal(destroyed, 0);
    nvl_transport_destroy(&t);
    assert_int_equal(destroyed, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(wrappers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
