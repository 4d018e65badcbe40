/* Tests of the loader core (loader.c): option handling, backend selection and its reasons,
 * argument checking, read handles, statistics and the GPU-word API on a CPU build. The file
 * backend serves as the target. */
#include "loader_test_util.h"

#define CAP (16 * TU_MIB + 4321)

struct fx {
    char *path;
    uint8_t *ref;
    struct nvl_loader *l;
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    struct nvl_loader_opts o;

    f->path = tu_pattern_file(CAP, 3, &f->ref);
    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_FILE;
    o.path = f->path;
    o.n_slots = 2;
    o.slot_bytes = 2 * TU_MIB;
    if (nvl_loader_create(&o, &f->l))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    nvl_loader_destroy(f->l);
    unlink(f->path);
    free(f->path);
    free(f->ref);
    free(f);
    return 0;
}

static void test_backend_names(void **state)
{
    enum nvl_loader_backend b;

    (void)state;
    for (int i = 0; i < NVL_LOADER_BACKEND_COUNT; i++) {
        const char *name = nvl_loader_backend_str((enum nvl_loader_backend)i);

        assert_non_null(name);
        assert_int_equal(nvl_loader_backend_parse(name, &b), 0);
        assert_int_equal(b, i);
    }
    assert_int_equal(nvl_loader_backend_parse("nvme", &b), -EINVAL);
    assert_int_equal(nvl_loader_backend_parse(NULL, &b), -EINVAL);
    assert_null(nvl_loader_backend_str(NVL_LOADER_BACKEND_COUNT));
}

static void test_create_without_target(void **state)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l = (struct nvl_loader *)1;
    char why[256];

    (void)state;
    nvl_loader_opts_init(&o);
    assert_int_equal(nvl_loader_create(&o, &l), -ENODEV);
    assert_null(l);
    o.backend = NVL_LOADER_CPU_NVME;
    assert_int_equal(nvl_loader_create(&o, &l), -ENODEV);
    assert_true(nvl_loader_probe(NVL_LOADER_CPU_NVME, &o, why, sizeof(why)) < 0);
    assert_non_null(strstr(why, "no NVMe target"));
    assert_true(nvl_loader_probe(NVL_LOADER_FILE, &o, why, sizeof(why)) < 0);
    assert_non_null(strstr(why, "no file target"));
    o.path = "/nonexistent/nvload";
    assert_true(nvl_loader_probe(NVL_LOADER_FILE, &o, why, sizeof(why)) < 0);
    assert_non_null(strstr(why, "cannot open"));
    o.backend = NVL_LOADER_FILE;
    assert_int_equal(nvl_loader_create(&o, &l), -ENODEV);
    o.n_slots = 1000;
    assert_int_equal(nvl_loader_create(&o, &l), -EINVAL);
}

/* With only a file, auto picks file and says why each other backend was not chosen. */
static void test_auto_reason_file(void **state)
{
    struct fx *f = *state;
    struct nvl_loader_opts o;
    struct nvl_loader *l;
    const char *why;

    nvl_loader_opts_init(&o);
    o.path = f->path;
    o.slot_bytes = 2 * TU_MIB;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    assert_int_equal(nvl_loader_backend(l), NVL_LOADER_FILE);
    assert_string_equal(nvl_loader_backend_name(l), "file");
    why = nvl_loader_reason(l);
    assert_non_null(strstr(why, "file (auto)"));
    assert_non_null(strstr(why, "engine"));
    assert_non_null(strstr(why, "cpu-nvme: not usable: no NVMe target"));
    assert_non_null(strstr(why, "gpu-nvme: not usable"));
    assert_non_null(strstr(why, "gds: not usable"));
    nvl_loader_destroy(l);
}

/* With a controller too, auto prefers an NVMe backend over the file. */
static void test_auto_prefers_nvme(void **state)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l;
    struct tu_sim t;
    char why[512];

    (void)state;
    tu_sim_up(&t, true, 8 * TU_MIB, 2, 32, NULL);
    nvl_loader_opts_init(&o);
    o.ctrl = t.ctrl;
    o.path = t.path;
    o.slot_bytes = 2 * TU_MIB;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
#ifdef NVL_HAVE_CUDA
    if (nvl_loader_probe(NVL_LOADER_GPU_NVME, &o, why, sizeof(why)) == 0)
        assert_int_equal(nvl_loader_backend(l), NVL_LOADER_GPU_NVME);
    else
        assert_int_equal(nvl_loader_backend(l), NVL_LOADER_CPU_NVME);
#else
    assert_int_equal(nvl_loader_backend(l), NVL_LOADER_CPU_NVME);
    assert_non_null(strstr(nvl_loader_reason(l), "cpu-nvme (auto)"));
    assert_non_null(strstr(nvl_loader_reason(l), "file: usable but ranked lower"));
    assert_non_null(strstr(nvl_loader_reason(l), "not built"));
    assert_int_equal(nvl_loader_probe(NVL_LOADER_GPU_NVME, &o, why, sizeof(why)), -ENODEV);
#endif
    nvl_loader_destroy(l);
    tu_sim_down(&t);
}

static void test_bad_arguments(void **state)
{
    struct fx *f = *state;
    struct nvl_loader *l = f->l;
    uint8_t buf[8192];
    struct nvl_extent e = {0, 100};
    struct nvl_extent big = {0, 3 * TU_MIB};
    struct nvl_read *r = (struct nvl_read *)1;

    assert_int_equal(nvl_loader_read_async(l, &e, 0, nvl_dst_host(buf, sizeof(buf)), &r), -EINVAL);
    assert_null(r);
    assert_int_equal(nvl_loader_read_async(l, NULL, 1, nvl_dst_host(buf, sizeof(buf)), &r),
                     -EINVAL);
    e.len = 0;
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), -EINVAL);
    /* Past the end, ending exactly one byte past it, and offset + len overflowing. */
    e = (struct nvl_extent){CAP, 1};
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), -ERANGE);
    e = (struct nvl_extent){CAP - 10, 11};
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), -ERANGE);
    e = (struct nvl_extent){UINT64_MAX - 5, 10};
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), -ERANGE);
    /* Destinations: too small, NULL, a slot out of range, a read too big for a slot. */
    e = (struct nvl_extent){0, sizeof(buf) + 1};
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), -ENOSPC);
    e.len = 10;
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(NULL, 100), &r), -EINVAL);
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_slot(2), &r), -EINVAL);
    assert_int_equal(nvl_loader_read_async(l, &big, 1, nvl_dst_slot(0), &r), -ENOSPC);
#ifndef NVL_HAVE_CUDA
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_device(buf, sizeof(buf)), &r),
                     -ENOTSUP);
#endif
    /* A failed call leaves nothing behind: a good read still works. */
    e = (struct nvl_extent){5, 5000};
    tu_read_check(l, f->ref, &e, 1, nvl_dst_host(buf, sizeof(buf)));
}

static void test_slot_busy(void **state)
{
    struct fx *f = *state;
    struct nvl_extent e = {100, TU_MIB};
    struct nvl_read *r1, *r2;

    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_slot(0), &r1), 0);
    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_slot(0), &r2), -EBUSY);
    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_slot(1), &r2), 0);
    assert_int_equal(nvl_loader_wait(r1, NULL), 0);
    assert_int_equal(nvl_loader_wait(r2, NULL), 0);
    assert_memory_equal((uint8_t *)nvl_loader_slot_host(f->l, 0) + 100 % 4096, f->ref + 100,
                        TU_MIB);
    /* The slot is free again once its read was waited for. */
    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_slot(0), &r1), 0);
    assert_int_equal(nvl_loader_wait(r1, NULL), 0);
    assert_null(nvl_loader_slot_host(f->l, 2));
    assert_null(nvl_loader_slot_device(f->l, 0)); /* no GPU here */
}

/* Slot layout: every extent starts on a page, its first byte at the reported offset. */
static void test_slot_offsets(void **state)
{
    struct fx *f = *state;
    struct nvl_extent e[3] = {{4096, 10}, {1, 5000}, {9000, 8192}};
    struct nvl_read *r;
    uint64_t off[3];

    assert_int_equal(nvl_loader_read_async(f->l, e, 3, nvl_dst_slot(1), &r), 0);
    for (int i = 0; i < 3; i++) {
        off[i] = nvl_read_offset(r, (uint32_t)i);
        assert_int_equal(off[i] % nvl_loader_block_size(f->l),
                         e[i].offset % nvl_loader_block_size(f->l));
    }
    assert_int_equal(nvl_read_offset(r, 3), UINT64_MAX);
    assert_int_equal(off[0], 0);
    assert_true(off[1] >= 4096 && off[2] > off[1] + 5000);
    assert_int_equal(nvl_loader_wait(r, NULL), 0);
    for (int i = 0; i < 3; i++)
        assert_memory_equal((uint8_t *)nvl_loader_slot_host(f->l, 1) + off[i], f->ref + e[i].offset,
                            e[i].len);
}

static void test_host_offsets_packed(void **state)
{
    struct fx *f = *state;
    struct nvl_extent e[3] = {{4096, 10}, {1, 5000}, {9000, 8192}};
    uint8_t buf[20000];
    struct nvl_read *r;

    assert_int_equal(nvl_loader_read_async(f->l, e, 3, nvl_dst_host(buf, sizeof(buf)), &r), 0);
    assert_int_equal(nvl_read_offset(r, 0), 0);
    assert_int_equal(nvl_read_offset(r, 1), 10);
    assert_int_equal(nvl_read_offset(r, 2), 5010);
    assert_int_equal(nvl_loader_wait(r, NULL), 0);
    assert_memory_equal(buf + 10, f->ref + 1, 5000);
}

static void test_stats(void **state)
{
    struct fx *f = *state;
    uint8_t *buf = malloc(8 * TU_MIB);
    struct nvl_extent e = {3, 8 * TU_MIB - 3};
    struct nvl_read_stats st;
    struct nvl_read *r;

    assert_non_null(buf);
    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_host(buf, 8 * TU_MIB), &r), 0);
    assert_int_equal(nvl_loader_wait(r, &st), 0);
    assert_int_equal(st.bytes, e.len);
    assert_int_equal(st.device_bytes, 8 * TU_MIB);
    assert_true(st.commands >= 8); /* reads are cut at 1 MiB */
    assert_true(st.seconds > 0);
    assert_true(st.gbps > 0 && st.gbps < 1000);
    assert_true(st.cpu_seconds >= 0);
    assert_int_equal(st.nvme_status, 0);
    free(buf);
}

static void test_gpu_word_cpu_build(void **state)
{
    struct fx *f = *state;
    struct nvl_extent e = {0, 4096};
    const uint32_t *word;
    uint32_t value;
    struct nvl_read *r;

    assert_int_equal(nvl_loader_read_async(f->l, &e, 1, nvl_dst_slot(0), &r), 0);
#ifndef NVL_HAVE_CUDA
    assert_int_equal(nvl_read_gpu_word(r, &word, &value), -ENOTSUP);
    assert_int_equal(nvl_read_stream_wait(r, NULL), -ENOTSUP);
#else
    (void)word;
    (void)value;
#endif
    assert_int_equal(nvl_loader_wait(r, NULL), 0);
    assert_false(nvl_loader_needs_reset(f->l));
    assert_int_equal(nvl_loader_reset(f->l), -ENOTSUP);
}

/* More reads in flight than completion words: the excess is refused, not queued forever. */
static void test_read_limit(void **state)
{
    struct fx *f = *state;
    struct nvl_read *r[65];
    struct nvl_extent e = {0, 512};
    uint8_t *buf = malloc(65 * 512);
    int n = 0, rc = 0;

    assert_non_null(buf);
    while (n < 65 &&
           (rc = nvl_loader_read_async(f->l, &e, 1, nvl_dst_host(buf + n * 512, 512), &r[n])) == 0)
        n++;
    assert_int_equal(n, 64);
    assert_int_equal(rc, -EAGAIN);
    for (int i = 0; i < n; i++)
        assert_int_equal(nvl_loader_wait(r[i], NULL), 0);
    free(buf);
}

/* Destroying a loader with reads nobody waited for finishes them first. */
static void test_destroy_with_reads(void **state)
{
    struct fx *f = *state;
    struct nvl_loader_opts o;
    struct nvl_loader *l;
    struct nvl_extent e = {0, 4 * TU_MIB};
    struct nvl_read *r;
    uint8_t *buf = malloc(4 * TU_MIB);

    nvl_loader_opts_init(&o);
    o.path = f->path;
    o.slot_bytes = 2 * TU_MIB;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, 4 * TU_MIB), &r), 0);
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_slot(0), &r), -ENOSPC);
    nvl_loader_destroy(l);
    nvl_loader_destroy(NULL);
    free(buf);
}

static void test_battery_file(void **state)
{
    struct fx *f = *state;

    tu_battery(f->l, f->ref, CAP);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_names),
        cmocka_unit_test(test_create_without_target),
        cmocka_unit_test_setup_teardown(test_auto_reason_file, setup, teardown),
        cmocka_unit_test(test_auto_prefers_nvme),
        cmocka_unit_test_setup_teardown(test_bad_arguments, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_busy, setup, teardown),
        cmocka_unit_test_setup_teardown(test_slot_offsets, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_offsets_packed, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stats, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gpu_word_cpu_build, setup, teardown),
        cmocka_unit_test_setup_teardown(test_read_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_destroy_with_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_battery_file, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
