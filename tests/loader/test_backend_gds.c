/* Tests of the gds backend (backend_gds.c). Where libcufile or a GPU is missing (CI), the probe
 * must say exactly that and creation must fail cleanly; where both exist (the accelerator
 * machine), the read battery runs through cuFile, and a compatibility-mode run must say so. */
#include "loader_test_util.h"

#define CAP (12 * TU_MIB + 99)

static void test_gds(void **state)
{
    uint8_t *ref;
    char *path = tu_pattern_file(CAP, 21, &ref);
    struct nvl_loader_opts o;
    struct nvl_loader *l = NULL;
    char why[512];
    int rc;

    (void)state;
    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_GDS;
    o.path = path;
    o.slot_bytes = 2 * TU_MIB;
    rc = nvl_loader_probe(NVL_LOADER_GDS, &o, why, sizeof(why));
    if (rc < 0) {
        /* Unavailable: a reason that names what is missing, and a clean -ENODEV. */
        assert_true(strstr(why, "libcufile not found") || strstr(why, "CUDA") ||
                    strstr(why, "device") || strstr(why, "allow_compat_mode"));
        assert_int_equal(nvl_loader_create(&o, &l), -ENODEV);
        assert_null(l);
        unlink(path);
        free(path);
        free(ref);
        skip();
    }
    if (rc == 1)
        assert_non_null(strstr(why, "compatibility mode"));
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    assert_non_null(strstr(nvl_loader_reason(l), rc == 1 ? "compatibility mode" : "GPUDirect"));
    tu_battery(l, ref, CAP);
    nvl_loader_destroy(l);
    unlink(path);
    free(path);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gds),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
