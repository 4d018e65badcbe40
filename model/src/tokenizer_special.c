/* Tokenize and detokenize: the special-token partition in front of the SPM and BPE engines, BOS
 * and EOS, and the way back from ids to text (llama.cpp b4747's llama_vocab::impl::tokenize,
 * tokenizer_st_partition and detokenize). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer_internal.h"

/* A piece of the input: raw text to run through the engine, or an already known token. */
struct fragment {
    int32_t token; /* NVL_TOKEN_NULL for raw text */
    size_t off, len;
};

struct fragments {
    struct fragment *v;
    size_t n, cap;
};

static int frag_push(struct fragments *f, int32_t token, size_t off, size_t len)
{
    if (f->n == f->cap) {
        size_t cap = f->cap ? 2 * f->cap : 16;
        struct fragment *p = realloc(f->v, cap * sizeof(*p));

        if (!p)
            return -ENOMEM;
        f->v = p;
        f->cap = cap;
    }
    f->v[f->n++] = (struct fragment){token, off, len};
    return 0;
}

/* Splits the raw fragments of *frags on every occurrence of token id, leftmost first. */
static int partition_one(const struct nvl_vocab *v, int32_t id, const char *text,
                         struct fragments *frags, struct fragments *tmp)
{
    const char *tok = v->text + v->tokens[id].off;
    size_t tlen = v->tokens[id].len;
    bool found = false;
    int rc = 0;

    for (size_t i = 0; i < frags->n && !found; i++)
        found = frags->v[i].token == NVL_TOKEN_NULL &&
                memmem(text + frags->v[i].off, frags->v[i].len, tok, tlen);
    if (!found)
        return 0;

    tmp->n = 0;
    for (size_t i = 0; i < frags->n && !rc; i++) {
        const struct fragment *f = &frags->v[i];
        size_t p = f->off, end = f->off + f->len;
        const char *m;

        if (f->token != NVL_TOKEN_NULL) {
            rc = frag_push(tmp, f->token, 0, 0);
            continue;
        }
        while (!rc && p < end && (m = memmem(text + p, end - p, tok, tlen))) {
            size_t at = (size_t)(m - text);

            if (at > p)
                rc = frag_push(tmp, NVL_TOKEN_NULL, p, at - p);
            if (!rc)
                rc = frag_push(tmp, id, 0, 0);
            p = at + tlen;
        }
        if (!rc && p < end)
            rc = frag_push(tmp, NVL_TOKEN_NULL, p, end - p);
    }
    if (!rc) {
        struct fragments t = *frags;

        *frags = *tmp;
        *tmp = t;
    }
    return rc;
}

/* Cuts the text at the strings of special tokens, longest token first. User-defined tokens are
 * always cut out; control and unknown tokens only with parse_special, as in llama.cpp. */
static int partition(const struct nvl_vocab *v, const char *text, size_t len, bool parse_special,
                     struct fragments *frags)
{
    struct fragments tmp = {0};
    int rc;

    rc = frag_push(frags, NVL_TOKEN_NULL, 0, len);
    for (uint32_t i = 0; i < v->n_special && !rc; i++) {
        int32_t id = v->special[i];
        uint32_t attr = v->tokens[id].attr;

        if (!parse_special && (attr & (NVL_TOKEN_ATTR_CONTROL | NVL_TOKEN_ATTR_UNKNOWN)))
            continue;
        rc = partition_one(v, id, text, frags, &tmp);
    }
    free(tmp.v);
    return rc;
}

/* SPM input: an optional leading space, then every space as "▁". */
static int spm_escape(const char *text, size_t len, bool prefix, struct nvl_tok_bytes *out)
{
    int rc = 0;

    out->n = 0;
    if (prefix)
        rc = nvl__tok_bytes_append(out, NVL_SPM_SPACE, NVL_SPM_SPACE_LEN);
    for (size_t i = 0; i < len && !rc;) {
        const char *sp = memchr(text + i, ' ', len - i);
        size_t run = sp ? (size_t)(sp - text) - i : len - i;

        rc = nvl__tok_bytes_append(out, text + i, run);
        i += run;
        if (!rc && i < len) {
            rc = nvl__tok_bytes_append(out, NVL_SPM_SPACE, NVL_SPM_SPACE_LEN);
            i++;
        }
    }
    return rc;
}

static int tokenize_into(const struct nvl_vocab *v, const char *text, size_t len, unsigned flags,
                         struct nvl_tok_ids *out)
{
    const bool add_special = flags & NVL_TOKENIZE_ADD_SPECIAL;
    struct fragments frags = {0};
    struct nvl_tok_bytes buf = {0};
    bool prev_special = true; /* SPM: the text start counts as "after a special token" */
    int rc = 0;

    /* Symbol indices in the engines are int32_t. */
    if (len > INT32_MAX / 4)
        return -EOVERFLOW;
    if (len)
        rc = partition(v, text, len, flags & NVL_TOKENIZE_PARSE_SPECIAL, &frags);
    if (!rc && add_special && v->add_bos)
        rc = nvl__tok_ids_push(out, v->bos);

    for (size_t i = 0; i < frags.n && !rc; i++) {
        const struct fragment *f = &frags.v[i];

        if (f->token != NVL_TOKEN_NULL) {
            rc = nvl__tok_ids_push(out, f->token);
            prev_special = true;
            continue;
        }
        if (v->type == NVL_VOCAB_TYPE_SPM) {
            rc = spm_escape(text + f->off, f->len, v->add_space_prefix && prev_special, &buf);
            if (!rc)
                rc = nvl__spm_tokenize(v, buf.v, buf.n, out);
        } else {
            rc = nvl__bpe_tokenize(v, text + f->off, f->len, out);
        }
        prev_special = false;
    }

    if (!rc && add_special && v->add_eos)
        rc = nvl__tok_ids_push(out, v->eos);
    nvl__tok_bytes_free(&buf);
    free(frags.v);
    return rc;
}

/* The caller-buffer convention of tokenize and detokenize: as many of the n elements as fit in
 * dst[cap], *n_out = n, and -ENOSPC when they did not all fit. */
static int copy_capped(const void *src, size_t n, size_t elem, void *dst, size_t cap, size_t *n_out)
{
    if (n && cap)
        memcpy(dst, src, (n < cap ? n : cap) * elem);
    *n_out = n;
    return n > cap ? -ENOSPC : 0;
}

int nvl_vocab_tokenize(const struct nvl_vocab *v, const char *text, size_t len, unsigned flags,
                       int32_t *ids, size_t cap, size_t *n_ids)
{
    struct nvl_tok_ids out = {0};
    int rc = tokenize_into(v, text, len, flags, &out);

    if (!rc)
        rc = copy_capped(out.v, out.n, sizeof(*ids), ids, cap, n_ids);
    else
        *n_ids = 0;
    nvl__tok_ids_free(&out);
    return rc;
}

int nvl_vocab_tokenize_alloc(const struct nvl_vocab *v, const char *text, size_t len,
                             unsigned flags, int32_t **ids, size_t *n_ids)
{
    struct nvl_tok_ids out = {0};
    int rc = tokenize_into(v, text, len, flags, &out);

    *ids = NULL;
    *n_ids = 0;
    if (rc) {
        nvl__tok_ids_free(&out);
        return rc;
    }
    *ids = out.v;
    *n_ids = out.n;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Detokenize */

/* llama.cpp's stand-in for clean_up_tokenization_spaces, three passes over the text:
 * " ?" " !" " ." " ," lose the space; a lone " ' " becomes "'"; " 's" " 'm" " 're" " 've" lose
 * the space (" 't" " 'd" " 'll" keep it). */
static size_t clean_spaces(char *t, size_t n)
{
    size_t total, n1, n2;

    if (!n)
        return 0;
    total = 1;
    for (size_t i = 1; i < n; i++) {
        const char x = t[i];

        if (t[i - 1] == ' ' && (x == '?' || x == '!' || x == '.' || x == ','))
            total--;
        t[total++] = x;
    }

    n1 = total;
    total = 1;
    for (size_t i = 1; i < n1; i++) {
        const char x = t[i];

        if (x == '\'' && i + 1 < n1 && t[i - 1] == ' ' && t[i + 1] == ' ') {
            total--;
            t[++i] = '\0'; /* the space after is dropped and cannot start another match */
        }
        t[total++] = x;
    }

    n2 = total;
    total = 1;
    for (size_t i = 1; i < n2; i++) {
        const char x = t[i];

        if (t[i - 1] == ' ' && x == '\'' && i + 1 < n2) {
            const char x1 = t[i + 1];

            if (x1 == 's' || x1 == 'm') {
                total--;
            } else if (x1 != 't' && x1 != 'd' && i + 2 < n2) {
                const char x2 = t[i + 2];

                if ((x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e'))
                    total--;
            }
        }
        t[total++] = x;
    }
    return total;
}

static int detokenize_into(const struct nvl_vocab *v, const int32_t *ids, size_t n, unsigned flags,
                           struct nvl_tok_bytes *out)
{
    bool remove_space = v->add_space_prefix;

    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || (uint32_t)ids[i] >= v->n_tokens)
            return -EINVAL;
    if ((flags & NVL_DETOKENIZE_REMOVE_SPECIAL) && v->add_bos && n && ids[0] == v->bos) {
        remove_space = false;
        ids++;
        n--;
    }
    if ((flags & NVL_DETOKENIZE_REMOVE_SPECIAL) && v->add_eos && n && ids[n - 1] == v->eos)
        n--;

    for (size_t i = 0; i < n; i++) {
        size_t len;
        const char *p =
            nvl_vocab_token_piece(v, ids[i], flags & NVL_DETOKENIZE_UNPARSE_SPECIAL, &len);
        int rc;

        /* The space SPM put in front of the text comes off the first piece only. */
        if (remove_space && len && *p == ' ') {
            p++;
            len--;
        }
        remove_space = false;
        rc = nvl__tok_bytes_append(out, p, len);
        if (rc)
            return rc;
    }
    if (v->clean_spaces && !(flags & NVL_DETOKENIZE_NO_CLEANUP) && out->n)
        out->n = clean_spaces(out->v, out->n);
    return 0;
}

int nvl_vocab_detokenize(const struct nvl_vocab *v, const int32_t *ids, size_t n_ids,
                         unsigned flags, char *out, size_t cap, size_t *len)
{
    struct nvl_tok_bytes b = {0};
    int rc = detokenize_into(v, ids, n_ids, flags, &b);

    if (!rc)
        rc = copy_capped(b.v, b.n, 1, out, cap, len);
    else
        *len = 0;
    nvl__tok_bytes_free(&b);
    return rc;
}

int nvl_vocab_detokenize_alloc(const struct nvl_vocab *v, const int32_t *ids, size_t n_ids,
                               unsigned flags, char **out, size_t *len)
{
    struct nvl_tok_bytes b = {0};
    int rc = detokenize_into(v, ids, n_ids, flags, &b);

    *out = NULL;
    *len = 0;
    if (!rc && !b.v)
        rc = nvl__tok_bytes_append(&b, "", 0);
    if (rc) {
        nvl__tok_bytes_free(&b);
        return rc;
    }
    b.v[b.n] = '\0'; /* nvl__tok_bytes_append keeps room for it */
    *out = b.v;
    *len = b.n;
    return 0;
}
