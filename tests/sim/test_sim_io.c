/* Tests for driver/sim/src/sim_io.c: Read/Write/Flush with every backing store, checked against
 * the backing store itself (memory or pread of the file), and each I/O rule broken on purpose:
 * PRP offsets, DMA faults, MDTS, LBA range, namespace, opcode, reserved fields, CID conflicts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sim_host.h"

#define MIB (1024u * 1024u)

struct fixture {
    struct host h;
    struct hbuf buf;  /* 1 MiB data buffer */
    struct hbuf list; /* 64 KiB of PRP list pages */
    char path[256];
};

static int fixture_up(struct fixture *f, const char *spec)
{
    if (host_create(&f->h, spec) || host_bringup(&f->h, 2, 64))
        return -1;
    if (host_buf(&f->h, MIB, &f->buf) || host_buf(&f->h, 64 * 1024, &f->list))
        return -1;
    return 0;
}

static int setup_mem(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    *state = &f;
    /* MDTS 7 = 512 KiB: big enough for chained PRP lists (> 512 entries needs > 2 MiB, so
     * chaining is exercised through list pointers that start inside a page). */
    return fixture_up(&f, "mode=mem,size=16M,lba=512,mdts=7");
}

static int setup_mem4k(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    *state = &f;
    return fixture_up(&f, "mode=mem,size=16M,lba=4096,mdts=0");
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    host_buf_free(&f->h, &f->list);
    host_buf_free(&f->h, &f->buf);
    host_destroy(&f->h);
    if (f->path[0])
        unlink(f->path);
    return 0;
}

/* Writes through the sim, checks the bytes in the store; seeds the store, reads through the sim.
 * `off` is the buffer offset PRP1 starts at. */
static void mem_round_trip(struct fixture *f, uint64_t slba, uint32_t nlb, size_t off)
{
    uint32_t lba = nvl_sim_lba_size(f->h.sim);
    size_t len = (size_t)nlb * lba;
    size_t mem_len;
    uint8_t *mem = nvl_sim_mem(f->h.sim, &mem_len);

    assert_non_null(mem);
    pattern_fill(f->buf.p + off, len, slba * lba, 11);
    assert_int_equal(host_io(&f->h, 1, 0x01, slba, nlb, &f->buf, off, &f->list), 0);
    assert_int_equal(pattern_check(mem + slba * lba, len, slba * lba, 11), 0);

    pattern_fill(mem + slba * lba, len, slba * lba, 12);
    memset(f->buf.p, 0, f->buf.len);
    assert_int_equal(host_io(&f->h, 2, 0x02, slba, nlb, &f->buf, off, &f->list), 0);
    assert_int_equal(pattern_check(f->buf.p + off, len, slba * lba, 12), 0);
}

/* PRP1 only, PRP1 + PRP2, a PRP list, with and without a PRP1 offset. */
static void round_trip_prp_shapes(void **state)
{
    struct fixture *f = *state;

    mem_round_trip(f, 0, 1, 0);       /* 512 B in one page */
    mem_round_trip(f, 7, 8, 0);       /* 4 KiB, PRP1 only */
    mem_round_trip(f, 100, 8, 512);   /* 4 KiB from offset 512: PRP1 + PRP2 */
    mem_round_trip(f, 200, 16, 0);    /* 8 KiB: PRP1 + PRP2 */
    mem_round_trip(f, 300, 17, 0);    /* 8.5 KiB: a list of 2 */
    mem_round_trip(f, 1000, 1024, 4); /* 512 KiB = MDTS from a dword offset: a list of 128 */
}

/* Above 512 data pages per list page the list chains; mdts=0 lets one command reach that. */
static void round_trip_chained_list(void **state)
{
    struct fixture *f = *state;
    struct hbuf big;
    uint32_t nlb = 1000; /* 4000 KiB: 1 + 999 entries: two list pages, chained */
    uint8_t *mem = nvl_sim_mem(f->h.sim, NULL);

    assert_int_equal(host_buf(&f->h, (size_t)nlb * 4096, &big), 0);
    pattern_fill(big.p, (size_t)nlb * 4096, 0, 21);
    assert_int_equal(host_io(&f->h, 1, 0x01, 3, nlb, &big, 0, &f->list), 0);
    assert_int_equal(pattern_check(mem + 3 * 4096, (size_t)nlb * 4096, 0, 21), 0);
    memset(big.p, 0, big.len);
    assert_int_equal(host_io(&f->h, 1, 0x02, 3, nlb, &big, 0, &f->list), 0);
    assert_int_equal(pattern_check(big.p, (size_t)nlb * 4096, 0, 21), 0);
    /* The list page really was chained: entry 511 of page 0 points at page 1. */
    assert_int_equal(((uint64_t *)f->list.p)[511], f->list.iova + 4096);
    host_buf_free(&f->h, &big);
}

/* A PRP list pointer may start inside a page; the entries then run to the page end, and the last
 * slot chains when more remain. Built by hand here: 3 slots before the page end. */
static void list_pointer_with_offset_chains(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe sqe;
    struct nvme_cqe c;
    uint64_t *l = (uint64_t *)f->list.p;
    uint8_t *mem = nvl_sim_mem(f->h.sim, NULL);
    int i;

    /* 6 pages (48 blocks of 512 B): PRP1 + 5 entries. Slots 509..511 of list page 0: two data
     * entries, then a chain to page 1 holding the last three. */
    host_rw_sqe(&sqe, 0x02, 0, 48, 512, &f->buf, 0, &f->list);
    sqe.prp2 = f->list.iova + 509 * 8;
    l[509] = f->buf.iova + 1 * 4096;
    l[510] = f->buf.iova + 2 * 4096;
    l[511] = f->list.iova + 4096;
    for (i = 0; i < 3; i++)
        l[512 + i] = f->buf.iova + (uint64_t)(3 + i) * 4096;
    pattern_fill(mem, 6 * 4096, 0, 31);
    memset(f->buf.p, 0, 6 * 4096);
    host_submit(&f->h, &f->h.ioq[1], &sqe, 0);
    assert_int_equal(host_reap(&f->h, &f->h.ioq[1], &c, 2000), 0);
    assert_int_equal(CQE_STATUS(&c), 0);
    assert_int_equal(pattern_check(f->buf.p, 6 * 4096, 0, 31), 0);
}

/* Submits one hand-made SQE on queue 1 and returns its status. */
static int io_raw(struct fixture *f, struct nvme_sqe *sqe)
{
    struct nvme_cqe c;

    host_submit(&f->h, &f->h.ioq[1], sqe, 0);
    if (host_reap(&f->h, &f->h.ioq[1], &c, 2000))
        return -1;
    return CQE_STATUS(&c);
}

static void prp_offset_rules(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe sqe;
    uint64_t *l = (uint64_t *)f->list.p;

    /* PRP1 not dword aligned. */
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &f->buf, 2, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x13));
    /* PRP2 as a second data page with an offset. */
    host_rw_sqe(&sqe, 0x02, 0, 16, 512, &f->buf, 0, NULL);
    sqe.prp2 += 512;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x13));
    /* A list pointer that is not qword aligned. */
    host_rw_sqe(&sqe, 0x02, 0, 24, 512, &f->buf, 0, &f->list);
    sqe.prp2 += 4;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x13));
    /* A list entry with an offset. */
    host_rw_sqe(&sqe, 0x02, 0, 24, 512, &f->buf, 0, &f->list);
    l[1] += 8;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x13));
    /* A chain pointer with an offset (list starting 2 slots before the page end). */
    host_rw_sqe(&sqe, 0x02, 0, 32, 512, &f->buf, 0, &f->list);
    sqe.prp2 = f->list.iova + 510 * 8;
    l[510] = f->buf.iova + 4096;
    l[511] = f->list.iova + 4096 + 16;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x13));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_PRP_OFFSET), 5);
}

static void dma_fault_rules(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe sqe;
    uint64_t *l = (uint64_t *)f->list.p;
    struct nvl_sim_stats s;

    /* A virtual address where an IOVA belongs. */
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &f->buf, 0, NULL);
    sqe.prp1 = (uint64_t)(uintptr_t)f->buf.p;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x04));
    /* A second page just past the end of the buffer's region. */
    host_rw_sqe(&sqe, 0x01, 0, 16, 512, &f->buf, MIB - 4096, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x04));
    /* PRP1 whose page runs past the region: 4 KiB from the last 2 KiB of the buffer. */
    host_rw_sqe(&sqe, 0x02, 0, 4, 512, &f->buf, MIB - 1024, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x04));
    /* A list pointer outside every region. */
    host_rw_sqe(&sqe, 0x02, 0, 24, 512, &f->buf, 0, &f->list);
    sqe.prp2 = 0x1000;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x04));
    /* A list entry outside every region. */
    host_rw_sqe(&sqe, 0x02, 0, 24, 512, &f->buf, 0, &f->list);
    l[1] = 0x7000;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x04));
    host_stats(&f->h, &s);
    assert_int_equal(s.dma_faults, 5);
    assert_int_equal(s.violations[NVL_SIM_VIOL_DMA], 5);
}

static void command_rules(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe sqe;
    uint64_t nblocks = nvl_sim_nblocks(f->h.sim);
    struct nvl_sim_stats s;
    int st;

    /* One block more than MDTS (512 KiB = 1024 blocks): Invalid Field with DNR. */
    host_rw_sqe(&sqe, 0x02, 0, 1025, 512, &f->buf, 0, &f->list);
    st = io_raw(f, &sqe);
    assert_int_equal(ST_CODE(st), SC(0, 0x02));
    assert_true(st & 0x4000);
    /* LBA range: the last block is fine, one further is LBA Out of Range (80h). */
    host_rw_sqe(&sqe, 0x02, nblocks - 1, 1, 512, &f->buf, 0, NULL);
    assert_int_equal(io_raw(f, &sqe), 0);
    host_rw_sqe(&sqe, 0x02, nblocks - 1, 2, 512, &f->buf, 0, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x80));
    host_rw_sqe(&sqe, 0x01, nblocks, 1, 512, &f->buf, 0, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x80));
    /* SLBA near 2^64 must not wrap around. */
    host_rw_sqe(&sqe, 0x02, UINT64_MAX, 2, 512, &f->buf, 0, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x80));
    /* Namespace 2, 0 and all-namespaces are invalid for Read. */
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &f->buf, 0, NULL);
    sqe.nsid = 2;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x0b));
    sqe.nsid = 0xffffffff;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x0b));
    /* Unknown opcode; Write Zeroes is not supported (ONCS = 0). */
    host_rw_sqe(&sqe, 0x08, 0, 1, 512, &f->buf, 0, NULL);
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x01));
    /* SGL (PSDT) and fused commands are not supported. */
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &f->buf, 0, NULL);
    sqe.flags = 0x40;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x02));
    sqe.flags = 0x02;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x02));
    host_stats(&f->h, &s);
    assert_int_equal(s.violations[NVL_SIM_VIOL_MDTS], 1);
    assert_int_equal(s.violations[NVL_SIM_VIOL_LBA_RANGE], 3);
    assert_int_equal(s.violations[NVL_SIM_VIOL_NAMESPACE], 2);
    assert_int_equal(s.violations[NVL_SIM_VIOL_OPCODE], 1);
    assert_int_equal(s.violations[NVL_SIM_VIOL_FIELD], 2);
}

static void flush_rules(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe sqe;
    struct nvl_sim_stats s;

    memset(&sqe, 0, sizeof(sqe));
    sqe.opc = 0x00;
    sqe.nsid = 1;
    assert_int_equal(io_raw(f, &sqe), 0);
    sqe.nsid = 0xffffffff;
    assert_int_equal(io_raw(f, &sqe), 0);
    sqe.nsid = 3;
    assert_int_equal(ST_CODE(io_raw(f, &sqe)), SC(0, 0x0b));
    host_stats(&f->h, &s);
    assert_int_equal(s.flushes, 2);
}

/* A CID still outstanding on the same SQ: Command ID Conflict (03h). Completions are delayed by
 * the latency model so that the first command is still in flight. */
static void cid_conflict(void **state)
{
    struct host h;
    struct hbuf b;
    struct nvme_sqe sqe;
    struct nvme_cqe c1, c2, c3;
    struct hq *q;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=1M,lat=50ms"), 0);
    assert_int_equal(host_bringup(&h, 1, 16), 0);
    assert_int_equal(host_buf(&h, 8192, &b), 0);
    q = &h.ioq[1];
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &b, 0, NULL);
    sqe.cid = 77;
    host_push(q, &sqe, 1);
    host_rw_sqe(&sqe, 0x02, 1, 1, 512, &b, 512, NULL);
    sqe.cid = 77;
    host_push(q, &sqe, 1);
    /* A different CID on the same queue is fine. */
    host_rw_sqe(&sqe, 0x02, 2, 1, 512, &b, 1024, NULL);
    sqe.cid = 78;
    host_push(q, &sqe, 1);
    host_ring(&h, q);
    /* The conflict completes at once; the others after the 50 ms latency. */
    assert_int_equal(host_reap(&h, q, &c1, 2000), 0);
    assert_int_equal(c1.cid, 77);
    assert_int_equal(ST_CODE(CQE_STATUS(&c1)), SC(0, 0x03));
    assert_int_equal(host_reap(&h, q, &c2, 2000), 0);
    assert_int_equal(host_reap(&h, q, &c3, 2000), 0);
    assert_int_equal(CQE_STATUS(&c2) | CQE_STATUS(&c3), 0);
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_CID_CONFLICT), 1);
    /* Once completed, CID 77 may be used again. */
    assert_int_equal(host_io(&h, 1, 0x02, 0, 1, &b, 0, NULL), 0);
    host_rw_sqe(&sqe, 0x02, 0, 1, 512, &b, 0, NULL);
    sqe.cid = 77;
    host_submit(&h, q, &sqe, 1);
    assert_int_equal(host_reap(&h, q, &c1, 2000), 0);
    assert_int_equal(CQE_STATUS(&c1), 0);
    host_buf_free(&h, &b);
    host_destroy(&h);
}

/* File backing: data written through the sim is in the file (read back with pread), data put in
 * the file is what the sim reads; aligned 4 KiB requests take the O_DIRECT path. */
static void file_round_trip(void **state)
{
    struct fixture f;
    int fd;
    uint8_t *chk;
    char spec[400];
    size_t lens[] = {4096, 512, 64 * 1024};
    uint64_t lbas[] = {8, 3, 100};
    size_t offs[] = {0, 512, 0};
    int i;

    (void)state;
    memset(&f, 0, sizeof(f));
    snprintf(f.path, sizeof(f.path), "/tmp/nvl-sim-io-%d.img", (int)getpid());
    unlink(f.path);
    snprintf(spec, sizeof(spec), "file=%s,size=4M,lba=512", f.path);
    assert_int_equal(fixture_up(&f, spec), 0);
    fd = open(f.path, O_RDWR);
    assert_true(fd >= 0);
    chk = malloc(64 * 1024);
    for (i = 0; i < 3; i++) {
        uint32_t nlb = (uint32_t)(lens[i] / 512);

        pattern_fill(f.buf.p + offs[i], lens[i], lbas[i] * 512, 40 + i);
        assert_int_equal(host_io(&f.h, 1, 0x01, lbas[i], nlb, &f.buf, offs[i], &f.list), 0);
        assert_int_equal(pread(fd, chk, lens[i], (off_t)(lbas[i] * 512)), (ssize_t)lens[i]);
        assert_int_equal(pattern_check(chk, lens[i], lbas[i] * 512, 40 + i), 0);

        pattern_fill(chk, lens[i], lbas[i] * 512, 50 + i);
        assert_int_equal(pwrite(fd, chk, lens[i], (off_t)(lbas[i] * 512)), (ssize_t)lens[i]);
        fdatasync(fd);
        memset(f.buf.p, 0, f.buf.len);
        assert_int_equal(host_io(&f.h, 2, 0x02, lbas[i], nlb, &f.buf, offs[i], &f.list), 0);
        assert_int_equal(pattern_check(f.buf.p + offs[i], lens[i], lbas[i] * 512, 50 + i), 0);
    }
    free(chk);
    close(fd);
    {
        struct nvme_sqe sqe;

        memset(&sqe, 0, sizeof(sqe));
        sqe.opc = 0x00;
        sqe.nsid = 1;
        assert_int_equal(io_raw(&f, &sqe), 0);
    }
    {
        void *st = &f;
        teardown(&st);
    }
}

/* A read-only file store fails writes with Namespace is Write Protected (20h) and still reads. */
static void read_only_file(void **state)
{
    struct fixture f;
    char spec[400];
    int fd;

    (void)state;
    memset(&f, 0, sizeof(f));
    snprintf(f.path, sizeof(f.path), "/tmp/nvl-sim-ro-%d.img", (int)getpid());
    fd = open(f.path, O_CREAT | O_TRUNC | O_RDWR, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, 1 << 20), 0);
    {
        uint8_t blk[4096];

        pattern_fill(blk, sizeof(blk), 4096, 61);
        assert_int_equal(pwrite(fd, blk, sizeof(blk), 4096), 4096);
    }
    close(fd);
    snprintf(spec, sizeof(spec), "file=%s,ro=1,lba=4096", f.path);
    assert_int_equal(fixture_up(&f, spec), 0);
    assert_int_equal(nvl_sim_nblocks(f.h.sim), 256);
    assert_int_equal(ST_CODE(host_io(&f.h, 1, 0x01, 0, 1, &f.buf, 0, NULL)), SC(0, 0x20));
    assert_int_equal(host_io(&f.h, 1, 0x02, 1, 1, &f.buf, 0, NULL), 0);
    assert_int_equal(pattern_check(f.buf.p, 4096, 4096, 61), 0);
    {
        void *st = &f;
        teardown(&st);
    }
}

/* Null backing: commands complete, reads leave the buffer alone, the rules still apply. */
static void null_backing(void **state)
{
    struct fixture f;
    struct nvl_sim_stats s;

    (void)state;
    memset(&f, 0, sizeof(f));
    assert_int_equal(fixture_up(&f, "mode=null,lba=4096,mdts=5"), 0);
    assert_null(nvl_sim_mem(f.h.sim, NULL));
    assert_int_equal(nvl_sim_nblocks(f.h.sim), (1ull << 40) / 4096);
    memset(f.buf.p, 0x5a, 128 * 1024);
    assert_int_equal(host_io(&f.h, 1, 0x02, 12345, 32, &f.buf, 0, &f.list), 0);
    assert_int_equal(f.buf.p[0], 0x5a);
    assert_int_equal(f.buf.p[128 * 1024 - 1], 0x5a);
    assert_int_equal(host_io(&f.h, 1, 0x01, 0, 32, &f.buf, 0, &f.list), 0);
    assert_int_equal(ST_CODE(host_io(&f.h, 1, 0x02, 0, 33, &f.buf, 0, &f.list)), SC(0, 0x02));
    host_stats(&f.h, &s);
    assert_int_equal(s.reads, 1);
    assert_int_equal(s.writes, 1);
    assert_int_equal(s.bytes_read, 128 * 1024);
    {
        void *st = &f;
        teardown(&st);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(round_trip_prp_shapes, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(round_trip_chained_list, setup_mem4k, teardown),
        cmocka_unit_test_setup_teardown(list_pointer_with_offset_chains, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(prp_offset_rules, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(dma_fault_rules, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(command_rules, setup_mem, teardown),
        cmocka_unit_test_setup_teardown(flush_rules, setup_mem, teardown),
        cmocka_unit_test(cid_conflict),
        cmocka_unit_test(file_round_trip),
        cmocka_unit_test(read_only_file),
        cmocka_unit_test(null_backing),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
