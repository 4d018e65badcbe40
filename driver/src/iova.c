/* See iova.h. */
#include "iova.h"

#include <errno.h>
#include <string.h>

void nvl__iova_init(struct nvl_iova_alloc *a)
{
    memset(a, 0, sizeof(*a));
}

void nvl__iova_add(struct nvl_iova_alloc *a, uint64_t start, uint64_t end)
{
    uint32_t i = 0;

    if (end <= start)
        return;
    while (i < a->n_free && a->free_list[i].start < start)
        i++;
    /* Merge with the extent before and/or after when they touch. */
    if (i > 0 && a->free_list[i - 1].end == start) {
        a->free_list[i - 1].end = end;
        if (i < a->n_free && a->free_list[i].start == end) {
            a->free_list[i - 1].end = a->free_list[i].end;
            memmove(&a->free_list[i], &a->free_list[i + 1],
                    (a->n_free - i - 1) * sizeof(a->free_list[0]));
            a->n_free--;
        }
        return;
    }
    if (i < a->n_free && a->free_list[i].start == end) {
        a->free_list[i].start = start;
        return;
    }
    if (a->n_free == NVL_IOVA_MAX_FREE) {
        /* Too fragmented to remember: the range is lost (IOVA space is large). */
        a->leaked += end - start;
        return;
    }
    memmove(&a->free_list[i + 1], &a->free_list[i], (a->n_free - i) * sizeof(a->free_list[0]));
    a->free_list[i].start = start;
    a->free_list[i].end = end;
    a->n_free++;
}

int nvl__iova_get(struct nvl_iova_alloc *a, uint64_t len, uint64_t *iova)
{
    uint64_t align = 4096;
    uint32_t i;

    if (len == 0 || len % 4096)
        return -EINVAL;
    while (align < len && align < NVL_IOVA_ALIGN_MAX)
        align <<= 1;
    for (i = 0; i < a->n_free; i++) {
        struct nvl_iova_extent e = a->free_list[i];
        uint64_t start = (e.start + align - 1) & ~(align - 1);

        if (start < e.start || start + len < start || start + len > e.end)
            continue;
        /* Take [start, start + len) out; give back what is left on either side. */
        memmove(&a->free_list[i], &a->free_list[i + 1],
                (a->n_free - i - 1) * sizeof(a->free_list[0]));
        a->n_free--;
        nvl__iova_add(a, e.start, start);
        nvl__iova_add(a, start + len, e.end);
        *iova = start;
        return 0;
    }
    return -ENOSPC;
}

void nvl__iova_put(struct nvl_iova_alloc *a, uint64_t iova, uint64_t len)
{
    nvl__iova_add(a, iova, iova + len);
}
