/* NVM command set I/O commands: Read, Write, Flush (NVMe 1.4 §6). Checks run in the order a
 * strict controller would: opcode, reserved fields, namespace, transfer size (MDTS), LBA range,
 * then the PRPs of the data pointer. */
#include "sim_internal.h"

/* NVMe 1.4 Figure 127: Namespace is Write Protected (generic status 20h). */
#define SIM_SC_NS_WRITE_PROTECTED 0x20

static uint16_t io_fail(struct sim_thread *t, enum nvl_sim_violation v, uint16_t status,
                        const struct nvme_sqe *sqe, const char *what)
{
    nvl__sim_violation(t->sim, v, "I/O opcode 0x%02x CID %u: %s", sqe->opc, sqe->cid, what);
    /* Do Not Retry: the same command would fail the same way. */
    return status | NVME_STATUS_DNR;
}

static void io_rw(struct sim_thread *t, const struct nvme_sqe *sqe, int write,
                  struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    uint64_t slba = (uint64_t)sqe->cdw10 | ((uint64_t)sqe->cdw11 << 32);
    uint64_t nlb = (uint64_t)(sqe->cdw12 & 0xffff) + 1;
    uint64_t bytes = nlb << sim->lba_shift;
    struct sim_prp_result pr;
    uint16_t st;
    int ret;

    if (sim_unlikely(sqe->nsid != 1)) {
        r->status = io_fail(t, NVL_SIM_VIOL_NAMESPACE,
                            NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NAMESPACE), sqe,
                            "namespace is not 1");
        return;
    }
    if (sim_unlikely(sim->mdts_bytes && bytes > sim->mdts_bytes)) {
        r->status =
            io_fail(t, NVL_SIM_VIOL_MDTS, NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD), sqe,
                    "transfer exceeds MDTS");
        return;
    }
    if (sim_unlikely(slba >= sim->nblocks || nlb > sim->nblocks - slba)) {
        r->status = io_fail(t, NVL_SIM_VIOL_LBA_RANGE,
                            NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_LBA_OUT_OF_RANGE), sqe,
                            "LBA range beyond the namespace");
        return;
    }
    if (sim_unlikely(write && sim->store.read_only)) {
        r->status = NVME_STATUS(NVME_SCT_GENERIC, SIM_SC_NS_WRITE_PROTECTED);
        return;
    }
    st = nvl__sim_prp_walk(&sim->dma, &t->dcache, sqe->prp1, sqe->prp2, bytes, t->segs, t->max_segs,
                           &pr);
    if (sim_unlikely(st)) {
        r->status = io_fail(t, pr.viol, st, sqe,
                            pr.viol == NVL_SIM_VIOL_DMA ? "PRP address outside the DMA regions"
                                                        : "bad PRP offset");
        return;
    }
    if (write)
        ret = nvl__sim_store_write(&sim->store, slba << sim->lba_shift, t->segs, pr.nseg);
    else
        ret = nvl__sim_store_read(&sim->store, slba << sim->lba_shift, t->segs, pr.nseg);
    if (sim_unlikely(ret)) {
        nvl_log_error(sim->who, "backing store %s at LBA %llu failed: %s", write ? "write" : "read",
                      (unsigned long long)slba, nvl_strerror(ret));
        r->status = write ? NVME_STATUS(NVME_SCT_MEDIA_ERROR, NVME_SC_WRITE_FAULT)
                          : NVME_STATUS(NVME_SCT_MEDIA_ERROR, NVME_SC_UNRECOVERED_READ_ERROR);
        return;
    }
    r->bytes = bytes;
    if (write) {
        SIM_COUNT(t, SIM_C_WRITES, 1);
        SIM_COUNT(t, SIM_C_BYTES_WRITTEN, bytes);
    } else {
        SIM_COUNT(t, SIM_C_READS, 1);
        SIM_COUNT(t, SIM_C_BYTES_READ, bytes);
    }
}

static void io_flush(struct sim_thread *t, const struct nvme_sqe *sqe, struct sim_cmd_result *r)
{
    struct nvl_sim *sim = t->sim;
    int ret;

    /* §6.8: NSID FFFFFFFFh flushes every namespace. */
    if (sqe->nsid != 1 && sqe->nsid != NVME_NSID_ALL) {
        r->status = io_fail(t, NVL_SIM_VIOL_NAMESPACE,
                            NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_NAMESPACE), sqe,
                            "namespace is not 1");
        return;
    }
    ret = nvl__sim_store_flush(&sim->store);
    if (ret) {
        nvl_log_error(sim->who, "backing store flush failed: %s", nvl_strerror(ret));
        r->status = NVME_STATUS(NVME_SCT_MEDIA_ERROR, NVME_SC_WRITE_FAULT);
        return;
    }
    SIM_COUNT(t, SIM_C_FLUSHES, 1);
}

void nvl__sim_io_exec(struct sim_thread *t, const struct nvme_sqe *sqe, struct sim_cmd_result *r)
{
    /* nvload's controller supports neither fused operations nor SGLs (Identify FUSES = 0,
     * SGLS = 0): both fields must be 0. */
    if (sim_unlikely(sqe->flags & (NVME_SQE_FUSE_MASK | NVME_SQE_PSDT_MASK))) {
        r->status =
            io_fail(t, NVL_SIM_VIOL_FIELD, NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD),
                    sqe, "FUSE or PSDT set");
        return;
    }
    switch (sqe->opc) {
    case NVME_NVM_READ:
        io_rw(t, sqe, 0, r);
        return;
    case NVME_NVM_WRITE:
        io_rw(t, sqe, 1, r);
        return;
    case NVME_NVM_FLUSH:
        io_flush(t, sqe, r);
        return;
    default:
        r->status =
            io_fail(t, NVL_SIM_VIOL_OPCODE, NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_OPCODE),
                    sqe, "opcode not supported");
        return;
    }
}
