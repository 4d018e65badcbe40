/* Staging slots for NVMe targets: driver DMA memory mapped through the controller's transport
 * (VFIO or the sim), each with a flat PRP list built once here (see struct nvl_slot). */
#include "cuda_glue.h"
#include "slots.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Bounce slots of NVMe backends: staging for host and device destinations. Four let the drive
 * fill some while others are copied out. */
#define NVL_BOUNCE_SLOTS 4u
#define NVL_BOUNCE_BYTES (8ull << 20)

int nvl__target_nvme_info(struct nvl_loader *l)
{
    const struct nvl_ctrl_info *in;

    if (nvl_ctrl_get_state(l->opts.ctrl) != NVL_CTRL_READY) {
        nvl_log_error(NVL_LOADER_WHO, "controller %s is not ready (state %s)",
                      nvl_ctrl_name(l->opts.ctrl),
                      nvl_ctrl_state_name(nvl_ctrl_get_state(l->opts.ctrl)));
        return -ENODEV;
    }
    in = nvl_ctrl_get_info(l->opts.ctrl);
    if (l->opts.nsid && l->opts.nsid != in->nsid) {
        nvl_log_error(NVL_LOADER_WHO,
                      "namespace %u asked for, but controller %s was brought up for I/O on "
                      "namespace %u",
                      l->opts.nsid, nvl_ctrl_name(l->opts.ctrl), in->nsid);
        return -EINVAL;
    }
    if (in->page_size != NVL_SLOT_ALIGN) {
        nvl_log_error(NVL_LOADER_WHO, "controller %s uses %u-byte memory pages; slots need %u",
                      nvl_ctrl_name(l->opts.ctrl), in->page_size, NVL_SLOT_ALIGN);
        return -ENOTSUP;
    }
    if (in->lba_size == 0 || in->lba_size > NVL_SLOT_ALIGN || in->ns_lbas == 0) {
        nvl_log_error(NVL_LOADER_WHO, "namespace %u of %s: unusable geometry (%u-byte blocks)",
                      in->nsid, nvl_ctrl_name(l->opts.ctrl), in->lba_size);
        return -ENOTSUP;
    }
    l->nsid = in->nsid;
    l->block_size = in->lba_size;
    l->capacity = in->ns_lbas * in->lba_size;
    return 0;
}

static void slot_dma_destroy(struct nvl_slot *s)
{
    if (s->device)
        nvl__cuda_host_unregister(s->host);
    nvl_dma_destroy(s->prp_dma);
    nvl_dma_destroy(s->dma);
    free(s->prp_list_page_iova);
    memset(s, 0, sizeof(*s));
}

/* Allocates one slot of `bytes` in DMA memory and writes its PRP list: the bus address of every
 * page, in DMA memory of its own that the controller reads. */
static int slot_dma_create(struct nvl_transport *t, struct nvl_slot *s, uint64_t bytes)
{
    struct nvl_dma *data, *list;
    uint64_t list_bytes;
    int rc;

    rc = nvl_dma_create(t, bytes, NVL_DMA_TRY_HUGE, &data);
    if (rc)
        return rc;
    s->dma = data;
    s->host = data->vaddr;
    s->bytes = bytes;
    s->n_pages = bytes / NVL_SLOT_ALIGN;
    list_bytes = (s->n_pages * 8 + NVL_SLOT_ALIGN - 1) / NVL_SLOT_ALIGN * NVL_SLOT_ALIGN;
    rc = nvl_dma_create(t, list_bytes, 0, &list);
    if (rc)
        goto err_destroy;
    s->prp_dma = list;
    s->prp_list = list->vaddr;
    s->prp_list_page_iova = calloc(list_bytes / NVL_SLOT_ALIGN, sizeof(uint64_t));
    if (!s->prp_list_page_iova) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    for (uint64_t i = 0; i < list_bytes / NVL_SLOT_ALIGN; i++)
        s->prp_list_page_iova[i] = nvl_dma_iova(list, i * NVL_SLOT_ALIGN);
    for (uint64_t i = 0; i < s->n_pages; i++)
        s->prp_list[i] = nvl_dma_iova(data, i * NVL_SLOT_ALIGN);
    if (nvl__cuda_host_register(s->host, bytes, &s->device))
        s->device = NULL;
    return 0;

err_destroy:
    slot_dma_destroy(s);
    return rc;
}

int nvl__slots_create_dma(struct nvl_loader *l)
{
    struct nvl_transport *t = nvl_ctrl_transport(l->opts.ctrl);
    uint64_t bounce_bytes =
        l->opts.slot_bytes < NVL_BOUNCE_BYTES ? l->opts.slot_bytes : NVL_BOUNCE_BYTES;
    int rc;

    l->slots = calloc(l->opts.n_slots, sizeof(*l->slots));
    l->bounce = calloc(NVL_BOUNCE_SLOTS, sizeof(*l->bounce));
    if (!l->slots || !l->bounce) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    for (uint32_t i = 0; i < l->opts.n_slots; i++) {
        rc = slot_dma_create(t, &l->slots[i], l->opts.slot_bytes);
        if (rc) {
            nvl_log_error(NVL_LOADER_WHO, "cannot allocate DMA slot %u (%llu bytes): %s", i,
                          (unsigned long long)l->opts.slot_bytes, nvl_strerror(rc));
            goto err_destroy;
        }
    }
    for (uint32_t i = 0; i < NVL_BOUNCE_SLOTS; i++) {
        rc = slot_dma_create(t, &l->bounce[i], bounce_bytes);
        if (rc) {
            nvl_log_error(NVL_LOADER_WHO, "cannot allocate DMA bounce slot %u: %s", i,
                          nvl_strerror(rc));
            goto err_destroy;
        }
        l->n_bounce++;
    }
    return 0;

err_destroy:
    nvl__slots_destroy_dma(l);
    return rc;
}

void nvl__slots_destroy_dma(struct nvl_loader *l)
{
    for (uint32_t i = 0; l->slots && i < l->opts.n_slots; i++)
        slot_dma_destroy(&l->slots[i]);
    for (uint32_t i = 0; l->bounce && i < l->n_bounce; i++)
        slot_dma_destroy(&l->bounce[i]);
    free(l->slots);
    free(l->bounce);
    l->slots = NULL;
    l->bounce = NULL;
    l->n_bounce = 0;
}
