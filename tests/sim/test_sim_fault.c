/* Tests for driver/sim/src/sim_fault.c: matching rules on their own, then each kind of injected
 * fault seen by a host: error status, delayed completion, lost completion, controller fatal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sim_host.h"
#include "sim_internal.h"

/* Arms one slot of a bare struct sim_faults (the public add goes through a sim). */
static void arm(struct sim_faults *fs, int i, const struct nvl_sim_fault *f)
{
    fs->slot[i].f = *f;
    fs->slot[i].armed = 1;
    fs->n_armed++;
}

static void match_nth_and_filters(void **state)
{
    struct sim_faults fs;
    struct sim_fault_action a;
    struct nvl_sim_fault f = {NVL_SIM_FAULT_STATUS, 0x02, NVL_SIM_FAULT_IO, 3, 0, 0, 0x0281, 0};
    uint64_t rng = 1;
    int i, fired = 0;

    (void)state;
    memset(&fs, 0, sizeof(fs));
    nvl__sim_fault_match(&fs, 1, 0x02, &rng, &a);
    assert_false(a.fired);
    arm(&fs, 0, &f);
    /* Admin Get Log Page (also opcode 02h) and writes do not count as matches. */
    nvl__sim_fault_match(&fs, 0, 0x02, &rng, &a);
    assert_false(a.fired);
    nvl__sim_fault_match(&fs, 1, 0x01, &rng, &a);
    assert_false(a.fired);
    for (i = 1; i <= 10; i++) {
        nvl__sim_fault_match(&fs, (uint16_t)(1 + i % 3), 0x02, &rng, &a);
        if (a.fired) {
            fired++;
            assert_int_equal(i, 3);
            assert_int_equal(a.kind, NVL_SIM_FAULT_STATUS);
            assert_int_equal(a.status, 0x0281);
        }
    }
    assert_int_equal(fired, 1);
}

static void match_probability_and_count(void **state)
{
    struct sim_faults fs;
    struct sim_fault_action a;
    struct nvl_sim_fault half = {
        NVL_SIM_FAULT_DELAY, NVL_SIM_FAULT_ANY, NVL_SIM_FAULT_ANY, 0, 0.5, 0, 0, 7};
    struct nvl_sim_fault capped = {NVL_SIM_FAULT_LOSE, NVL_SIM_FAULT_ANY, 5, 0, 1.0, 2, 0, 0};
    uint64_t rng = 12345;
    int i, fired = 0;

    (void)state;
    memset(&fs, 0, sizeof(fs));
    arm(&fs, 0, &half);
    for (i = 0; i < 4000; i++) {
        nvl__sim_fault_match(&fs, 1, 0x01, &rng, &a);
        fired += a.fired;
        if (a.fired)
            assert_int_equal(a.delay_ns, 7000);
    }
    assert_in_range(fired, 1800, 2200);

    memset(&fs, 0, sizeof(fs));
    arm(&fs, 0, &capped);
    fired = 0;
    for (i = 0; i < 10; i++) {
        nvl__sim_fault_match(&fs, 5, 0x02, &rng, &a);
        fired += a.fired;
    }
    assert_int_equal(fired, 2);
}

struct fx {
    struct host h;
    struct hbuf buf;
};

static int setup(void **state)
{
    static struct fx f;

    memset(&f, 0, sizeof(f));
    if (host_create(&f.h, "mode=mem,size=4M,lba=4096") || host_bringup(&f.h, 1, 32) ||
        host_buf(&f.h, 64 * 1024, &f.buf))
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    host_buf_free(&f->h, &f->buf);
    host_destroy(&f->h);
    return 0;
}

static void add_validates(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault bad = {NVL_SIM_FAULT_STATUS, 0x02, 1, 1, 0, 0, 0, 0};
    struct nvl_sim_fault ok = {NVL_SIM_FAULT_DELAY, 0x02, 1, 0, 0.1, 0, 0, 10};
    int i;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &bad), -EINVAL); /* STATUS with status 0 */
    bad.status = 0x0281;
    bad.nth = 0;
    assert_int_equal(nvl_sim_fault_add(f->h.sim, &bad), -EINVAL); /* neither nth nor p */
    bad.nth = 1;
    bad.opcode = 0x100;
    assert_int_equal(nvl_sim_fault_add(f->h.sim, &bad), -EINVAL);
    assert_int_equal(nvl_sim_fault_add(f->h.sim, NULL), -EINVAL);
    for (i = 0; i < NVL_SIM_FAULT_SLOTS; i++)
        assert_int_equal(nvl_sim_fault_add(f->h.sim, &ok), 0);
    assert_int_equal(nvl_sim_fault_add(f->h.sim, &ok), -ENOSPC);
    nvl_sim_fault_clear(f->h.sim);
    assert_int_equal(nvl_sim_fault_add(f->h.sim, &ok), 0);
    nvl_sim_fault_clear(f->h.sim);
}

static void injected_status(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault e = {NVL_SIM_FAULT_STATUS, 0x02, NVL_SIM_FAULT_IO, 3, 0, 0, 0x0281, 0};
    struct nvl_sim_stats s;
    int i;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &e), 0);
    for (i = 1; i <= 5; i++) {
        int st = host_io(&f->h, 1, 0x02, (uint64_t)i, 1, &f->buf, 0, NULL);

        assert_int_equal(st, i == 3 ? 0x0281 : 0);
    }
    /* Writes are untouched. */
    assert_int_equal(host_io(&f->h, 1, 0x01, 0, 1, &f->buf, 0, NULL), 0);
    host_stats(&f->h, &s);
    assert_int_equal(s.faults_injected, 1);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.violations_total, 0);
    nvl_sim_fault_clear(f->h.sim);
}

/* Admin commands can be failed too: an Identify that reports Internal Error. */
static void injected_admin_status(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault e = {NVL_SIM_FAULT_STATUS, 0x06, 0, 1, 0, 0, 0x0006, 0};
    struct nvme_sqe sqe;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &e), 0);
    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = 0x06;
    sqe.cdw10 = 1;
    sqe.prp1 = f->buf.iova;
    assert_int_equal(host_admin(&f->h, &sqe, NULL), 0x0006);
    assert_int_equal(host_admin(&f->h, &sqe, NULL), 0);
    nvl_sim_fault_clear(f->h.sim);
}

/* A delayed completion arrives after the delay, after a later command's completion. */
static void injected_delay(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault d = {NVL_SIM_FAULT_DELAY, 0x02, 1, 1, 0, 0, 0, 30000};
    struct hq *q = &f->h.ioq[1];
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    uint64_t t0;
    uint16_t first;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &d), 0);
    t0 = now_ms();
    host_rw_sqe(&sqe, 0x02, 0, 1, 4096, &f->buf, 0, NULL);
    host_push(q, &sqe, 0);
    first = sqe.cid;
    host_rw_sqe(&sqe, 0x02, 1, 1, 4096, &f->buf, 4096, NULL);
    host_push(q, &sqe, 0);
    host_ring(&f->h, q);
    assert_int_equal(host_reap(&f->h, q, &c, 2000), 0);
    assert_int_equal(c.cid, sqe.cid);
    assert_int_equal(host_reap(&f->h, q, &c, 2000), 0);
    assert_int_equal(c.cid, first);
    assert_int_equal(CQE_STATUS(&c), 0);
    assert_true(now_ms() - t0 >= 30);
    nvl_sim_fault_clear(f->h.sim);
}

/* A lost completion never arrives; later commands still complete, the CID is free again. */
static void injected_loss(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault l = {NVL_SIM_FAULT_LOSE, 0x02, 1, 1, 0, 0, 0, 0};
    struct hq *q = &f->h.ioq[1];
    struct nvme_sqe sqe;
    struct nvme_cqe c;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &l), 0);
    host_rw_sqe(&sqe, 0x02, 0, 1, 4096, &f->buf, 0, NULL);
    sqe.cid = 500;
    host_submit(&f->h, q, &sqe, 1);
    assert_int_equal(host_reap(&f->h, q, &c, 100), -ETIMEDOUT);
    sqe.cid = 500;
    host_submit(&f->h, q, &sqe, 1);
    assert_int_equal(host_reap(&f->h, q, &c, 2000), 0);
    assert_int_equal(c.cid, 500);
    assert_int_equal(CQE_STATUS(&c), 0);
    nvl_sim_fault_clear(f->h.sim);
}

/* A fatal fault: CSTS.CFS, nothing more is processed until the host resets the controller. */
static void injected_fatal(void **state)
{
    struct fx *f = *state;
    struct nvl_sim_fault x = {NVL_SIM_FAULT_FATAL, 0x01, NVL_SIM_FAULT_IO, 2, 0, 0, 0, 0};
    struct nvl_sim_stats s;

    assert_int_equal(nvl_sim_fault_add(f->h.sim, &x), 0);
    assert_int_equal(host_io(&f->h, 1, 0x01, 0, 1, &f->buf, 0, NULL), 0);
    {
        struct nvme_sqe sqe;
        struct nvme_cqe c;

        host_rw_sqe(&sqe, 0x01, 1, 1, 4096, &f->buf, 0, NULL);
        host_submit(&f->h, &f->h.ioq[1], &sqe, 0);
        assert_int_equal(host_wait_csts(&f->h, 2, 2, 2000), 0);
        assert_int_equal(host_reap(&f->h, &f->h.ioq[1], &c, 50), -ETIMEDOUT);
    }
    nvl_sim_fault_clear(f->h.sim);
    host_stats(&f->h, &s);
    assert_int_equal(s.fatal, 1);
    /* Reset and come back. */
    assert_int_equal(host_disable(&f->h), 0);
    assert_int_equal(host_reg32(&f->h, 0x1c) & 2, 0);
    memset(&f->h.ioq, 0, sizeof(f->h.ioq));
    assert_int_equal(host_bringup(&f->h, 1, 32), 0);
    assert_int_equal(host_io(&f->h, 1, 0x01, 0, 1, &f->buf, 0, NULL), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(match_nth_and_filters),
        cmocka_unit_test(match_probability_and_count),
        cmocka_unit_test_setup_teardown(add_validates, setup, teardown),
        cmocka_unit_test_setup_teardown(injected_status, setup, teardown),
        cmocka_unit_test_setup_teardown(injected_admin_status, setup, teardown),
        cmocka_unit_test_setup_teardown(injected_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(injected_loss, setup, teardown),
        cmocka_unit_test_setup_teardown(injected_fatal, setup, teardown),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
