/* Tests for driver/src/ctrl.c (and the queue pair code under it) against the fake controller
 * in fake_nvme.c: bring-up from CAP and Identify, clamping, shutdown, reset, and each error
 * path that must end in a clear error instead of a hang. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <time.h>

#include "fake_nvme.h"
#include "nvl_driver.h"

static uint64_t now_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A fake with the default configuration: 256 entries, 4 queue pairs, 512-byte blocks. */
static struct fake_nvme *fake_default(void)
{
    struct fake_nvme_opts fo;

    fake_nvme_opts_init(&fo);
    return fake_nvme_create(&fo);
}

/* A fault during bring-up: nvl_ctrl_create() returns err within max_ms (a clear error instead of
 * a hang), hands out no controller, and deletes every queue it created. */
static void bringup_fails(const struct fake_nvme_opts *fo, uint32_t admin_timeout_ms, int err,
                          uint64_t max_ms)
{
    struct fake_nvme *f = fake_nvme_create(fo);
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;
    struct fake_nvme_counts n;
    uint64_t t0 = now_ms();

    nvl_ctrl_opts_init(&o);
    if (admin_timeout_ms)
        o.admin_timeout_ms = admin_timeout_ms;
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), err);
    assert_true(now_ms() - t0 < max_ms);
    assert_null(c);
    fake_nvme_counts(f, &n);
    assert_int_equal(n.deleted_cqs, n.created_cqs);
    assert_int_equal(n.deleted_sqs, n.created_sqs);
    fake_nvme_destroy(f);
}

static void bringup_and_shutdown(void **state)
{
    struct fake_nvme *f;
    struct nvl_ctrl *c = NULL;
    struct fake_nvme_counts n;
    const struct nvl_ctrl_info *in;

    (void)state;
    f = fake_default();
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), NULL, &c), 0);
    assert_int_equal(nvl_ctrl_get_state(c), NVL_CTRL_READY);
    in = nvl_ctrl_get_info(c);
    assert_int_equal(in->max_entries, 256);
    assert_int_equal(in->page_size, 4096);
    assert_int_equal(in->timeout_ms, 1000);
    assert_int_equal(in->mdts_bytes, 4096u << 5);
    assert_int_equal(in->max_transfer, 4096u << 5);
    assert_int_equal(in->lba_size, 512);
    assert_int_equal(in->ns_lbas, 8192);
    assert_int_equal(in->nn, 1);
    assert_int_equal(in->n_io_queues, 1);
    assert_int_equal(in->max_io_queues, 4);
    assert_int_equal(in->io_queue_depth, 256);
    assert_int_equal(in->vwc, 1);
    assert_string_equal(in->sn, "FAKE0001");
    assert_string_equal(in->mn, "fake nvme");
    assert_string_equal(in->fr, "1.0");
    assert_int_equal(nvl_ctrl_id(c)->vid, 0x1b36);
    assert_int_equal(nvl_ctrl_qpair_count(c), 1);
    assert_null(nvl_ctrl_qpair(c, 1));
    nvl_ctrl_destroy(c);
    fake_nvme_counts(f, &n);
    assert_int_equal(n.created_sqs, 1);
    assert_int_equal(n.created_cqs, 1);
    assert_int_equal(n.deleted_sqs, 1);
    assert_int_equal(n.deleted_cqs, 1);
    assert_int_equal(n.shutdowns, 1);
    assert_int_equal(n.dma_errors, 0);
    fake_nvme_destroy(f);
}

static void limits_are_clamped(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme *f;
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;
    const struct nvl_ctrl_info *in;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.mqes = 63; /* 64 entries */
    fo.max_queues = 3;
    fo.mdts = 0; /* no limit: the driver picks 2 MiB */
    fo.lbads = 12;
    fo.dstrd = 2;
    f = fake_nvme_create(&fo);
    nvl_ctrl_opts_init(&o);
    o.n_io_queues = 8;
    o.io_queue_depth = 1024;
    o.admin_queue_depth = 4096;
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), 0);
    in = nvl_ctrl_get_info(c);
    assert_int_equal(in->n_io_queues, 3);
    assert_int_equal(in->io_queue_depth, 64);
    assert_int_equal(in->admin_depth, 64);
    assert_int_equal(in->mdts_bytes, 0);
    assert_int_equal(in->max_transfer, 2u << 20);
    assert_int_equal(in->lba_size, 4096);
    {
        struct nvl_qpair_desc d;
        uint8_t *bar = (uint8_t *)fake_nvme_transport(f)->bar0;

        nvl_qpair_describe(nvl_ctrl_qpair(c, 1), &d);
        assert_int_equal(d.qid, 2);
        assert_int_equal(d.depth, 64);
        /* DSTRD 2: 16-byte stride; SQ2 tail at 0x1000 + 4 * 16, CQ2 head at + 5 * 16. */
        assert_int_equal(d.sq_doorbell_off, 0x1040);
        assert_int_equal(d.cq_doorbell_off, 0x1050);
        assert_ptr_equal(d.sq_doorbell, (volatile uint32_t *)(bar + 0x1040));
        assert_ptr_equal(d.cq_doorbell, (volatile uint32_t *)(bar + 0x1050));
        assert_int_equal(d.cq_iova - d.sq_iova, 64 * 64);
        assert_int_equal(d.sq_iova % 4096, 0);
        assert_int_equal(d.max_transfer, 2u << 20);
    }
    {
        /* I/O through the strided doorbells of every queue pair. */
        struct nvl_dma *buf = NULL;
        struct nvl_io_opts io;

        assert_int_equal(nvl_dma_create(fake_nvme_transport(f), 1u << 20, 0, &buf), 0);
        memset(fake_nvme_data(f), 0x3c, 1u << 20);
        nvl_io_opts_init(&io);
        io.max_cmd_bytes = 4096;
        assert_int_equal(nvl_io_read(c, &io, 0, 256, buf, 0, NULL), 0);
        assert_memory_equal(buf->vaddr, fake_nvme_data(f), 1u << 20);
        nvl_dma_destroy(buf);
    }
    nvl_ctrl_destroy(c);
    fake_nvme_destroy(f);
}

static void max_transfer_option(void **state)
{
    struct fake_nvme *f;
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;

    (void)state;
    f = fake_default();
    nvl_ctrl_opts_init(&o);
    o.max_transfer = 1u << 20; /* above MDTS (128 KiB): clamped */
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), 0);
    assert_int_equal(nvl_ctrl_get_info(c)->max_transfer, 128u << 10);
    nvl_ctrl_destroy(c);
    o.max_transfer = 10000; /* rounded down to whole pages */
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), 0);
    assert_int_equal(nvl_ctrl_get_info(c)->max_transfer, 8192);
    nvl_ctrl_destroy(c);
    fake_nvme_destroy(f);
}

static void never_ready_times_out(void **state)
{
    struct fake_nvme_opts fo;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.never_ready = 1;
    fo.to = 1; /* 500 ms */
    /* One CAP.TO for enable, and at most one more for the disable on the way out. */
    bringup_fails(&fo, 0, -ETIMEDOUT, 3000);
}

static void fatal_status_during_identify(void **state)
{
    struct fake_nvme_opts fo;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.cfs_on_admin_opc = NVME_ADMIN_IDENTIFY;
    bringup_fails(&fo, 0, -EIO, 3000);
}

static void lost_admin_completion(void **state)
{
    struct fake_nvme_opts fo;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.drop_admin_opc = NVME_ADMIN_SET_FEATURES;
    bringup_fails(&fo, 200, -ETIMEDOUT, 2000);
}

/* Create SQ fails after the CQ was created: the CQ is deleted again on the way out. */
static void admin_error_status(void **state)
{
    struct fake_nvme_opts fo;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.fail_admin_opc = NVME_ADMIN_CREATE_SQ;
    fo.fail_status = NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_SIZE);
    bringup_fails(&fo, 0, -EIO, 3000);
}

static void bad_arguments(void **state)
{
    struct fake_nvme *f;
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;

    (void)state;
    f = fake_default();
    assert_int_equal(nvl_ctrl_create(NULL, NULL, &c), -EINVAL);
    nvl_ctrl_opts_init(&o);
    o.io_queue_depth = 1;
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), -EINVAL);
    nvl_ctrl_opts_init(&o);
    o.nsid = 2; /* the fake has one namespace */
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), -ENODEV);
    assert_null(c);
    nvl_ctrl_destroy(NULL);
    fake_nvme_destroy(f);
}

static void reset_recreates_queues(void **state)
{
    struct fake_nvme *f;
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;
    struct fake_nvme_counts n;

    (void)state;
    f = fake_default();
    nvl_ctrl_opts_init(&o);
    o.n_io_queues = 2;
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), 0);
    assert_int_equal(nvl_ctrl_reset(c), 0);
    assert_int_equal(nvl_ctrl_get_state(c), NVL_CTRL_READY);
    fake_nvme_counts(f, &n);
    assert_int_equal(n.created_sqs, 4);
    assert_true(n.resets >= 1);
    nvl_ctrl_destroy(c);
    fake_nvme_destroy(f);
}

static void admin_timeout_resets_controller(void **state)
{
    struct fake_nvme_opts fo;
    struct fake_nvme *f;
    struct nvl_ctrl_opts o;
    struct nvl_ctrl *c = NULL;
    struct nvl_dma *buf = NULL;
    struct fake_nvme_counts before, after;
    uint16_t st = 0xffff;

    (void)state;
    fake_nvme_opts_init(&fo);
    fo.drop_admin_opc = NVME_ADMIN_GET_LOG_PAGE;
    f = fake_nvme_create(&fo);
    nvl_ctrl_opts_init(&o);
    o.admin_timeout_ms = 150;
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), &o, &c), 0);
    assert_int_equal(nvl_dma_create(fake_nvme_transport(f), 4096, 0, &buf), 0);
    fake_nvme_counts(f, &before);
    assert_int_equal(nvl_ctrl_get_log_page(c, NVME_LOG_SMART, NVME_NSID_ALL, buf, 0, 512, &st),
                     -ETIMEDOUT);
    fake_nvme_counts(f, &after);
    assert_int_equal(after.resets, before.resets + 1);
    assert_int_equal(nvl_ctrl_get_state(c), NVL_CTRL_READY);
    nvl_dma_destroy(buf);
    nvl_ctrl_destroy(c);
    fake_nvme_destroy(f);
}

static void admin_passthrough_and_log_page(void **state)
{
    struct fake_nvme *f;
    struct nvl_ctrl *c = NULL;
    struct nvl_dma *buf = NULL;
    struct nvme_sqe cmd;
    uint16_t st = 0xffff;

    (void)state;
    f = fake_default();
    assert_int_equal(nvl_ctrl_create(fake_nvme_transport(f), NULL, &c), 0);
    assert_int_equal(nvl_dma_create(fake_nvme_transport(f), 4096, 0, &buf), 0);
    memset(buf->vaddr, 0x5a, 4096);
    assert_int_equal(nvl_ctrl_get_log_page(c, NVME_LOG_SMART, NVME_NSID_ALL, buf, 0, 512, &st), 0);
    assert_int_equal(st, 0);
    assert_int_equal(((uint8_t *)buf->vaddr)[0], 0);
    assert_int_equal(((uint8_t *)buf->vaddr)[511], 0);
    assert_int_equal(((uint8_t *)buf->vaddr)[512], 0x5a);
    /* Enough admin commands to wrap the 32-entry admin queue three times. */
    for (int i = 0; i < 100; i++) {
        memset(buf->vaddr, 0x5a, 512);
        assert_int_equal(nvl_ctrl_get_log_page(c, NVME_LOG_ERROR, NVME_NSID_ALL, buf, 0, 256, &st),
                         0);
        assert_int_equal(((uint8_t *)buf->vaddr)[255], 0);
        assert_int_equal(((uint8_t *)buf->vaddr)[256], 0x5a);
    }
    memset(&cmd, 0, sizeof(cmd));
    cmd.opc = 0x7f; /* not an admin opcode */
    assert_int_equal(nvl_ctrl_admin(c, &cmd, NULL, 0, 0, NULL, &st), -EIO);
    assert_int_equal(st, NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_OPCODE));
    assert_int_equal(nvl_ctrl_get_state(c), NVL_CTRL_READY);
    nvl_dma_destroy(buf);
    nvl_ctrl_destroy(c);
    fake_nvme_destroy(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bringup_and_shutdown),
        cmocka_unit_test(limits_are_clamped),
        cmocka_unit_test(max_transfer_option),
        cmocka_unit_test(never_ready_times_out),
        cmocka_unit_test(fatal_status_during_identify),
        cmocka_unit_test(lost_admin_completion),
        cmocka_unit_test(admin_error_status),
        cmocka_unit_test(bad_arguments),
        cmocka_unit_test(reset_recreates_queues),
        cmocka_unit_test(admin_timeout_resets_controller),
        cmocka_unit_test(admin_passthrough_and_log_page),
    };
    if (!getenv("NVL_LOG"))
        nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
