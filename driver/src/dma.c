/* Pinned DMA buffers mapped through the active transport. */
#include "nvl_driver/dma.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "nvl_driver/log.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << MAP_HUGE_SHIFT)
#endif

#define DMA_SMALL_PAGE 4096u

static const char *dma_who(const struct nvl_transport *t)
{
    return t && t->name ? t->name : "dma";
}

/* Maps anonymous memory, hugepage-backed or not. Returns NULL on failure with errno set. */
static void *dma_alloc_pages(size_t len, int huge)
{
    int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE;
    void *p;

    if (huge)
        flags |= MAP_HUGETLB | MAP_HUGE_2MB;
    p = mmap(NULL, len, PROT_READ | PROT_WRITE, flags, -1, 0);
    return p == MAP_FAILED ? NULL : p;
}

/* Undoes the transport mappings made so far. */
static void dma_unmap_all(struct nvl_dma *d)
{
    size_t i;

    if (!d->transport || d->n_maps == 0)
        return;
    if (d->n_maps == 1) {
        nvl_transport_dma_unmap(d->transport, d->vaddr, d->len, d->iova);
    } else {
        for (i = 0; i < (size_t)d->n_maps; i++)
            nvl_transport_dma_unmap(d->transport, (uint8_t *)d->vaddr + i * d->chunk, d->chunk,
                                    d->chunk_iova[i]);
    }
    d->n_maps = 0;
}

/* Maps d through t: the whole buffer at once, or chunk by chunk when the transport cannot give
 * one contiguous range (-ERANGE). */
static int dma_map_through(struct nvl_dma *d, struct nvl_transport *t, unsigned flags)
{
    size_t i;
    int rc;

    d->transport = t;
    rc = nvl_transport_dma_map(t, d->vaddr, d->len, &d->iova);
    if (rc == 0) {
        d->n_maps = 1;
        d->contiguous = 1;
        for (i = 0; i < d->n_chunks; i++)
            d->chunk_iova[i] = d->iova + i * d->chunk;
        return 0;
    }
    if (rc != -ERANGE || d->n_chunks == 1)
        return rc;
    for (i = 0; i < d->n_chunks; i++) {
        rc = nvl_transport_dma_map(t, (uint8_t *)d->vaddr + i * d->chunk, d->chunk,
                                   &d->chunk_iova[i]);
        if (rc) {
            d->n_maps = (int)i;
            dma_unmap_all(d);
            return rc;
        }
    }
    d->n_maps = (int)d->n_chunks;
    d->iova = d->chunk_iova[0];
    d->contiguous = 1;
    for (i = 1; i < d->n_chunks; i++)
        if (d->chunk_iova[i] != d->iova + i * d->chunk)
            d->contiguous = 0;
    if ((flags & NVL_DMA_CONTIG) && !d->contiguous) {
        dma_unmap_all(d);
        return -ERANGE;
    }
    return 0;
}

/* One attempt with a given backing page size. */
static int dma_try_create(struct nvl_transport *t, size_t len, unsigned flags, int huge,
                          struct nvl_dma **out)
{
    size_t chunk = huge ? NVL_DMA_HUGEPAGE : DMA_SMALL_PAGE;
    struct nvl_dma *d;
    int rc;

    d = calloc(1, sizeof(*d));
    if (!d)
        return -ENOMEM;
    d->chunk = chunk;
    d->len = (len + chunk - 1) / chunk * chunk;
    d->n_chunks = d->len / chunk;
    d->huge = huge;
    d->chunk_iova = calloc(d->n_chunks, sizeof(*d->chunk_iova));
    if (!d->chunk_iova) {
        rc = -ENOMEM;
        goto err_free_desc;
    }
    d->vaddr = dma_alloc_pages(d->len, huge);
    if (!d->vaddr) {
        rc = -errno;
        goto err_free_table;
    }
    /* Pinned: the page frames must not move while the device may DMA to them. */
    if (mlock(d->vaddr, d->len)) {
        rc = -errno;
        if (!huge)
            nvl_log_error(dma_who(t),
                          "cannot pin %zu bytes of DMA memory (%s): raise RLIMIT_MEMLOCK "
                          "(ulimit -l), run as root, or run nvload-setup --user",
                          d->len, nvl_strerror(rc));
        goto err_unmap_pages;
    }
    /* A child process must not share (copy-on-write) pages the device writes. */
    madvise(d->vaddr, d->len, MADV_DONTFORK);
    if (!(flags & NVL_DMA_NO_MAP)) {
        rc = dma_map_through(d, t, flags);
        if (rc)
            goto err_unlock;
    } else {
        d->transport = NULL;
        d->iova = 0;
    }
    *out = d;
    return 0;

err_unlock:
    munlock(d->vaddr, d->len);
err_unmap_pages:
    munmap(d->vaddr, d->len);
err_free_table:
    free(d->chunk_iova);
err_free_desc:
    free(d);
    return rc;
}

int nvl_dma_create(struct nvl_transport *t, size_t len, unsigned flags, struct nvl_dma **out)
{
    int rc;

    if (!out || len == 0 || (!t && !(flags & NVL_DMA_NO_MAP)))
        return -EINVAL;
    *out = NULL;
    if (flags & NVL_DMA_TRY_HUGE) {
        rc = dma_try_create(t, len, flags, 1, out);
        if (rc == 0)
            return 0;
        nvl_log_debug(dma_who(t), "no 2 MiB hugepages for %zu bytes (%s); using 4 KiB pages", len,
                      nvl_strerror(rc));
    }
    rc = dma_try_create(t, len, flags, 0, out);
    if (rc == -ERANGE && (flags & NVL_DMA_CONTIG) && !(flags & NVL_DMA_TRY_HUGE) &&
        len <= NVL_DMA_HUGEPAGE) {
        /* Physically scattered small pages (no-IOMMU): one hugepage is contiguous. */
        rc = dma_try_create(t, len, flags, 1, out);
    }
    if (rc == -ERANGE) {
        nvl_log_error(dma_who(t),
                      "%zu bytes of DMA memory must be bus-contiguous, which needs 2 MiB "
                      "hugepages in no-IOMMU mode (echo N > /proc/sys/vm/nr_hugepages)",
                      len);
        rc = -ENOMEM;
    }
    return rc;
}

void nvl_dma_destroy(struct nvl_dma *dma)
{
    if (!dma)
        return;
    dma_unmap_all(dma);
    munlock(dma->vaddr, dma->len);
    munmap(dma->vaddr, dma->len);
    free(dma->chunk_iova);
    free(dma);
}

int nvl_dma_contig_at(const struct nvl_dma *dma, size_t off, size_t n)
{
    size_t first, last, i;

    if (!dma || n == 0 || off > dma->len || n > dma->len - off)
        return 0;
    if (dma->contiguous)
        return 1;
    first = off / dma->chunk;
    last = (off + n - 1) / dma->chunk;
    for (i = first + 1; i <= last; i++)
        if (dma->chunk_iova[i] != dma->chunk_iova[first] + (i - first) * dma->chunk)
            return 0;
    return 1;
}
