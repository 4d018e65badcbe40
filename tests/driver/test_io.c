/* Tests for driver/src/io.c against the fake controller: data written through the driver is
 * checked in the fake's memory (independently of the driver's read path), then read back;
 * splitting, several queues at depth, unaligned buffers, out-of-order completion, NVMe error
 * status, lost and malformed completions with recovery, range checks, the async API. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fake_nvme.h"
#include "nvl_driver.h"

struct env {
    struct fake_nvme *f;
    struct nvl_ctrl *c;
    struct nvl_dma *a, *b; /* 4 MiB + 4 KiB each */
};

static struct env *env_create(const struct fake_nvme_opts *fo, uint32_t queues, uint32_t depth)
{
    struct env *e = calloc(1, sizeof(*e));
    struct nvl_ctrl_opts o;

    nvl_ctrl_opts_init(&o);
    o.n_io_queues = queues;
    o.io_queue_depth = depth;
    o.io_timeout_ms = 300;
    e->f = fake_nvme_create(fo);
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(e->f), &o, &e->c), 0);
    assert_int_equal(nvl_dma_create(fake_nvme_transport(e->f), (4u << 20) + 4096, 0, &e->a), 0);
    assert_int_equal(nvl_dma_create(fake_nvme_transport(e->f), (4u << 20) + 4096, 0, &e->b), 0);
    return e;
}

static void env_destroy(struct env *e)
{
    nvl_ctrl_destroy(e->c);
    nvl_dma_destroy(e->a);
    nvl_dma_destroy(e->b);
    fake_nvme_destroy(e->f);
    free(e);
}

/* A pattern that differs in every 4-byte word and from run to run of seed. */
static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    size_t i;

    for (i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void write_verify_read_across_queues(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme_counts n;
    struct nvl_io_opts io;
    struct env *e;
    uint16_t st = 0xffff;
    const size_t bytes = 4u << 20; /* the whole 8192-block namespace */

    (void)state;
    fake_nvme_opts_init(&fo);
    e = env_create(&fo, 3, 32);
    fill(e->a->vaddr, bytes, 1);
    nvl_io_opts_init(&io);
    io.depth = 8;
    assert_int_equal(nvl_io_write(e->c, &io, 0, 8192, e->a, 0, &st), 0);
    assert_int_equal(st, 0);
    /* Independent check: the fake's media holds exactly what was written. */
    assert_memory_equal(fake_nvme_data(e->f), e->a->vaddr, bytes);
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8192, e->b, 0, &st), 0);
    assert_memory_equal(e->b->vaddr, e->a->vaddr, bytes);
    assert_int_equal(nvl_io_flush(e->c, NULL, &st), 0);
    fake_nvme_counts(e->f, &n);
    /* 4 MiB in 128 KiB (MDTS) commands: 32 writes, 32 reads. */
    assert_int_equal(n.writes, 32);
    assert_int_equal(n.reads, 32);
    assert_int_equal(n.flushes, 1);
    assert_int_equal(n.prp_errors, 0);
    assert_int_equal(n.dma_errors, 0);
    env_destroy(e);
}

static void small_commands_unaligned_buffer(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme_counts n;
    struct nvl_io_opts io;
    struct env *e;
    const size_t bytes = 300 * 512;

    (void)state;
    fake_nvme_opts_init(&fo);
    e = env_create(&fo, 2, 16);
    fill(fake_nvme_data(e->f) + 1000 * 512, bytes, 7);
    nvl_io_opts_init(&io);
    io.max_cmd_bytes = 8192 + 512; /* 17 blocks per command: PRP lists start mid-page */
    memset(e->a->vaddr, 0, bytes + 0x200);
    /* Buffer offset 0x200: PRP1 carries an offset, every command a different one. */
    assert_int_equal(nvl_io_read(e->c, &io, 1000, 300, e->a, 0x200, NULL), 0);
    assert_memory_equal((uint8_t *)e->a->vaddr + 0x200, fake_nvme_data(e->f) + 1000 * 512, bytes);
    assert_int_equal(((uint8_t *)e->a->vaddr)[0x1ff], 0);
    fake_nvme_counts(e->f, &n);
    assert_int_equal(n.reads, (300 + 16) / 17);
    env_destroy(e);
}

static void out_of_order_completions(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme_counts n;
    struct nvl_io_opts io;
    struct env *e;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.reverse = 1;
    e = env_create(&fo, 1, 64);
    fill(fake_nvme_data(e->f), 4u << 20, 3);
    nvl_io_opts_init(&io);
    io.max_cmd_bytes = 4096;
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8192, e->a, 0, NULL), 0);
    assert_memory_equal(e->a->vaddr, fake_nvme_data(e->f), 4u << 20);
    fake_nvme_counts(e->f, &n);
    assert_true(n.reversed_batches > 0);
    assert_true(n.max_inflight > 1);
    env_destroy(e);
}

static void error_status_is_returned(void **state)
{
    struct fake_nvme_opts fo;
    struct env *e;
    uint16_t st = 0;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.fail_io_nth = 3;
    fo.fail_status =
        NVME_STATUS(NVME_SCT_MEDIA_ERROR, NVME_SC_UNRECOVERED_READ_ERROR) | NVME_STATUS_DNR;
    e = env_create(&fo, 2, 8);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 2048, e->a, 0, &st), -EIO);
    assert_int_equal(nvme_status_sct(st), NVME_SCT_MEDIA_ERROR);
    assert_int_equal(nvme_status_sc(st), NVME_SC_UNRECOVERED_READ_ERROR);
    assert_int_equal(nvme_status_dnr(st), 1);
    /* A command error is not a controller failure. */
    assert_int_equal(nvl_ctrl_get_state(e->c), NVL_CTRL_READY);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 2048, e->a, 0, &st), 0);
    assert_int_equal(st, 0);
    env_destroy(e);
}

static void lost_completion_resets(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme_counts before, after;
    struct env *e;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.drop_io_nth = 2;
    e = env_create(&fo, 2, 8);
    fake_nvme_counts(e->f, &before);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 1024, e->a, 0, NULL), -ETIMEDOUT);
    fake_nvme_counts(e->f, &after);
    assert_int_equal(after.resets, before.resets + 1);
    assert_int_equal(nvl_ctrl_get_state(e->c), NVL_CTRL_READY);
    /* After the reset the queues work again. */
    fill(fake_nvme_data(e->f), 1024 * 512, 5);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 1024, e->a, 0, NULL), 0);
    assert_memory_equal(e->a->vaddr, fake_nvme_data(e->f), 1024 * 512);
    env_destroy(e);
}

static void malformed_completion_resets(void **state)
{
    struct fake_nvme_opts fo;
    struct env *e;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.bad_cid_io_nth = 2;
    e = env_create(&fo, 1, 8);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 1024, e->a, 0, NULL), -EIO);
    assert_int_equal(nvl_ctrl_get_state(e->c), NVL_CTRL_READY);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 1024, e->a, 0, NULL), 0);
    env_destroy(e);
}

static void bad_ranges(void **state)
{
    struct fake_nvme_opts fo;
    struct nvl_io_opts io;
    struct env *e;

    (void)state;
    fake_nvme_opts_init(&fo);
    e = env_create(&fo, 2, 8);
    assert_int_equal(nvl_io_read(e->c, NULL, 8190, 3, e->a, 0, NULL), -EINVAL);
    assert_int_equal(nvl_io_read(e->c, NULL, UINT64_MAX - 1, 3, e->a, 0, NULL), -EINVAL);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 0, e->a, 0, NULL), -EINVAL);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 8, e->a, e->a->len - 2048, NULL), -EINVAL);
    assert_int_equal(nvl_io_read(e->c, NULL, 0, 8, NULL, 0, NULL), -EINVAL);
    nvl_io_opts_init(&io);
    io.first_queue = 2;
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8, e->a, 0, NULL), -EINVAL);
    io.first_queue = 1;
    io.n_queues = 2;
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8, e->a, 0, NULL), -EINVAL);
    /* A claimed queue pair is off limits to the CPU path. */
    assert_int_equal(nvl_qpair_claim(nvl_ctrl_qpair(e->c, 1)), 0);
    assert_int_equal(nvl_qpair_claim(nvl_ctrl_qpair(e->c, 1)), -EBUSY);
    io.n_queues = 1;
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8, e->a, 0, NULL), -EBUSY);
    assert_int_equal(nvl_qpair_submit_read(nvl_ctrl_qpair(e->c, 1), 0, 8, e->a, 0, NULL, NULL),
                     -EBUSY);
    nvl_qpair_unclaim(nvl_ctrl_qpair(e->c, 1), 0, 0, 0, 1);
    assert_int_equal(nvl_io_read(e->c, &io, 0, 8, e->a, 0, NULL), 0);
    env_destroy(e);
}

struct async_state {
    int done, errors;
};

static void async_cb(void *arg, int err, uint16_t status)
{
    struct async_state *s = arg;

    (void)status;
    s->done++;
    if (err)
        s->errors++;
}

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Polls qp (max completions per call) until s->done reaches want. The fake completes within
 * microseconds when it runs; the 10 s bound only turns a hang into a failure, and is wall time,
 * not a poll count, so a loaded machine that keeps the fake's thread waiting cannot fail it. */
static void poll_until_done(struct nvl_qpair *qp, uint32_t max, struct async_state *s, int want)
{
    const uint64_t end = now_ms() + 10000;

    while (s->done < want && now_ms() < end)
        assert_true(nvl_qpair_poll(qp, max) >= 0);
    assert_int_equal(s->done, want);
}

static void async_api(void **state)
{
    struct fake_nvme_opts fo;
    struct async_state s = {0, 0};
    struct nvl_qpair *qp;
    struct env *e;
    int i;

    (void)state;
    fake_nvme_opts_init(&fo);
    e = env_create(&fo, 1, 8);
    qp = nvl_ctrl_qpair(e->c, 0);
    fill(fake_nvme_data(e->f), 64 * 512, 9);
    /* Depth 8 leaves 7 CIDs: the 8th submission must say "poll first". */
    for (i = 0; i < 7; i++)
        assert_int_equal(
            nvl_qpair_submit_read(qp, (uint64_t)i * 8, 8, e->a, (size_t)i * 4096, async_cb, &s), 0);
    assert_int_equal(nvl_qpair_submit_read(qp, 56, 8, e->a, 7 * 4096, async_cb, &s), -EAGAIN);
    assert_int_equal(nvl_qpair_outstanding(qp), 7);
    /* More than max_transfer in one command is refused. */
    assert_int_equal(nvl_qpair_submit_read(qp, 0, 257, e->a, 0, async_cb, &s), -EINVAL);
    poll_until_done(qp, 0, &s, 7);
    assert_int_equal(s.errors, 0);
    assert_int_equal(nvl_qpair_outstanding(qp), 0);
    assert_memory_equal(e->a->vaddr, fake_nvme_data(e->f), 56 * 512);
    assert_int_equal(nvl_qpair_submit_flush(qp, async_cb, &s), 0);
    nvl_qpair_flush_sq(qp);
    poll_until_done(qp, 1, &s, 8);
    env_destroy(e);
}

static void caller_built_prps(void **state)
{
    struct fake_nvme_opts fo;
    struct async_state s = {0, 0};
    struct nvl_prp_list_mem lists;
    struct nvl_dma *list_dma = NULL;
    struct nvl_qpair *qp;
    struct env *e;
    uint64_t prp1, prp2;

    (void)state;
    fake_nvme_opts_init(&fo);
    e = env_create(&fo, 1, 8);
    qp = nvl_ctrl_qpair(e->c, 0);
    fill(fake_nvme_data(e->f), 64 << 10, 13);
    assert_int_equal(nvl_dma_create(fake_nvme_transport(e->f), 4096, 0, &list_dma), 0);
    lists.vaddr = list_dma->vaddr;
    lists.iova = list_dma->iova;
    lists.pages = 1;
    /* 64 KiB into the buffer at offset 0x100: PRP1 with an offset plus a 16-entry list. */
    assert_int_equal(nvl_prp_build(e->a, 0x100, 64 << 10, 4096, &lists, &prp1, &prp2), 0);
    assert_int_equal(nvl_qpair_submit_read_prp(qp, 0, 128, prp1, prp2, async_cb, &s), 0);
    assert_int_equal(nvl_qpair_submit_read_prp(qp, 0, 128, prp1 | 2, prp2, async_cb, &s), -EINVAL);
    poll_until_done(qp, 0, &s, 1);
    assert_int_equal(s.errors, 0);
    assert_memory_equal((uint8_t *)e->a->vaddr + 0x100, fake_nvme_data(e->f), 64 << 10);
    nvl_dma_destroy(list_dma);
    env_destroy(e);
}

static void poll_sees_fatal_status(void **state)
{
    struct fake_nvme_opts fo;
    struct async_state s = {0, 0};
    struct nvl_qpair *qp;
    struct env *e;
    uint64_t end;
    int rc = 0;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.cfs_io_nth = 1;
    e = env_create(&fo, 1, 8);
    qp = nvl_ctrl_qpair(e->c, 0);
    assert_int_equal(nvl_qpair_submit_read(qp, 0, 8, e->a, 0, async_cb, &s), 0);
    /* Polling reads CSTS every 65536 empty polls: CFS shows once the fake has taken the command. */
    end = now_ms() + 10000;
    while (rc == 0 && now_ms() < end)
        rc = nvl_qpair_poll(qp, 0);
    assert_int_equal(rc, -EIO);
    /* The caller resets; the command in flight is cancelled. */
    assert_int_equal(nvl_ctrl_reset(e->c), 0);
    assert_int_equal(s.done, 1);
    assert_int_equal(s.errors, 1);
    assert_int_equal(nvl_qpair_outstanding(qp), 0);
    env_destroy(e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(write_verify_read_across_queues),
        cmocka_unit_test(small_commands_unaligned_buffer),
        cmocka_unit_test(out_of_order_completions),
        cmocka_unit_test(error_status_is_returned),
        cmocka_unit_test(lost_completion_resets),
        cmocka_unit_test(malformed_completion_resets),
        cmocka_unit_test(bad_ranges),
        cmocka_unit_test(async_api),
        cmocka_unit_test(caller_built_prps),
        cmocka_unit_test(poll_sees_fatal_status),
    };
    if (!getenv("NVL_LOG"))
        nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
