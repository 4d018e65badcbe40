/* SentencePiece BPE as llama.cpp runs it for "llama" vocabs: start from UTF-8 characters and
 * repeatedly merge the adjacent pair whose concatenation is the highest-scoring token (ties go to
 * the leftmost pair; the merge loop is tokenizer_merge.c). Symbols that end up as no token are
 * emitted as byte tokens. */
#include "tokenizer_internal.h"

/* A pair merges when its concatenation is a token; higher scores first. */
static bool spm_rank(void *ctx, const char *left, size_t left_n, size_t right_n, double *priority)
{
    const struct nvl_vocab *v = ctx;
    int32_t id = nvl__vocab_lookup(v, left, left_n + right_n);

    if (id == NVL_TOKEN_NULL)
        return false;
    *priority = -(double)v->tokens[id].score;
    return true;
}

/* Emits one final symbol: its token, or else one token per byte.
 *
 * llama.cpp's resegment() first looks the text up among the merges it made (rev_merge); that
 * lookup can never succeed here, because every merged symbol is a token by construction and only
 * unmerged single characters can miss. */
static int emit_symbol(const struct nvl_vocab *v, const char *t, size_t n, struct nvl_tok_ids *out)
{
    int32_t id = nvl__vocab_lookup(v, t, n);
    int rc;

    if (id != NVL_TOKEN_NULL)
        return nvl__tok_ids_push(out, id);
    for (size_t j = 0; j < n; j++) {
        id = nvl__vocab_byte_token(v, (uint8_t)t[j]);
        /* A vocab without byte fallback: llama.cpp would throw; the unknown token is the
         * sensible stand-in, and with no unknown token the byte is dropped. */
        if (id == NVL_TOKEN_NULL)
            id = v->unk;
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
    struct nvl_merge m = {0};
    int rc;

    rc = nvl__merge_run(&m, text, len, spm_rank, (void *)v);
    for (int32_t i = m.n_sym ? 0 : -1; i >= 0 && !rc; i = m.sym[i].next)
        rc = emit_symbol(v, text + m.sym[i].off, m.sym[i].n, out);
    nvl__merge_fini(&m);
    return rc;
}
