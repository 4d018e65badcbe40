/* PRP builder (NVMe 1.4 §4.3, Figures 108 and 109). */
#include "nvl_driver/prp.h"

#include <errno.h>
#include <stdint.h>

/* Bus address of data page i of a transfer, for the two ways callers describe their data. */
struct prp_src {
    const uint64_t *page_iova; /* a table of page addresses, or NULL ... */
    const struct nvl_dma *buf; /* ... a chunked nvl_dma with data page 0 at buffer offset */
    size_t buf_page0;          /* buf_page0, or NULL ... */
    uint64_t base;             /* ... a contiguous range whose page 0 is at bus address base */
};

static uint64_t prp_page_addr(const struct prp_src *s, size_t i, size_t page_size)
{
    if (s->page_iova)
        return s->page_iova[i];
    if (s->buf)
        return nvl_dma_iova(s->buf, s->buf_page0 + i * page_size);
    return s->base + i * page_size;
}

static int is_pow2(size_t v)
{
    return v && !(v & (v - 1));
}

size_t nvl_prp_list_pages(size_t first_off, size_t len, size_t page_size)
{
    size_t n_pages, entries, per;

    if (!is_pow2(page_size) || page_size < 4096 || len == 0)
        return 0;
    first_off &= page_size - 1;
    n_pages = (first_off + len + page_size - 1) / page_size;
    if (n_pages <= 2)
        return 0;
    /* PRP1 covers page 0; the list holds pages 1..n-1. k list pages hold k * (per - 1) + 1
     * entries, the last entry of every page but the last being a chain pointer. */
    entries = n_pages - 1;
    per = page_size / sizeof(uint64_t);
    return (entries - 1 + per - 2) / (per - 1);
}

static int prp_build(const struct prp_src *s, size_t n_avail, uint64_t first_addr, size_t len,
                     size_t page_size, const struct nvl_prp_list_mem *lists, uint64_t *prp1,
                     uint64_t *prp2)
{
    size_t first_off = (size_t)(first_addr & (page_size - 1));
    size_t n_pages = (first_off + len + page_size - 1) / page_size;
    size_t per = page_size / sizeof(uint64_t);
    size_t k, i, lp, slot;
    uint64_t addr;

    /* PRP1: any offset, but dword aligned (bits 1:0 clear). */
    if (first_addr & 3u)
        return -EINVAL;
    if (n_pages > n_avail)
        return -EINVAL;
    for (i = 1; i < n_pages; i++)
        if (prp_page_addr(s, i, page_size) & (page_size - 1))
            return -EINVAL;
    *prp1 = first_addr;
    if (n_pages == 1) {
        *prp2 = 0;
        return 0;
    }
    if (n_pages == 2) {
        *prp2 = prp_page_addr(s, 1, page_size);
        return 0;
    }
    k = nvl_prp_list_pages(first_off, len, page_size);
    if (!lists || !lists->vaddr || lists->pages < k || (lists->iova & (page_size - 1)))
        return lists && lists->pages < k ? -ENOSPC : -EINVAL;
    i = 1;
    for (lp = 0; lp < k; lp++) {
        uint64_t *list = lists->vaddr + lp * per;

        for (slot = 0; slot < per && i < n_pages; slot++) {
            if (slot == per - 1 && n_pages - i > 1) {
                /* More than one entry left: the last slot chains to the next list page. */
                list[slot] = lists->iova + (lp + 1) * page_size;
                break;
            }
            addr = prp_page_addr(s, i++, page_size);
            list[slot] = addr;
        }
    }
    *prp2 = lists->iova;
    return 0;
}

int nvl_prp_build(const struct nvl_dma *buf, size_t off, size_t len, size_t page_size,
                  const struct nvl_prp_list_mem *lists, uint64_t *prp1, uint64_t *prp2)
{
    struct prp_src s = {0};
    uint64_t first;
    size_t first_off, n_avail;

    if (!buf || !prp1 || !prp2 || len == 0 || !is_pow2(page_size) || page_size < 4096)
        return -EINVAL;
    if (off > buf->len || len > buf->len - off)
        return -EINVAL;
    /* Each controller page must be bus-contiguous: within one chunk, or a contiguous map. */
    if (page_size > buf->chunk && !buf->contiguous)
        return -EINVAL;
    first = nvl_dma_iova(buf, off);
    first_off = (size_t)(first & (page_size - 1));
    if (buf->contiguous) {
        s.base = first - first_off;
        n_avail = (first_off + buf->len - off + page_size - 1) / page_size;
    } else {
        /* Chunks are page aligned and at least a page long, so buffer offsets and bus
         * addresses agree modulo the page size: page i of the transfer starts at buffer
         * offset off - first_off + i * page_size. */
        if (first_off > off)
            return -EINVAL;
        s.buf = buf;
        s.buf_page0 = off - first_off;
        n_avail = (buf->len - s.buf_page0 + page_size - 1) / page_size;
    }
    return prp_build(&s, n_avail, first, len, page_size, lists, prp1, prp2);
}

int nvl_prp_build_pages(const uint64_t *page_iova, size_t n_pages, size_t first_off, size_t len,
                        size_t page_size, const struct nvl_prp_list_mem *lists, uint64_t *prp1,
                        uint64_t *prp2)
{
    struct prp_src s = {0};

    if (!page_iova || !prp1 || !prp2 || len == 0 || !is_pow2(page_size) || page_size < 4096 ||
        first_off >= page_size || n_pages == 0)
        return -EINVAL;
    if (page_iova[0] & (page_size - 1))
        return -EINVAL;
    s.page_iova = page_iova;
    return prp_build(&s, n_pages, page_iova[0] + first_off, len, page_size, lists, prp1, prp2);
}
