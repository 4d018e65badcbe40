/* SentencePiece BPE as llama.cpp runs it for "llama" vocabs: start from UTF-8 characters and
 * repeatedly merge the adjacent pair whose concatenation is the highest-scoring token (ties go to
 * the leftmost pair). Symbols that end up as no token are emitted as byte tokens.
 *
 * Symbols form a doubly linked list over the text; candidate pairs sit in a max-heap and are
 * checked for staleness when popped (a symbol that grew or was absorbed invalidates its pairs),
 * so a text of n characters costs O(n log n) hash lookups. */
#include <errno.h>
#include <stdlib.h>

#include "tokenizer_internal.h"

struct spm_symbol {
    int32_t prev, next; /* list links, -1 at the ends */
    size_t off;         /* first byte in the text */
    size_t n;           /* bytes; 0 once merged into its left neighbour */
};

struct spm_bigram {
    int32_t left, right;
    float score;
    size_t size; /* bytes of left + right when the pair was queued */
};

struct spm_session {
    const struct nvl_vocab *v;
    const char *text;
    struct spm_symbol *sym;
    struct spm_bigram *heap;
    size_t heap_n, heap_cap;
};

/* Pops higher scores first, and on equal scores the leftmost pair (llama.cpp's comparator). */
static bool bigram_before(const struct spm_bigram *a, const struct spm_bigram *b)
{
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

static int heap_push(struct spm_session *s, struct spm_bigram bg)
{
    size_t i;

    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? 2 * s->heap_cap : 64;
        struct spm_bigram *h = realloc(s->heap, cap * sizeof(*h));

        if (!h)
            return -ENOMEM;
        s->heap = h;
        s->heap_cap = cap;
    }
    i = s->heap_n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;

        if (!bigram_before(&bg, &s->heap[parent]))
            break;
        s->heap[i] = s->heap[parent];
        i = parent;
    }
    s->heap[i] = bg;
    return 0;
}

static struct spm_bigram heap_pop(struct spm_session *s)
{
    struct spm_bigram top = s->heap[0];
    struct spm_bigram last = s->heap[--s->heap_n];
    size_t i = 0;

    for (;;) {
        size_t c = 2 * i + 1;

        if (c >= s->heap_n)
            break;
        if (c + 1 < s->heap_n && bigram_before(&s->heap[c + 1], &s->heap[c]))
            c++;
        if (!bigram_before(&s->heap[c], &last))
            break;
        s->heap[i] = s->heap[c];
        i = c;
    }
    if (s->heap_n)
        s->heap[i] = last;
    return top;
}

/* Queues the pair (left, right) when their concatenation is a token. */
static int try_add_bigram(struct spm_session *s, int32_t left, int32_t right)
{
    const struct spm_symbol *l, *r;
    int32_t id;

    if (left < 0 || right < 0)
        return 0;
    l = &s->sym[left];
    r = &s->sym[right];
    /* Neighbours are adjacent in the text, so the pair's text is one contiguous range. */
    id = nvl__vocab_lookup(s->v, s->text + l->off, l->n + r->n);
    if (id == NVL_TOKEN_NULL)
        return 0;
    return heap_push(s, (struct spm_bigram){left, right, s->v->tokens[id].score, l->n + r->n});
}

/* Emits one final symbol: its token, or else one token per byte.
 *
 * llama.cpp's resegment() first looks the text up among the merges it made (rev_merge); that
 * lookup can never succeed here, because every merged symbol is a token by construction and only
 * unmerged single characters can miss. */
static int emit_symbol(struct spm_session *s, const struct spm_symbol *sym, struct nvl_tok_ids *out)
{
    int32_t id = nvl__vocab_lookup(s->v, s->text + sym->off, sym->n);
    int rc;

    if (id != NVL_TOKEN_NULL)
        return nvl__tok_ids_push(out, id);
    for (size_t j = 0; j < sym->n; j++) {
        id = nvl__vocab_byte_token(s->v, (uint8_t)s->text[sym->off + j]);
        /* A vocab without byte fallback: llama.cpp would throw; the unknown token is the
         * sensible stand-in, and with no unknown token the byte is dropped. */
        if (id == NVL_TOKEN_NULL)
            id = s->v->unk;
        if (id == NVL_TOKEN_NULL)
            continue;
        rc = nvl__tok_ids_push(out, id);
        if (rc)
            return rc;
    }
    return 0;
}

int nvl__spm_tokenize(const struct nvl_vocab *v, const char *text, size_t len,
                      struct nvl_tok_ids *out)
{
    struct spm_session s = {.v = v, .text = text};
    int32_t n_sym = 0;
    size_t off = 0;
    int rc = 0;

    if (!len)
        return 0;
    s.sym = malloc(len * sizeof(*s.sym));
    if (!s.sym)
        return -ENOMEM;
    while (off < len) {
        struct spm_symbol *sym = &s.sym[n_sym];
        size_t n = nvl__utf8_len((unsigned char)text[off]);

        sym->off = off;
        sym->n = n < len - off ? n : len - off;
        off += sym->n;
        sym->prev = n_sym - 1;
        sym->next = off == len ? -1 : n_sym + 1;
        n_sym++;
    }

    for (int32_t i = 1; i < n_sym && !rc; i++)
        rc = try_add_bigram(&s, i - 1, i);

    while (!rc && s.heap_n) {
        struct spm_bigram bg = heap_pop(&s);
        struct spm_symbol *l = &s.sym[bg.left], *r = &s.sym[bg.right];

        /* Stale: one side was absorbed, or the left side grew since the pair was queued. */
        if (!l->n || !r->n || l->n + r->n != bg.size)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s.sym[r->next].prev = bg.left;
        rc = try_add_bigram(&s, l->prev, bg.left);
        if (!rc)
            rc = try_add_bigram(&s, bg.left, l->next);
    }

    for (int32_t i = 0; i != -1 && !rc; i = s.sym[i].next)
        rc = emit_symbol(&s, &s.sym[i], out);

    free(s.heap);
    free(s.sym);
    return rc;
}
