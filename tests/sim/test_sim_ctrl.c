/* Tests for driver/sim/src/sim_ctrl.c: the register file and the controller state machine,
 * driven by hand-written register stores. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "sim_host.h"

#define REG_CAP  0x00
#define REG_VS   0x08
#define REG_CC   0x14
#define REG_CSTS 0x1c
#define REG_AQA  0x24
#define REG_ASQ  0x28
#define REG_ACQ  0x30

static uint64_t cap_of(struct host *h)
{
    return (uint64_t)host_reg32(h, REG_CAP) | ((uint64_t)host_reg32(h, REG_CAP + 4) << 32);
}

/* CAP and VS advertise what the options say, in the bit positions of NVMe 1.4 §3.1.1/§3.1.2. */
static void cap_and_vs_reflect_options(void **state)
{
    struct host h;
    uint64_t cap;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,mqes=255,dstrd=2,to=7"), 0);
    cap = cap_of(&h);
    assert_int_equal(cap & 0xffff, 255);     /* MQES */
    assert_int_equal((cap >> 16) & 1, 1);    /* CQR */
    assert_int_equal((cap >> 24) & 0xff, 7); /* TO */
    assert_int_equal((cap >> 32) & 0xf, 2);  /* DSTRD */
    assert_int_equal((cap >> 37) & 0xff, 1); /* CSS: NVM */
    assert_int_equal((cap >> 48) & 0xf, 0);  /* MPSMIN: 4 KiB */
    assert_int_equal(host_reg32(&h, REG_VS), 0x00010400);
    assert_true(h.tr->bar0_len >= 16384);
    assert_int_equal((uintptr_t)h.tr->bar0 & 4095, 0);
    host_destroy(&h);
}

/* The BAR grows to hold one doorbell pair per queue at a wide stride. */
static void bar_holds_every_doorbell(void **state)
{
    struct host h;

    (void)state;
    assert_int_equal(host_create(&h, "mode=null,queues=64,dstrd=4"), 0);
    /* 65 queue pairs x 2 doorbells x 64 bytes after 0x1000. */
    assert_true(h.tr->bar0_len >= 0x1000 + 65 * 2 * 64);
    host_destroy(&h);
}

/* Bring-up: RDY follows EN only after the configured delay, and goes back after EN = 0. */
static void enable_and_disable_follow_delay(void **state)
{
    struct host h;
    struct nvl_sim_stats s;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,ready_us=20000"), 0);
    assert_int_equal(host_reg32(&h, REG_CSTS) & 1, 0);
    {
        struct hbuf sq, cq;

        assert_int_equal(host_buf(&h, 4096, &sq), 0);
        assert_int_equal(host_buf(&h, 4096, &cq), 0);
        host_reg32_write(&h, REG_AQA, 7 | (7 << 16));
        host_reg64_write(&h, REG_ASQ, sq.iova);
        host_reg64_write(&h, REG_ACQ, cq.iova);
        uint64_t t0;

        /* RDY may not follow EN sooner than the 20 ms delay, in either direction. */
        t0 = now_ms();
        host_reg32_write(&h, REG_CC, host_cc_enabled());
        assert_int_equal(host_wait_csts(&h, 1, 1, 2000), 0);
        assert_true(now_ms() - t0 >= 20);
        t0 = now_ms();
        host_reg32_write(&h, REG_CC, 0);
        assert_int_equal(host_wait_csts(&h, 1, 0, 2000), 0);
        assert_true(now_ms() - t0 >= 20);
        host_stats(&h, &s);
        assert_int_equal(s.resets, 1);
        assert_int_equal(s.violations_total, 0);
    }
    host_destroy(&h);
}

/* Each unsupported CC setting refuses the enable with CSTS.CFS; CC.EN = 0 clears it. */
static void bad_cc_sets_cfs(void **state)
{
    static const uint32_t bad[] = {
        (1u << 4),  /* CSS: not NVM */
        (1u << 7),  /* MPS: 8 KiB */
        (1u << 11), /* AMS: WRR */
        0,          /* IOSQES/IOCQES left 0 */
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct host h;
        struct hbuf sq, cq;
        uint32_t cc = i == 3 ? 1u : host_cc_enabled() | bad[i];

        assert_int_equal(host_create(&h, "mode=mem,ready_us=100"), 0);
        assert_int_equal(host_buf(&h, 4096, &sq), 0);
        assert_int_equal(host_buf(&h, 4096, &cq), 0);
        host_reg32_write(&h, REG_AQA, 7 | (7 << 16));
        host_reg64_write(&h, REG_ASQ, sq.iova);
        host_reg64_write(&h, REG_ACQ, cq.iova);
        host_reg32_write(&h, REG_CC, cc);
        assert_int_equal(host_wait_csts(&h, 2, 2, 2000), 0);
        assert_int_equal(host_reg32(&h, REG_CSTS) & 1, 0);
        assert_int_equal(host_viol(&h, NVL_SIM_VIOL_ENABLE), 1);
        host_reg32_write(&h, REG_CC, 0);
        assert_int_equal(host_wait_csts(&h, 3, 0, 2000), 0);
        host_buf_free(&h, &sq);
        host_buf_free(&h, &cq);
        host_destroy(&h);
    }
}

/* Bad admin queue attributes: unaligned base, one-entry queue, reserved AQA bits, and a base
 * that is not in any DMA region (a virtual address passed as IOVA). */
static void bad_admin_queue_sets_cfs(void **state)
{
    int i;

    (void)state;
    for (i = 0; i < 4; i++) {
        struct host h;
        struct hbuf sq, cq;
        uint32_t aqa = 7 | (7 << 16);
        uint64_t asq, acq;
        enum nvl_sim_violation want = NVL_SIM_VIOL_ENABLE;

        assert_int_equal(host_create(&h, "mode=mem,ready_us=100"), 0);
        assert_int_equal(host_buf(&h, 4096, &sq), 0);
        assert_int_equal(host_buf(&h, 4096, &cq), 0);
        asq = sq.iova;
        acq = cq.iova;
        if (i == 0)
            asq += 64;
        else if (i == 1)
            aqa = 0;
        else if (i == 2)
            aqa |= 1u << 12;
        else {
            acq = (uint64_t)(uintptr_t)cq.p;
            want = NVL_SIM_VIOL_DMA;
        }
        host_reg32_write(&h, REG_AQA, aqa);
        host_reg64_write(&h, REG_ASQ, asq);
        host_reg64_write(&h, REG_ACQ, acq);
        host_reg32_write(&h, REG_CC, host_cc_enabled());
        assert_int_equal(host_wait_csts(&h, 2, 2, 2000), 0);
        assert_int_equal(host_viol(&h, want), 1);
        host_buf_free(&h, &sq);
        host_buf_free(&h, &cq);
        host_destroy(&h);
    }
}

/* A doorbell written before CSTS.RDY is counted and dropped. */
static void early_doorbell_is_dropped(void **state)
{
    struct host h;
    struct nvme_sqe sqe;
    struct nvme_cqe c;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem"), 0);
    host_db_write(host_sq_db(&h, 0), 1);
    assert_int_equal(host_wait_viol(&h, NVL_SIM_VIOL_DOORBELL_EARLY, 1, 2000), 0);
    assert_int_equal(__atomic_load_n(host_sq_db(&h, 0), __ATOMIC_ACQUIRE), 0);
    /* The controller still comes up and works normally afterwards. */
    assert_int_equal(host_enable(&h, 8), 0);
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = NVME_ADMIN_IDENTIFY;
    sqe.cdw10 = 1;
    {
        struct hbuf id;

        assert_int_equal(host_buf(&h, 4096, &id), 0);
        sqe.prp1 = id.iova;
        assert_int_equal(host_admin(&h, &sqe, &c), 0);
        host_buf_free(&h, &id);
    }
    host_destroy(&h);
}

/* CAP and VS are read-only: a store is counted and undone. */
static void ro_register_write_is_restored(void **state)
{
    struct host h;
    uint64_t cap;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem"), 0);
    cap = cap_of(&h);
    host_reg32_write(&h, REG_CAP, 0xffff);
    assert_int_equal(host_wait_viol(&h, NVL_SIM_VIOL_RO_REGISTER, 1, 2000), 0);
    assert_int_equal(cap_of(&h), cap);
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_RO_REGISTER), 1);
    host_destroy(&h);
}

/* CC.SHN: SHST goes to "occurring", then "complete"; the file store is flushed. */
static void shutdown_reports_shst(void **state)
{
    struct host h;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,shutdown_us=20000"), 0);
    assert_int_equal(host_enable(&h, 8), 0);
    host_reg32_write(&h, REG_CC, host_cc_enabled() | (1u << 14));
    assert_int_equal(host_wait_csts(&h, 0xc, 0x4, 2000), 0);
    assert_int_equal(host_wait_csts(&h, 0xc, 0x8, 2000), 0);
    /* Disabling afterwards clears SHST and RDY. */
    host_reg32_write(&h, REG_CC, 0);
    assert_int_equal(host_wait_csts(&h, 0xd, 0, 2000), 0);
    /* And it can be enabled again. */
    assert_int_equal(host_enable(&h, 8), 0);
    host_destroy(&h);
}

/* Setting CC.EN again before RDY dropped is a violation (NVMe 1.4 §3.1.5). */
static void reenable_before_rdy_clear(void **state)
{
    struct host h;
    struct nvl_sim_stats s;
    uint64_t end;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,ready_us=100000"), 0);
    assert_int_equal(host_enable(&h, 8), 0);
    host_reg32_write(&h, REG_CC, 0);
    /* Once the sim has seen EN = 0 (it counts the reset), RDY stays up for 100 ms. */
    end = now_ms() + 2000;
    do {
        host_stats(&h, &s);
        assert_true(now_ms() < end);
    } while (s.resets == 0);
    host_reg32_write(&h, REG_CC, host_cc_enabled());
    /* RDY still shows the old enable; it drops, then rises for the new one. */
    assert_int_equal(host_wait_csts(&h, 1, 0, 3000), 0);
    assert_int_equal(host_wait_csts(&h, 1, 1, 3000), 0);
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_ENABLE), 1);
    host_destroy(&h);
}

/* A function-level reset through the transport clears every register and every queue. */
static void transport_reset_clears_everything(void **state)
{
    struct host h;
    struct nvl_sim_stats s;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem"), 0);
    assert_int_equal(host_bringup(&h, 2, 16), 0);
    assert_int_equal(h.tr->ops->reset(h.tr), 0);
    assert_int_equal(host_reg32(&h, REG_CC), 0);
    assert_int_equal(host_reg32(&h, REG_CSTS), 0);
    assert_int_equal(host_reg32(&h, REG_AQA), 0);
    assert_int_equal(cap_of(&h) & 0xffff, 1023);
    host_stats(&h, &s);
    assert_int_equal(s.resets, 1);
    /* A full bring-up works again, with the same queue ids. */
    memset(&h.ioq, 0, sizeof(h.ioq));
    assert_int_equal(host_bringup(&h, 2, 16), 0);
    host_destroy(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cap_and_vs_reflect_options),
        cmocka_unit_test(bar_holds_every_doorbell),
        cmocka_unit_test(enable_and_disable_follow_delay),
        cmocka_unit_test(bad_cc_sets_cfs),
        cmocka_unit_test(bad_admin_queue_sets_cfs),
        cmocka_unit_test(early_doorbell_is_dropped),
        cmocka_unit_test(ro_register_write_is_restored),
        cmocka_unit_test(shutdown_reports_shst),
        cmocka_unit_test(reenable_before_rdy_clear),
        cmocka_unit_test(transport_reset_clears_everything),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
