/* Byte-level BPE as llama.cpp runs it for "gpt2" vocabs: the pre-tokenizer splits the text into
 * words, each word's bytes are spelled in GPT-2's byte-level alphabet, and within a word the
 * adjacent pair with the lowest merge rank is merged until no pair has a rank (ties go to the
 * leftmost pair). Pairs are looked up in the vocab's (left, right) -> rank hash table and kept in
 * a min-heap over a linked list of symbols, so a word of n bytes costs O(n log n). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

struct bpe_symbol {
    int32_t prev, next; /* list links within the word, -1 at the ends */
    size_t off;         /* first byte in the encoded word */
    size_t n;           /* bytes; 0 once merged into its left neighbour */
};

struct bpe_bigram {
    int32_t left, right;
    int32_t rank;
    size_t left_n, right_n; /* sizes when queued, to recognise stale pairs */
};

struct bpe_session {
    const struct nvl_vocab *v;
    struct nvl_tok_bytes word; /* the current word, byte-level encoded */
    struct bpe_symbol *sym;
    size_t sym_cap;
    struct bpe_bigram *heap;
    size_t heap_n, heap_cap;
};

/* Pops the lowest rank first, and on equal ranks the leftmost pair (llama.cpp's comparator). */
static bool bigram_before(const struct bpe_bigram *a, const struct bpe_bigram *b)
{
    return a->rank < b->rank || (a->rank == b->rank && a->left < b->left);
}

static int heap_push(struct bpe_session *s, struct bpe_bigram bg)
{
    size_t i;

    if (s->heap_n == s->heap_cap) {
        size_t cap = s->heap_cap ? 2 * s->heap_cap : 64;
        struct bpe_bigram *h = realloc(s->heap, cap * sizeof(*h));

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

static struct bpe_bigram heap_pop(struct bpe_session *s)
{
    struct bpe_bigram top = s->heap[0];
    struct bpe_bigram last = s->heap[--s->heap_n];
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

static int try_add_bigram(struct bpe_session *s, int32_t left, int32_t right)
{
    const struct bpe_symbol *l, *r;
    int32_t rank;

    if (left < 0 || right < 0)
        return 0;
    l = &s->sym[left];
    r = &s->sym[right];
    rank = nvl__vocab_merge_rank(s->v, s->word.v + l->off, l->n, s->word.v + r->off, r->n);
    if (rank < 0)
        return 0;
    return heap_push(s, (struct bpe_bigram){left, right, rank, l->n, r->n});
}

static int emit_symbol(struct bpe_session *s, const struct bpe_symbol *sym, struct nvl_tok_ids *out)
{
    const char *t = s->word.v + sym->off;
    int32_t id = nvl__vocab_lookup(s->v, t, sym->n);
    int rc;

    if (id != NVL_TOKEN_NULL)
        return nvl__tok_ids_push(out, id);
    /* No token for the merged text: llama.cpp then tries each byte of the encoded text as a
     * one-byte token and drops the bytes that are none. With a complete byte-level alphabet in
     * the vocab this cannot happen, since every single character is a token. */
    for (size_t j = 0; j < sym->n; j++) {
        id = nvl__vocab_lookup(s->v, t + j, 1);
        if (id == NVL_TOKEN_NULL)
            continue;
        rc = nvl__tok_ids_push(out, id);
        if (rc)
            return rc;
    }
    return 0;
}

/* Merges one encoded word (s->word) and appends its tokens. */
static int bpe_word(struct bpe_session *s, struct nvl_tok_ids *out)
{
    const char *w = s->word.v;
    size_t len = s->word.n, off = 0;
    int32_t n_sym = 0;
    int rc = 0;

    if (!len)
        return 0;
    if (s->v->ignore_merges) {
        int32_t id = nvl__vocab_lookup(s->v, w, len);

        if (id != NVL_TOKEN_NULL)
            return nvl__tok_ids_push(out, id);
    }
    if (len > s->sym_cap) {
        struct bpe_symbol *p = realloc(s->sym, len * sizeof(*p));

        if (!p)
            return -ENOMEM;
        s->sym = p;
        s->sym_cap = len;
    }
    while (off < len) {
        struct bpe_symbol *sym = &s->sym[n_sym];
        size_t n = nvl__utf8_len((unsigned char)w[off]);

        sym->off = off;
        sym->n = n < len - off ? n : len - off;
        off += sym->n;
        sym->prev = n_sym - 1;
        sym->next = off == len ? -1 : n_sym + 1;
        n_sym++;
    }

    s->heap_n = 0;
    for (int32_t i = 1; i < n_sym && !rc; i++)
        rc = try_add_bigram(s, i - 1, i);

    while (!rc && s->heap_n) {
        struct bpe_bigram bg = heap_pop(s);
        struct bpe_symbol *l = &s->sym[bg.left], *r = &s->sym[bg.right];

        /* Stale: a side was absorbed or grew since the pair was queued. Symbols only grow and
         * a symbol's links change only when it grows, so equal sizes mean the same pair. */
        if (!l->n || !r->n || l->n != bg.left_n || r->n != bg.right_n)
            continue;
        l->n += r->n;
        r->n = 0;
        l->next = r->next;
        if (r->next >= 0)
            s->sym[r->next].prev = bg.left;
        rc = try_add_bigram(s, l->prev, bg.left);
        if (!rc)
            rc = try_add_bigram(s, bg.left, l->next);
    }

    for (int32_t i = 0; i != -1 && !rc; i = s->sym[i].next)
        rc = emit_symbol(s, &s->sym[i], out);
    return rc;
}

/* Rewrites text as valid UTF-8 the way llama.cpp's BPE path sees it: decoded to code points
 * (each undecodable byte becomes U+FFFD) and encoded again. Surrogates and values above U+10FFFF
 * that the lenient decoder lets through also become U+FFFD, because the regex engine requires
 * valid UTF-8. */
static int sanitize_utf8(const char *text, size_t len, struct nvl_tok_bytes *out)
{
    size_t pos = 0;

    while (pos < len) {
        uint32_t cpt = nvl__utf8_decode(text, len, &pos);
        char buf[4];
        int rc;

        if ((cpt >= 0xd800 && cpt <= 0xdfff) || cpt > 0x10ffff)
            cpt = 0xfffd;
        rc = nvl__tok_bytes_append(out, buf, nvl__utf8_encode(cpt, buf));
        if (rc)
            return rc;
    }
    return 0;
}

int nvl__bpe_tokenize(const struct nvl_vocab *v, const char *text, size_t len,
                      struct nvl_tok_ids *out)
{
    struct bpe_session s = {.v = v};
    struct nvl_tok_bytes clean = {0};
    struct nvl_tok_spans words = {0};
    int rc;

    rc = sanitize_utf8(text, len, &clean);
    if (rc)
        goto out_free;
    rc = nvl__pretok_split(v->pretok, clean.v ? clean.v : "", clean.n, &words);
    if (rc)
        goto out_free;

    for (size_t i = 0; i < words.n && !rc; i++) {
        const unsigned char *w = (const unsigned char *)clean.v + words.v[2 * i];
        size_t wlen = words.v[2 * i + 1];

        s.word.n = 0;
        for (size_t j = 0; j < wlen && !rc; j++) {
            char buf[4];

            rc = nvl__tok_bytes_append(&s.word, buf,
                                       nvl__utf8_encode(nvl__bpe_byte_to_cpt(w[j]), buf));
        }
        if (!rc)
            rc = bpe_word(&s, out);
    }

out_free:
    free(s.heap);
    free(s.sym);
    nvl__tok_bytes_free(&s.word);
    nvl__tok_spans_free(&words);
    nvl__tok_bytes_free(&clean);
    return rc;
}
