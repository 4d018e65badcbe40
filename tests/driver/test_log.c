/* Tests for driver/src/log.c: level selection and the error-name helper. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "nvl_driver.h"

static void level_can_be_set(void **state)
{
    (void)state;
    nvl_log_set_level(NVL_LOG_DEBUG);
    assert_int_equal(nvl_log_get_level(), NVL_LOG_DEBUG);
    nvl_log_set_level(NVL_LOG_ERROR);
    assert_int_equal(nvl_log_get_level(), NVL_LOG_ERROR);
}

static void strerror_accepts_negative_errno(void **state)
{
    (void)state;
    assert_string_equal(nvl_strerror(-ENOENT), strerror(ENOENT));
    assert_string_equal(nvl_strerror(ETIMEDOUT), strerror(ETIMEDOUT));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(level_can_be_set),
        cmocka_unit_test(strerror_accepts_negative_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
