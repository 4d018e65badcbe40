/* Tests for driver/sim/src/sim_store.c: memory, file and null backing stores, checked against
 * the file's bytes read with pread. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "sim_host.h"
#include "sim_internal.h"

static char path[256];

static int setup(void **state)
{
    (void)state;
    snprintf(path, sizeof(path), "/tmp/nvl-sim-store-%d.img", (int)getpid());
    unlink(path);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    return 0;
}

static void mem_default_and_rw(void **state)
{
    struct nvl_sim_opts o;
    struct sim_store s;
    uint8_t *buf = aligned_alloc(4096, 8192);
    struct sim_seg seg[2] = {{buf, 4096}, {buf + 4096, 4096}};

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl__sim_store_open(&s, &o, NULL, 0), 0);
    assert_int_equal(o.ns_bytes, 1ull << 30);
    pattern_fill(buf, 8192, 0, 3);
    assert_int_equal(nvl__sim_store_write(&s, 1 << 20, seg, 2), 0);
    assert_int_equal(pattern_check(s.mem + (1 << 20), 8192, 0, 3), 0);
    memset(buf, 0, 8192);
    assert_int_equal(nvl__sim_store_read(&s, 1 << 20, seg, 2), 0);
    assert_int_equal(pattern_check(buf, 8192, 0, 3), 0);
    assert_int_equal(nvl__sim_store_flush(&s), 0);
    nvl__sim_store_close(&s);
    free(buf);
}

/* mode=mem with a file: a private copy; the file itself never changes. */
static void mem_copy_of_file(void **state)
{
    struct nvl_sim_opts o;
    struct sim_store s;
    uint8_t blk[4096], chk[4096];
    struct sim_seg seg = {blk, 4096};
    int fd;

    (void)state;
    fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_true(fd >= 0);
    pattern_fill(blk, sizeof(blk), 0, 5);
    assert_int_equal(pwrite(fd, blk, sizeof(blk), 8192), 4096);
    assert_int_equal(ftruncate(fd, 3 * 4096 + 100), 0);
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "mode=mem,lba=4096", NULL, 0), 0);
    snprintf(o.path, sizeof(o.path), "%s", path);
    assert_int_equal(nvl__sim_store_open(&s, &o, NULL, 0), 0);
    /* Whole blocks only. */
    assert_int_equal(o.ns_bytes, 3 * 4096);
    assert_int_equal(pattern_check(s.mem + 8192, 4096, 0, 5), 0);
    memset(blk, 0x77, sizeof(blk));
    assert_int_equal(nvl__sim_store_write(&s, 8192, &seg, 1), 0);
    assert_int_equal(pread(fd, chk, 4096, 8192), 4096);
    assert_int_equal(pattern_check(chk, 4096, 0, 5), 0);
    nvl__sim_store_close(&s);
    close(fd);
}

/* File store: creates and extends the file to size=, O_DIRECT for aligned requests, buffered for
 * the rest, same bytes either way. */
static void file_rw_direct_and_buffered(void **state)
{
    struct nvl_sim_opts o;
    struct sim_store s;
    uint8_t *buf = aligned_alloc(4096, 3 * 4096), chk[3 * 4096];
    struct stat st;
    int fd;

    (void)state;
    nvl_sim_opts_init(&o);
    assert_int_equal(nvl_sim_opts_parse(&o, "size=1M", NULL, 0), 0);
    snprintf(o.path, sizeof(o.path), "%s", path);
    o.backing = NVL_SIM_BACKING_FILE;
    assert_int_equal(nvl__sim_store_open(&s, &o, NULL, 0), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 1 << 20);
    if (s.fd_direct < 0)
        print_message("O_DIRECT not supported on /tmp: buffered path only\n");
    fd = open(path, O_RDONLY);
    assert_true(fd >= 0);
    {
        /* Aligned: 3 pages as two segments at a 4 KiB offset. */
        struct sim_seg seg[2] = {{buf, 8192}, {buf + 8192, 4096}};

        pattern_fill(buf, 3 * 4096, 4096, 9);
        assert_int_equal(nvl__sim_store_write(&s, 4096, seg, 2), 0);
        assert_int_equal(pread(fd, chk, sizeof(chk), 4096), (ssize_t)sizeof(chk));
        assert_int_equal(pattern_check(chk, sizeof(chk), 4096, 9), 0);
        memset(buf, 0, 3 * 4096);
        assert_int_equal(nvl__sim_store_read(&s, 4096, seg, 2), 0);
        assert_int_equal(pattern_check(buf, 3 * 4096, 4096, 9), 0);
    }
    {
        /* Unaligned buffer and offset: 512 bytes at 512 from buf + 4. */
        struct sim_seg seg = {buf + 4, 512};

        pattern_fill(buf + 4, 512, 512, 10);
        assert_int_equal(nvl__sim_store_write(&s, 512, &seg, 1), 0);
        assert_int_equal(pread(fd, chk, 512, 512), 512);
        assert_int_equal(pattern_check(chk, 512, 512, 10), 0);
        memset(buf, 0, 1024);
        assert_int_equal(nvl__sim_store_read(&s, 512, &seg, 1), 0);
        assert_int_equal(pattern_check(buf + 4, 512, 512, 10), 0);
    }
    assert_int_equal(nvl__sim_store_flush(&s), 0);
    close(fd);
    nvl__sim_store_close(&s);
    free(buf);
}

static void file_errors(void **state)
{
    struct nvl_sim_opts o;
    struct sim_store s;
    char err[256];
    int fd;

    (void)state;
    /* A new empty file has no block. */
    nvl_sim_opts_init(&o);
    snprintf(o.path, sizeof(o.path), "%s", path);
    o.backing = NVL_SIM_BACKING_FILE;
    assert_int_equal(nvl__sim_store_open(&s, &o, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "smaller than one"));
    /* Read-only: cannot be extended. */
    fd = open(path, O_CREAT | O_RDWR | O_TRUNC, 0644);
    assert_int_equal(ftruncate(fd, 8192), 0);
    close(fd);
    o.read_only = 1;
    o.ns_bytes = 1 << 20;
    assert_int_equal(nvl__sim_store_open(&s, &o, err, sizeof(err)), -EINVAL);
    /* A directory is not a store. */
    snprintf(o.path, sizeof(o.path), "/tmp");
    o.ns_bytes = 0;
    assert_true(nvl__sim_store_open(&s, &o, err, sizeof(err)) < 0);
    /* Missing file, read-only. */
    snprintf(o.path, sizeof(o.path), "/nonexistent/dir/x.img");
    assert_int_equal(nvl__sim_store_open(&s, &o, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "cannot open"));
}

static void null_store(void **state)
{
    struct nvl_sim_opts o;
    struct sim_store s;
    uint8_t buf[512];
    struct sim_seg seg = {buf, 512};

    (void)state;
    nvl_sim_opts_init(&o);
    o.backing = NVL_SIM_BACKING_NULL;
    assert_int_equal(nvl__sim_store_open(&s, &o, NULL, 0), 0);
    assert_int_equal(o.ns_bytes, 1ull << 40);
    memset(buf, 0x33, sizeof(buf));
    assert_int_equal(nvl__sim_store_read(&s, 0, &seg, 1), 0);
    assert_int_equal(buf[0], 0x33);
    assert_int_equal(nvl__sim_store_write(&s, 0, &seg, 1), 0);
    nvl__sim_store_close(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(mem_default_and_rw, setup, teardown),
        cmocka_unit_test_setup_teardown(mem_copy_of_file, setup, teardown),
        cmocka_unit_test_setup_teardown(file_rw_direct_and_buffered, setup, teardown),
        cmocka_unit_test_setup_teardown(file_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(null_store, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
