/* PRP walking with every rule of NVMe 1.4 §4.3 checked, and every address translated through
 * the DMA registry.
 *
 *  - PRP1 may start anywhere in a page as long as it is dword aligned (bits 1:0 are 0).
 *  - If the transfer ends within PRP1's page, PRP2 is not used.
 *  - If it ends within the next page, PRP2 is that page's address and must have offset 0.
 *  - Otherwise PRP2 points to a PRP list (qword aligned, may start inside a page). List entries
 *    have offset 0. When more entries remain than fit in the rest of the list page, the page's
 *    last entry points to the next list page (offset 0) instead of data.
 * A violated offset rule fails the command with Invalid PRP Offset; an address outside the
 * registered regions (data page or list page) with Data Transfer Error. */
#include "sim_internal.h"

struct prp_walk {
    struct sim_dma *d;
    struct sim_dma_cache *c;
    struct sim_seg *segs;
    uint32_t max_segs;
    uint32_t nseg;
};

/* Adds [iova, iova + len) to the segment list, merging with the previous segment when the host
 * memory is adjacent. */
static uint16_t walk_add(struct prp_walk *w, uint64_t iova, uint64_t len,
                         enum nvl_sim_violation *viol)
{
    uint8_t *p = nvl__sim_dma_xlate(w->d, w->c, iova, len);

    if (sim_unlikely(!p)) {
        *viol = NVL_SIM_VIOL_DMA;
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_DATA_TRANSFER_ERROR);
    }
    if (w->nseg && w->segs[w->nseg - 1].p + w->segs[w->nseg - 1].len == p) {
        w->segs[w->nseg - 1].len += len;
        return 0;
    }
    if (sim_unlikely(w->nseg == w->max_segs)) {
        *viol = NVL_SIM_VIOL_MDTS;
        return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_FIELD);
    }
    w->segs[w->nseg].p = p;
    w->segs[w->nseg].len = len;
    w->nseg++;
    return 0;
}

static uint16_t bad_offset(enum nvl_sim_violation *viol)
{
    *viol = NVL_SIM_VIOL_PRP_OFFSET;
    return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_INVALID_PRP_OFFSET);
}

uint16_t nvl__sim_prp_walk(struct sim_dma *d, struct sim_dma_cache *c, uint64_t prp1, uint64_t prp2,
                           uint64_t len, struct sim_seg *segs, uint32_t max_segs,
                           struct sim_prp_result *res)
{
    struct prp_walk w = {d, c, segs, max_segs, 0};
    const uint64_t page_mask = SIM_PAGE - 1;
    uint64_t first, rem, entries, list;
    uint16_t st;

    res->nseg = 0;
    res->viol = NVL_SIM_VIOL_COUNT;
    if (len == 0)
        return 0;
    if (prp1 & 3)
        return bad_offset(&res->viol);
    first = SIM_PAGE - (prp1 & page_mask);
    if (first > len)
        first = len;
    st = walk_add(&w, prp1, first, &res->viol);
    if (st)
        return st;
    rem = len - first;
    if (rem == 0)
        goto done;
    if (rem <= SIM_PAGE) {
        if (prp2 & page_mask)
            return bad_offset(&res->viol);
        st = walk_add(&w, prp2, rem, &res->viol);
        if (st)
            return st;
        goto done;
    }
    if (prp2 & 7)
        return bad_offset(&res->viol);
    entries = (rem + SIM_PAGE - 1) >> SIM_PAGE_SHIFT;
    list = prp2;
    while (entries) {
        uint64_t slots = (SIM_PAGE - (list & page_mask)) / 8;
        uint64_t use = entries <= slots ? entries : slots - 1;
        uint64_t nread = entries <= slots ? use : slots;
        const uint64_t *lp = nvl__sim_dma_xlate(d, c, list, nread * 8);
        uint64_t i;

        if (!lp) {
            res->viol = NVL_SIM_VIOL_DMA;
            return NVME_STATUS(NVME_SCT_GENERIC, NVME_SC_DATA_TRANSFER_ERROR);
        }
        for (i = 0; i < use; i++) {
            uint64_t e = SIM_LOAD(&lp[i]);
            uint64_t n = rem < SIM_PAGE ? rem : SIM_PAGE;

            if (e & page_mask)
                return bad_offset(&res->viol);
            st = walk_add(&w, e, n, &res->viol);
            if (st)
                return st;
            rem -= n;
        }
        entries -= use;
        if (entries) {
            /* The page's last entry chains to the next list page. */
            list = SIM_LOAD(&lp[slots - 1]);
            if (list & page_mask)
                return bad_offset(&res->viol);
        }
    }
done:
    res->nseg = w.nseg;
    return 0;
}
