/* Greedy pair merging, the loop both tokenizer engines run (llama.cpp's llm_tokenizer_spm and
 * llm_tokenizer_bpe): the text starts as one symbol per UTF-8 character; every adjacent pair the
 * engine's rank function accepts is queued in a min-heap by priority (ties to the leftmost pair);
 * the best pair is merged into its left symbol and the pairs the merge creates are queued.
 *
 * A popped pair is stale when a side was absorbed (size 0) or grew since the pair was queued.
 * Otherwise the two are still neighbours: a symbol's right link changes only when it absorbs its
 * right neighbour (and grows), its left link only when its left neighbour is absorbed. A text of
 * n characters costs O(n log n) rank lookups. */
#include <errno.h>
#include <stdlib.h>

#include "tokenizer_internal.h"

struct nvl_merge_pair {
    int32_t left, right;
    double priority;
    size_t left_n, right_n; /* sizes when queued, to recognise stale pairs */
};

static bool pair_before(const struct nvl_merge_pair *a, const struct nvl_merge_pair *b)
{
    return a->priority < b->priority || (a->priority == b->priority && a->left < b->left);
}

static int heap_push(struct nvl_merge *m, struct nvl_merge_pair p)
{
    size_t i;

    if (m->heap_n == m->heap_cap) {
        size_t cap = m->heap_cap ? 2 * m->heap_cap : 64;
        struct nvl_merge_pair *h = realloc(m->heap, cap * sizeof(*h));

        if (!h)
            return -ENOMEM;
        m->heap = h;
        m->heap_cap = cap;
    }
    i = m->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!pair_before(&p, &m->heap[parent]))
            break;
        m->heap[i] = m->heap[parent];
        i = parent;
    }
    m->heap[i] = p;
    return 0;
}

static struct nvl_merge_pair heap_pop(struct nvl_merge *m)
{
    struct nvl_merge_pair top = m->heap[0];
    struct nvl_merge_pair last = m->heap[--m->heap_n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= m->heap_n)
            break;
        if (c + 1 < m->heap_n && pair_before(&m->heap[c + 1], &m->heap[c]))
            c++;
        if (!pair_before(&m->heap[c], &last))
            break;
        m->heap[i] = m->heap[c];
        i = c;
    }
    if (m->heap_n)
        m->heap[i] = last;
    return top;
}

/* Queues (left, right) when the rank function accepts it. */
static int try_add_pair(struct nvl_merge *m, const char *text, int32_t left, int32_t right,
                        nvl__merge_rank_fn rank, void *ctx)
{
    const struct nvl_merge_symbol *l, *r;
    double priority;

    if (left < 0 || right < 0)
        return 0;
    l = &m->sym[left];
    r = &m->sym[right];
    if (!rank(ctx, text + l->off, l->n, r->n, &priority))
        return 0;
    return heap_push(m, (struct nvl_merge_pair){left, right, priority, l->n, r->n});
}

int nvl__merge_run(struct nvl_merge *m, const char *text, size_t len, nvl__merge_rank_fn rank,
                   void *ctx)
{
    size_t off = 0;
    int rc = 0;

    m->n_sym = 0;
    m->heap_n = 0;
    if (len > m->sym_cap) {
        struct nvl_merge_symbol *p = realloc(m->sym, len * sizeof(*p));

        if (!p)
            return -ENOMEM;
        m->sym = p;
        m->sym_cap = len;
    }
    while (off < len) {
        struct nvl_merge_symbol *sym = &m->sym[m->n_sym];
        size_t n = nvl__utf8_len((unsigned char)text[off]);

        sym->off = off;
        sym->n = n < len - off ? n : len - off;
        off += sym->n;
        sym->prev = m->n_sym - 1;
        sym->next = off == len ? -1 : m->n_sym + 1;
        m->n_sym++;
    }

    for (int32_t i = 1; i < m->n_sym && !rc; i++)
        rc = try_add_pair(m, text, i - 1, i, rank, ctx);

    while (!rc && m->heap_n) {
        struct nvl_merge_pair p = heap_pop(m);
        struct nvl_merge_symbol *l = &m->sym[p.left], *r = &m->sym[p.right];

        if (!l->n || !r->n || l->n != p.left_n || r->n != p.right_n)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            m->sym[r->next].prev = p.left;
        rc = try_add_pair(m, text, l->prev, p.left, rank, ctx);
        if (!rc)
            rc = try_add_pair(m, text, p.left, l->next, rank, ctx);
    }
    return rc;
}

void nvl__merge_fini(struct nvl_merge *m)
{
    free(m->heap);
    free(m->sym);
    *m = (struct nvl_merge){0};
}
