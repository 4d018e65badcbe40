/* The llama family (Llama 2, Llama 3.x, TinyLlama, SmolLM2, ...): model loading, inference
 * sessions with their own KV cache, and a generation loop.
 *
 * A model is hyperparameters plus weight descriptors. Each descriptor says where the tensor's
 * bytes come from in the GGUF file (file_offset, nbytes) and where they are now (data). The CPU
 * backend points data into the read-only mapping of the file; a placement layer (VRAM cache,
 * pinned-RAM tier, streamed layers) may repoint the per-layer descriptors at its own copies before
 * sessions are created, because the forward pass reaches every weight through them.
 *
 * A session is one conversation: its KV cache, scratch buffers and thread pool. Any number of
 * sessions may share one model; one session is used by one thread at a time.
 *
 * Forward pass, per layer l, for a batch of tokens at positions p..p+n-1 (this is the structure a
 * GPU backend mirrors kernel for kernel):
 *   h  = x + Wo · attn(rope(Wq · rms(x)), rope(Wk · rms(x)), Wv · rms(x))   rms: RMSNorm *
 * attn_norm x' = h + Wdown · (silu(Wgate · rms(h)) * (Wup · rms(h)))               rms: RMSNorm *
 * ffn_norm then logits = Woutput · rms(x) * output_norm. RoPE is the "normal" (GPT-J, adjacent
 * pairs) layout, which is what llama GGUF files hold because the converter permutes Wq and Wk. */
#ifndef NVL_MODEL_LLAMA_H
#define NVL_MODEL_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "nvl_model/quant.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_gguf;
struct nvl_llama_model;
struct nvl_session;
struct nvl_sampler;
struct nvl_gpu_model;

/* Hyperparameters, from the `llama.*` GGUF keys and the tensor shapes. */
struct nvl_llama_hparams {
    int32_t n_vocab;       /* rows of token_embd */
    int32_t n_ctx_train;   /* llama.context_length */
    int32_t n_embd;        /* llama.embedding_length */
    int32_t n_layer;       /* llama.block_count */
    int32_t n_head;        /* llama.attention.head_count */
    int32_t n_head_kv;     /* llama.attention.head_count_kv (GQA), default n_head */
    int32_t head_dim;      /* llama.attention.key_length, default n_embd / n_head */
    int32_t n_ff;          /* llama.feed_forward_length */
    int32_t n_rot;         /* llama.rope.dimension_count, default head_dim */
    float rope_freq_base;  /* llama.rope.freq_base, default 10000 */
    float rope_freq_scale; /* 1 / llama.rope.scaling.factor for linear scaling, else 1 */
    float rms_eps;         /* llama.attention.layer_norm_rms_epsilon, default 1e-5 */
};

/* One weight tensor. A matrix has ne1 rows of ne0 elements; y = W · x means y[r] = row r · x. */
struct nvl_llama_tensor {
    const void *data;        /* the bytes where they are now (file mapping, RAM or device) */
    enum nvl_ggml_type type; /* storage type */
    int64_t ne0;             /* elements per row */
    int64_t ne1;             /* rows (1 for a vector) */
    uint64_t row_bytes;      /* bytes of one row */
    uint64_t nbytes;         /* bytes of the tensor */
    uint64_t file_offset;    /* first byte in the GGUF file */
};

struct nvl_llama_layer {
    struct nvl_llama_tensor attn_norm; /* F32 [n_embd] */
    struct nvl_llama_tensor wq;        /* [n_head * head_dim rows][n_embd] */
    struct nvl_llama_tensor wk;        /* [n_head_kv * head_dim rows][n_embd] */
    struct nvl_llama_tensor wv;        /* [n_head_kv * head_dim rows][n_embd] */
    struct nvl_llama_tensor wo;        /* [n_embd rows][n_head * head_dim] */
    struct nvl_llama_tensor ffn_norm;  /* F32 [n_embd] */
    struct nvl_llama_tensor ffn_gate;  /* [n_ff rows][n_embd] */
    struct nvl_llama_tensor ffn_up;    /* [n_ff rows][n_embd] */
    struct nvl_llama_tensor ffn_down;  /* [n_embd rows][n_ff] */
    uint64_t file_begin;               /* extent of the file that holds all of the layer's */
    uint64_t file_end;                 /* tensors (they may be interleaved with others) */
};

struct nvl_llama_weights {
    struct nvl_llama_tensor token_embd;  /* [n_vocab rows][n_embd] */
    struct nvl_llama_tensor output_norm; /* F32 [n_embd] */
    struct nvl_llama_tensor output;      /* [n_vocab rows][n_embd]; a copy of token_embd if tied */
    struct nvl_llama_tensor rope_freqs;  /* F32 [n_rot / 2] Llama 3.1 frequency divisors, or
                                            data == NULL when the model has none */
    bool output_tied;                    /* the file has no `output` tensor */
    struct nvl_llama_layer *layers;      /* [n_layer] */
};

/* Opens a GGUF file and builds the model from it. Architectures other than llama are refused
 * (-ENOTSUP), as are missing or misshapen tensors and tensor types the CPU backend cannot
 * compute with (-EINVAL); the reason is written to err (logged when err is NULL). */
int nvl_llama_load(const char *path, struct nvl_llama_model **out, char *err, size_t err_len);
/* Builds the model from a GGUF opened by the caller, e.g. with nvl_gguf_open_memory() on a model
 * read from a drive (disk_image.h). The model takes ownership of g and of owned_data (the memory
 * g reads from, freed with free() when the model is destroyed; may be NULL), also on failure. */
int nvl_llama_load_gguf(struct nvl_gguf *g, void *owned_data, struct nvl_llama_model **out,
                        char *err, size_t err_len);
void nvl_llama_destroy(struct nvl_llama_model *model);

const struct nvl_llama_hparams *nvl_llama_hparams(const struct nvl_llama_model *model);
/* The weight descriptors; a placement layer may repoint their `data` (not their shapes). */
struct nvl_llama_weights *nvl_llama_weights(struct nvl_llama_model *model);
/* The opened file, for the tokenizer and metadata. Owned by the model. */
const struct nvl_gguf *nvl_llama_gguf(const struct nvl_llama_model *model);
/* Bytes of weights one decoded token reads: every layer matrix and norm, the output matrix and
 * norm, and one row of token_embd. */
uint64_t nvl_llama_bytes_per_token(const struct nvl_llama_model *model);
/* Total bytes of the weight tensors in the file. */
uint64_t nvl_llama_weight_bytes(const struct nvl_llama_model *model);
/* A short description of the forward pass's matmul kernels ("avx2" or "generic"). */
const char *nvl_llama_cpu_kernels(void);

/* ------------------------------------------------------------------------------------------ */
/* Sessions */

struct nvl_session_params {
    int32_t n_ctx;     /* KV cache length in tokens; 0: the model's context, at most 4096 */
    int32_t n_threads; /* 0: one per online CPU */
    int32_t n_batch;   /* prompt tokens per forward pass; 0: 64 */
    bool kv_f32;       /* KV cache in fp32 instead of fp16 (fp16 is llama.cpp's default) */
    /* Dequantize weight rows and multiply in fp32 instead of quantizing activations to 8 bits for
     * integer dot products: several times slower, but free of activation rounding, so it is the
     * reference that quantized kernels (CPU or GPU) are compared with. */
    bool f32_activations;
    /* Runs the forward pass on the GPU with this placement of the weights (gpu.h); NULL: on the
     * CPU. The KV cache is then fp16 in VRAM (kv_f32 and f32_activations are refused), n_threads
     * is unused, and n_batch defaults to 512. */
    struct nvl_gpu_model *gpu;
};

void nvl_session_params_default(struct nvl_session_params *params);

/* Returns 0, -EINVAL for bad parameters, -ENOMEM, or -errno from starting threads. */
int nvl_session_create(struct nvl_llama_model *model, const struct nvl_session_params *params,
                       struct nvl_session **out);
void nvl_session_destroy(struct nvl_session *session);

/* Runs tokens[0..n) at positions n_past..n_past+n-1 and appends them to the KV cache. With
 * logits_all the logits of every token are kept, otherwise those of the last one only.
 * Returns 0, -EINVAL for a token id out of range or n < 1, -ENOSPC when the context is full (the
 * session is then unchanged). */
int nvl_session_eval(struct nvl_session *session, const int32_t *tokens, int32_t n,
                     bool logits_all);
/* Logits [n_vocab] of token i of the last eval (i < n with logits_all; -1 is the last token), or
 * NULL when that token's logits were not kept. */
const float *nvl_session_logits(const struct nvl_session *session, int32_t i);

int32_t nvl_session_n_past(const struct nvl_session *session);
int32_t nvl_session_n_ctx(const struct nvl_session *session);
int32_t nvl_session_n_threads(const struct nvl_session *session);
/* The tokens in the KV cache, in order (n_past of them). */
const int32_t *nvl_session_tokens(const struct nvl_session *session);
/* Forgets every position from n_past on (0 clears the cache), so a conversation can be
 * re-evaluated from a common prefix. -EINVAL when n_past is beyond the current one. */
int nvl_session_truncate(struct nvl_session *session, int32_t n_past);

/* Called with each token nvl_session_greedy() picks: true to go on (the token is evaluated next),
 * false to stop there (it is not). */
typedef bool (*nvl_greedy_fn)(void *ctx, int32_t token);

/* Greedy decoding with the GPU picking each token: evaluates `token`, then each token `next`
 * accepts, at most `steps` evaluations in all; every token is the argmax of the logits before it
 * (the first index on ties, as nvl_sampler_sample greedy), found on the GPU and fed to the next
 * pass there, so the CPU only queues passes ahead and reads the tokens back. next() sees every
 * token picked, the one after the last evaluation included. Afterwards the session holds the
 * evaluated tokens, and the logits of the last one unless a stop left passes queued past it
 * (nvl_session_logits() then returns NULL). Returns 0; -ENOTSUP where the session cannot (a CPU
 * session, layers outside VRAM, CUDA graphs off or unavailable), nothing evaluated: sample on
 * the CPU instead; -ENOSPC when not one more token fits the context; -EINVAL; -EIO. */
int nvl_session_greedy(struct nvl_session *session, int32_t token, int32_t steps,
                       nvl_greedy_fn next, void *ctx);

struct nvl_sampler;
/* The same with the GPU sampling each token as nvl_sampler_sample would (top-k, top-p, min-p,
 * temperature; the draws taken from the sampler's random stream, which afterwards stands where
 * sampling those tokens on the CPU would have left it); an argmax sampler goes to
 * nvl_session_greedy. -ENOTSUP also for what the GPU's sampling kernel does not do (a
 * repetition penalty, top_k off or above 1024). */
int nvl_session_sample_gpu(struct nvl_session *session, struct nvl_sampler *sampler, int32_t token,
                           int32_t steps, nvl_greedy_fn next, void *ctx);

/* ------------------------------------------------------------------------------------------ */
/* Generation */ /* ------------------------------------------------------------------------------------------
                  */
/* Generation */

enum nvl_stop_reason {
    NVL_STOP_LENGTH = 0,   /* n_predict tokens were generated */
    NVL_STOP_EOG = 1,      /* the model produced an end-of-generation token */
    NVL_STOP_CALLBACK = 2, /* the token callback asked to stop */
    NVL_STOP_CONTEXT = 3,  /* the KV cache is full */
};

struct nvl_generate_params {
    int32_t n_predict;         /* tokens to generate at most; < 0: until EOG or context full */
    const int32_t *eog_tokens; /* end-of-generation ids (not passed to the callback) */
    int32_t n_eog_tokens;
};

struct nvl_generate_stats {
    int32_t n_prompt;     /* tokens evaluated before the first sample */
    int32_t n_generated;  /* tokens sampled, the end-of-generation token included */
    uint64_t prompt_ns;   /* time of the prompt evaluation */
    uint64_t generate_ns; /* time from the first sample to the end */
    enum nvl_stop_reason stop;
};

/* Called for each generated token; returns non-zero to stop. */
typedef int (*nvl_token_fn)(void *ctx, int32_t token);

/* Evaluates prompt[0..n_prompt) after what the session already holds, then samples a token,
 * hands it to on_token, evaluates it and so on. The last sampled token (an end-of-generation
 * token, or the n_predict-th) is not evaluated, so the cache ends one token short of the text;
 * chat callers re-evaluate from the common prefix. Prompt tokens are fed to the sampler's
 * repetition history. n_prompt may be 0 right after an eval whose last logits are kept. Returns 0,
 * -EINVAL (n_prompt 0 without logits), or the error of nvl_session_eval; a full context is a stop
 * reason, not an error. */
int nvl_generate(struct nvl_session *session, struct nvl_sampler *sampler, const int32_t *prompt,
                 int32_t n_prompt, const struct nvl_generate_params *params, nvl_token_fn on_token,
                 void *ctx, struct nvl_generate_stats *stats);

#ifdef __cplusplus
}
#endif

#endif
