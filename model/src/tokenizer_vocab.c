/* The vocab: token table, string -> id and merge -> rank hash tables, special tokens, the
 * end-of-generation set, the token -> piece cache, and loading all of it from GGUF metadata.
 * The rules for defaults follow llama.cpp b4747's llama_vocab::impl::load(). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_driver/log.h"
#include "nvl_model/gguf.h"
#include "tokenizer_internal.h"

/* ------------------------------------------------------------------------------------------ */
/* Growable arrays */

static int grow(void **p, size_t *cap, size_t need, size_t elem)
{
    size_t c = *cap ? *cap : 16;
    void *q;

    if (need <= *cap)
        return 0;
    while (c < need) {
        if (c > SIZE_MAX / 2 / elem)
            return -ENOMEM;
        c *= 2;
    }
    q = realloc(*p, c * elem);
    if (!q)
        return -ENOMEM;
    *p = q;
    *cap = c;
    return 0;
}

int nvl__tok_ids_push(struct nvl_tok_ids *a, int32_t id)
{
    int rc = grow((void **)&a->v, &a->cap, a->n + 1, sizeof(*a->v));

    if (rc)
        return rc;
    a->v[a->n++] = id;
    return 0;
}

int nvl__tok_bytes_append(struct nvl_tok_bytes *b, const void *data, size_t len)
{
    int rc;

    if (len > SIZE_MAX - b->n - 1)
        return -ENOMEM;
    /* Room for a NUL after the bytes, so that callers may terminate the buffer. */
    rc = grow((void **)&b->v, &b->cap, b->n + len + 1, 1);
    if (rc)
        return rc;
    if (len)
        memcpy(b->v + b->n, data, len);
    b->n += len;
    return 0;
}

int nvl__tok_spans_push(struct nvl_tok_spans *s, size_t off, size_t len)
{
    int rc = grow((void **)&s->v, &s->cap, (s->n + 1) * 2, sizeof(*s->v));

    if (rc)
        return rc;
    s->v[2 * s->n] = off;
    s->v[2 * s->n + 1] = len;
    s->n++;
    return 0;
}

void nvl__tok_ids_free(struct nvl_tok_ids *a)
{
    free(a->v);
    a->v = NULL;
    a->n = a->cap = 0;
}

void nvl__tok_bytes_free(struct nvl_tok_bytes *b)
{
    free(b->v);
    b->v = NULL;
    b->n = b->cap = 0;
}

void nvl__tok_spans_free(struct nvl_tok_spans *s)
{
    free(s->v);
    s->v = NULL;
    s->n = s->cap = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* UTF-8 and GPT-2's byte-level alphabet */

size_t nvl__utf8_encode(uint32_t cpt, char *out)
{
    if (cpt < 0x80) {
        out[0] = (char)cpt;
        return 1;
    }
    if (cpt < 0x800) {
        out[0] = (char)(0xc0 | (cpt >> 6));
        out[1] = (char)(0x80 | (cpt & 0x3f));
        return 2;
    }
    if (cpt < 0x10000) {
        out[0] = (char)(0xe0 | (cpt >> 12));
        out[1] = (char)(0x80 | ((cpt >> 6) & 0x3f));
        out[2] = (char)(0x80 | (cpt & 0x3f));
        return 3;
    }
    out[0] = (char)(0xf0 | ((cpt >> 18) & 0x07));
    out[1] = (char)(0x80 | ((cpt >> 12) & 0x3f));
    out[2] = (char)(0x80 | ((cpt >> 6) & 0x3f));
    out[3] = (char)(0x80 | (cpt & 0x3f));
    return 4;
}

static bool is_cont(const char *s, size_t len, size_t i)
{
    return i < len && ((unsigned char)s[i] & 0xc0) == 0x80;
}

uint32_t nvl__utf8_decode(const char *s, size_t len, size_t *pos)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = *pos;
    uint32_t c = u[i];

    /* Like llama.cpp's decoder: lead byte and continuation bytes are checked, overlong forms are
     * not. Anything else costs one byte and yields U+FFFD. */
    if (!(c & 0x80)) {
        *pos = i + 1;
        return c;
    }
    if ((c & 0xe0) == 0xc0 && is_cont(s, len, i + 1)) {
        *pos = i + 2;
        return ((c & 0x1f) << 6) | (u[i + 1] & 0x3f);
    }
    if ((c & 0xf0) == 0xe0 && is_cont(s, len, i + 1) && is_cont(s, len, i + 2)) {
        *pos = i + 3;
        return ((c & 0x0f) << 12) | ((uint32_t)(u[i + 1] & 0x3f) << 6) | (u[i + 2] & 0x3f);
    }
    if ((c & 0xf8) == 0xf0 && is_cont(s, len, i + 1) && is_cont(s, len, i + 2) &&
        is_cont(s, len, i + 3)) {
        *pos = i + 4;
        return ((c & 0x07) << 18) | ((uint32_t)(u[i + 1] & 0x3f) << 12) |
               ((uint32_t)(u[i + 2] & 0x3f) << 6) | (u[i + 3] & 0x3f);
    }
    *pos = i + 1;
    return 0xfffd;
}

/* GPT-2's bytes_to_unicode(): the printable bytes ! .. ~, ¡ .. ¬ and ® .. ÿ stand for themselves;
 * the other 68 bytes, in increasing order, are mapped to U+0100, U+0101, ... */
static bool bpe_byte_is_printable(uint32_t b)
{
    return (b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff);
}

uint32_t nvl__bpe_byte_to_cpt(uint8_t b)
{
    if (bpe_byte_is_printable(b))
        return b;
    if (b <= 0x20)
        return 0x100 + b;
    if (b >= 0x7f && b <= 0xa0)
        return 0x100 + 0x21 + (b - 0x7f);
    return 0x100 + 0x21 + 0x22; /* 0xad, the soft hyphen */
}

int nvl__bpe_cpt_to_byte(uint32_t cpt)
{
    if (cpt < 0x100)
        return bpe_byte_is_printable(cpt) ? (int)cpt : -1;
    if (cpt <= 0x120)
        return (int)(cpt - 0x100);
    if (cpt <= 0x142)
        return (int)(0x7f + cpt - 0x121);
    if (cpt == 0x143)
        return 0xad;
    return -1;
}

/* ------------------------------------------------------------------------------------------ */
/* Hash tables */

static uint64_t hash_bytes(uint64_t h, const char *s, size_t len)
{
    /* FNV-1a: keys are short token strings, and the tables are built once per model. */
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

#define HASH_SEED 0xcbf29ce484222325ull

static uint32_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return (uint32_t)h;
}

static uint32_t hash_token(const char *s, size_t len)
{
    return hash_final(hash_bytes(HASH_SEED, s, len));
}

static uint32_t hash_pair(const char *l, size_t ll, const char *r, size_t rl)
{
    uint64_t h = hash_bytes(HASH_SEED, l, ll);

    /* A separator so that ("ab", "c") and ("a", "bc") differ. */
    h ^= 0x1ff;
    h *= 0x100000001b3ull;
    return hash_final(hash_bytes(h, r, rl));
}

/* Slots for n keys at a load factor of at most 1/2. */
static int table_alloc(uint32_t n, uint32_t **slots, uint32_t *mask)
{
    uint32_t size = 16;

    while (size < 2 * (uint64_t)n) {
        if (size >= (1u << 30))
            return -ENOMEM;
        size *= 2;
    }
    *slots = calloc(size, sizeof(**slots));
    if (!*slots)
        return -ENOMEM;
    *mask = size - 1;
    return 0;
}

int32_t nvl__vocab_lookup(const struct nvl_vocab *v, const char *text, size_t len)
{
    uint32_t i = hash_token(text, len) & v->tok_mask;

    for (;; i = (i + 1) & v->tok_mask) {
        uint32_t s = v->tok_slots[i];
        const struct nvl_vocab_entry *e;

        if (!s)
            return NVL_TOKEN_NULL;
        e = &v->tokens[s - 1];
        if (e->len == len && !memcmp(v->text + e->off, text, len))
            return (int32_t)(s - 1);
    }
}

int32_t nvl__vocab_merge_rank(const struct nvl_vocab *v, const char *left, size_t left_len,
                              const char *right, size_t right_len)
{
    uint32_t i;

    if (!v->n_merges)
        return -1;
    i = hash_pair(left, left_len, right, right_len) & v->merge_mask;
    for (;; i = (i + 1) & v->merge_mask) {
        uint32_t s = v->merge_slots[i];
        const struct nvl_vocab_merge *m;
        const char *t;

        if (!s)
            return -1;
        m = &v->merges[s - 1];
        t = v->merge_text + m->off;
        if (m->left_len == left_len && m->right_len == right_len && !memcmp(t, left, left_len) &&
            !memcmp(t + left_len, right, right_len))
            return (int32_t)(s - 1);
    }
}

int32_t nvl__vocab_byte_token(const struct nvl_vocab *v, uint8_t byte)
{
    return v->byte_tok[byte];
}

/* ------------------------------------------------------------------------------------------ */
/* Construction */

void nvl_vocab_desc_init(struct nvl_vocab_desc *desc)
{
    memset(desc, 0, sizeof(*desc));
    desc->bos = desc->eos = desc->eot = desc->eom = NVL_VOCAB_DEFAULT;
    desc->unk = desc->sep = desc->pad = NVL_VOCAB_DEFAULT;
    desc->add_bos = desc->add_eos = desc->add_space_prefix = NVL_VOCAB_DEFAULT;
}

static uint32_t attr_from_type(int32_t type)
{
    switch (type) {
    case NVL_TOKEN_TYPE_NORMAL:
        return NVL_TOKEN_ATTR_NORMAL;
    case NVL_TOKEN_TYPE_UNKNOWN:
        return NVL_TOKEN_ATTR_UNKNOWN;
    case NVL_TOKEN_TYPE_CONTROL:
        return NVL_TOKEN_ATTR_CONTROL;
    case NVL_TOKEN_TYPE_USER_DEFINED:
        return NVL_TOKEN_ATTR_USER_DEFINED;
    case NVL_TOKEN_TYPE_UNUSED:
        return NVL_TOKEN_ATTR_UNUSED;
    case NVL_TOKEN_TYPE_BYTE:
        return NVL_TOKEN_ATTR_BYTE;
    default:
        return NVL_TOKEN_ATTR_UNDEFINED;
    }
}

static size_t desc_len(const char *const *strs, const size_t *lens, uint32_t i)
{
    return lens ? lens[i] : strlen(strs[i]);
}

static int copy_tokens(struct nvl_vocab *v, const struct nvl_vocab_desc *d)
{
    uint64_t total = 0;
    uint32_t off = 0;
    int rc;

    for (uint32_t i = 0; i < d->n_tokens; i++) {
        if (!d->tokens[i]) {
            nvl_log_error(NVL_TOK_LOG, "token %u has no string", i);
            return -EINVAL;
        }
        total += desc_len(d->tokens, d->token_lens, i) + 1;
    }
    if (total > UINT32_MAX) {
        nvl_log_error(NVL_TOK_LOG, "token strings total %llu bytes, more than 4 GiB",
                      (unsigned long long)total);
        return -EINVAL;
    }
    v->tokens = calloc(d->n_tokens, sizeof(*v->tokens));
    v->text = malloc(total);
    if (!v->tokens || !v->text)
        return -ENOMEM;
    rc = table_alloc(d->n_tokens, &v->tok_slots, &v->tok_mask);
    if (rc)
        return rc;

    for (uint32_t i = 0; i < d->n_tokens; i++) {
        size_t len = desc_len(d->tokens, d->token_lens, i);
        struct nvl_vocab_entry *e = &v->tokens[i];
        uint32_t h;

        memcpy(v->text + off, d->tokens[i], len);
        v->text[off + len] = '\0';
        e->off = off;
        e->len = (uint32_t)len;
        e->score = d->scores ? d->scores[i] : 0.0f;
        e->attr = d->token_types ? attr_from_type(d->token_types[i]) : NVL_TOKEN_ATTR_NORMAL;
        off += (uint32_t)len + 1;
        if (len > v->max_token_len)
            v->max_token_len = (uint32_t)len;
        /* An empty token can never be produced from text; it stays out of the lookup table. */
        if (!len)
            continue;
        for (h = hash_token(v->text + e->off, len) & v->tok_mask; v->tok_slots[h];
             h = (h + 1) & v->tok_mask) {
            const struct nvl_vocab_entry *o = &v->tokens[v->tok_slots[h] - 1];

            if (o->len == len && !memcmp(v->text + o->off, v->text + e->off, len)) {
                nvl_log_error(NVL_TOK_LOG, "duplicate token '%.*s': ids %u and %u", (int)len,
                              v->text + e->off, v->tok_slots[h] - 1, i);
                return -EINVAL;
            }
        }
        v->tok_slots[h] = i + 1;
    }
    return 0;
}

static int copy_merges(struct nvl_vocab *v, const struct nvl_vocab_desc *d)
{
    uint64_t total = 0;
    uint32_t off = 0;
    int rc;

    if (!d->n_merges)
        return 0;
    for (uint32_t i = 0; i < d->n_merges; i++) {
        if (!d->merges[i]) {
            nvl_log_error(NVL_TOK_LOG, "merge %u has no string", i);
            return -EINVAL;
        }
        total += desc_len(d->merges, d->merge_lens, i);
    }
    if (total > UINT32_MAX) {
        nvl_log_error(NVL_TOK_LOG, "merge strings total more than 4 GiB");
        return -EINVAL;
    }
    v->merges = calloc(d->n_merges, sizeof(*v->merges));
    v->merge_text = malloc(total ? total : 1);
    if (!v->merges || !v->merge_text)
        return -ENOMEM;
    rc = table_alloc(d->n_merges, &v->merge_slots, &v->merge_mask);
    if (rc)
        return rc;
    v->n_merges = d->n_merges;

    for (uint32_t i = 0; i < d->n_merges; i++) {
        const char *s = d->merges[i];
        size_t len = desc_len(d->merges, d->merge_lens, i);
        struct nvl_vocab_merge *m = &v->merges[i];
        const char *sp = len > 1 ? memchr(s + 1, ' ', len - 1) : NULL;
        const char *t;
        uint32_t h;

        /* llama.cpp splits at the first space after the first byte, so that a merge whose left
         * side is a space itself still parses. A merge with no space cannot match anything. */
        if (!sp) {
            nvl_log_warn(NVL_TOK_LOG, "merge %u '%.*s' has no space; ignored", i, (int)len, s);
            m->off = off;
            continue;
        }
        m->off = off;
        m->left_len = (uint32_t)(sp - s);
        m->right_len = (uint32_t)(len - m->left_len - 1);
        memcpy(v->merge_text + off, s, m->left_len);
        memcpy(v->merge_text + off + m->left_len, sp + 1, m->right_len);
        off += m->left_len + m->right_len;
        t = v->merge_text + m->off;

        for (h = hash_pair(t, m->left_len, t + m->left_len, m->right_len) & v->merge_mask;
             v->merge_slots[h]; h = (h + 1) & v->merge_mask) {
            const struct nvl_vocab_merge *o = &v->merges[v->merge_slots[h] - 1];
            const char *ot = v->merge_text + o->off;

            if (o->left_len == m->left_len && o->right_len == m->right_len &&
                !memcmp(ot, t, m->left_len + m->right_len))
                break;
        }
        /* A repeated pair keeps its first (lowest) rank, as llama.cpp's map emplace does. */
        if (!v->merge_slots[h])
            v->merge_slots[h] = i + 1;
    }
    return 0;
}

/* Resolves one special id: the file's value, else the model type's default. */
static int resolve_id(const struct nvl_vocab *v, const char *what, int32_t given, int32_t dflt,
                      int32_t *out)
{
    if (given == NVL_VOCAB_DEFAULT) {
        *out = dflt >= 0 && (uint32_t)dflt < v->n_tokens ? dflt : NVL_TOKEN_NULL;
        return 0;
    }
    if (given == NVL_TOKEN_NULL || (given >= 0 && (uint32_t)given < v->n_tokens)) {
        *out = given;
        return 0;
    }
    nvl_log_error(NVL_TOK_LOG, "%s token id %d is outside the vocab (%u tokens)", what, given,
                  v->n_tokens);
    return -EINVAL;
}

/* Tokens that end a turn, recognized by their text as llama.cpp b4747 does (converters rarely
 * store an EOT id). The order is the preference when one of them must be chosen as EOT. */
static const char *const eot_texts[] = {
    "<|eot_id|>",    "<|im_end|>", "<|end|>", "<end_of_turn>",
    "<|endoftext|>", "<EOT>",      "_<EOT>",  "<｜end▁of▁sentence｜>",
};
static const char *const eog_texts[] = {
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "<|end_of_text|>",
    /* Fill-in-the-middle padding, repository and file separators: a code model that emits one
     * has finished the infill (llama.cpp adds its FIM pad/rep/sep tokens to the set). */
    "<|fim_pad|>",
    "<fim-pad>",
    "<PAD>",
    "<|fim_repo|>",
    "<|repo_name|>",
    "<fim-repo>",
    "<REPO>",
    "<|file_sep|>",
};

static int32_t find_text(const struct nvl_vocab *v, const char *s)
{
    return nvl__vocab_lookup(v, s, strlen(s));
}

static void mark_control(struct nvl_vocab *v, int32_t id)
{
    struct nvl_vocab_entry *e = &v->tokens[id];

    /* llama.cpp forces this too: a turn-ending token that is not a control token would be
     * printed and would not be parsed as special. */
    if (!(e->attr & NVL_TOKEN_ATTR_CONTROL)) {
        nvl_log_debug(NVL_TOK_LOG, "token %d '%s' ends generation; treated as control", id,
                      v->text + e->off);
        e->attr |= NVL_TOKEN_ATTR_CONTROL;
    }
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;

    return (x > y) - (x < y);
}

static int build_eog(struct nvl_vocab *v)
{
    int32_t ids[3 + sizeof(eog_texts) / sizeof(eog_texts[0])];
    uint32_t n = 0;

    if (v->eot == NVL_TOKEN_NULL) {
        for (size_t i = 0; i < sizeof(eot_texts) / sizeof(eot_texts[0]); i++) {
            int32_t id = find_text(v, eot_texts[i]);

            if (id != NVL_TOKEN_NULL) {
                v->eot = id;
                mark_control(v, id);
                break;
            }
        }
    }
    if (v->eom == NVL_TOKEN_NULL) {
        v->eom = find_text(v, "<|eom_id|>");
        if (v->eom != NVL_TOKEN_NULL)
            mark_control(v, v->eom);
    }

    for (size_t i = 0; i < sizeof(eog_texts) / sizeof(eog_texts[0]); i++) {
        int32_t id = find_text(v, eog_texts[i]);

        if (id != NVL_TOKEN_NULL) {
            ids[n++] = id;
            mark_control(v, id);
        }
    }
    if (v->eos != NVL_TOKEN_NULL)
        ids[n++] = v->eos;
    if (v->eot != NVL_TOKEN_NULL)
        ids[n++] = v->eot;
    if (v->eom != NVL_TOKEN_NULL)
        ids[n++] = v->eom;
    qsort(ids, n, sizeof(ids[0]), cmp_i32);

    v->eog = malloc(sizeof(*v->eog) * (n ? n : 1));
    if (!v->eog)
        return -ENOMEM;
    for (uint32_t i = 0; i < n; i++)
        if (!v->n_eog || v->eog[v->n_eog - 1] != ids[i])
            v->eog[v->n_eog++] = ids[i];
    return 0;
}

struct special_key {
    uint32_t len;
    int32_t id;
};

static int cmp_special(const void *a, const void *b)
{
    const struct special_key *x = a, *y = b;

    /* Longest first; ties by id so that the order does not depend on the sort. */
    if (x->len != y->len)
        return x->len > y->len ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

static int build_special(struct nvl_vocab *v)
{
    const uint32_t mask =
        NVL_TOKEN_ATTR_CONTROL | NVL_TOKEN_ATTR_USER_DEFINED | NVL_TOKEN_ATTR_UNKNOWN;
    struct special_key *keys;
    uint32_t n = 0;

    for (uint32_t i = 0; i < v->n_tokens; i++)
        n += (v->tokens[i].attr & mask) && v->tokens[i].len;
    keys = malloc(sizeof(*keys) * (n ? n : 1));
    v->special = malloc(sizeof(*v->special) * (n ? n : 1));
    if (!keys || !v->special) {
        free(keys);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < v->n_tokens; i++)
        if ((v->tokens[i].attr & mask) && v->tokens[i].len)
            keys[v->n_special++] = (struct special_key){v->tokens[i].len, (int32_t)i};
    qsort(keys, v->n_special, sizeof(*keys), cmp_special);
    for (uint32_t i = 0; i < v->n_special; i++)
        v->special[i] = keys[i].id;
    free(keys);
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* The byte of a "<0xXX>" token, or -1. */
static int byte_token_value(const char *s, size_t len)
{
    int hi, lo;

    if (len != 6 || memcmp(s, "<0x", 3) || s[5] != '>')
        return -1;
    hi = hex_digit(s[3]);
    lo = hex_digit(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

/* Appends the piece of token id (special tokens shown) to b. */
static int render_piece(const struct nvl_vocab *v, int32_t id, struct nvl_tok_bytes *b)
{
    const struct nvl_vocab_entry *e = &v->tokens[id];
    const char *s = v->text + e->off;
    int byte;

    if (e->attr & (NVL_TOKEN_ATTR_UNKNOWN | NVL_TOKEN_ATTR_CONTROL | NVL_TOKEN_ATTR_USER_DEFINED))
        return nvl__tok_bytes_append(b, s, e->len);
    if (e->attr & NVL_TOKEN_ATTR_BYTE) {
        byte = byte_token_value(s, e->len);
        if (byte < 0)
            return nvl__tok_bytes_append(b, s, e->len);
        return nvl__tok_bytes_append(b, &(char){(char)byte}, 1);
    }
    if (!(e->attr & NVL_TOKEN_ATTR_NORMAL))
        return 0; /* unused and undefined tokens render as nothing, as in llama.cpp */

    if (v->type == NVL_VOCAB_TYPE_SPM) {
        for (size_t i = 0; i < e->len;) {
            int rc;

            if (e->len - i >= NVL_SPM_SPACE_LEN &&
                !memcmp(s + i, NVL_SPM_SPACE, NVL_SPM_SPACE_LEN)) {
                rc = nvl__tok_bytes_append(b, " ", 1);
                i += NVL_SPM_SPACE_LEN;
            } else {
                rc = nvl__tok_bytes_append(b, s + i, 1);
                i++;
            }
            if (rc)
                return rc;
        }
        return 0;
    }

    for (size_t i = 0; i < e->len;) {
        size_t start = i;
        uint32_t cpt = nvl__utf8_decode(s, e->len, &i);
        int rc;

        byte = nvl__bpe_cpt_to_byte(cpt);
        /* A character outside the byte-level alphabet (a malformed vocab) is passed through. */
        if (byte >= 0)
            rc = nvl__tok_bytes_append(b, &(char){(char)byte}, 1);
        else
            rc = nvl__tok_bytes_append(b, s + start, i - start);
        if (rc)
            return rc;
    }
    return 0;
}

static int build_pieces(struct nvl_vocab *v)
{
    struct nvl_tok_bytes b = {0};
    int rc;

    v->piece_off = malloc(sizeof(*v->piece_off) * ((size_t)v->n_tokens + 1));
    if (!v->piece_off)
        return -ENOMEM;
    for (uint32_t i = 0; i < v->n_tokens; i++) {
        v->piece_off[i] = (uint32_t)b.n;
        rc = render_piece(v, (int32_t)i, &b);
        if (!rc)
            rc = nvl__tok_bytes_append(&b, "", 1); /* NUL after each piece */
        if (rc) {
            nvl__tok_bytes_free(&b);
            return rc;
        }
        if (b.n > UINT32_MAX) {
            nvl__tok_bytes_free(&b);
            return -EINVAL;
        }
    }
    v->piece_off[v->n_tokens] = (uint32_t)b.n;
    v->piece_text = b.v;
    return 0;
}

static void build_byte_tokens(struct nvl_vocab *v)
{
    for (int c = 0; c < 256; c++) {
        char buf[8];
        int32_t id;

        if (v->type == NVL_VOCAB_TYPE_SPM) {
            snprintf(buf, sizeof(buf), "<0x%02X>", c);
            id = nvl__vocab_lookup(v, buf, 6);
            if (id == NVL_TOKEN_NULL)
                id = nvl__vocab_lookup(v, &(char){(char)c}, 1);
        } else {
            id = nvl__vocab_lookup(v, buf, nvl__utf8_encode(nvl__bpe_byte_to_cpt((uint8_t)c), buf));
        }
        v->byte_tok[c] = id;
    }
}

static int find_newline(struct nvl_vocab *v)
{
    int32_t ids[8];
    size_t n = 0;
    int rc;

    if (v->type == NVL_VOCAB_TYPE_SPM) {
        v->nl = v->byte_tok['\n'];
    } else {
        rc = nvl_vocab_tokenize(v, "\n", 1, 0, ids, 8, &n);
        if (rc && rc != -ENOSPC)
            return rc;
        v->nl = n ? ids[0] : NVL_TOKEN_NULL;
    }
    if (v->nl == NVL_TOKEN_NULL)
        v->nl = v->pad;
    return 0;
}

int nvl_vocab_create(const struct nvl_vocab_desc *d, struct nvl_vocab **out)
{
    struct nvl_pretok_flags pf = {0};
    struct nvl_vocab *v;
    bool spm;
    int rc;

    *out = NULL;
    if (!d->model || !d->tokens) {
        nvl_log_error(NVL_TOK_LOG, "vocab description without model or tokens");
        return -EINVAL;
    }
    if (!strcmp(d->model, "llama")) {
        spm = true;
    } else if (!strcmp(d->model, "gpt2")) {
        spm = false;
    } else {
        nvl_log_error(NVL_TOK_LOG,
                      "tokenizer model '%s' is not supported (only 'llama' SPM and 'gpt2' BPE)",
                      d->model);
        return -EINVAL;
    }
    if (!d->n_tokens || d->n_tokens > INT32_MAX) {
        nvl_log_error(NVL_TOK_LOG, "vocab has %u tokens", d->n_tokens);
        return -EINVAL;
    }
    if (!spm && (!d->n_merges || !d->merges)) {
        nvl_log_error(NVL_TOK_LOG, "a BPE vocab needs merges");
        return -EINVAL;
    }

    v = calloc(1, sizeof(*v));
    if (!v)
        return -ENOMEM;
    v->type = spm ? NVL_VOCAB_TYPE_SPM : NVL_VOCAB_TYPE_BPE;
    v->n_tokens = d->n_tokens;
    v->pre_name = strdup(d->pre ? d->pre : "");
    if (!v->pre_name) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    rc = copy_tokens(v, d);
    if (rc)
        goto err_destroy;

    if (spm) {
        v->add_space_prefix = true;
        v->add_bos = true;
    } else {
        rc = copy_merges(v, d);
        if (rc)
            goto err_destroy;
        rc = nvl__pretok_create(d->pre, &v->pretok, &pf);
        if (rc)
            goto err_destroy;
        v->add_bos = pf.add_bos == 1;
        v->clean_spaces = pf.clean_spaces;
        v->ignore_merges = pf.ignore_merges;
    }
    if (d->add_bos != NVL_VOCAB_DEFAULT)
        v->add_bos = d->add_bos != 0;
    if (d->add_eos != NVL_VOCAB_DEFAULT)
        v->add_eos = d->add_eos != 0;
    if (d->add_space_prefix != NVL_VOCAB_DEFAULT)
        v->add_space_prefix = d->add_space_prefix != 0;

    if ((rc = resolve_id(v, "BOS", d->bos, spm ? 1 : 11, &v->bos)) ||
        (rc = resolve_id(v, "EOS", d->eos, spm ? 2 : 11, &v->eos)) ||
        (rc = resolve_id(v, "EOT", d->eot, NVL_TOKEN_NULL, &v->eot)) ||
        (rc = resolve_id(v, "EOM", d->eom, NVL_TOKEN_NULL, &v->eom)) ||
        (rc = resolve_id(v, "UNK", d->unk, spm ? 0 : NVL_TOKEN_NULL, &v->unk)) ||
        (rc = resolve_id(v, "SEP", d->sep, NVL_TOKEN_NULL, &v->sep)) ||
        (rc = resolve_id(v, "PAD", d->pad, NVL_TOKEN_NULL, &v->pad)))
        goto err_destroy;
    if (v->add_bos && v->bos == NVL_TOKEN_NULL) {
        nvl_log_error(NVL_TOK_LOG, "add_bos_token is set but the vocab has no BOS token");
        rc = -EINVAL;
        goto err_destroy;
    }
    if (v->add_eos && v->eos == NVL_TOKEN_NULL) {
        nvl_log_error(NVL_TOK_LOG, "add_eos_token is set but the vocab has no EOS token");
        rc = -EINVAL;
        goto err_destroy;
    }

    build_byte_tokens(v);
    if ((rc = build_eog(v)) || (rc = build_special(v)) || (rc = build_pieces(v)) ||
        (rc = find_newline(v)))
        goto err_destroy;
    *out = v;
    return 0;

err_destroy:
    nvl_vocab_destroy(v);
    return rc;
}

void nvl_vocab_destroy(struct nvl_vocab *v)
{
    if (!v)
        return;
    nvl__pretok_destroy(v->pretok);
    free(v->piece_text);
    free(v->piece_off);
    free(v->eog);
    free(v->special);
    free(v->merge_slots);
    free(v->merge_text);
    free(v->merges);
    free(v->tok_slots);
    free(v->text);
    free(v->tokens);
    free(v->pre_name);
    free(v);
}

/* ------------------------------------------------------------------------------------------ */
/* GGUF */

#define KV_MODEL      "tokenizer.ggml.model"
#define KV_PRE        "tokenizer.ggml.pre"
#define KV_TOKENS     "tokenizer.ggml.tokens"
#define KV_SCORES     "tokenizer.ggml.scores"
#define KV_TOKEN_TYPE "tokenizer.ggml.token_type"
#define KV_MERGES     "tokenizer.ggml.merges"
#define KV_ADD_BOS    "tokenizer.ggml.add_bos_token"
#define KV_ADD_EOS    "tokenizer.ggml.add_eos_token"
#define KV_ADD_PREFIX "tokenizer.ggml.add_space_prefix"

/* A string array's elements as pointer/length arrays (pointing into the file). */
static int gguf_strings(const struct nvl_gguf *g, const char *key, uint64_t max, uint32_t *n,
                        const char ***strs, size_t **lens)
{
    int64_t kv = nvl_gguf_find_key(g, key);
    struct nvl_gguf_value val;

    *n = 0;
    *strs = NULL;
    *lens = NULL;
    if (kv < 0)
        return -ENOENT;
    if (nvl_gguf_kv_value(g, kv, &val) || val.type != NVL_GGUF_TYPE_ARRAY ||
        val.arr.type != NVL_GGUF_TYPE_STRING) {
        nvl_log_error(NVL_TOK_LOG, "%s is not an array of strings", key);
        return -EINVAL;
    }
    if (val.arr.count > max) {
        nvl_log_error(NVL_TOK_LOG, "%s has %llu entries, more than %llu", key,
                      (unsigned long long)val.arr.count, (unsigned long long)max);
        return -EINVAL;
    }
    *strs = malloc(sizeof(**strs) * (val.arr.count ? val.arr.count : 1));
    *lens = malloc(sizeof(**lens) * (val.arr.count ? val.arr.count : 1));
    if (!*strs || !*lens) {
        free(*strs);
        free(*lens);
        *strs = NULL;
        *lens = NULL;
        return -ENOMEM;
    }
    for (uint64_t i = 0; i < val.arr.count; i++) {
        const char *s;
        uint64_t len;

        if (nvl_gguf_arr_str(g, kv, i, &s, &len)) {
            nvl_log_error(NVL_TOK_LOG, "%s[%llu] cannot be read", key, (unsigned long long)i);
            free(*strs);
            free(*lens);
            *strs = NULL;
            *lens = NULL;
            return -EINVAL;
        }
        (*strs)[i] = s;
        (*lens)[i] = (size_t)len;
    }
    *n = (uint32_t)val.arr.count;
    return 0;
}

/* A numeric per-token array with at least n_tokens elements of the given type. */
static int gguf_token_array(const struct nvl_gguf *g, const char *key, uint32_t n_tokens,
                            enum nvl_gguf_type want, const void **data)
{
    enum nvl_gguf_type type;
    uint64_t count;
    int rc = nvl_gguf_get_arr(g, key, &type, &count, data);

    if (rc == -ENOENT) {
        *data = NULL;
        return 0;
    }
    if (rc || type != want) {
        nvl_log_error(NVL_TOK_LOG, "%s is not an array of %s", key, nvl_gguf_type_name(want));
        return -EINVAL;
    }
    if (count < n_tokens) {
        nvl_log_error(NVL_TOK_LOG, "%s has %llu entries for %u tokens", key,
                      (unsigned long long)count, n_tokens);
        return -EINVAL;
    }
    return 0;
}

/* A special id key: absent, or out of range (as 0xffffffff for "none" in llama2.c conversions),
 * leaves the model's default, as in llama.cpp. */
static int gguf_special_id(const struct nvl_gguf *g, const char *key, uint32_t n_tokens,
                           int32_t *out)
{
    int64_t id;
    int rc = nvl_gguf_get_int(g, key, &id);

    *out = NVL_VOCAB_DEFAULT;
    if (rc == -ENOENT)
        return 0;
    if (rc == -ERANGE) {
        nvl_log_warn(NVL_TOK_LOG, "%s is out of range; using the default", key);
        return 0;
    }
    if (rc) {
        nvl_log_error(NVL_TOK_LOG, "%s is not an integer", key);
        return -EINVAL;
    }
    if (id < 0 || id >= n_tokens) {
        nvl_log_info(NVL_TOK_LOG, "%s = %lld is outside the vocab; using the default", key,
                     (long long)id);
        return 0;
    }
    *out = (int32_t)id;
    return 0;
}

static int gguf_flag(const struct nvl_gguf *g, const char *key, int *out)
{
    bool b;
    int rc = nvl_gguf_get_bool(g, key, &b);

    *out = NVL_VOCAB_DEFAULT;
    if (rc == -ENOENT)
        return 0;
    if (rc) {
        nvl_log_error(NVL_TOK_LOG, "%s is not a bool", key);
        return -EINVAL;
    }
    *out = b;
    return 0;
}

int nvl_vocab_load_gguf(const struct nvl_gguf *g, struct nvl_vocab **out)
{
    static const struct {
        const char *key;
        size_t field;
    } ids[] = {
        {"tokenizer.ggml.bos_token_id", offsetof(struct nvl_vocab_desc, bos)},
        {"tokenizer.ggml.eos_token_id", offsetof(struct nvl_vocab_desc, eos)},
        {"tokenizer.ggml.eot_token_id", offsetof(struct nvl_vocab_desc, eot)},
        {"tokenizer.ggml.eom_token_id", offsetof(struct nvl_vocab_desc, eom)},
        {"tokenizer.ggml.unknown_token_id", offsetof(struct nvl_vocab_desc, unk)},
        {"tokenizer.ggml.seperator_token_id", offsetof(struct nvl_vocab_desc, sep)},
        {"tokenizer.ggml.padding_token_id", offsetof(struct nvl_vocab_desc, pad)},
    };
    struct nvl_vocab_desc d;
    const char **tokens = NULL, **merges = NULL;
    size_t *token_lens = NULL, *merge_lens = NULL;
    const void *scores, *types;
    int rc;

    *out = NULL;
    nvl_vocab_desc_init(&d);
    rc = nvl_gguf_get_str(g, KV_MODEL, &d.model, NULL);
    if (rc == -ENOENT) {
        nvl_log_error(NVL_TOK_LOG, "the file has no tokenizer (%s is missing)", KV_MODEL);
        return -ENOENT;
    }
    if (rc) {
        nvl_log_error(NVL_TOK_LOG, "%s is not a string", KV_MODEL);
        return -EINVAL;
    }
    rc = nvl_gguf_get_str(g, KV_PRE, &d.pre, NULL);
    if (rc && rc != -ENOENT) {
        nvl_log_error(NVL_TOK_LOG, "%s is not a string", KV_PRE);
        return -EINVAL;
    }

    rc = gguf_strings(g, KV_TOKENS, INT32_MAX, &d.n_tokens, &tokens, &token_lens);
    if (rc == -ENOENT) {
        nvl_log_error(NVL_TOK_LOG, "the file has no %s", KV_TOKENS);
        return -ENOENT;
    }
    if (rc)
        return rc;
    d.tokens = tokens;
    d.token_lens = token_lens;

    rc = gguf_token_array(g, KV_SCORES, d.n_tokens, NVL_GGUF_TYPE_FLOAT32, &scores);
    if (rc)
        goto err_free_tokens;
    d.scores = scores;
    rc = gguf_token_array(g, KV_TOKEN_TYPE, d.n_tokens, NVL_GGUF_TYPE_INT32, &types);
    if (rc)
        goto err_free_tokens;
    d.token_types = types;

    rc = gguf_strings(g, KV_MERGES, INT32_MAX, &d.n_merges, &merges, &merge_lens);
    if (rc && rc != -ENOENT)
        goto err_free_tokens;
    if (rc == -ENOENT && !strcmp(d.model, "gpt2")) {
        nvl_log_error(NVL_TOK_LOG, "BPE vocab without %s", KV_MERGES);
        rc = -EINVAL;
        goto err_free_tokens;
    }
    d.merges = merges;
    d.merge_lens = merge_lens;

    for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
        rc = gguf_special_id(g, ids[i].key, d.n_tokens, (int32_t *)((char *)&d + ids[i].field));
        if (rc)
            goto err_free_merges;
    }
    if ((rc = gguf_flag(g, KV_ADD_BOS, &d.add_bos)) ||
        (rc = gguf_flag(g, KV_ADD_EOS, &d.add_eos)) ||
        (rc = gguf_flag(g, KV_ADD_PREFIX, &d.add_space_prefix)))
        goto err_free_merges;

    rc = nvl_vocab_create(&d, out);

err_free_merges:
    free(merges);
    free(merge_lens);
err_free_tokens:
    free(tokens);
    free(token_lens);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Queries */

enum nvl_vocab_type nvl_vocab_type(const struct nvl_vocab *v)
{
    return v->type;
}

const char *nvl_vocab_type_name(const struct nvl_vocab *v)
{
    return v->type == NVL_VOCAB_TYPE_SPM ? "SPM" : "BPE";
}

const char *nvl_vocab_pre_name(const struct nvl_vocab *v)
{
    return v->pre_name;
}

uint32_t nvl_vocab_n_tokens(const struct nvl_vocab *v)
{
    return v->n_tokens;
}

uint32_t nvl_vocab_n_merges(const struct nvl_vocab *v)
{
    return v->n_merges;
}

int32_t nvl_vocab_bos(const struct nvl_vocab *v)
{
    return v->bos;
}

int32_t nvl_vocab_eos(const struct nvl_vocab *v)
{
    return v->eos;
}

int32_t nvl_vocab_eot(const struct nvl_vocab *v)
{
    return v->eot;
}

int32_t nvl_vocab_eom(const struct nvl_vocab *v)
{
    return v->eom;
}

int32_t nvl_vocab_unk(const struct nvl_vocab *v)
{
    return v->unk;
}

int32_t nvl_vocab_sep(const struct nvl_vocab *v)
{
    return v->sep;
}

int32_t nvl_vocab_pad(const struct nvl_vocab *v)
{
    return v->pad;
}

int32_t nvl_vocab_nl(const struct nvl_vocab *v)
{
    return v->nl;
}

bool nvl_vocab_add_bos(const struct nvl_vocab *v)
{
    return v->add_bos;
}

bool nvl_vocab_add_eos(const struct nvl_vocab *v)
{
    return v->add_eos;
}

bool nvl_vocab_is_eog(const struct nvl_vocab *v, int32_t id)
{
    if (id == NVL_TOKEN_NULL)
        return false;
    return bsearch(&id, v->eog, v->n_eog, sizeof(*v->eog), cmp_i32) != NULL;
}

bool nvl_vocab_is_control(const struct nvl_vocab *v, int32_t id)
{
    return (nvl_vocab_token_attr(v, id) & NVL_TOKEN_ATTR_CONTROL) != 0;
}

const char *nvl_vocab_token_text(const struct nvl_vocab *v, int32_t id, size_t *len)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return NULL;
    if (len)
        *len = v->tokens[id].len;
    return v->text + v->tokens[id].off;
}

float nvl_vocab_token_score(const struct nvl_vocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0.0f;
    return v->tokens[id].score;
}

uint32_t nvl_vocab_token_attr(const struct nvl_vocab *v, int32_t id)
{
    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return 0;
    return v->tokens[id].attr;
}

int32_t nvl_vocab_find_token(const struct nvl_vocab *v, const char *text, size_t len)
{
    return nvl__vocab_lookup(v, text, len);
}

const char *nvl_vocab_token_piece(const struct nvl_vocab *v, int32_t id, bool special, size_t *len)
{
    size_t n;

    if (id < 0 || (uint32_t)id >= v->n_tokens)
        return NULL;
    if (!special && (v->tokens[id].attr & (NVL_TOKEN_ATTR_UNKNOWN | NVL_TOKEN_ATTR_CONTROL))) {
        if (len)
            *len = 0;
        return "";
    }
    /* Each piece is followed by its NUL, which the offsets of the next piece include. */
    n = v->piece_off[id + 1] - v->piece_off[id] - 1;
    if (len)
        *len = n;
    return v->piece_text + v->piece_off[id];
}
