/* NVMe 1.4 base specification definitions: controller registers, submission and completion
 * queue entries, Identify data structures, opcodes, status codes, feature and log page ids.
 *
 * This header holds only the specification, nothing of nvload. It compiles as C11 and as CUDA
 * C++ (host and device), so the GPU engine uses the same definitions as the CPU driver: fixed-width
 * fields, no bitfields, every hardware layout checked by size and offset asserts. Section numbers
 * refer to NVM Express Base Specification 1.4c. */
#ifndef NVL_DRIVER_NVME_SPEC_H
#define NVL_DRIVER_NVME_SPEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define NVME_STATIC_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define NVME_STATIC_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Accessors are usable from host and device code. */
#if defined(__CUDACC__)
#define NVME_HD __host__ __device__
#else
#define NVME_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ---------------------------------------------------------------------------------------------
 * Controller registers (§3.1, Figure 78): byte offsets into BAR0.
 */
enum nvme_reg {
    NVME_REG_CAP = 0x00,    /* Controller Capabilities, 64 bit */
    NVME_REG_VS = 0x08,     /* Version */
    NVME_REG_INTMS = 0x0c,  /* Interrupt Mask Set */
    NVME_REG_INTMC = 0x10,  /* Interrupt Mask Clear */
    NVME_REG_CC = 0x14,     /* Controller Configuration */
    NVME_REG_CSTS = 0x1c,   /* Controller Status */
    NVME_REG_NSSR = 0x20,   /* NVM Subsystem Reset */
    NVME_REG_AQA = 0x24,    /* Admin Queue Attributes */
    NVME_REG_ASQ = 0x28,    /* Admin Submission Queue Base Address, 64 bit */
    NVME_REG_ACQ = 0x30,    /* Admin Completion Queue Base Address, 64 bit */
    NVME_REG_CMBLOC = 0x38, /* Controller Memory Buffer Location */
    NVME_REG_CMBSZ = 0x3c,  /* Controller Memory Buffer Size */
    NVME_REG_DBS = 0x1000,  /* first doorbell: SQ 0 tail */
};

/* NSSR.NSSRC: writing this value ("NVMe") starts an NVM subsystem reset (§3.1.7). */
#define NVME_NSSR_MAGIC 0x4e564d65u

/* CAP (§3.1.1). */
NVME_HD static inline uint32_t nvme_cap_mqes(uint64_t cap) /* 0's based: entries - 1 */
{
    return (uint32_t)(cap & 0xffff);
}
NVME_HD static inline uint32_t nvme_cap_max_entries(uint64_t cap) /* 2..65536 */
{
    return nvme_cap_mqes(cap) + 1;
}
NVME_HD static inline uint32_t nvme_cap_cqr(uint64_t cap) /* 1: queues must be contiguous */
{
    return (uint32_t)((cap >> 16) & 0x1);
}
NVME_HD static inline uint32_t nvme_cap_ams(uint64_t cap) /* arbitration mechanisms, bit mask */
{
    return (uint32_t)((cap >> 17) & 0x3);
}
NVME_HD static inline uint32_t nvme_cap_to(uint64_t cap) /* raw, in 500 ms units */
{
    return (uint32_t)((cap >> 24) & 0xff);
}
/* §3.1.1: CAP.TO is the worst-case time for CSTS.RDY to follow CC.EN, in 500 ms units. */
NVME_HD static inline uint32_t nvme_cap_timeout_ms(uint64_t cap)
{
    return nvme_cap_to(cap) * 500u;
}
NVME_HD static inline uint32_t nvme_cap_dstrd(uint64_t cap) /* stride = 4 << DSTRD bytes */
{
    return (uint32_t)((cap >> 32) & 0xf);
}
NVME_HD static inline uint32_t nvme_cap_nssrs(uint64_t cap)
{
    return (uint32_t)((cap >> 36) & 0x1);
}
NVME_HD static inline uint32_t nvme_cap_css(uint64_t cap) /* command sets, bit mask */
{
    return (uint32_t)((cap >> 37) & 0xff);
}
NVME_HD static inline uint32_t nvme_cap_bps(uint64_t cap)
{
    return (uint32_t)((cap >> 45) & 0x1);
}
NVME_HD static inline uint32_t nvme_cap_mpsmin(uint64_t cap) /* page = 2^(12 + MPSMIN) */
{
    return (uint32_t)((cap >> 48) & 0xf);
}
NVME_HD static inline uint32_t nvme_cap_mpsmax(uint64_t cap)
{
    return (uint32_t)((cap >> 52) & 0xf);
}
NVME_HD static inline uint64_t nvme_cap_mpsmin_bytes(uint64_t cap)
{
    return (uint64_t)1 << (12 + nvme_cap_mpsmin(cap));
}
NVME_HD static inline uint64_t nvme_cap_mpsmax_bytes(uint64_t cap)
{
    return (uint64_t)1 << (12 + nvme_cap_mpsmax(cap));
}
NVME_HD static inline uint32_t nvme_cap_pmrs(uint64_t cap)
{
    return (uint32_t)((cap >> 56) & 0x1);
}
NVME_HD static inline uint32_t nvme_cap_cmbs(uint64_t cap)
{
    return (uint32_t)((cap >> 57) & 0x1);
}

/* CAP.CSS bits. */
#define NVME_CAP_CSS_NVM  (1u << 0) /* NVM command set */
#define NVME_CAP_CSS_NOIO (1u << 7) /* no I/O command set (admin only) */
/* CAP.AMS bits. */
#define NVME_CAP_AMS_WRR (1u << 0) /* weighted round robin with urgent priority class */
#define NVME_CAP_AMS_VS  (1u << 1) /* vendor specific */

/* VS (§3.1.2). */
NVME_HD static inline uint32_t nvme_vs_mjr(uint32_t vs)
{
    return vs >> 16;
}
NVME_HD static inline uint32_t nvme_vs_mnr(uint32_t vs)
{
    return (vs >> 8) & 0xff;
}
NVME_HD static inline uint32_t nvme_vs_ter(uint32_t vs)
{
    return vs & 0xff;
}
#define NVME_VS(mjr, mnr, ter) (((uint32_t)(mjr) << 16) | ((uint32_t)(mnr) << 8) | (uint32_t)(ter))

/* CC (§3.1.5): field shifts and values. */
#define NVME_CC_EN           (1u << 0)
#define NVME_CC_CSS_SHIFT    4
#define NVME_CC_CSS_MASK     (0x7u << NVME_CC_CSS_SHIFT)
#define NVME_CC_CSS_NVM      0u /* NVM command set */
#define NVME_CC_CSS_ADMIN    7u /* admin command set only */
#define NVME_CC_MPS_SHIFT    7
#define NVME_CC_MPS_MASK     (0xfu << NVME_CC_MPS_SHIFT)
#define NVME_CC_AMS_SHIFT    11
#define NVME_CC_AMS_MASK     (0x7u << NVME_CC_AMS_SHIFT)
#define NVME_CC_AMS_RR       0u /* round robin */
#define NVME_CC_SHN_SHIFT    14
#define NVME_CC_SHN_MASK     (0x3u << NVME_CC_SHN_SHIFT)
#define NVME_CC_SHN_NONE     0u
#define NVME_CC_SHN_NORMAL   1u
#define NVME_CC_SHN_ABRUPT   2u
#define NVME_CC_IOSQES_SHIFT 16
#define NVME_CC_IOSQES_MASK  (0xfu << NVME_CC_IOSQES_SHIFT)
#define NVME_CC_IOCQES_SHIFT 20
#define NVME_CC_IOCQES_MASK  (0xfu << NVME_CC_IOCQES_SHIFT)
#define NVME_SQE_SIZE_LOG2   6 /* CC.IOSQES: 64-byte SQEs */
#define NVME_CQE_SIZE_LOG2   4 /* CC.IOCQES: 16-byte CQEs */

NVME_HD static inline uint32_t nvme_cc_en(uint32_t cc)
{
    return cc & NVME_CC_EN;
}
NVME_HD static inline uint32_t nvme_cc_css(uint32_t cc)
{
    return (cc & NVME_CC_CSS_MASK) >> NVME_CC_CSS_SHIFT;
}
NVME_HD static inline uint32_t nvme_cc_mps(uint32_t cc) /* page = 2^(12 + MPS) */
{
    return (cc & NVME_CC_MPS_MASK) >> NVME_CC_MPS_SHIFT;
}
NVME_HD static inline uint32_t nvme_cc_ams(uint32_t cc)
{
    return (cc & NVME_CC_AMS_MASK) >> NVME_CC_AMS_SHIFT;
}
NVME_HD static inline uint32_t nvme_cc_shn(uint32_t cc)
{
    return (cc & NVME_CC_SHN_MASK) >> NVME_CC_SHN_SHIFT;
}
NVME_HD static inline uint32_t nvme_cc_iosqes(uint32_t cc)
{
    return (cc & NVME_CC_IOSQES_MASK) >> NVME_CC_IOSQES_SHIFT;
}
NVME_HD static inline uint32_t nvme_cc_iocqes(uint32_t cc)
{
    return (cc & NVME_CC_IOCQES_MASK) >> NVME_CC_IOCQES_SHIFT;
}
/* Builds a CC value. mps is the CC.MPS code (page = 2^(12 + mps)), not bytes. */
NVME_HD static inline uint32_t nvme_cc_make(uint32_t en, uint32_t css, uint32_t mps, uint32_t ams,
                                            uint32_t shn, uint32_t iosqes, uint32_t iocqes)
{
    return (en ? NVME_CC_EN : 0u) | ((css << NVME_CC_CSS_SHIFT) & NVME_CC_CSS_MASK) |
           ((mps << NVME_CC_MPS_SHIFT) & NVME_CC_MPS_MASK) |
           ((ams << NVME_CC_AMS_SHIFT) & NVME_CC_AMS_MASK) |
           ((shn << NVME_CC_SHN_SHIFT) & NVME_CC_SHN_MASK) |
           ((iosqes << NVME_CC_IOSQES_SHIFT) & NVME_CC_IOSQES_MASK) |
           ((iocqes << NVME_CC_IOCQES_SHIFT) & NVME_CC_IOCQES_MASK);
}

/* CSTS (§3.1.6). */
#define NVME_CSTS_RDY            (1u << 0)
#define NVME_CSTS_CFS            (1u << 1) /* controller fatal status */
#define NVME_CSTS_SHST_SHIFT     2
#define NVME_CSTS_SHST_MASK      (0x3u << NVME_CSTS_SHST_SHIFT)
#define NVME_CSTS_SHST_NORMAL    0u /* normal operation, no shutdown requested */
#define NVME_CSTS_SHST_OCCURRING 1u
#define NVME_CSTS_SHST_COMPLETE  2u
#define NVME_CSTS_NSSRO          (1u << 4)
#define NVME_CSTS_PP             (1u << 5) /* processing paused */

NVME_HD static inline uint32_t nvme_csts_rdy(uint32_t csts)
{
    return csts & NVME_CSTS_RDY;
}
NVME_HD static inline uint32_t nvme_csts_cfs(uint32_t csts)
{
    return (csts & NVME_CSTS_CFS) >> 1;
}
NVME_HD static inline uint32_t nvme_csts_shst(uint32_t csts)
{
    return (csts & NVME_CSTS_SHST_MASK) >> NVME_CSTS_SHST_SHIFT;
}

/* AQA (§3.1.8): both sizes are 0's based, 12 bits each. */
#define NVME_AQA_MAX_ENTRIES 4096u
NVME_HD static inline uint32_t nvme_aqa_make(uint32_t sq_entries, uint32_t cq_entries)
{
    return ((sq_entries - 1) & 0xfff) | (((cq_entries - 1) & 0xfff) << 16);
}
NVME_HD static inline uint32_t nvme_aqa_asqs(uint32_t aqa) /* entries, not 0's based */
{
    return (aqa & 0xfff) + 1;
}
NVME_HD static inline uint32_t nvme_aqa_acqs(uint32_t aqa)
{
    return ((aqa >> 16) & 0xfff) + 1;
}

/* Doorbells (§3.1.10, §3.1.11): SQ y tail at 0x1000 + (2y) * (4 << DSTRD), CQ y head at
 * 0x1000 + (2y + 1) * (4 << DSTRD). Offsets are in bytes from the start of BAR0. */
NVME_HD static inline uint64_t nvme_db_stride(uint32_t dstrd)
{
    return (uint64_t)4 << dstrd;
}
NVME_HD static inline uint64_t nvme_sq_tail_db_offset(uint32_t qid, uint32_t dstrd)
{
    return NVME_REG_DBS + (2ull * qid) * nvme_db_stride(dstrd);
}
NVME_HD static inline uint64_t nvme_cq_head_db_offset(uint32_t qid, uint32_t dstrd)
{
    return NVME_REG_DBS + (2ull * qid + 1) * nvme_db_stride(dstrd);
}

/* ---------------------------------------------------------------------------------------------
 * Submission queue entry (§4.2, Figure 105): 64 bytes.
 */
struct nvme_sqe {
    uint8_t opc;    /* opcode */
    uint8_t flags;  /* bits 1:0 FUSE, bits 7:6 PSDT (0 = PRPs) */
    uint16_t cid;   /* command identifier, unique among the commands outstanding on the SQ */
    uint32_t nsid;  /* namespace id */
    uint32_t cdw2;  /* command specific */
    uint32_t cdw3;  /* command specific */
    uint64_t mptr;  /* metadata pointer */
    uint64_t prp1;  /* data pointer: PRP entry 1 */
    uint64_t prp2;  /* data pointer: PRP entry 2 or PRP list pointer */
    uint32_t cdw10; /* command specific dwords 10..15 */
    uint32_t cdw11;
    uint32_t cdw12;
    uint32_t cdw13;
    uint32_t cdw14;
    uint32_t cdw15;
};
NVME_STATIC_ASSERT(sizeof(struct nvme_sqe) == 64, "SQE size");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, cid) == 2, "SQE cid");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, nsid) == 4, "SQE nsid");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, mptr) == 16, "SQE mptr");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, prp1) == 24, "SQE prp1");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, prp2) == 32, "SQE prp2");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, cdw10) == 40, "SQE cdw10");
NVME_STATIC_ASSERT(offsetof(struct nvme_sqe, cdw15) == 60, "SQE cdw15");

#define NVME_SQE_FUSE_MASK  0x03u
#define NVME_SQE_PSDT_SHIFT 6
#define NVME_SQE_PSDT_MASK  (0x3u << NVME_SQE_PSDT_SHIFT)
#define NVME_SQE_PSDT_PRP   0u

/* ---------------------------------------------------------------------------------------------
 * Completion queue entry (§4.6, Figure 123): 16 bytes.
 */
struct nvme_cqe {
    uint32_t dw0;    /* command specific result */
    uint32_t dw1;    /* reserved / command specific */
    uint16_t sqhd;   /* SQ head pointer: the controller has consumed SQ entries up to here */
    uint16_t sqid;   /* SQ the command was submitted to */
    uint16_t cid;    /* command identifier of the completed command */
    uint16_t status; /* bit 0 phase tag, bits 15:1 status field (nvme_status_*) */
};
NVME_STATIC_ASSERT(sizeof(struct nvme_cqe) == 16, "CQE size");
NVME_STATIC_ASSERT(offsetof(struct nvme_cqe, dw1) == 4, "CQE dw1");
NVME_STATIC_ASSERT(offsetof(struct nvme_cqe, sqhd) == 8, "CQE sqhd");
NVME_STATIC_ASSERT(offsetof(struct nvme_cqe, sqid) == 10, "CQE sqid");
NVME_STATIC_ASSERT(offsetof(struct nvme_cqe, cid) == 12, "CQE cid");
NVME_STATIC_ASSERT(offsetof(struct nvme_cqe, status) == 14, "CQE status");

/* The CQE's status half-word: bit 0 is the phase tag, bits 15:1 the Status Field (§4.6.1). */
NVME_HD static inline uint16_t nvme_cqe_phase(uint16_t cqe_status)
{
    return cqe_status & 1u;
}

/* nvload passes an NVMe status around as the 15-bit Status Field without the phase tag
 * (cqe.status >> 1): bits 7:0 SC, 10:8 SCT, 12:11 CRD, 13 M (more), 14 DNR (do not retry).
 * 0 means success. */
NVME_HD static inline uint16_t nvme_cqe_status(uint16_t cqe_status)
{
    return (uint16_t)(cqe_status >> 1);
}
NVME_HD static inline uint16_t nvme_status_sc(uint16_t status)
{
    return status & 0xff;
}
NVME_HD static inline uint16_t nvme_status_sct(uint16_t status)
{
    return (status >> 8) & 0x7;
}
NVME_HD static inline uint16_t nvme_status_crd(uint16_t status)
{
    return (status >> 11) & 0x3;
}
NVME_HD static inline uint16_t nvme_status_m(uint16_t status)
{
    return (status >> 13) & 0x1;
}
NVME_HD static inline uint16_t nvme_status_dnr(uint16_t status)
{
    return (status >> 14) & 0x1;
}
/* A status field value (no phase) from its type and code. */
#define NVME_STATUS(sct, sc) ((uint16_t)((((unsigned)(sct)&0x7u) << 8) | ((unsigned)(sc)&0xffu)))
#define NVME_STATUS_DNR      ((uint16_t)(1u << 14))
#define NVME_STATUS_M        ((uint16_t)(1u << 13))
/* The CQE status half-word for a status field and a phase tag: what a controller writes. */
NVME_HD static inline uint16_t nvme_cqe_status_make(uint16_t status, uint16_t phase)
{
    return (uint16_t)((status << 1) | (phase & 1u));
}

/* Status code types (§4.6.1.1). */
enum nvme_sct {
    NVME_SCT_GENERIC = 0x0,
    NVME_SCT_COMMAND_SPECIFIC = 0x1,
    NVME_SCT_MEDIA_ERROR = 0x2,
    NVME_SCT_PATH = 0x3,
    NVME_SCT_VENDOR = 0x7,
};

/* Generic command status (§4.6.1.2.1, Figures 127 and 128). */
enum nvme_generic_sc {
    NVME_SC_SUCCESS = 0x00,
    NVME_SC_INVALID_OPCODE = 0x01,
    NVME_SC_INVALID_FIELD = 0x02,
    NVME_SC_CID_CONFLICT = 0x03,
    NVME_SC_DATA_TRANSFER_ERROR = 0x04,
    NVME_SC_ABORTED_POWER_LOSS = 0x05,
    NVME_SC_INTERNAL = 0x06,
    NVME_SC_ABORT_REQUESTED = 0x07,
    NVME_SC_ABORTED_SQ_DELETION = 0x08,
    NVME_SC_ABORTED_FAILED_FUSED = 0x09,
    NVME_SC_ABORTED_MISSING_FUSED = 0x0a,
    NVME_SC_INVALID_NAMESPACE = 0x0b, /* invalid namespace or format */
    NVME_SC_COMMAND_SEQUENCE_ERROR = 0x0c,
    NVME_SC_INVALID_SGL_SEGMENT = 0x0d,
    NVME_SC_INVALID_SGL_COUNT = 0x0e,
    NVME_SC_DATA_SGL_LENGTH_INVALID = 0x0f,
    NVME_SC_METADATA_SGL_LENGTH_INVALID = 0x10,
    NVME_SC_SGL_TYPE_INVALID = 0x11,
    NVME_SC_INVALID_CMB_USE = 0x12,
    NVME_SC_INVALID_PRP_OFFSET = 0x13,
    NVME_SC_ATOMIC_WRITE_UNIT_EXCEEDED = 0x14,
    NVME_SC_OPERATION_DENIED = 0x15,
    NVME_SC_HOST_ID_INCONSISTENT = 0x18,
    NVME_SC_KEEP_ALIVE_EXPIRED = 0x19,
    /* NVM command set specific generic codes (Figure 128). */
    NVME_SC_LBA_OUT_OF_RANGE = 0x80,
    NVME_SC_CAPACITY_EXCEEDED = 0x81,
    NVME_SC_NAMESPACE_NOT_READY = 0x82,
    NVME_SC_RESERVATION_CONFLICT = 0x83,
    NVME_SC_FORMAT_IN_PROGRESS = 0x84,
};

/* Command specific status (§4.6.1.2.2, Figures 129 and 130). */
enum nvme_cmd_specific_sc {
    NVME_SC_COMPLETION_QUEUE_INVALID = 0x00,
    NVME_SC_INVALID_QUEUE_IDENTIFIER = 0x01,
    NVME_SC_INVALID_QUEUE_SIZE = 0x02,
    NVME_SC_ABORT_COMMAND_LIMIT_EXCEEDED = 0x03,
    NVME_SC_ASYNC_EVENT_REQUEST_LIMIT_EXCEEDED = 0x05,
    NVME_SC_INVALID_FIRMWARE_SLOT = 0x06,
    NVME_SC_INVALID_FIRMWARE_IMAGE = 0x07,
    NVME_SC_INVALID_INTERRUPT_VECTOR = 0x08,
    NVME_SC_INVALID_LOG_PAGE = 0x09,
    NVME_SC_INVALID_FORMAT = 0x0a,
    NVME_SC_INVALID_QUEUE_DELETION = 0x0c,
    NVME_SC_FEATURE_ID_NOT_SAVEABLE = 0x0d,
    NVME_SC_FEATURE_NOT_CHANGEABLE = 0x0e,
    NVME_SC_FEATURE_NOT_NAMESPACE_SPECIFIC = 0x0f,
    NVME_SC_NAMESPACE_INSUFFICIENT_CAPACITY = 0x15,
    NVME_SC_NAMESPACE_ID_UNAVAILABLE = 0x16,
    NVME_SC_CONTROLLER_LIST_INVALID = 0x1c,
    /* NVM command set (Figure 130). */
    NVME_SC_CONFLICTING_ATTRIBUTES = 0x80,
    NVME_SC_INVALID_PROTECTION_INFO = 0x81,
    NVME_SC_WRITE_TO_READ_ONLY_RANGE = 0x82,
};

/* Media and data integrity errors (§4.6.1.2.3, Figure 131). */
enum nvme_media_sc {
    NVME_SC_WRITE_FAULT = 0x80,
    NVME_SC_UNRECOVERED_READ_ERROR = 0x81,
    NVME_SC_GUARD_CHECK_ERROR = 0x82,
    NVME_SC_APPLICATION_TAG_CHECK_ERROR = 0x83,
    NVME_SC_REFERENCE_TAG_CHECK_ERROR = 0x84,
    NVME_SC_COMPARE_FAILURE = 0x85,
    NVME_SC_ACCESS_DENIED = 0x86,
    NVME_SC_DEALLOCATED_OR_UNWRITTEN = 0x87,
};

/* ---------------------------------------------------------------------------------------------
 * Opcodes (§5, Figure 139; NVM command set: NVM Express NVM Command Set, Figure 346 in 1.4).
 */
enum nvme_admin_opcode {
    NVME_ADMIN_DELETE_SQ = 0x00,
    NVME_ADMIN_CREATE_SQ = 0x01,
    NVME_ADMIN_GET_LOG_PAGE = 0x02,
    NVME_ADMIN_DELETE_CQ = 0x04,
    NVME_ADMIN_CREATE_CQ = 0x05,
    NVME_ADMIN_IDENTIFY = 0x06,
    NVME_ADMIN_ABORT = 0x08,
    NVME_ADMIN_SET_FEATURES = 0x09,
    NVME_ADMIN_GET_FEATURES = 0x0a,
    NVME_ADMIN_ASYNC_EVENT_REQUEST = 0x0c,
    NVME_ADMIN_NS_MANAGEMENT = 0x0d,
    NVME_ADMIN_FW_COMMIT = 0x10,
    NVME_ADMIN_FW_DOWNLOAD = 0x11,
    NVME_ADMIN_NS_ATTACHMENT = 0x15,
    NVME_ADMIN_KEEP_ALIVE = 0x18,
    NVME_ADMIN_FORMAT_NVM = 0x80,
};

enum nvme_nvm_opcode {
    NVME_NVM_FLUSH = 0x00,
    NVME_NVM_WRITE = 0x01,
    NVME_NVM_READ = 0x02,
    NVME_NVM_WRITE_UNCORRECTABLE = 0x04,
    NVME_NVM_COMPARE = 0x05,
    NVME_NVM_WRITE_ZEROES = 0x08,
    NVME_NVM_DATASET_MANAGEMENT = 0x09,
};

/* Flush with NSID FFFFFFFFh applies to all namespaces (§6.8). */
#define NVME_NSID_ALL 0xffffffffu

/* Read/Write (§6.9, §6.15): CDW10/11 = SLBA, CDW12 bits 15:0 = NLB (0's based), bit 30 FUA,
 * bit 31 LR. */
#define NVME_RW_NLB_MAX 65536u
#define NVME_RW_FUA     (1u << 30)
#define NVME_RW_LR      (1u << 31)

/* Identify (§5.15): CDW10 bits 7:0 CNS. */
enum nvme_identify_cns {
    NVME_IDENTIFY_NS = 0x00,
    NVME_IDENTIFY_CTRL = 0x01,
    NVME_IDENTIFY_ACTIVE_NS_LIST = 0x02,
    NVME_IDENTIFY_NS_DESC_LIST = 0x03,
};
#define NVME_IDENTIFY_DATA_SIZE 4096u

/* Create I/O Completion Queue (§5.3): CDW10 = QSIZE (0's based) << 16 | QID,
 * CDW11 = IV << 16 | IEN (bit 1) | PC (bit 0). */
#define NVME_CREATE_CQ_PC  (1u << 0)
#define NVME_CREATE_CQ_IEN (1u << 1)
/* Create I/O Submission Queue (§5.4): CDW10 = QSIZE << 16 | QID,
 * CDW11 = CQID << 16 | QPRIO (bits 2:1) | PC (bit 0). */
#define NVME_CREATE_SQ_PC (1u << 0)
NVME_HD static inline uint32_t nvme_create_queue_cdw10(uint32_t qid, uint32_t entries)
{
    return ((entries - 1) << 16) | (qid & 0xffff);
}

/* Feature identifiers (§5.21.1, Figure 271). */
enum nvme_feature {
    NVME_FEAT_ARBITRATION = 0x01,
    NVME_FEAT_POWER_MGMT = 0x02,
    NVME_FEAT_LBA_RANGE = 0x03,
    NVME_FEAT_TEMP_THRESHOLD = 0x04,
    NVME_FEAT_ERROR_RECOVERY = 0x05,
    NVME_FEAT_VOLATILE_WC = 0x06,
    NVME_FEAT_NUM_QUEUES = 0x07,
    NVME_FEAT_IRQ_COALESCE = 0x08,
    NVME_FEAT_IRQ_CONFIG = 0x09,
    NVME_FEAT_WRITE_ATOMIC = 0x0a,
    NVME_FEAT_ASYNC_EVENT = 0x0b,
};
/* Number of Queues (§5.21.1.7): CDW11 and the completion's DW0 hold NSQR/NSQA in bits 15:0 and
 * NCQR/NCQA in bits 31:16, all 0's based. */
NVME_HD static inline uint32_t nvme_feat_num_queues_make(uint32_t nsq, uint32_t ncq)
{
    return ((nsq - 1) & 0xffff) | (((ncq - 1) & 0xffff) << 16);
}
NVME_HD static inline uint32_t nvme_feat_num_queues_nsq(uint32_t dw0) /* not 0's based */
{
    return (dw0 & 0xffff) + 1;
}
NVME_HD static inline uint32_t nvme_feat_num_queues_ncq(uint32_t dw0)
{
    return (dw0 >> 16) + 1;
}

/* Get Log Page (§5.14): CDW10 = NUMDL << 16 | RAE (bit 15) | LSP (11:8) | LID, CDW11 = NUMDU,
 * CDW12/13 = offset. NUMD is the dword count, 0's based. */
enum nvme_log_page {
    NVME_LOG_ERROR = 0x01,
    NVME_LOG_SMART = 0x02,
    NVME_LOG_FW_SLOT = 0x03,
    NVME_LOG_CHANGED_NS = 0x04,
    NVME_LOG_CMD_EFFECTS = 0x05,
};
NVME_HD static inline uint32_t nvme_get_log_cdw10(uint32_t lid, uint32_t bytes)
{
    return (lid & 0xff) | ((((bytes / 4) - 1) & 0xffff) << 16);
}
NVME_HD static inline uint32_t nvme_get_log_cdw11(uint32_t bytes)
{
    return (((bytes / 4) - 1) >> 16) & 0xffff;
}

/* Error Information log entry (§5.14.1.1, Figure 194): 64 bytes. */
struct nvme_error_log {
    uint64_t error_count;
    uint16_t sqid;
    uint16_t cid;
    uint16_t status; /* status field, bit 0 is the phase tag of the completion */
    uint16_t param_error_location;
    uint64_t lba;
    uint32_t nsid;
    uint8_t vs;
    uint8_t trtype;
    uint8_t rsvd30[2];
    uint64_t csi;
    uint16_t trtype_specific;
    uint8_t rsvd42[22];
};
NVME_STATIC_ASSERT(sizeof(struct nvme_error_log) == 64, "error log entry");
NVME_STATIC_ASSERT(offsetof(struct nvme_error_log, lba) == 16, "error log lba");
NVME_STATIC_ASSERT(offsetof(struct nvme_error_log, nsid) == 24, "error log nsid");
NVME_STATIC_ASSERT(offsetof(struct nvme_error_log, csi) == 32, "error log csi");

/* SMART / Health Information log (§5.14.1.2, Figure 196): 512 bytes. 128-bit counters are kept
 * as little-endian byte arrays. */
struct nvme_smart_log {
    uint8_t critical_warning;
    uint8_t temperature[2]; /* Kelvin */
    uint8_t avail_spare;
    uint8_t spare_thresh;
    uint8_t percent_used;
    uint8_t endu_grp_crit_warn;
    uint8_t rsvd7[25];
    uint8_t data_units_read[16];
    uint8_t data_units_written[16];
    uint8_t host_reads[16];
    uint8_t host_writes[16];
    uint8_t ctrl_busy_time[16];
    uint8_t power_cycles[16];
    uint8_t power_on_hours[16];
    uint8_t unsafe_shutdowns[16];
    uint8_t media_errors[16];
    uint8_t num_err_log_entries[16];
    uint32_t warning_temp_time;
    uint32_t critical_comp_time;
    uint16_t temp_sensor[8];
    uint32_t thm_temp1_trans_count;
    uint32_t thm_temp2_trans_count;
    uint32_t thm_temp1_total_time;
    uint32_t thm_temp2_total_time;
    uint8_t rsvd232[280];
};
NVME_STATIC_ASSERT(sizeof(struct nvme_smart_log) == 512, "SMART log");
NVME_STATIC_ASSERT(offsetof(struct nvme_smart_log, data_units_read) == 32, "SMART dur");
NVME_STATIC_ASSERT(offsetof(struct nvme_smart_log, warning_temp_time) == 192, "SMART wctt");
NVME_STATIC_ASSERT(offsetof(struct nvme_smart_log, temp_sensor) == 200, "SMART ts");

/* ---------------------------------------------------------------------------------------------
 * Identify Controller data structure (§5.15.2.1, Figure 247): 4096 bytes.
 */
struct nvme_id_power_state {
    uint16_t mp; /* maximum power, centiwatts */
    uint8_t rsvd2;
    uint8_t flags;
    uint32_t enlat;
    uint32_t exlat;
    uint8_t rrt;
    uint8_t rrl;
    uint8_t rwt;
    uint8_t rwl;
    uint16_t idlp;
    uint8_t ips;
    uint8_t rsvd19;
    uint16_t actp;
    uint8_t apws;
    uint8_t rsvd23[9];
};
NVME_STATIC_ASSERT(sizeof(struct nvme_id_power_state) == 32, "power state descriptor");

struct nvme_id_ctrl {
    /* Controller capabilities and features. */
    uint16_t vid;   /* PCI vendor id */
    uint16_t ssvid; /* PCI subsystem vendor id */
    char sn[20];    /* serial number, ASCII, space padded, not NUL terminated */
    char mn[40];    /* model number, ASCII, space padded */
    char fr[8];     /* firmware revision */
    uint8_t rab;    /* recommended arbitration burst */
    uint8_t ieee[3];
    uint8_t cmic;
    uint8_t mdts; /* max data transfer size: 2^mdts units of CAP.MPSMIN; 0 = no limit */
    uint16_t cntlid;
    uint32_t ver;
    uint32_t rtd3r;
    uint32_t rtd3e;
    uint32_t oaes;
    uint32_t ctratt;
    uint16_t rrls;
    uint8_t rsvd102[9];
    uint8_t cntrltype;
    uint8_t fguid[16];
    uint16_t crdt1;
    uint16_t crdt2;
    uint16_t crdt3;
    uint8_t rsvd134[122];
    /* Admin command set attributes. */
    uint16_t oacs;
    uint8_t acl;
    uint8_t aerl;
    uint8_t frmw;
    uint8_t lpa;
    uint8_t elpe; /* error log page entries, 0's based */
    uint8_t npss;
    uint8_t avscc;
    uint8_t apsta;
    uint16_t wctemp;
    uint16_t cctemp;
    uint16_t mtfa;
    uint32_t hmpre;
    uint32_t hmmin;
    uint8_t tnvmcap[16];
    uint8_t unvmcap[16];
    uint32_t rpmbs;
    uint16_t edstt;
    uint8_t dsto;
    uint8_t fwug;
    uint16_t kas;
    uint16_t hctma;
    uint16_t mntmt;
    uint16_t mxtmt;
    uint32_t sanicap;
    uint32_t hmminds;
    uint16_t hmmaxd;
    uint16_t nsetidmax;
    uint16_t endgidmax;
    uint8_t anatt;
    uint8_t anacap;
    uint32_t anagrpmax;
    uint32_t nanagrpid;
    uint32_t pels;
    uint8_t rsvd356[156];
    /* NVM command set attributes. */
    uint8_t sqes; /* bits 3:0 required, 7:4 maximum SQE size, log2 bytes */
    uint8_t cqes; /* bits 3:0 required, 7:4 maximum CQE size, log2 bytes */
    uint16_t maxcmd;
    uint32_t nn;   /* number of namespaces (highest valid NSID) */
    uint16_t oncs; /* optional NVM commands */
    uint16_t fuses;
    uint8_t fna;
    uint8_t vwc; /* bit 0: volatile write cache present */
    uint16_t awun;
    uint16_t awupf;
    uint8_t nvscc;
    uint8_t nwpc;
    uint16_t acwu;
    uint16_t rsvd534;
    uint32_t sgls;
    uint32_t mnan;
    uint8_t rsvd544[224];
    char subnqn[256];
    uint8_t rsvd1024[768];
    uint8_t nvmeof[256];
    struct nvme_id_power_state psd[32];
    uint8_t vs[1024];
};
NVME_STATIC_ASSERT(sizeof(struct nvme_id_ctrl) == 4096, "Identify Controller size");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, sn) == 4, "id_ctrl sn");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, mn) == 24, "id_ctrl mn");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, fr) == 64, "id_ctrl fr");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, mdts) == 77, "id_ctrl mdts");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, cntlid) == 78, "id_ctrl cntlid");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, ver) == 80, "id_ctrl ver");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, cntrltype) == 111, "id_ctrl cntrltype");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, oacs) == 256, "id_ctrl oacs");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, npss) == 263, "id_ctrl npss");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, tnvmcap) == 280, "id_ctrl tnvmcap");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, kas) == 320, "id_ctrl kas");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, pels) == 352, "id_ctrl pels");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, sqes) == 512, "id_ctrl sqes");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, cqes) == 513, "id_ctrl cqes");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, nn) == 516, "id_ctrl nn");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, oncs) == 520, "id_ctrl oncs");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, vwc) == 525, "id_ctrl vwc");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, sgls) == 536, "id_ctrl sgls");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, subnqn) == 768, "id_ctrl subnqn");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, psd) == 2048, "id_ctrl psd");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ctrl, vs) == 3072, "id_ctrl vs");

/* Identify Controller ONCS bits (optional NVM commands). */
#define NVME_ONCS_COMPARE      (1u << 0)
#define NVME_ONCS_WRITE_UNCORR (1u << 1)
#define NVME_ONCS_DSM          (1u << 2)
#define NVME_ONCS_WRITE_ZEROES (1u << 3)
/* Identify Controller VWC bit 0: a volatile write cache is present, so Flush matters. */
#define NVME_VWC_PRESENT (1u << 0)

/* ---------------------------------------------------------------------------------------------
 * Identify Namespace data structure (§5.15.2.2, Figure 249): 4096 bytes.
 */
struct nvme_lbaf {
    uint16_t ms;   /* metadata bytes per LBA */
    uint8_t lbads; /* LBA data size, log2 bytes; 0 = format not supported */
    uint8_t rp;    /* bits 1:0 relative performance */
};
NVME_STATIC_ASSERT(sizeof(struct nvme_lbaf) == 4, "LBA format");

struct nvme_id_ns {
    uint64_t nsze; /* namespace size in logical blocks */
    uint64_t ncap; /* namespace capacity in logical blocks */
    uint64_t nuse; /* namespace utilisation in logical blocks */
    uint8_t nsfeat;
    uint8_t nlbaf; /* number of LBA formats, 0's based */
    uint8_t flbas; /* bits 3:0 index of the format in use; bit 4 metadata at end of LBA */
    uint8_t mc;
    uint8_t dpc;
    uint8_t dps;
    uint8_t nmic;
    uint8_t rescap;
    uint8_t fpi;
    uint8_t dlfeat;
    uint16_t nawun;
    uint16_t nawupf;
    uint16_t nacwu;
    uint16_t nabsn;
    uint16_t nabo;
    uint16_t nabspf;
    uint16_t noiob;
    uint8_t nvmcap[16];
    uint16_t npwg;
    uint16_t npwa;
    uint16_t npdg;
    uint16_t npda;
    uint16_t nows;
    uint8_t rsvd74[18];
    uint32_t anagrpid;
    uint8_t rsvd96[3];
    uint8_t nsattr;
    uint16_t nvmsetid;
    uint16_t endgid;
    uint8_t nguid[16];
    uint8_t eui64[8];
    /* NVMe 1.4 defines 16 LBA formats (bytes 128..191) and reserves the rest; NVMe 2.0 extends
     * the table to 64. Only entries 0..nlbaf are valid. */
    struct nvme_lbaf lbaf[64];
    uint8_t rsvd384[3456];
    uint8_t vs[256];
};
NVME_STATIC_ASSERT(sizeof(struct nvme_id_ns) == 4096, "Identify Namespace size");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, ncap) == 8, "id_ns ncap");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, nuse) == 16, "id_ns nuse");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, nsfeat) == 24, "id_ns nsfeat");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, nlbaf) == 25, "id_ns nlbaf");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, flbas) == 26, "id_ns flbas");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, nvmcap) == 48, "id_ns nvmcap");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, anagrpid) == 92, "id_ns anagrpid");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, nguid) == 104, "id_ns nguid");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, eui64) == 120, "id_ns eui64");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, lbaf) == 128, "id_ns lbaf");
NVME_STATIC_ASSERT(offsetof(struct nvme_id_ns, vs) == 3840, "id_ns vs");

/* Index of the LBA format in use (FLBAS bits 3:0; NVMe 2.0 adds bits 6:5 as the high bits). */
NVME_HD static inline uint32_t nvme_id_ns_flbas_index(const struct nvme_id_ns *ns)
{
    return (uint32_t)(ns->flbas & 0xf) | ((uint32_t)((ns->flbas >> 5) & 0x3) << 4);
}

#ifdef __cplusplus
}
#endif

#endif
