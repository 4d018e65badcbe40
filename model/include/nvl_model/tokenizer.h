/* Tokenizers: SentencePiece-style BPE ("llama" vocabs, with byte fallback) and byte-level BPE
 * ("gpt2" vocabs, with a regex pre-tokenizer chosen by tokenizer.ggml.pre).
 *
 * The behaviour follows llama.cpp b4747 (src/llama-vocab.cpp), which is what the GGUF files in
 * the wild were converted for and what the test vectors in ../shared/models/llama.cpp-vocab/ were
 * produced with:
 *   - special-token partition first: the text is split on the strings of control, user-defined
 *     and unknown tokens (control and unknown only with NVL_TOKENIZE_PARSE_SPECIAL; user-defined
 *     always), longest token first;
 *   - SPM: every raw fragment that follows a special token (or starts the text) gets a leading
 *     space when add_space_prefix is set, spaces become U+2581 "▁", then the highest-score
 *     adjacent pair is merged until none is a token; leftovers become <0xXX> byte tokens;
 *   - BPE: the pre-tokenizer's regexes split the text into words, each word is byte-level encoded
 *     (GPT-2's bytes_to_unicode) and its lowest-rank merge applied until none is left.
 *
 * Token ids are int32_t; NVL_TOKEN_NULL marks "no such token". A vocab is immutable after it is
 * created, so any number of threads may tokenize with it at once. */
#ifndef NVL_MODEL_TOKENIZER_H
#define NVL_MODEL_TOKENIZER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_gguf;
struct nvl_vocab;

#define NVL_TOKEN_NULL (-1)

enum nvl_vocab_type {
    NVL_VOCAB_TYPE_SPM = 1, /* tokenizer.ggml.model = "llama" */
    NVL_VOCAB_TYPE_BPE = 2, /* tokenizer.ggml.model = "gpt2" */
};

/* tokenizer.ggml.token_type values, as stored in GGUF. */
enum nvl_token_type {
    NVL_TOKEN_TYPE_UNDEFINED = 0,
    NVL_TOKEN_TYPE_NORMAL = 1,
    NVL_TOKEN_TYPE_UNKNOWN = 2,
    NVL_TOKEN_TYPE_CONTROL = 3,
    NVL_TOKEN_TYPE_USER_DEFINED = 4,
    NVL_TOKEN_TYPE_UNUSED = 5,
    NVL_TOKEN_TYPE_BYTE = 6,
};

/* Token attributes (a bit set; llama.cpp's llama_token_attr). */
enum nvl_token_attr {
    NVL_TOKEN_ATTR_UNDEFINED = 0,
    NVL_TOKEN_ATTR_UNKNOWN = 1u << 0,
    NVL_TOKEN_ATTR_UNUSED = 1u << 1,
    NVL_TOKEN_ATTR_NORMAL = 1u << 2,
    NVL_TOKEN_ATTR_CONTROL = 1u << 3,
    NVL_TOKEN_ATTR_USER_DEFINED = 1u << 4,
    NVL_TOKEN_ATTR_BYTE = 1u << 5,
};

/* Values for the tri-state fields of nvl_vocab_desc. */
#define NVL_VOCAB_DEFAULT (-2) /* special id or flag: use the model type's default */

/* An in-memory vocabulary, as a GGUF file carries it. Everything is copied by
 * nvl_vocab_create(), so the arrays may be freed afterwards. */
struct nvl_vocab_desc {
    const char *model; /* "llama" (SPM) or "gpt2" (BPE) */
    const char *pre;   /* BPE pre-tokenizer name ("gpt-2", "llama-bpe", "smollm", ...); NULL or
                        * "" picks llama.cpp's "default" */
    uint32_t n_tokens;
    const char *const *tokens;  /* [n_tokens] token strings */
    const size_t *token_lens;   /* [n_tokens] byte lengths, or NULL for NUL-terminated strings */
    const float *scores;        /* [n_tokens] or NULL (all 0) */
    const int32_t *token_types; /* [n_tokens] enum nvl_token_type, or NULL (all NORMAL) */
    uint32_t n_merges;          /* BPE only: merges in rank order, "left right" */
    const char *const *merges;
    const size_t *merge_lens; /* or NULL for NUL-terminated strings */
    /* Special ids: NVL_VOCAB_DEFAULT, NVL_TOKEN_NULL or an id below n_tokens. */
    int32_t bos, eos, eot, eom, unk, sep, pad;
    /* Flags: NVL_VOCAB_DEFAULT, 0 or 1. */
    int add_bos, add_eos, add_space_prefix;
};

/* Sets every special id and flag of *desc to NVL_VOCAB_DEFAULT and everything else to zero. */
void nvl_vocab_desc_init(struct nvl_vocab_desc *desc);

/* Builds a vocab. Returns 0, -EINVAL for an unknown model or pre-tokenizer, a duplicate token, a
 * bad merge, id or type (with the reason logged), or -ENOMEM. */
int nvl_vocab_create(const struct nvl_vocab_desc *desc, struct nvl_vocab **out);

/* Reads tokenizer.ggml.{model,pre,tokens,scores,token_type,merges}, the special ids
 * ({bos,eos,eot,eom,unknown,seperator,padding}_token_id) and add_bos_token / add_eos_token /
 * add_space_prefix from a GGUF file. Returns 0, -ENOENT when the file has no vocab, -EINVAL for
 * a malformed one (the key is named in the log), or -ENOMEM. The GGUF may be closed afterwards. */
int nvl_vocab_load_gguf(const struct nvl_gguf *g, struct nvl_vocab **out);

/* NULL is a no-op. */
void nvl_vocab_destroy(struct nvl_vocab *v);

/* ------------------------------------------------------------------------------------------ */
/* Queries */

enum nvl_vocab_type nvl_vocab_type(const struct nvl_vocab *v);
/* "SPM" or "BPE". */
const char *nvl_vocab_type_name(const struct nvl_vocab *v);
/* The pre-tokenizer name as stored in the file ("" for SPM or when absent). */
const char *nvl_vocab_pre_name(const struct nvl_vocab *v);
uint32_t nvl_vocab_n_tokens(const struct nvl_vocab *v);
uint32_t nvl_vocab_n_merges(const struct nvl_vocab *v);

/* Special tokens, NVL_TOKEN_NULL when the vocab has none. eot is read from the file or, failing
 * that, found by its text (<|eot_id|>, <|im_end|>, <end_of_turn>, ...). nl is the token of "\n". */
int32_t nvl_vocab_bos(const struct nvl_vocab *v);
int32_t nvl_vocab_eos(const struct nvl_vocab *v);
int32_t nvl_vocab_eot(const struct nvl_vocab *v);
int32_t nvl_vocab_eom(const struct nvl_vocab *v);
int32_t nvl_vocab_unk(const struct nvl_vocab *v);
int32_t nvl_vocab_sep(const struct nvl_vocab *v);
int32_t nvl_vocab_pad(const struct nvl_vocab *v);
int32_t nvl_vocab_nl(const struct nvl_vocab *v);

/* Whether NVL_TOKENIZE_ADD_SPECIAL puts BOS in front / EOS at the end (from add_bos_token and
 * add_eos_token, else the model type's default). */
bool nvl_vocab_add_bos(const struct nvl_vocab *v);
bool nvl_vocab_add_eos(const struct nvl_vocab *v);

/* True when generation should stop at this token: EOS, EOT, EOM and the tokens whose text marks
 * an end of turn (<|eot_id|>, <|im_end|>, <|endoftext|>, ...). False for ids out of range. */
bool nvl_vocab_is_eog(const struct nvl_vocab *v, int32_t id);
/* Control tokens (BOS, EOS, <|im_start|>, ...): the ones a detokenizer hides by default. */
bool nvl_vocab_is_control(const struct nvl_vocab *v, int32_t id);

/* The token's string as stored in the vocab (not NUL-terminated when len is used; it is also
 * NUL-terminated), or NULL for an id out of range. len may be NULL. */
const char *nvl_vocab_token_text(const struct nvl_vocab *v, int32_t id, size_t *len);
float nvl_vocab_token_score(const struct nvl_vocab *v, int32_t id);
/* enum nvl_token_attr bits; 0 for an id out of range. */
uint32_t nvl_vocab_token_attr(const struct nvl_vocab *v, int32_t id);
/* The id whose stored string is exactly text[0..len), or NVL_TOKEN_NULL. */
int32_t nvl_vocab_find_token(const struct nvl_vocab *v, const char *text, size_t len);

/* ------------------------------------------------------------------------------------------ */
/* Tokenize */

enum nvl_tokenize_flags {
    /* Add BOS (and EOS) as the vocab's add_bos/add_eos say. */
    NVL_TOKENIZE_ADD_SPECIAL = 1u << 0,
    /* Turn control-token strings in the text ("<|im_start|>", "</s>") into their ids. Without it
     * they are tokenized as plain text. */
    NVL_TOKENIZE_PARSE_SPECIAL = 1u << 1,
};

/* Tokenizes text[0..len) (any bytes; invalid UTF-8 is tolerated) into ids[0..cap). On success
 * returns 0 with the count in *n_ids. When cap is too small returns -ENOSPC with the count needed
 * in *n_ids and ids[0..cap) filled with the first tokens. -EOVERFLOW for a text over 512 MiB,
 * -ENOMEM when scratch memory fails. */
int nvl_vocab_tokenize(const struct nvl_vocab *v, const char *text, size_t len, unsigned flags,
                       int32_t *ids, size_t cap, size_t *n_ids);

/* As above, into a malloc()ed array the caller frees (NULL when *n_ids is 0). */
int nvl_vocab_tokenize_alloc(const struct nvl_vocab *v, const char *text, size_t len,
                             unsigned flags, int32_t **ids, size_t *n_ids);

/* ------------------------------------------------------------------------------------------ */
/* Detokenize */

/* The bytes one token stands for in output text: SPM "▁" becomes a space and <0xXX> its byte,
 * BPE byte-level characters become their bytes. Control and unknown tokens give their stored
 * text when `special` is set and "" otherwise. The pointer stays valid for the vocab's lifetime;
 * the piece is also NUL-terminated but may contain NUL bytes, so use *len. NULL for an id out of
 * range. A piece may hold part of a UTF-8 character (byte tokens): print pieces back to back. */
const char *nvl_vocab_token_piece(const struct nvl_vocab *v, int32_t id, bool special, size_t *len);

enum nvl_detokenize_flags {
    /* Drop a leading BOS and (with add_eos) a trailing EOS. */
    NVL_DETOKENIZE_REMOVE_SPECIAL = 1u << 0,
    /* Render control tokens as their text instead of hiding them. */
    NVL_DETOKENIZE_UNPARSE_SPECIAL = 1u << 1,
    /* Skip llama.cpp's clean_up_tokenization_spaces pass (" ," -> ",", " 's" -> "'s", ...), which
     * BPE vocabs such as gpt-2 and llama-bpe otherwise apply. */
    NVL_DETOKENIZE_NO_CLEANUP = 1u << 2,
};

/* Turns ids back into text, as llama.cpp's llama_detokenize: pieces concatenated, the space
 * that SPM's add_space_prefix put in front of the first word removed, then the vocab's space
 * clean-up. Writes out[0..cap) (not NUL-terminated) and the length to *len. Returns 0, -ENOSPC
 * with the length needed in *len when cap is too small, or -EINVAL for an id out of range. */
int nvl_vocab_detokenize(const struct nvl_vocab *v, const int32_t *ids, size_t n_ids,
                         unsigned flags, char *out, size_t cap, size_t *len);

/* As above, into a malloc()ed, NUL-terminated string the caller frees. */
int nvl_vocab_detokenize_alloc(const struct nvl_vocab *v, const int32_t *ids, size_t n_ids,
                               unsigned flags, char **out, size_t *len);

#ifdef __cplusplus
}
#endif

#endif
