/* Tests of the file backend (backend_file.c): the read battery through io_uring and through the
 * pread thread pool, a file whose size is not a multiple of the block size (the O_DIRECT tail),
 * a block device's worth of odd extents, and a target on a filesystem without O_DIRECT. */
#include "loader_test_util.h"

#define CAP (12 * TU_MIB + 777)

static struct nvl_loader *open_file(const char *path)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l;

    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_FILE;
    o.path = path;
    o.n_slots = 2;
    o.slot_bytes = 2 * TU_MIB;
    o.queue_depth = 8;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    return l;
}

static void battery_with_engine(const char *engine)
{
    uint8_t *ref;
    char *path = tu_pattern_file(CAP, 11, &ref);
    struct nvl_loader *l;

    setenv("NVL_FILE_ENGINE", engine, 1);
    l = open_file(path);
    unsetenv("NVL_FILE_ENGINE");
    assert_non_null(strstr(nvl_loader_reason(l), strcmp(engine, "pread") ? "io_uring" : "pread"));
    tu_battery(l, ref, CAP);
    nvl_loader_destroy(l);
    unlink(path);
    free(path);
    free(ref);
}

static void test_battery_uring(void **state)
{
    (void)state;
    battery_with_engine("uring");
}

static void test_battery_pread(void **state)
{
    (void)state;
    battery_with_engine("pread");
}

/* Reads that end in the file's last, partial block: O_DIRECT returns short there, which is the
 * end of the file and not an error. */
static void test_tail(void **state)
{
    uint8_t *ref, *buf = malloc(TU_MIB + 64);
    char *path = tu_pattern_file(CAP, 12, &ref);
    struct nvl_loader *l = open_file(path);
    struct nvl_extent e;

    (void)state;
    for (uint64_t len = 1; len < TU_MIB; len = len * 3 + 1) {
        e = (struct nvl_extent){CAP - len, len};
        tu_read_check(l, ref, &e, 1, nvl_dst_host(buf + len % 61, TU_MIB));
        tu_read_check(l, ref, &e, 1, nvl_dst_slot(0));
    }
    nvl_loader_destroy(l);
    unlink(path);
    free(path);
    free(ref);
    free(buf);
}

/* Many reads in flight through a ring of 8: bounce buffers and pieces recycle correctly. */
static void test_many_inflight(void **state)
{
    uint8_t *ref, *buf = malloc(48 * 70000);
    char *path = tu_pattern_file(CAP, 13, &ref);
    struct nvl_loader *l = open_file(path);
    struct nvl_extent e[48];
    struct nvl_read *r[48];
    uint64_t s = 17;

    (void)state;
    for (int round = 0; round < 20; round++) {
        for (int i = 0; i < 48; i++) {
            e[i].len = 1 + tu_rng(&s) % 70000;
            e[i].offset = tu_rng(&s) % (CAP - e[i].len);
            assert_int_equal(
                nvl_loader_read_async(l, &e[i], 1, nvl_dst_host(buf + i * 70000, 70000), &r[i]), 0);
        }
        for (int i = 0; i < 48; i++) {
            assert_int_equal(nvl_loader_wait(r[i], NULL), 0);
            assert_memory_equal(buf + i * 70000, ref + e[i].offset, e[i].len);
        }
    }
    nvl_loader_destroy(l);
    unlink(path);
    free(path);
    free(ref);
    free(buf);
}

/* /dev/shm is tmpfs, which refuses O_DIRECT before Linux 6.6: the backend then falls back to
 * buffered reads and says so. Skipped where /dev/shm is missing. */
static void test_no_odirect(void **state)
{
    char path[] = "/dev/shm/nvl_loader_test_XXXXXX";
    uint8_t *ref = malloc(CAP);
    struct nvl_loader *l;
    int fd = mkstemp(path);

    (void)state;
    if (fd < 0) {
        free(ref);
        skip();
    }
    tu_fill(ref, CAP, 14);
    assert_int_equal(pwrite(fd, ref, CAP, 0), (ssize_t)CAP);
    close(fd);
    fd = open(path, O_RDONLY | O_DIRECT);
    if (fd >= 0)
        close(fd);
    l = open_file(path);
    assert_non_null(strstr(nvl_loader_reason(l), fd >= 0 ? "O_DIRECT" : "buffered"));
    tu_battery(l, ref, CAP);
    nvl_loader_destroy(l);
    unlink(path);
    free(ref);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_battery_uring), cmocka_unit_test(test_battery_pread),
        cmocka_unit_test(test_tail),          cmocka_unit_test(test_many_inflight),
        cmocka_unit_test(test_no_odirect),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
