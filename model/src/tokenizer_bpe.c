/* Byte-level BPE as llama.cpp runs it for "gpt2" vocabs: the pre-tokenizer splits the text into
 * words, each word's bytes are spelled in GPT-2's byte-level alphabet, and within a word the
 * adjacent pair with the lowest merge rank is merged until no pair has a rank (ties go to the
 * leftmost pair; the merge loop is tokenizer_merge.c). Pairs are looked up in the vocab's
 * (left, right) -> rank hash table. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

struct bpe_session {
    const struct nvl_vocab *v;
    struct nvl_tok_bytes word; /* the current word, byte-level encoded */
    struct nvl_merge merge;
};

/* A pair merges when the vocab has it as a merge; lower ranks first. */
static bool bpe_rank(void *ctx, const char *left, size_t left_n, size_t right_n, double *priority)
{
    const struct nvl_vocab *v = ctx;
    int32_t rank = nvl__vocab_merge_rank(v, left, left_n, left + left_n, right_n);

    if (rank < 0)
        return false;
    *priority = rank;
    return true;
}

static int emit_symbol(const struct nvl_vocab *v, const char *t, size_t n, struct nvl_tok_ids *out)
{
    int32_t id = nvl__vocab_lookup(v, t, n);
    int rc;

    if (id != NVL_TOKEN_NULL)
        return nvl__tok_ids_push(out, id);
    /* No token for the merged text: llama.cpp then tries each byte of the encoded text as a
     * one-byte token and drops the bytes that are none. With a complete byte-level alphabet in
     * the vocab this cannot happen, since every single character is a token. */
    for (size_t j = 0; j < n; j++) {
        id = nvl__vocab_lookup(v, t + j, 1);
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
    const struct nvl_merge *m = &s->merge;
    int rc;

    if (!s->word.n)
        return 0;
    if (s->v->ignore_merges) {
        int32_t id = nvl__vocab_lookup(s->v, s->word.v, s->word.n);

        if (id != NVL_TOKEN_NULL)
            return nvl__tok_ids_push(out, id);
    }
    rc = nvl__merge_run(&s->merge, s->word.v, s->word.n, bpe_rank, (void *)s->v);
    for (int32_t i = 0; i >= 0 && !rc; i = m->sym[i].next)
        rc = emit_symbol(s->v, s->word.v + m->sym[i].off, m->sym[i].n, out);
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
    nvl__merge_fini(&s.merge);
    nvl__tok_bytes_free(&s.word);
    nvl__tok_spans_free(&words);
    nvl__tok_bytes_free(&clean);
    return rc;
}
