/* Tests for driver/src/vfio.c that need no device: argument checks and the errors for a
 * device that does not exist. The real VFIO paths run inside the QEMU guest (tests/qemu). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>

#include "nvl_driver.h"

static void bad_bdf(void **state)
{
    struct nvl_transport *t = (struct nvl_transport *)1;

    (void)state;
    assert_int_equal(nvl_vfio_open("xyz", NVL_VFIO_AUTO, &t), -EINVAL);
    assert_null(t);
    assert_int_equal(nvl_vfio_open("0000:01:00", NVL_VFIO_AUTO, &t), -EINVAL);
    assert_int_equal(nvl_vfio_open("0000:01:00.0x", NVL_VFIO_AUTO, &t), -EINVAL);
    assert_int_equal(nvl_vfio_open(NULL, NVL_VFIO_AUTO, &t), -EINVAL);
    assert_int_equal(nvl_vfio_open("0000:01:00.0", NVL_VFIO_AUTO, NULL), -EINVAL);
}

static void missing_device(void **state)
{
    struct nvl_transport *t = NULL;

    (void)state;
    /* Domain ffff does not exist on any machine this runs on. */
    assert_int_equal(nvl_vfio_open("ffff:ff:1f.7", NVL_VFIO_AUTO, &t), -ENOENT);
    assert_null(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_bdf),
        cmocka_unit_test(missing_device),
    };
    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
