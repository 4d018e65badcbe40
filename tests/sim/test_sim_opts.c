/* Tests for driver/sim/src/sim_opts.c: defaults, the one-line option syntax and its checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "nvl_sim.h"

static void defaults(void **state)
{
    struct nvl_sim_opts o;

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(o.backing, NVL_SIM_BACKING_MEM);
    assert_int_equal(o.lba_size, 512);
    assert_int_equal(o.threads, 1);
    assert_int_equal(o.bw_bytes_per_s, 0);
    assert_int_equal(nvl_sim_opts_check(&o, NULL, 0), 0);
}

static void full_spec(void **state)
{
    struct nvl_sim_opts o;
    char err[128];

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o,
                                        "file=/tmp/x.img,lba=4096,mdts=5,queues=8,threads=2,"
                                        "bw=3.35GB/s,lat=80us,size=2G,mqes=255,dstrd=3,ro=1,"
                                        "idle_us=0,seed=42,sn=ABC,name=simA",
                                        err, sizeof(err)),
                     0);
    assert_int_equal(o.backing, NVL_SIM_BACKING_FILE);
    assert_string_equal(o.path, "/tmp/x.img");
    assert_int_equal(o.lba_size, 4096);
    assert_int_equal(o.mdts, 5);
    assert_int_equal(o.max_io_queues, 8);
    assert_int_equal(o.threads, 2);
    assert_int_equal(o.bw_bytes_per_s, 3350000000ull);
    assert_int_equal(o.lat_ns, 80000);
    assert_int_equal(o.ns_bytes, 2ull << 30);
    assert_int_equal(o.mqes, 255);
    assert_int_equal(o.dstrd, 3);
    assert_int_equal(o.read_only, 1);
    assert_int_equal(o.idle_us, 0);
    assert_int_equal(o.seed, 42);
    assert_string_equal(o.serial, "ABC");
    assert_string_equal(o.name, "simA");
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), 0);
}

static void units(void **state)
{
    struct nvl_sim_opts o;

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "bw=7GB/s,lat=1.5ms,size=512M", NULL, 0), 0);
    assert_int_equal(o.bw_bytes_per_s, 7000000000ull);
    assert_int_equal(o.lat_ns, 1500000);
    assert_int_equal(o.ns_bytes, 512ull << 20);
    assert_int_equal(nvl_sim_opts_parse(&o, "bw=500MiB/s,lat=2s,size=4096", NULL, 0), 0);
    assert_int_equal(o.bw_bytes_per_s, 500ull << 20);
    assert_int_equal(o.lat_ns, 2000000000ull);
    assert_int_equal(o.ns_bytes, 4096);
}

/* A bare word is a backing file: `--sim FILE`. */
static void bare_path(void **state)
{
    struct nvl_sim_opts o;

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "/data/model.img", NULL, 0), 0);
    assert_int_equal(o.backing, NVL_SIM_BACKING_FILE);
    assert_string_equal(o.path, "/data/model.img");
}

/* mode= wins over the file= default, in any order. */
static void mode_with_file(void **state)
{
    struct nvl_sim_opts o;

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "mode=mem,file=/tmp/a", NULL, 0), 0);
    assert_int_equal(o.backing, NVL_SIM_BACKING_MEM);
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "file=/tmp/a,mode=mem", NULL, 0), 0);
    assert_int_equal(o.backing, NVL_SIM_BACKING_MEM);
    assert_int_equal(nvl_sim_opts_parse(&o, "mode=null", NULL, 0), 0);
    assert_int_equal(o.backing, NVL_SIM_BACKING_NULL);
}

static void errors_name_the_item(void **state)
{
    struct nvl_sim_opts o;
    char err[128];

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "lba=4096,colour=blue", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "colour"));
    assert_int_equal(nvl_sim_opts_parse(&o, "bw=fast", err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "bw"));
    assert_int_equal(nvl_sim_opts_parse(&o, "lat=5parsecs", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "threads=-1", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "mdts=300", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "mode=tape", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "lba=4096,ro", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "size=-5M", err, sizeof(err)), -EINVAL);
    assert_int_equal(nvl_sim_opts_parse(&o, "queues=7x", err, sizeof(err)), -EINVAL);
}

static void check_rejects_bad_combinations(void **state)
{
    struct nvl_sim_opts o;
    char err[128];

    (void)state;
    nvl_sim_opts_init(&o);
    o.lba_size = 1024;
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), -EINVAL);
    nvl_sim_opts_init(&o);
    o.backing = NVL_SIM_BACKING_FILE;
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), -EINVAL);
    nvl_sim_opts_init(&o);
    o.threads = 0;
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), -EINVAL);
    nvl_sim_opts_init(&o);
    o.mqes = 0;
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), -EINVAL);
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "mode=null,file=/x", NULL, 0), 0);
    assert_int_equal(nvl_sim_opts_check(&o, err, sizeof(err)), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(defaults),
        cmocka_unit_test(full_spec),
        cmocka_unit_test(units),
        cmocka_unit_test(bare_path),
        cmocka_unit_test(mode_with_file),
        cmocka_unit_test(errors_name_the_item),
        cmocka_unit_test(check_rejects_bad_combinations),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
