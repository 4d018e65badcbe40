/* Private parts of the tokenizer: the vocab's layout and the entry points of the SPM and BPE
 * engines, the pre-tokenizer and the growable arrays they share. */
#ifndef NVL_MODEL_TOKENIZER_INTERNAL_H
#define NVL_MODEL_TOKENIZER_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/tokenizer.h"

#define NVL_TOK_LOG "tokenizer"

/* U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's visible space. */
#define NVL_SPM_SPACE     "\xe2\x96\x81"
#define NVL_SPM_SPACE_LEN 3

/* One token: its string lives at vocab->text + off (NUL-terminated), len bytes. */
struct nvl_vocab_entry {
    uint32_t off;
    uint32_t len;
    float score;
    uint32_t attr; /* enum nvl_token_attr bits */
};

/* One BPE merge "left right": left at merge_text + off, right at merge_text + off + left_len. */
struct nvl_vocab_merge {
    uint32_t off;
    uint32_t left_len;
    uint32_t right_len;
};

/* Flags a BPE pre-tokenizer name implies (llama.cpp sets them next to the regexes). */
struct nvl_pretok_flags {
    bool clean_spaces;  /* detokenize applies clean_up_tokenization_spaces */
    bool ignore_merges; /* a word that is itself a token is not merged (Llama 3) */
    int add_bos;        /* 1: the model adds BOS unless the file says otherwise; 0: no default */
};

struct nvl_pretok;

struct nvl_vocab {
    enum nvl_vocab_type type;
    char *pre_name; /* as in the file, "" when absent */

    uint32_t n_tokens;
    struct nvl_vocab_entry *tokens; /* [n_tokens] */
    char *text;                     /* all token strings, each NUL-terminated */
    uint32_t max_token_len;
    /* Open-addressing table text -> id: slot holds id + 1, 0 is empty; size is a power of 2. */
    uint32_t *tok_slots;
    uint32_t tok_mask;

    uint32_t n_merges;
    struct nvl_vocab_merge *merges; /* [n_merges], index = rank */
    char *merge_text;               /* left and right of every merge, back to back */
    /* (left, right) -> rank: slot holds rank + 1. */
    uint32_t *merge_slots;
    uint32_t merge_mask;

    struct nvl_pretok *pretok; /* BPE only */

    int32_t bos, eos, eot, eom, unk, sep, pad, nl;
    int32_t byte_tok[256]; /* nvl__vocab_byte_token() */
    bool add_bos, add_eos, add_space_prefix;
    bool ignore_merges, clean_spaces;

    /* Control, user-defined and unknown tokens, longest text first: the special-token partition
     * tries them in this order. */
    int32_t *special;
    uint32_t n_special;
    /* End-of-generation ids, sorted. */
    int32_t *eog;
    uint32_t n_eog;

    /* Piece of every token as detokenize renders it with special tokens shown. */
    uint32_t *piece_off; /* [n_tokens + 1] offsets into piece_text */
    char *piece_text;
};

/* ------------------------------------------------------------------------------------------ */
/* Growable arrays. They return 0 or -ENOMEM. */

struct nvl_tok_ids {
    int32_t *v;
    size_t n, cap;
};

struct nvl_tok_bytes {
    char *v;
    size_t n, cap;
};

/* (offset, length) pairs: v[2 * i], v[2 * i + 1]. */
struct nvl_tok_spans {
    size_t *v;
    size_t n, cap; /* in pairs */
};

int nvl__tok_ids_push(struct nvl_tok_ids *a, int32_t id);
int nvl__tok_bytes_append(struct nvl_tok_bytes *b, const void *data, size_t len);
int nvl__tok_spans_push(struct nvl_tok_spans *s, size_t off, size_t len);
void nvl__tok_ids_free(struct nvl_tok_ids *a);
void nvl__tok_bytes_free(struct nvl_tok_bytes *b);
void nvl__tok_spans_free(struct nvl_tok_spans *s);

/* Byte length of the UTF-8 sequence that starts with byte c, as llama.cpp's unicode_len_utf8
 * counts it: a stray continuation byte counts as 1. */
static inline size_t nvl__utf8_len(unsigned char c)
{
    static const uint8_t lookup[16] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 3, 4};
    return lookup[c >> 4];
}

/* Id of text[0..len) or NVL_TOKEN_NULL. */
int32_t nvl__vocab_lookup(const struct nvl_vocab *v, const char *text, size_t len);
/* Rank of the merge (left, right) or -1. */
int32_t nvl__vocab_merge_rank(const struct nvl_vocab *v, const char *left, size_t left_len,
                              const char *right, size_t right_len);
/* The token for a raw byte: SPM "<0xXX>" (or the byte itself), BPE the byte's byte-level
 * character. NVL_TOKEN_NULL when the vocab lacks it. */
int32_t nvl__vocab_byte_token(const struct nvl_vocab *v, uint8_t byte);

/* ------------------------------------------------------------------------------------------ */
/* Greedy pair merging (tokenizer_merge.c), the loop under both engines. */

/* A run of the text; symbols form a list in text order through prev/next (-1 at the ends). */
struct nvl_merge_symbol {
    int32_t prev, next;
    size_t off; /* first byte in the text */
    size_t n;   /* bytes; 0 once merged into its left neighbour */
};

struct nvl_merge_pair;

/* Scratch of one merge run, reusable across runs: zero-initialize, free with nvl__merge_fini. */
struct nvl_merge {
    struct nvl_merge_symbol *sym; /* [n_sym]; the list starts at 0 when n_sym > 0 */
    int32_t n_sym;
    size_t sym_cap;
    struct nvl_merge_pair *heap;
    size_t heap_n, heap_cap;
};

/* Whether the symbol at left (left_n bytes) may merge with the right_n bytes that follow it, and
 * at what priority (lower merges first). */
typedef bool (*nvl__merge_rank_fn)(void *ctx, const char *left, size_t left_n, size_t right_n,
                                   double *priority);

/* Splits text[0..len) into UTF-8 characters and merges pairs until rank accepts none. The result
 * is the list in m->sym. 0 or -ENOMEM. */
int nvl__merge_run(struct nvl_merge *m, const char *text, size_t len, nvl__merge_rank_fn rank,
                   void *ctx);
void nvl__merge_fini(struct nvl_merge *m);

/* ------------------------------------------------------------------------------------------ */
/* Engines. Both append to out and return 0 or -ENOMEM. */

/* SPM on text whose spaces are already "▁". */
int nvl__spm_tokenize(const struct nvl_vocab *v, const char *text, size_t len,
                      struct nvl_tok_ids *out);
/* Byte-level BPE on raw text (pre-tokenized here). */
int nvl__bpe_tokenize(const struct nvl_vocab *v, const char *text, size_t len,
                      struct nvl_tok_ids *out);

/* GPT-2 bytes_to_unicode: the code point byte b is written as in a byte-level vocab. */
uint32_t nvl__bpe_byte_to_cpt(uint8_t b);
/* Inverse: the byte, or -1 when cpt is not a byte-level character. */
int nvl__bpe_cpt_to_byte(uint32_t cpt);
/* Writes the UTF-8 of cpt (at most 4 bytes) and returns its length. */
size_t nvl__utf8_encode(uint32_t cpt, char *out);
/* Decodes one code point at s[*pos] (len bytes total) as llama.cpp's unicode_cpt_from_utf8,
 * advancing *pos. Returns the code point, or 0xFFFD after skipping one byte of invalid input. */
uint32_t nvl__utf8_decode(const char *s, size_t len, size_t *pos);

/* ------------------------------------------------------------------------------------------ */
/* Pre-tokenizer: a list of regexes applied one after another (PCRE2, UTF + Unicode properties).
 * Each regex splits every fragment the previous one produced into its matches and the text
 * between them, as llama.cpp's unicode_regex_split does. */

/* Looks up a tokenizer.ggml.pre name ("" or NULL = llama.cpp's "default") and compiles its
 * regexes. -EINVAL for an unknown name, -ENOMEM. */
int nvl__pretok_create(const char *name, struct nvl_pretok **out, struct nvl_pretok_flags *flags);
void nvl__pretok_destroy(struct nvl_pretok *p);
/* Splits valid UTF-8 text[0..len) into words, appended to out as (offset, length) pairs. */
int nvl__pretok_split(const struct nvl_pretok *p, const char *text, size_t len,
                      struct nvl_tok_spans *out);

#endif
