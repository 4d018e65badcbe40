/* Integration: the driver against the strict software controller (nvl_sim) in memory mode.
 * Bring-up, Identify limits, write/flush/read at depth across queues, MDTS-sized commands
 * through PRP lists, byte-for-byte checks against the sim's backing memory (independent of the
 * driver's read path), and zero rule violations counted by the sim. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_driver.h"
#include "nvl_sim.h"
#include "nvl_sim/fault.h"
#include "nvl_sim/sim.h"

struct env {
    struct nvl_sim *sim;
    struct nvl_ctrl *c;
};

static void env_init(struct env *e, const char *spec, uint32_t queues, uint32_t depth)
{
    struct nvl_sim_opts so;
    struct nvl_ctrl_opts o;
    char err[128];

    nvl_sim_opts_init(&so);
    assert_int_equal(nvl_sim_opts_parse(&so, spec, err, sizeof(err)), 0);
    assert_int_equal(nvl_sim_create(&so, &e->sim), 0);
    nvl_ctrl_opts_init(&o);
    o.n_io_queues = queues;
    o.io_queue_depth = depth;
    o.io_timeout_ms = 300;
    assert_int_equal(nvl_ctrl_create(nvl_sim_transport(e->sim), &o, &e->c), 0);
}

static void env_fini(struct env *e)
{
    struct nvl_sim_stats st;

    nvl_ctrl_destroy(e->c);
    nvl_sim_get_stats(e->sim, &st);
    if (st.violations_total) {
        int v;

        for (v = 0; v < NVL_SIM_VIOL_COUNT; v++)
            if (st.violations[v])
                print_error("sim counted %llu %s violations\n",
                            (unsigned long long)st.violations[v],
                            nvl_sim_violation_name((enum nvl_sim_violation)v));
    }
    assert_int_equal(st.violations_total, 0);
    assert_int_equal(st.dma_faults, 0);
    nvl_sim_destroy(e->sim);
}

static void fill(uint8_t *p, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 7;
    size_t i;

    for (i = 0; i < n; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static void limits_from_the_sim(void **state)
{
    struct env e;
    const struct nvl_ctrl_info *in;

    (void)state;
    env_init(&e, "mode=mem,size=16M,lba=4096,mdts=6,queues=4,mqes=127", 8, 512);
    in = nvl_ctrl_get_info(e.c);
    assert_int_equal(in->lba_size, 4096);
    assert_int_equal(in->ns_lbas, (16u << 20) / 4096);
    assert_int_equal(in->mdts_bytes, 4096u << 6);
    assert_int_equal(in->max_transfer, 4096u << 6);
    assert_int_equal(in->n_io_queues, 4);      /* the sim grants 4 */
    assert_int_equal(in->io_queue_depth, 128); /* MQES + 1 */
    env_fini(&e);
}

static void rw_at_depth_across_queues(void **state)
{
    const size_t bytes = 32u << 20;
    struct nvl_dma *wbuf, *rbuf;
    struct nvl_io_opts io;
    struct nvl_sim_stats st;
    struct env e;
    uint16_t status = 0xffff;
    size_t mem_len = 0;
    uint8_t *mem;
    uint64_t nlb;

    (void)state;
    env_init(&e, "mode=mem,size=64M,lba=512,mdts=5,threads=2", 4, 64);
    assert_int_equal(nvl_dma_create(nvl_sim_transport(e.sim), bytes, NVL_DMA_TRY_HUGE, &wbuf), 0);
    assert_int_equal(nvl_dma_create(nvl_sim_transport(e.sim), bytes + 4096, 0, &rbuf), 0);
    fill(wbuf->vaddr, bytes, 11);
    nlb = bytes / 512;
    nvl_io_opts_init(&io);
    io.depth = 16;
    assert_int_equal(nvl_io_write(e.c, &io, 4096, nlb, wbuf, 0, &status), 0);
    assert_int_equal(status, 0);
    assert_int_equal(nvl_io_flush(e.c, NULL, &status), 0);
    mem = nvl_sim_mem(e.sim, &mem_len);
    assert_non_null(mem);
    assert_true(mem_len >= 4096 * 512 + bytes);
    assert_memory_equal(mem + 4096 * 512, wbuf->vaddr, bytes);
    /* Read back into a buffer at an odd (dword-aligned) offset: every command's PRP1 has an
     * offset and its PRP list covers one more page. */
    assert_int_equal(nvl_io_read(e.c, &io, 4096, nlb, rbuf, 0x804, &status), 0);
    assert_memory_equal((uint8_t *)rbuf->vaddr + 0x804, wbuf->vaddr, bytes);
    nvl_sim_get_stats(e.sim, &st);
    /* 32 MiB in 128 KiB commands each way. */
    assert_int_equal(st.writes, bytes / (128u << 10));
    assert_int_equal(st.reads, (bytes / (128u << 10)));
    assert_int_equal(st.flushes, 1);
    nvl_dma_destroy(wbuf);
    nvl_dma_destroy(rbuf);
    env_fini(&e);
}

static void injected_faults_are_survived(void **state)
{
    struct nvl_sim_fault fault;
    struct nvl_dma *buf;
    struct env e;
    uint16_t status = 0;
    size_t mem_len;

    (void)state;
    env_init(&e, "mode=mem,size=1M,lba=512,mdts=3", 2, 16);
    assert_int_equal(nvl_dma_create(nvl_sim_transport(e.sim), 64 << 10, 0, &buf), 0);
    fill(nvl_sim_mem(e.sim, &mem_len), 64 << 10, 5);
    /* The driver refuses a range beyond the namespace before the sim sees it. */
    assert_int_equal(nvl_io_read(e.c, NULL, 2047, 2, buf, 0, &status), -EINVAL);

    /* An error status reaches the caller, and the controller stays usable. */
    memset(&fault, 0, sizeof(fault));
    fault.kind = NVL_SIM_FAULT_STATUS;
    fault.opcode = NVME_NVM_READ;
    fault.sqid = NVL_SIM_FAULT_ANY;
    fault.nth = 2;
    fault.status = NVME_STATUS(NVME_SCT_MEDIA_ERROR, NVME_SC_UNRECOVERED_READ_ERROR);
    assert_int_equal(nvl_sim_fault_add(e.sim, &fault), 0);
    assert_int_equal(nvl_io_read(e.c, NULL, 0, 128, buf, 0, &status), -EIO);
    assert_int_equal(nvme_status_sct(status), NVME_SCT_MEDIA_ERROR);
    assert_int_equal(nvme_status_sc(status), NVME_SC_UNRECOVERED_READ_ERROR);
    assert_int_equal(nvl_ctrl_get_state(e.c), NVL_CTRL_READY);
    nvl_sim_fault_clear(e.sim);

    /* A lost completion times out and resets the controller; I/O works afterwards. */
    fault.kind = NVL_SIM_FAULT_LOSE;
    fault.nth = 1;
    assert_int_equal(nvl_sim_fault_add(e.sim, &fault), 0);
    assert_int_equal(nvl_io_read(e.c, NULL, 0, 128, buf, 0, &status), -ETIMEDOUT);
    assert_int_equal(nvl_ctrl_get_state(e.c), NVL_CTRL_READY);
    nvl_sim_fault_clear(e.sim);
    assert_int_equal(nvl_io_read(e.c, NULL, 0, 128, buf, 0, &status), 0);
    assert_memory_equal(buf->vaddr, nvl_sim_mem(e.sim, &mem_len), 64 << 10);

    /* Controller fatal status: -EIO, reset, usable again. */
    fault.kind = NVL_SIM_FAULT_FATAL;
    assert_int_equal(nvl_sim_fault_add(e.sim, &fault), 0);
    assert_int_equal(nvl_io_read(e.c, NULL, 0, 128, buf, 0, &status), -EIO);
    assert_int_equal(nvl_ctrl_get_state(e.c), NVL_CTRL_READY);
    nvl_sim_fault_clear(e.sim);
    memset(buf->vaddr, 0, 64 << 10);
    assert_int_equal(nvl_io_read(e.c, NULL, 0, 128, buf, 0, &status), 0);
    assert_memory_equal(buf->vaddr, nvl_sim_mem(e.sim, &mem_len), 64 << 10);
    nvl_dma_destroy(buf);
    env_fini(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(limits_from_the_sim),
        cmocka_unit_test(rw_at_depth_across_queues),
        cmocka_unit_test(injected_faults_are_survived),
    };
    if (!getenv("NVL_LOG"))
        nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
