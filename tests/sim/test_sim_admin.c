/* Tests for driver/sim/src/sim_admin.c: admin commands and each rule of queue creation and
 * deletion, broken on purpose with hand-written SQEs. Status codes are spelled as numbers from
 * the NVMe 1.4 figures, independently of the spec header the sim uses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "sim_host.h"

struct fixture {
    struct host h;
    struct hbuf data;
};

static int setup(void **state)
{
    static struct fixture f;

    memset(&f, 0, sizeof(f));
    if (host_create(&f.h, "mode=mem,size=8M,lba=4096,mdts=3,mqes=63,queues=4,threads=2"))
        return -1;
    if (host_enable(&f.h, 16) || host_buf(&f.h, 64 * 1024, &f.data))
        return -1;
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    host_buf_free(&f->h, &f->data);
    host_destroy(&f->h);
    return 0;
}

static void sqe_init(struct nvme_sqe *s, uint8_t opc)
{
    memset(s, 0, sizeof(*s));
    s->opc = opc;
}

static void identify_controller(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    const uint8_t *id = f->data.p;

    sqe_init(&s, 0x06);
    s.cdw10 = 1;
    s.prp1 = f->data.iova;
    memset(f->data.p, 0xee, 4096);
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    /* Byte offsets from NVMe 1.4 Figure 247. */
    assert_memory_equal(id + 4, "NVLSIM0001          ", 20); /* SN, space padded */
    assert_int_equal(id[77], 3);                             /* MDTS */
    assert_int_equal(id[512], 0x66);                         /* SQES */
    assert_int_equal(id[513], 0x44);                         /* CQES */
    assert_int_equal(id[516], 1);                            /* NN = 1 */
    assert_int_equal(id[516 + 1] | id[516 + 2] | id[516 + 3], 0);
    assert_int_equal(id[525] & 1, 1);                                    /* VWC present */
    assert_int_equal(id[80] | (id[81] << 8) | (id[82] << 16), 0x010400); /* VER 1.4 */
}

static void identify_namespace(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    const uint8_t *id = f->data.p;
    uint64_t nsze;

    sqe_init(&s, 0x06);
    s.nsid = 1;
    s.cdw10 = 0;
    s.prp1 = f->data.iova;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    memcpy(&nsze, id, 8);
    assert_int_equal(nsze, (8u << 20) / 4096);
    assert_int_equal(id[26] & 0xf, 0); /* FLBAS: format 0 */
    assert_int_equal(id[128 + 2], 12); /* LBAF0.LBADS: 4096 */

    /* NSID 2 does not exist: Invalid Namespace or Format (0Bh) with DNR. */
    s.nsid = 2;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x0b));
    s.nsid = 0;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x0b));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_NAMESPACE), 2);
}

static void identify_active_ns_list(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    uint32_t *list = (uint32_t *)f->data.p;

    sqe_init(&s, 0x06);
    s.cdw10 = 2;
    s.prp1 = f->data.iova;
    memset(f->data.p, 0xff, 4096);
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    assert_int_equal(list[0], 1);
    assert_int_equal(list[1], 0);
    /* Namespaces above 1: none. */
    s.nsid = 1;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    assert_int_equal(list[0], 0);
    s.nsid = 0xfffffffe;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x0b));
}

static void identify_bad_cns(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    uint64_t before = host_viol(&f->h, NVL_SIM_VIOL_FIELD);
    int st;

    sqe_init(&s, 0x06);
    s.cdw10 = 0x55;
    s.prp1 = f->data.iova;
    st = host_admin(&f->h, &s, NULL);
    assert_int_equal(ST_CODE(st), SC(0, 0x02));
    assert_true(st & 0x4000); /* DNR */
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_FIELD), before + 1);
}

/* Identify data through PRP1 with an offset spills into PRP2, which must be page aligned. */
static void identify_prp_rules(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    uint64_t before = host_viol(&f->h, NVL_SIM_VIOL_PRP_OFFSET);

    sqe_init(&s, 0x06);
    s.cdw10 = 1;
    s.prp1 = f->data.iova + 256;
    s.prp2 = f->data.iova + 4096;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    assert_memory_equal(f->data.p + 256 + 4, "NVLSIM0001", 10);
    s.prp2 = f->data.iova + 4096 + 8;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x13));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_PRP_OFFSET), before + 1);
    /* A virtual address instead of an IOVA is a DMA fault: Data Transfer Error (04h). */
    s.prp1 = (uint64_t)(uintptr_t)f->data.p;
    s.prp2 = 0;
    before = host_viol(&f->h, NVL_SIM_VIOL_DMA);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x04));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_DMA), before + 1);
}

static void unknown_admin_opcode(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;

    sqe_init(&s, 0x7e);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x01));
    sqe_init(&s, 0x06);
    s.cdw10 = 1;
    s.prp1 = f->data.iova;
    s.flags = 0x40; /* PSDT = SGL */
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
    s.flags = 0x01; /* FUSE: first of a fused pair */
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
}

/* Number of Queues: grants min(requested, max), rejects 65536, and is refused once an I/O queue
 * exists (Command Sequence Error). */
static void number_of_queues(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    struct nvme_cqe c;

    sqe_init(&s, 0x09);
    s.cdw10 = 0x07;
    s.cdw11 = (63u << 16) | 1u; /* 2 SQs, 64 CQs */
    assert_int_equal(host_admin(&f->h, &s, &c), 0);
    assert_int_equal(c.dw0 & 0xffff, 1);
    assert_int_equal(c.dw0 >> 16, 3); /* capped at queues=4 */
    sqe_init(&s, 0x0a);
    s.cdw10 = 0x07;
    assert_int_equal(host_admin(&f->h, &s, &c), 0);
    assert_int_equal(c.dw0, (3u << 16) | 1u);

    sqe_init(&s, 0x09);
    s.cdw10 = 0x07;
    s.cdw11 = 0xffff;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));

    /* Only 2 SQs were granted: SQ 3 is an invalid queue identifier. */
    assert_int_equal(host_create_ioq(&f->h, 1, 16), 0);
    assert_int_equal(ST_CODE(host_create_ioq(&f->h, 3, 16)), SC(1, 0x01));
    sqe_init(&s, 0x09);
    s.cdw10 = 0x07;
    s.cdw11 = 0;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x0c));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_CMD_SEQUENCE), 1);
}

static void other_features(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    struct nvme_cqe c;

    sqe_init(&s, 0x09);
    s.cdw10 = 0x06; /* volatile write cache */
    s.cdw11 = 1;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    sqe_init(&s, 0x0a);
    s.cdw10 = 0x06;
    assert_int_equal(host_admin(&f->h, &s, &c), 0);
    assert_int_equal(c.dw0, 1);
    sqe_init(&s, 0x09);
    s.cdw10 = 0x08; /* interrupt coalescing: stored */
    s.cdw11 = 0x0a05;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    sqe_init(&s, 0x0a);
    s.cdw10 = 0x08;
    assert_int_equal(host_admin(&f->h, &s, &c), 0);
    assert_int_equal(c.dw0, 0x0a05);
    /* Unknown feature, saving, and selecting a non-current value are invalid. */
    sqe_init(&s, 0x0a);
    s.cdw10 = 0x7f;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
    sqe_init(&s, 0x09);
    s.cdw10 = 0x06 | (1u << 31);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x0d));
    sqe_init(&s, 0x0a);
    s.cdw10 = 0x06 | (1u << 8);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
}

static void create_cq_raw(struct fixture *f, uint32_t qid, uint32_t entries, uint32_t cdw11,
                          uint64_t prp1, int want)
{
    struct nvme_sqe s;

    sqe_init(&s, 0x05);
    s.prp1 = prp1;
    s.cdw10 = ((entries - 1) << 16) | qid;
    s.cdw11 = cdw11;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), want);
}

static void create_sq_raw(struct fixture *f, uint32_t qid, uint32_t entries, uint32_t cqid,
                          uint32_t pc, uint64_t prp1, int want)
{
    struct nvme_sqe s;

    sqe_init(&s, 0x01);
    s.prp1 = prp1;
    s.cdw10 = ((entries - 1) << 16) | qid;
    s.cdw11 = (cqid << 16) | pc;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), want);
}

/* Every Create I/O CQ rule of NVMe 1.4 §5.3, broken one at a time. */
static void create_cq_rules(void **state)
{
    struct fixture *f = *state;
    struct nvl_sim_stats s;
    uint64_t base = f->data.iova;

    create_cq_raw(f, 0, 16, 1, base, SC(1, 0x01));                  /* QID 0 is the admin queue */
    create_cq_raw(f, 5, 16, 1, base, SC(1, 0x01));                  /* above the granted count */
    create_cq_raw(f, 1, 65, 1, base, SC(1, 0x02));                  /* 65 entries > MQES + 1 = 64 */
    create_cq_raw(f, 1, 1, 1, base, SC(1, 0x02));                   /* one entry */
    create_cq_raw(f, 1, 16, 0, base, SC(0, 0x02));                  /* PC = 0 with CAP.CQR = 1 */
    create_cq_raw(f, 1, 16, 1 | 2 | (3u << 16), base, SC(1, 0x08)); /* interrupt vector 3 */
    create_cq_raw(f, 1, 16, 1, base + 512, SC(0, 0x13));            /* unaligned base */
    create_cq_raw(f, 1, 16, 1, (uint64_t)(uintptr_t)f->data.p, SC(0, 0x04)); /* not DMA-mapped */
    create_cq_raw(f, 1, 16, 1, base, 0);
    create_cq_raw(f, 1, 16, 1, base + 4096, SC(1, 0x01)); /* QID in use */
    host_stats(&f->h, &s);
    assert_int_equal(s.violations[NVL_SIM_VIOL_QUEUE_ID], 3);
    assert_int_equal(s.violations[NVL_SIM_VIOL_QUEUE_SIZE], 2);
    assert_int_equal(s.violations[NVL_SIM_VIOL_QUEUE_CONTIG], 1);
    assert_int_equal(s.violations[NVL_SIM_VIOL_DMA], 1);
    assert_int_equal(s.violations[NVL_SIM_VIOL_PRP_OFFSET], 1);
}

/* A queue must lie inside one registered region: one that runs past the end of its buffer (into
 * the guard gap after it) is a DMA fault, for a CQ and for an SQ. */
static void queue_past_region_end(void **state)
{
    struct host h;
    struct hbuf small;
    struct fixture f;

    (void)state;
    assert_int_equal(host_create(&h, "mode=mem,size=1M"), 0);
    assert_int_equal(host_enable(&h, 8), 0);
    assert_int_equal(host_buf(&h, 4096, &small), 0);
    f.h = h;
    create_cq_raw(&f, 1, 512, 1, small.iova, SC(0, 0x04)); /* 8 KiB in a 4 KiB region */
    create_cq_raw(&f, 1, 256, 1, small.iova, 0);           /* exactly 4 KiB */
    create_sq_raw(&f, 1, 65, 1, 1, small.iova, SC(0, 0x04));
    assert_int_equal(host_viol(&h, NVL_SIM_VIOL_DMA), 2);
    host_destroy(&h);
}

/* Every Create I/O SQ rule of §5.4, and the deletion order of §5.5/§5.6. */
static void create_sq_and_delete_rules(void **state)
{
    struct fixture *f = *state;
    uint64_t base = f->data.iova;
    struct nvme_sqe s;

    create_cq_raw(f, 1, 16, 1, base, 0);
    create_sq_raw(f, 0, 16, 1, 1, base + 4096, SC(1, 0x01));
    create_sq_raw(f, 1, 65, 1, 1, base + 4096, SC(1, 0x02));
    create_sq_raw(f, 1, 16, 2, 1, base + 4096, SC(1, 0x00)); /* CQ 2 does not exist */
    create_sq_raw(f, 1, 16, 0, 1, base + 4096, SC(1, 0x00)); /* CQ 0 is the admin CQ */
    create_sq_raw(f, 1, 16, 1, 0, base + 4096, SC(0, 0x02)); /* PC = 0 */
    create_sq_raw(f, 1, 16, 1, 1, base + 4096 + 64, SC(0, 0x13));
    /* The SQ may not share the CQ's memory, nor start inside it. */
    create_sq_raw(f, 1, 16, 1, 1, base, SC(0, 0x02));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_QUEUE_OVERLAP), 1);
    create_sq_raw(f, 1, 16, 1, 1, base + 4096, 0);
    create_sq_raw(f, 1, 16, 1, 1, base + 8192, SC(1, 0x01)); /* in use */
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_QUEUE_CQ), 2);

    /* CQ 1 still has SQ 1: Invalid Queue Deletion (0Ch). */
    sqe_init(&s, 0x04);
    s.cdw10 = 1;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x0c));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_QUEUE_DELETE), 1);
    /* Deleting queues that do not exist. */
    sqe_init(&s, 0x00);
    s.cdw10 = 2;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x01));
    s.cdw10 = 0;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x01));
    /* The right order works, and the memory can be unmapped afterwards. */
    s.cdw10 = 1;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    sqe_init(&s, 0x04);
    s.cdw10 = 1;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    assert_int_equal(host_admin(&f->h, &s, NULL) & 0x7ff, SC(1, 0x01));
}

/* The queue ids come back after deletion; I/O works on the recreated pair. */
static void queues_can_be_recreated(void **state)
{
    struct fixture *f = *state;
    struct hbuf buf;

    assert_int_equal(host_create_ioq(&f->h, 2, 8), 0);
    assert_int_equal(host_buf(&f->h, 4096, &buf), 0);
    assert_int_equal(host_io(&f->h, 2, 0x02, 0, 1, &buf, 0, NULL), 0);
    assert_int_equal(host_delete_ioq(&f->h, 2), 0);
    memset(&f->h.ioq[2], 0, sizeof(f->h.ioq[2]));
    assert_int_equal(host_create_ioq(&f->h, 2, 8), 0);
    assert_int_equal(host_io(&f->h, 2, 0x02, 0, 1, &buf, 0, NULL), 0);
    host_buf_free(&f->h, &buf);
}

static void error_log_and_smart(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    uint64_t count;
    uint16_t cid, sqid, status;
    uint8_t *p = f->data.p;

    /* Make a known error: opcode 7Dh is invalid. */
    sqe_init(&s, 0x7d);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x01));
    cid = f->h.aq.next_cid - 1;
    sqe_init(&s, 0x02);
    s.cdw10 = 0x01 | ((4096 / 4 - 1) << 16);
    s.prp1 = f->data.iova;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    /* Newest entry first (Figure 194): error count, SQID, CID, status. */
    memcpy(&count, p, 8);
    memcpy(&sqid, p + 8, 2);
    memcpy(&status, p + 12, 2);
    assert_true(count >= 1);
    assert_int_equal(sqid, 0);
    assert_int_equal(p[10] | (p[11] << 8), cid);
    assert_int_equal((status >> 1) & 0x7ff, 0x01);

    /* Two 32 KiB reads: SMART counts 2 host reads and 1 data unit (1000 x 512 bytes, rounded
     * up). */
    assert_int_equal(host_create_ioq(&f->h, 1, 8), 0);
    assert_int_equal(host_io(&f->h, 1, 0x02, 0, 8, &f->data, 4096, &f->data), 0);
    assert_int_equal(host_io(&f->h, 1, 0x02, 8, 8, &f->data, 4096, &f->data), 0);
    sqe_init(&s, 0x02);
    s.cdw10 = 0x02 | ((512 / 4 - 1) << 16);
    s.prp1 = f->data.iova;
    assert_int_equal(host_admin(&f->h, &s, NULL), 0);
    assert_int_equal(p[1] | (p[2] << 8), 313); /* temperature, Kelvin */
    assert_int_equal(p[32], 1);                /* data units read */
    assert_int_equal(p[64], 2);                /* host read commands */
    assert_int_equal(p[48] | p[80], 0);        /* nothing written */

    /* Unsupported log: Invalid Log Page (1/09h). Offset past the end: Invalid Field. */
    s.cdw10 = 0x70 | ((512 / 4 - 1) << 16);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x09));
    s.cdw10 = 0x02 | ((512 / 4 - 1) << 16);
    s.cdw12 = 512;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
    s.cdw12 = 2;
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
    /* More than MDTS (32 KiB): Invalid Field. */
    s.cdw12 = 0;
    s.cdw10 = 0x01 | ((65536 / 4 - 1) << 16);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(0, 0x02));
    assert_int_equal(host_viol(&f->h, NVL_SIM_VIOL_LOG_PAGE), 3);
}

static void abort_and_aer(void **state)
{
    struct fixture *f = *state;
    struct nvme_sqe s;
    struct nvme_cqe c;
    int i;

    sqe_init(&s, 0x08);
    assert_int_equal(host_admin(&f->h, &s, &c), 0);
    assert_int_equal(c.dw0 & 1, 1); /* not aborted */
    /* AERL = 3: four requests are held, the fifth fails with 1/05h. */
    for (i = 0; i < 4; i++) {
        sqe_init(&s, 0x0c);
        host_submit(&f->h, &f->h.aq, &s, 0);
    }
    sqe_init(&s, 0x0c);
    assert_int_equal(ST_CODE(host_admin(&f->h, &s, NULL)), SC(1, 0x05));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(identify_controller, setup, teardown),
        cmocka_unit_test_setup_teardown(identify_namespace, setup, teardown),
        cmocka_unit_test_setup_teardown(identify_active_ns_list, setup, teardown),
        cmocka_unit_test_setup_teardown(identify_bad_cns, setup, teardown),
        cmocka_unit_test_setup_teardown(identify_prp_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(unknown_admin_opcode, setup, teardown),
        cmocka_unit_test_setup_teardown(number_of_queues, setup, teardown),
        cmocka_unit_test_setup_teardown(other_features, setup, teardown),
        cmocka_unit_test_setup_teardown(create_cq_rules, setup, teardown),
        cmocka_unit_test(queue_past_region_end),
        cmocka_unit_test_setup_teardown(create_sq_and_delete_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(queues_can_be_recreated, setup, teardown),
        cmocka_unit_test_setup_teardown(error_log_and_smart, setup, teardown),
        cmocka_unit_test_setup_teardown(abort_and_aer, setup, teardown),
    };

    nvl_log_set_level(NVL_LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}
