/* The sim's DMA region registry: what the transport's dma_map registers and every controller
 * access is translated through. Readers (the service threads) never lock: they read an immutable
 * sorted table through one pointer; writers copy, modify and publish a new table and retire the
 * old one, which is freed after a grace period (see sim_internal.h). */
#include "sim_internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

int nvl__sim_dma_init(struct sim_dma *d)
{
    memset(d, 0, sizeof(*d));
    d->table = calloc(1, sizeof(*d->table));
    if (!d->table)
        return -ENOMEM;
    d->next_iova = SIM_IOVA_BASE;
    d->gen = 1;
    d->table->gen = d->gen;
    pthread_mutex_init(&d->lock, NULL);
    return 0;
}

void nvl__sim_dma_fini(struct sim_dma *d)
{
    nvl__sim_dma_free_retired(d->retired, d->n_retired);
    free(d->table);
    pthread_mutex_destroy(&d->lock);
    memset(d, 0, sizeof(*d));
}

static struct sim_dma_table *table_alloc(uint32_t n)
{
    return malloc(sizeof(struct sim_dma_table) + (size_t)n * sizeof(struct sim_dma_region));
}

/* Publishes `nt` and retires the current table. Called with the lock held. */
static int table_swap(struct sim_dma *d, struct sim_dma_table *nt)
{
    struct sim_dma_table *old = d->table;

    if (d->n_retired == d->cap_retired) {
        uint32_t cap = d->cap_retired ? d->cap_retired * 2 : 16;
        struct sim_dma_table **r = realloc(d->retired, cap * sizeof(*r));

        if (!r)
            return -ENOMEM;
        d->retired = r;
        d->cap_retired = cap;
    }
    nt->gen = ++d->gen;
    SIM_STORE_SC(&d->table, nt);
    d->retired[d->n_retired++] = old;
    return 0;
}

int nvl__sim_dma_map(struct sim_dma *d, void *vaddr, size_t len, uint64_t *iova)
{
    struct sim_dma_table *cur, *nt;
    uint64_t at;
    uint32_t i;
    int ret;

    if (!vaddr || !len || ((uintptr_t)vaddr & (SIM_PAGE - 1)) || (len & (SIM_PAGE - 1)))
        return -EINVAL;
    pthread_mutex_lock(&d->lock);
    cur = d->table;
    nt = table_alloc(cur->n + 1);
    if (!nt) {
        ret = -ENOMEM;
        goto out_unlock;
    }
    at = d->next_iova;
    /* IOVAs only grow, so the new region sorts last. */
    memcpy(nt->r, cur->r, cur->n * sizeof(cur->r[0]));
    i = cur->n;
    nt->r[i].iova = at;
    nt->r[i].len = len;
    nt->r[i].vaddr = vaddr;
    nt->n = cur->n + 1;
    ret = table_swap(d, nt);
    if (ret) {
        free(nt);
        goto out_unlock;
    }
    d->next_iova = at + ((len + SIM_IOVA_GUARD - 1) & ~(SIM_IOVA_GUARD - 1)) + SIM_IOVA_GUARD;
    *iova = at;
out_unlock:
    pthread_mutex_unlock(&d->lock);
    return ret;
}

int nvl__sim_dma_unmap(struct sim_dma *d, void *vaddr, size_t len, uint64_t iova)
{
    struct sim_dma_table *cur, *nt;
    uint32_t i, j;
    int ret = -EINVAL;

    pthread_mutex_lock(&d->lock);
    cur = d->table;
    for (i = 0; i < cur->n; i++)
        if (cur->r[i].iova == iova)
            break;
    if (i == cur->n || cur->r[i].vaddr != vaddr || cur->r[i].len != len)
        goto out_unlock;
    nt = table_alloc(cur->n - 1);
    if (!nt) {
        ret = -ENOMEM;
        goto out_unlock;
    }
    for (j = 0; j < cur->n; j++)
        if (j != i)
            nt->r[j < i ? j : j - 1] = cur->r[j];
    nt->n = cur->n - 1;
    ret = table_swap(d, nt);
    if (ret)
        free(nt);
out_unlock:
    pthread_mutex_unlock(&d->lock);
    return ret;
}

struct sim_dma_table **nvl__sim_dma_take_retired(struct sim_dma *d, uint32_t *n)
{
    struct sim_dma_table **list;

    pthread_mutex_lock(&d->lock);
    list = d->retired;
    *n = d->n_retired;
    d->retired = NULL;
    d->n_retired = 0;
    d->cap_retired = 0;
    pthread_mutex_unlock(&d->lock);
    return list;
}

void nvl__sim_dma_free_retired(struct sim_dma_table **list, uint32_t n)
{
    uint32_t i;

    for (i = 0; i < n; i++)
        free(list[i]);
    free(list);
}

static int region_holds(const struct sim_dma_region *r, uint64_t iova, uint64_t len)
{
    return iova >= r->iova && len <= r->len && iova - r->iova <= r->len - len;
}

void *nvl__sim_dma_xlate(struct sim_dma *d, struct sim_dma_cache *c, uint64_t iova, uint64_t len)
{
    const struct sim_dma_table *t = SIM_LOAD_SC(&d->table);
    uint32_t lo = 0, hi;

    if (sim_likely(c && c->gen == t->gen && c->r && region_holds(c->r, iova, len)))
        return c->r->vaddr + (iova - c->r->iova);
    /* The last region whose start is <= iova. */
    hi = t->n;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;

        if (t->r[mid].iova <= iova)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0 || !region_holds(&t->r[lo - 1], iova, len))
        return NULL;
    if (c) {
        c->gen = t->gen;
        c->r = &t->r[lo - 1];
    }
    return t->r[lo - 1].vaddr + (iova - t->r[lo - 1].iova);
}
