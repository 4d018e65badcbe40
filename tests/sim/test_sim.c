/* Tests for driver/sim/src/sim.c: lifetime, the transport the sim hands out, the DMA rules of
 * that transport (IOVA is not the virtual address; memory holding a live queue cannot be
 * unmapped), and the counters. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim_host.h"

static void create_defaults_and_destroy(void **state)
{
    struct nvl_sim *sim;
    struct nvl_transport *t;

    (void)state;
    assert_int_equal(nvl_sim_create(NULL, &sim), 0);
    t = nvl_sim_transport(sim);
    assert_non_null(t->bar0);
    assert_true(t->bar0_len >= 16384);
    assert_string_equal(t->name, "sim");
    assert_ptr_equal(nvl_sim_from_transport(t), sim);
    assert_int_equal(nvl_sim_lba_size(sim), 512);
    assert_int_equal(nvl_sim_nblocks(sim), (1ull << 30) / 512);
    assert_non_null(nvl_sim_mem(sim, NULL));
    assert_int_equal(nvl_sim_opts(sim)->threads, 1);
    nvl_sim_destroy(sim);
    nvl_sim_destroy(NULL);
}

static void create_rejects_bad_options(void **state)
{
    struct nvl_sim_opts o;
    struct nvl_sim *sim = (struct nvl_sim *)1;

    (void)state;
    nvl_sim_opts_init(&o);
    o.lba_size = 2048;
    assert_int_equal(nvl_sim_create(&o, &sim), -EINVAL);
    assert_null(sim);
    nvl_sim_opts_init(&o);
    o.backing = NVL_SIM_BACKING_FILE;
    snprintf(o.path, sizeof(o.path), "/nonexistent/dir/img");
    assert_int_equal(nvl_sim_create(&o, &sim), -ENOENT);
}

/* The transport's destroy destroys the sim (the driver owns the transport). */
static void destroy_through_transport(void **state)
{
    struct nvl_sim *sim;
    struct nvl_transport *t;

    (void)state;
    assert_int_equal(nvl_sim_create(NULL, &sim), 0);
    t = nvl_sim_transport(sim);
    t->ops->destroy(t);
}

static void from_other_transport_is_null(void **state)
{
    struct nvl_transport other;

    (void)state;
    memset(&other, 0, sizeof(other));
    assert_null(nvl_sim_from_transport(&other));
    assert_null(nvl_sim_from_transport(NULL));
}

/* Unmapping memory that a live queue lives in is refused; after deleting the queue it works. */
static void unmap_in_use_is_refused(void **state)
{
    struct host h;
    struct hq *q;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=1M"), 0);
    assert_int_equal(host_bringup(&h, 1, 16), 0);
    q = &h.ioq[1];
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, q->sqm.p, q->sqm.len, q->sqm.iova), -EBUSY);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, h.aq.cqm.p, h.aq.cqm.len, h.aq.cqm.iova), -EBUSY);
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_UNMAP_IN_USE), 2);
    assert_int_equal(host_delete_ioq(&h, 1), 0);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, q->sqm.p, q->sqm.len, q->sqm.iova), 0);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, q->cqm.p, q->cqm.len, q->cqm.iova), 0);
    /* Twice is an error, not a crash. */
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, q->cqm.p, q->cqm.len, q->cqm.iova), -EINVAL);
    /* After a disable, the admin queue memory is free too. */
    assert_int_equal(host_disable(&h), 0);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, h.aq.cqm.p, h.aq.cqm.len, h.aq.cqm.iova), 0);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, h.aq.sqm.p, h.aq.sqm.len, h.aq.sqm.iova), 0);
    host_destroy(&h);
}

/* Unmapping while a service thread is busy on other memory is safe, and an unmapped buffer is
 * a DMA fault afterwards. */
static void unmapped_buffer_faults(void **state)
{
    struct host h;
    struct hbuf b;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=1M"), 0);
    assert_int_equal(host_bringup(&h, 1, 16), 0);
    assert_int_equal(host_buf(&h, 4096, &b), 0);
    assert_int_equal(host_io(&h, 1, 0x02, 0, 1, &b, 0, NULL), 0);
    assert_int_equal(h.tr->ops->dma_unmap(h.tr, b.p, b.len, b.iova), 0);
    assert_int_equal(ST_CODE(host_io(&h, 1, 0x02, 0, 1, &b, 0, NULL)), SC(0, 0x04));
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_DMA), 1);
    host_destroy(&h);
}

static void stats_count_and_reset(void **state)
{
    struct host h;
    struct hbuf b;
    struct nvl_sim_stats s;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=1M,lba=4096"), 0);
    assert_int_equal(host_bringup(&h, 1, 16), 0);
    assert_int_equal(host_buf(&h, 8192, &b), 0);
    assert_int_equal(host_io(&h, 1, 0x01, 0, 2, &b, 0, NULL), 0);
    assert_int_equal(host_io(&h, 1, 0x02, 0, 1, &b, 0, NULL), 0);
    assert_int_equal(ST_CODE(host_io(&h, 1, 0x02, 1000, 1, &b, 0, NULL)), SC(0, 0x80));
    host_stats(&h, &s);
    assert_int_equal(s.io_commands, 3);
    assert_int_equal(s.writes, 1);
    assert_int_equal(s.reads, 1);
    assert_int_equal(s.bytes_written, 8192);
    assert_int_equal(s.bytes_read, 4096);
    assert_int_equal(s.errors, 1);
    assert_int_equal(s.violations_total, 1);
    assert_true(s.admin_commands >= 3);
    assert_int_equal(s.completions, s.admin_commands + s.io_commands);
    assert_string_equal(nvl_sim_violation_name(NVL_SIM_VIOL_LBA_RANGE), "lba_range");
    assert_string_equal(nvl_sim_violation_name(NVL_SIM_VIOL_COUNT), "unknown");
    nvl_sim_reset_stats(h.sim);
    host_stats(&h, &s);
    assert_int_equal(s.io_commands, 0);
    assert_int_equal(s.violations_total, 0);
    assert_int_equal(host_io(&h, 1, 0x02, 0, 1, &b, 0, NULL), 0);
    host_stats(&h, &s);
    assert_int_equal(s.io_commands, 1);
    host_buf_free(&h, &b);
    host_destroy(&h);
}

/* Every violation kind has a distinct name. */
static void violation_names_are_distinct(void **state)
{
    int i, j;

    (void)state;
    for (i = 0; i < NVL_SIM_VIOL_COUNT; i++) {
        assert_string_not_equal(nvl_sim_violation_name((enum nvl_sim_violation)i), "unknown");
        for (j = 0; j < i; j++)
            assert_string_not_equal(nvl_sim_violation_name((enum nvl_sim_violation)i),
                                    nvl_sim_violation_name((enum nvl_sim_violation)j));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(create_defaults_and_destroy),
        cmocka_unit_test(create_rejects_bad_options),
        cmocka_unit_test(destroy_through_transport),
        cmocka_unit_test(from_other_transport_is_null),
        cmocka_unit_test(unmap_in_use_is_refused),
        cmocka_unit_test(unmapped_buffer_faults),
        cmocka_unit_test(stats_count_and_reset),
        cmocka_unit_test(violation_names_are_distinct),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
