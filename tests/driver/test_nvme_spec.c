/* Tests for nvl_driver/nvme_spec.h: register accessors, doorbell offsets, status helpers and
 * layouts, checked against values worked out by hand from the NVMe 1.4 figures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "nvl_driver.h"

static void cap_fields(void **state)
{
    /* MQES 0x7ff, CQR 1, TO 15 (7.5 s), DSTRD 2, CSS NVM, MPSMIN 0, MPSMAX 4. */
    uint64_t cap = 0x004000220f0107ffull;

    (void)state;
    assert_int_equal(nvme_cap_mqes(cap), 0x7ff);
    assert_int_equal(nvme_cap_max_entries(cap), 2048);
    assert_int_equal(nvme_cap_cqr(cap), 1);
    assert_int_equal(nvme_cap_ams(cap), 0);
    assert_int_equal(nvme_cap_to(cap), 15);
    assert_int_equal(nvme_cap_timeout_ms(cap), 7500);
    assert_int_equal(nvme_cap_dstrd(cap), 2);
    assert_int_equal(nvme_cap_css(cap), NVME_CAP_CSS_NVM);
    assert_int_equal(nvme_cap_mpsmin(cap), 0);
    assert_int_equal(nvme_cap_mpsmax(cap), 4);
    assert_int_equal(nvme_cap_mpsmin_bytes(cap), 4096);
    assert_int_equal(nvme_cap_mpsmax_bytes(cap), 65536);
    assert_int_equal(nvme_cap_nssrs(cap), 0);
}

static void cc_csts_aqa(void **state)
{
    uint32_t cc = nvme_cc_make(1, NVME_CC_CSS_NVM, 0, NVME_CC_AMS_RR, NVME_CC_SHN_NONE, 6, 4);

    (void)state;
    assert_int_equal(cc, 0x00460001);
    assert_int_equal(nvme_cc_iosqes(cc), 6);
    assert_int_equal(nvme_cc_iocqes(cc), 4);
    cc = nvme_cc_make(1, 0, 2, 0, NVME_CC_SHN_NORMAL, 6, 4);
    assert_int_equal(cc, 0x00464101);
    assert_int_equal(nvme_cc_mps(cc), 2);
    assert_int_equal(nvme_cc_shn(cc), NVME_CC_SHN_NORMAL);
    assert_int_equal(nvme_csts_rdy(0x9), 1);
    assert_int_equal(nvme_csts_shst(0x9), NVME_CSTS_SHST_COMPLETE);
    assert_int_equal(nvme_csts_cfs(0x9), 0);
    assert_int_equal(nvme_csts_cfs(0x3), 1);
    assert_int_equal(nvme_aqa_make(32, 32), 0x001f001f);
    assert_int_equal(nvme_aqa_asqs(0x001f003f), 64);
    assert_int_equal(nvme_aqa_acqs(0x001f003f), 32);
    assert_int_equal(nvme_vs_mjr(NVME_VS(1, 4, 0)), 1);
    assert_int_equal(nvme_vs_mnr(0x00010400), 4);
}

static void doorbells(void **state)
{
    (void)state;
    assert_int_equal(nvme_sq_tail_db_offset(0, 0), 0x1000);
    assert_int_equal(nvme_cq_head_db_offset(0, 0), 0x1004);
    assert_int_equal(nvme_sq_tail_db_offset(3, 0), 0x1018);
    assert_int_equal(nvme_cq_head_db_offset(3, 0), 0x101c);
    assert_int_equal(nvme_sq_tail_db_offset(1, 2), 0x1020);
    assert_int_equal(nvme_cq_head_db_offset(1, 2), 0x1030);
}

static void status_fields(void **state)
{
    /* LBA Out of Range, DNR set, phase 1: field 0x4080, half-word 0x8101. */
    uint16_t st = nvme_cqe_status(0x8101);

    (void)state;
    assert_int_equal(st, 0x4080);
    assert_int_equal(nvme_cqe_phase(0x8101), 1);
    assert_int_equal(nvme_status_sc(st), NVME_SC_LBA_OUT_OF_RANGE);
    assert_int_equal(nvme_status_sct(st), NVME_SCT_GENERIC);
    assert_int_equal(nvme_status_dnr(st), 1);
    assert_int_equal(nvme_status_m(st), 0);
    assert_int_equal(NVME_STATUS(NVME_SCT_COMMAND_SPECIFIC, NVME_SC_INVALID_QUEUE_SIZE), 0x102);
    assert_int_equal(nvme_cqe_status_make(0x102, 1), 0x205);
    assert_int_equal(nvme_status_crd(0x1800), 3);
}

static void command_dwords(void **state)
{
    (void)state;
    assert_int_equal(nvme_feat_num_queues_make(4, 4), 0x00030003);
    assert_int_equal(nvme_feat_num_queues_nsq(0x0007000f), 16);
    assert_int_equal(nvme_feat_num_queues_ncq(0x0007000f), 8);
    assert_int_equal(nvme_get_log_cdw10(NVME_LOG_SMART, 512), 0x007f0002);
    assert_int_equal(nvme_get_log_cdw11(512), 0);
    assert_int_equal(nvme_get_log_cdw11(1u << 20), 0x3);
    assert_int_equal(nvme_create_queue_cdw10(3, 1024), 0x03ff0003);
}

static void layouts(void **state)
{
    struct nvme_id_ns ns;

    (void)state;
    assert_int_equal(sizeof(struct nvme_sqe), 64);
    assert_int_equal(sizeof(struct nvme_cqe), 16);
    assert_int_equal(sizeof(struct nvme_id_ctrl), 4096);
    assert_int_equal(sizeof(struct nvme_id_ns), 4096);
    assert_int_equal(offsetof(struct nvme_id_ctrl, mdts), 77);
    assert_int_equal(offsetof(struct nvme_id_ctrl, nn), 516);
    assert_int_equal(offsetof(struct nvme_id_ns, lbaf), 128);
    assert_int_equal(offsetof(struct nvme_sqe, prp2), 32);
    assert_int_equal(offsetof(struct nvme_cqe, status), 14);
    ns.flbas = 0x12; /* format 2, metadata at the end of the LBA (bit 4) */
    assert_int_equal(nvme_id_ns_flbas_index(&ns), 2);
    ns.flbas = 0x61; /* NVMe 2.0: bits 6:5 are the high bits of the index */
    assert_int_equal(nvme_id_ns_flbas_index(&ns), 0x31);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(cap_fields),     cmocka_unit_test(cc_csts_aqa),
        cmocka_unit_test(doorbells),      cmocka_unit_test(status_fields),
        cmocka_unit_test(command_dwords), cmocka_unit_test(layouts),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
