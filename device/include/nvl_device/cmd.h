/* How the engine turns a request into NVMe Read commands: pure arithmetic, shared by the GPU
 * engine and the CPU unit tests (it compiles as C11 and as CUDA C++, host and device).
 *
 * A request reads nlb blocks into buffer bytes [buf_off, buf_off + nlb * lba). Commands are cut
 * at multiples of the command size C in *buffer* space, not request space: the first command
 * runs from buf_off to the next multiple of C, the others are whole C-sized pieces, the last is
 * whatever remains. Because C is a power of two that divides 2 MiB (512 pages, one page of PRP
 * list entries), the list entries of any command lie inside one page of the buffer's flat PRP
 * list, so the list built once at registration serves every command with no chain entry. */
#ifndef NVL_DEVICE_CMD_H
#define NVL_DEVICE_CMD_H

#include <stdint.h>
#include <string.h>

#include "nvl_device/engine.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Entries of a PRP list per page of NVL_ENGINE_PAGE bytes (NVMe 1.4 §4.3). */
#define NVL_ENGINE_PRP_PER_PAGE (NVL_ENGINE_PAGE / 8u)
/* Largest command size the PRP layout allows: one list page of entries. */
#define NVL_ENGINE_CMD_SHIFT_MAX 21u

/* A request, checked and measured. */
struct nvl_engine_plan {
    uint64_t first; /* buffer offset of the first byte (buf_off) */
    uint64_t bytes; /* nlb << lba_shift */
    uint32_t cmd_shift;
    uint32_t n_cmds;
    int ring; /* NVL_ENGINE_REQ_RING_DST */
};

/* One command of a request. */
struct nvl_engine_cmd {
    uint64_t slba;
    uint32_t nlb;   /* blocks, >= 1 */
    uint32_t bytes; /* nlb << lba_shift */
    uint64_t off;   /* buffer offset the data lands at */
};

/* Checks request q against buffer b (NULL when q->buf is out of range) and plans its commands.
 * max_cmd_shift is the engine's command size (from MDTS). Returns 0, or -1 when the request is
 * invalid: no blocks, a bad buffer, an unaligned offset, a command size out of range, or bytes
 * past the buffer's end. */
NVME_HD static inline int nvl_engine_plan_req(const struct nvl_engine_req *q,
                                              const struct nvl_engine_buf *b, uint32_t lba_shift,
                                              uint32_t max_cmd_shift, struct nvl_engine_plan *pl)
{
    uint32_t shift = q->cmd_shift ? q->cmd_shift : max_cmd_shift;
    uint64_t c, n;

    if (!b || q->nlb == 0 || lba_shift < 9 || lba_shift > 12)
        return -1;
    if (shift > max_cmd_shift || shift < lba_shift || shift > NVL_ENGINE_CMD_SHIFT_MAX)
        return -1;
    if (q->buf_off % NVL_ENGINE_PAGE != 0 || b->bytes % NVL_ENGINE_PAGE != 0)
        return -1;
    /* A command may not exceed NLB's 16 bits. */
    if ((((uint64_t)1 << shift) >> lba_shift) > NVME_RW_NLB_MAX)
        return -1;
    c = (uint64_t)1 << shift;
    pl->first = q->buf_off;
    pl->bytes = (uint64_t)q->nlb << lba_shift;
    pl->cmd_shift = shift;
    pl->ring = (q->flags & NVL_ENGINE_REQ_RING_DST) != 0;
    if (pl->ring) {
        if (q->buf_off % c != 0 || b->bytes % c != 0 || q->buf_off >= b->bytes)
            return -1;
        n = (pl->bytes + c - 1) >> shift;
    } else {
        if (pl->first > b->bytes || pl->bytes > b->bytes - pl->first)
            return -1;
        n = ((pl->first + pl->bytes - 1) >> shift) - (pl->first >> shift) + 1;
    }
    if (n > 0x7fffffffu)
        return -1;
    pl->n_cmds = (uint32_t)n;
    return 0;
}

/* Command i (< pl->n_cmds) of request q. */
NVME_HD static inline void nvl_engine_plan_cmd(const struct nvl_engine_req *q,
                                               const struct nvl_engine_plan *pl,
                                               const struct nvl_engine_buf *b, uint32_t lba_shift,
                                               uint32_t i, struct nvl_engine_cmd *cmd)
{
    uint64_t c = (uint64_t)1 << pl->cmd_shift;
    uint64_t start, end, done;

    if (pl->ring) {
        done = (uint64_t)i << pl->cmd_shift;
        end = pl->bytes - done < c ? pl->bytes - done : c;
        cmd->off = (pl->first + done) % b->bytes;
        cmd->slba = q->slba + (done >> lba_shift);
        cmd->bytes = (uint32_t)end;
    } else {
        uint64_t base = ((pl->first >> pl->cmd_shift) + i) << pl->cmd_shift;
        uint64_t last = pl->first + pl->bytes;

        start = base > pl->first ? base : pl->first;
        end = base + c < last ? base + c : last;
        cmd->off = start;
        cmd->slba = q->slba + ((start - pl->first) >> lba_shift);
        cmd->bytes = (uint32_t)(end - start);
    }
    cmd->nlb = cmd->bytes >> lba_shift;
}

/* PRP1/PRP2 for `bytes` bytes at buffer offset `off`, from the buffer's prebuilt list
 * (NVMe 1.4 §4.3: PRP2 is the second page itself when the transfer ends there, else a pointer
 * to the list entry of the second page; a list pointer may carry a qword offset). The caller
 * guarantees the entries do not cross a list page (nvl_engine_plan_cmd does). */
NVME_HD static inline void nvl_engine_cmd_prp(const struct nvl_engine_buf *b, uint64_t off,
                                              uint32_t bytes, uint64_t *prp1, uint64_t *prp2)
{
    uint64_t p = off / NVL_ENGINE_PAGE, last = (off + bytes - 1) / NVL_ENGINE_PAGE;

    *prp1 = b->prp_list[p] + off % NVL_ENGINE_PAGE;
    if (last == p)
        *prp2 = 0;
    else if (last == p + 1)
        *prp2 = b->prp_list[p + 1];
    else
        *prp2 = b->prp_page_iova[(p + 1) / NVL_ENGINE_PRP_PER_PAGE] +
                8u * ((p + 1) % NVL_ENGINE_PRP_PER_PAGE);
}

/* An NVM Read SQE (NVMe 1.4 §6.9): CDW10/11 SLBA, CDW12 NLB 0's based, PRPs (PSDT 0). */
NVME_HD static inline void nvl_engine_sqe_read(struct nvme_sqe *sqe, uint16_t cid, uint32_t nsid,
                                               uint64_t slba, uint32_t nlb, uint64_t prp1,
                                               uint64_t prp2)
{
    memset(sqe, 0, sizeof(*sqe));
    sqe->opc = NVME_NVM_READ;
    sqe->cid = cid;
    sqe->nsid = nsid;
    sqe->prp1 = prp1;
    sqe->prp2 = prp2;
    sqe->cdw10 = (uint32_t)slba;
    sqe->cdw11 = (uint32_t)(slba >> 32);
    sqe->cdw12 = (nlb - 1) & 0xffffu;
}

#ifdef __cplusplus
}
#endif

#endif
