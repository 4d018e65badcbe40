/* Tests of the cpu-nvme backend (backend_cpu_nvme.c) against the sim: the read battery on
 * memory- and file-backed namespaces with 512- and 4096-byte blocks, queue wrap-around across
 * calls, and fault injection: an error status, a lost completion and a fatal controller each
 * come back as an error without a hang, and the loader recovers after a reset. */
#include "loader_test_util.h"

#include <time.h>

#define BYTES (16 * TU_MIB)

static struct nvl_loader *loader_on(struct tu_sim *t, uint32_t timeout_ms)
{
    struct nvl_loader_opts o;
    struct nvl_loader *l;

    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_CPU_NVME;
    o.ctrl = t->ctrl;
    o.n_slots = 2;
    o.slot_bytes = 2 * TU_MIB;
    o.n_queues = 3;
    o.queue_depth = 16;
    o.timeout_ms = timeout_ms;
    assert_int_equal(nvl_loader_create(&o, &l), 0);
    assert_int_equal(nvl_loader_backend(l), NVL_LOADER_CPU_NVME);
    return l;
}

static void battery_on(bool file, const char *extra)
{
    struct tu_sim t;
    struct nvl_loader *l;

    tu_sim_up(&t, file, BYTES, 3, 32, extra);
    l = loader_on(&t, 5000);
    tu_battery(l, t.ref, BYTES);
    nvl_loader_destroy(l);
    tu_sim_assert_clean(&t);
    tu_sim_down(&t);
}

static void test_battery_mem_512(void **state)
{
    (void)state;
    battery_on(false, NULL);
}

static void test_battery_mem_4096(void **state)
{
    (void)state;
    battery_on(false, "lba=4096,mdts=3");
}

static void test_battery_file(void **state)
{
    (void)state;
    battery_on(true, NULL);
}

/* Thousands of one-command reads through 3 queues of 32 entries: the rings wrap many times over
 * successive calls and the data stays right. */
static void test_queue_wrap(void **state)
{
    struct tu_sim t;
    struct nvl_loader *l;
    struct nvl_read_stats st;
    uint64_t s = 5, commands = 0;
    uint8_t buf[8192];

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    l = loader_on(&t, 5000);
    for (int i = 0; i < 3000; i++) {
        struct nvl_extent e;
        struct nvl_read *r;

        e.len = 1 + tu_rng(&s) % 4000;
        e.offset = tu_rng(&s) % (BYTES - e.len);
        assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, sizeof(buf)), &r), 0);
        assert_int_equal(nvl_loader_wait(r, &st), 0);
        assert_memory_equal(buf, t.ref + e.offset, e.len);
        commands += st.commands;
    }
    assert_true(commands > 10 * 3 * 32);
    nvl_loader_destroy(l);
    tu_sim_assert_clean(&t);
    tu_sim_down(&t);
}

static double now_s(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void arm(struct tu_sim *t, enum nvl_sim_fault_kind kind, uint64_t nth, uint16_t status)
{
    struct nvl_sim_fault f;

    memset(&f, 0, sizeof(f));
    f.kind = kind;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_IO;
    f.nth = nth;
    f.status = status;
    assert_int_equal(nvl_sim_fault_add(t->sim, &f), 0);
}

/* A read whose command fails with an NVMe error: -EIO with the status, no reset needed, and the
 * next read works. */
static void test_fault_status(void **state)
{
    struct tu_sim t;
    struct nvl_loader *l;
    struct nvl_read_stats st;
    struct nvl_extent e = {4096, 600 * 1024};
    uint8_t *buf = malloc(e.len);
    struct nvl_read *r;

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    l = loader_on(&t, 5000);
    arm(&t, NVL_SIM_FAULT_STATUS, 2, 0x0281);
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, e.len), &r), 0);
    assert_int_equal(nvl_loader_wait(r, &st), -EIO);
    assert_int_equal(st.nvme_status & 0x7ff, 0x0281);
    assert_false(nvl_loader_needs_reset(l));
    nvl_sim_fault_clear(t.sim);
    tu_read_check(l, t.ref, &e, 1, nvl_dst_host(buf, e.len));
    nvl_loader_destroy(l);
    tu_sim_down(&t);
    free(buf);
}

/* A completion that never comes: the read fails -ETIMEDOUT after timeout_ms, not never; the
 * loader refuses reads until reset, and after nvl_loader_reset() reads work again. */
static void test_fault_lost_completion(void **state)
{
    struct tu_sim t;
    struct nvl_loader *l;
    struct nvl_extent e = {8192, 300 * 1024};
    uint8_t *buf = malloc(e.len);
    struct nvl_read *r;
    double t0;

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    l = loader_on(&t, 300);
    arm(&t, NVL_SIM_FAULT_LOSE, 1, 0);
    t0 = now_s();
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, e.len), &r), 0);
    assert_int_equal(nvl_loader_wait(r, NULL), -ETIMEDOUT);
    assert_true(now_s() - t0 < 5.0);
    assert_true(nvl_loader_needs_reset(l));
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, e.len), &r), -EIO);
    nvl_sim_fault_clear(t.sim);
    assert_int_equal(nvl_loader_reset(l), 0);
    assert_false(nvl_loader_needs_reset(l));
    tu_read_check(l, t.ref, &e, 1, nvl_dst_host(buf, e.len));
    nvl_loader_destroy(l);
    tu_sim_down(&t);
    free(buf);
}

/* The controller goes fatal (CSTS.CFS) mid-read: -ENXIO, a reset is needed, and it recovers. */
static void test_fault_fatal(void **state)
{
    struct tu_sim t;
    struct nvl_loader *l;
    struct nvl_extent e = {0, TU_MIB};
    uint8_t *buf = malloc(e.len);
    struct nvl_read *r;
    double t0;

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    l = loader_on(&t, 20000);
    arm(&t, NVL_SIM_FAULT_FATAL, 3, 0);
    t0 = now_s();
    assert_int_equal(nvl_loader_read_async(l, &e, 1, nvl_dst_host(buf, e.len), &r), 0);
    assert_int_equal(nvl_loader_wait(r, NULL), -ENXIO);
    /* Detected from CSTS (polled every 50 ms while progress stalls), well before the 20 s command
     * timeout; the margin is for a loaded machine. */
    assert_true(now_s() - t0 < 5.0);
    assert_true(nvl_loader_needs_reset(l));
    nvl_sim_fault_clear(t.sim);
    assert_int_equal(nvl_loader_reset(l), 0);
    tu_read_check(l, t.ref, &e, 1, nvl_dst_host(buf, e.len));
    nvl_loader_destroy(l);
    tu_sim_down(&t);
    free(buf);
}

/* A late completion within the timeout is no error. */
static void test_fault_delay(void **state)
{
    struct tu_sim t;
    struct nvl_loader *l;
    struct nvl_sim_fault f;
    struct nvl_extent e = {0, 256 * 1024};
    uint8_t *buf = malloc(e.len);

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    l = loader_on(&t, 2000);
    memset(&f, 0, sizeof(f));
    f.kind = NVL_SIM_FAULT_DELAY;
    f.opcode = NVME_NVM_READ;
    f.sqid = NVL_SIM_FAULT_IO;
    f.nth = 1;
    f.delay_us = 100000;
    assert_int_equal(nvl_sim_fault_add(t.sim, &f), 0);
    tu_read_check(l, t.ref, &e, 1, nvl_dst_host(buf, e.len));
    assert_false(nvl_loader_needs_reset(l));
    nvl_loader_destroy(l);
    tu_sim_down(&t);
    free(buf);
}

/* Two loaders on disjoint queue ranges of one controller (how a GPU engine and a CPU reference
 * share a drive), and a range past the controller's queues is refused. */
static void test_queue_ranges(void **state)
{
    struct tu_sim t;
    struct nvl_loader_opts o;
    struct nvl_loader *a, *b;
    uint8_t buf[10000];
    struct nvl_extent e = {333, 9000};

    (void)state;
    tu_sim_up(&t, false, BYTES, 3, 32, NULL);
    nvl_loader_opts_init(&o);
    o.backend = NVL_LOADER_CPU_NVME;
    o.ctrl = t.ctrl;
    o.slot_bytes = 2 * TU_MIB;
    o.n_queues = 2;
    assert_int_equal(nvl_loader_create(&o, &a), 0);
    o.first_queue = 2;
    assert_int_equal(nvl_loader_create(&o, &b), 0);
    tu_read_check(a, t.ref, &e, 1, nvl_dst_host(buf, sizeof(buf)));
    tu_read_check(b, t.ref, &e, 1, nvl_dst_host(buf, sizeof(buf)));
    nvl_loader_destroy(b);
    o.first_queue = 3;
    assert_int_equal(nvl_loader_create(&o, &b), -EINVAL);
    nvl_loader_destroy(a);
    tu_sim_down(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_battery_mem_512), cmocka_unit_test(test_battery_mem_4096),
        cmocka_unit_test(test_battery_file),    cmocka_unit_test(test_queue_wrap),
        cmocka_unit_test(test_fault_status),    cmocka_unit_test(test_fault_lost_completion),
        cmocka_unit_test(test_fault_fatal),     cmocka_unit_test(test_fault_delay),
        cmocka_unit_test(test_queue_ranges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
