/* Staging slots: pinned buffers the target DMAs into. */
#include "slots.h"
#include "cuda_glue.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Anonymous memory, on transparent huge pages where the kernel allows, locked so that it stays
 * resident, and mapped for the GPU when there is one. */
static int slot_host_create(struct nvl_slot *s, uint64_t bytes)
{
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED)
        return -errno;
    madvise(p, bytes, MADV_HUGEPAGE);
    if (mlock(p, bytes))
        nvl_log_debug(NVL_LOADER_WHO, "mlock of a %llu-byte slot failed (%s); left pageable",
                      (unsigned long long)bytes, strerror(errno));
    s->host = p;
    s->bytes = bytes;
    s->n_pages = bytes / NVL_SLOT_ALIGN;
    if (nvl__cuda_host_register(p, bytes, &s->device))
        s->device = NULL;
    return 0;
}

static void slot_host_destroy(struct nvl_slot *s)
{
    if (!s->host)
        return;
    if (s->device)
        nvl__cuda_host_unregister(s->host);
    munmap(s->host, s->bytes);
    memset(s, 0, sizeof(*s));
}

int nvl__slots_create(struct nvl_loader *l)
{
    int rc;

    if (l->ops->caps & NVL_BACKEND_NEEDS_CTRL)
        return nvl__slots_create_dma(l);
    l->slots = calloc(l->opts.n_slots, sizeof(*l->slots));
    if (!l->slots)
        return -ENOMEM;
    for (uint32_t i = 0; i < l->opts.n_slots; i++) {
        rc = slot_host_create(&l->slots[i], l->opts.slot_bytes);
        if (rc) {
            nvl_log_error(NVL_LOADER_WHO, "cannot allocate slot %u (%llu bytes): %s", i,
                          (unsigned long long)l->opts.slot_bytes, nvl_strerror(rc));
            nvl__slots_destroy(l);
            return rc;
        }
    }
    return 0;
}

void nvl__slots_destroy(struct nvl_loader *l)
{
    if (l->ops->caps & NVL_BACKEND_NEEDS_CTRL) {
        nvl__slots_destroy_dma(l);
        return;
    }
    for (uint32_t i = 0; l->slots && i < l->opts.n_slots; i++)
        slot_host_destroy(&l->slots[i]);
    free(l->slots);
    l->slots = NULL;
}
