/* The GPU backend's private state (llama_gpu_model.c: placement, loading, streaming;
 * llama_gpu_session.c: the forward pass) and the interface llama_session.c calls. */
#ifndef NVL_MODEL_LLAMA_GPU_H
#define NVL_MODEL_LLAMA_GPU_H

#include <stdbool.h>
#include <stdint.h>

#include "nvl_model/gpu.h"
#include "nvl_model/llama.h"
#include "nvl_model/sampler.h"

struct nvl_gpu_session;

/* A session's GPU half: KV cache and scratch in VRAM, its own compute stream. Returns 0, -ENOMEM
 * (VRAM), -EINVAL (n_ctx beyond what the attention kernel holds) or -EIO. */
int nvl__gpu_session_create(struct nvl_gpu_model *gm, int32_t n_ctx, int32_t n_batch,
                            struct nvl_gpu_session **out);
void nvl__gpu_session_destroy(struct nvl_gpu_session *gs);
/* One batch (n_tok <= n_batch) at positions pos0..: appends to the KV cache, and writes the
 * logits of tokens [out_first, n_tok) to `logits` (n_vocab apart). Returns 0, or -EIO when a
 * CUDA call or a streamed read failed. */
int nvl__gpu_session_forward(struct nvl_gpu_session *gs, const int32_t *tokens, int32_t n_tok,
                             int32_t pos0, int32_t out_first, float *logits);
/* How the GPU picks the tokens of nvl__gpu_session_decode: argmax when NULL, else
 * nvl_sampler_sample's stages with these parameters (no repetition penalty; 1 <= top_k <=
 * min(1024, n_vocab - 1)) and the i-th token's draw nvl_sampler_peek_draw(sampler, i). */
struct nvl_gpu_sampling {
    int32_t top_k;
    float top_p;
    float min_p;
    float temperature;
    const struct nvl_sampler *sampler;
};

/* Decoding with the GPU picking each token (nvl_session_greedy, nvl_session_sample_gpu):
 * evaluates `token` at pos0, then each token the GPU picks from the pass before that next()
 * accepts, at most `steps` passes; next() sees every token picked. *n_eval: passes whose token
 * was kept (the first, then each accepted one), which is also the number of tokens picked.
 * *logits_kept: no pass ran past the last kept one, and its logits are in `logits`. -ENOTSUP
 * where this session cannot (layers outside VRAM, graphs off or unavailable): nothing ran. */
int nvl__gpu_session_decode(struct nvl_gpu_session *gs, int32_t token, int32_t pos0, int32_t steps,
                            const struct nvl_gpu_sampling *sampling, nvl_greedy_fn next, void *ctx,
                            int32_t *n_eval, bool *logits_kept, float *logits);

#ifdef NVL_HAVE_CUDA

#include <pthread.h>

#include <cuda_runtime_api.h>

#include "llama_internal.h"

#define GPU_MAX_RING 16 /* ring buffers and loader slots used for streaming */
#define GPU_ALIGN    256

struct gpu_layer {
    enum nvl_gpu_tier tier;
    uint64_t begin; /* extent of the layer's tensors in the GGUF file */
    uint64_t len;
    uint8_t *vram; /* VRAM tier: the extent in VRAM */
    uint8_t *ram;  /* RAM tier: the extent in pinned host memory */
};

struct nvl_gpu_model {
    struct nvl_llama_model *model;
    const struct nvl_llama_hparams *hp;
    struct nvl_gpu_params p;
    struct nvl_gpu_stats st;
    struct gpu_layer *layers;
    /* Globals with device-visible data pointers. */
    struct nvl_llama_tensor tok_embd, output, output_norm, rope_freqs;
    void *vram;         /* one allocation: globals (when in VRAM) and the VRAM layers */
    void *pinned;       /* one pinned allocation: the RAM layers (and globals not in VRAM) */
    uint64_t ring_size; /* bytes of each ring buffer: the largest non-resident extent */

    /* Non-resident layers are copied into ring buffers on `copy`; ring_ready[b] tells the
     * compute stream the copy landed, ring_free[b] tells the copy stream the layer is done. */
    int32_t n_ring;
    void *ring_mem;
    uint8_t *ring[GPU_MAX_RING];
    cudaEvent_t ring_ready[GPU_MAX_RING];
    cudaEvent_t ring_free[GPU_MAX_RING];
    uint64_t ring_next;
    cudaStream_t copy;

    /* Streaming: reads go round the list of streamed layers, prefetch slots ahead of the
     * consumer. Read i uses slot i % n_slots; slot_free[s] is recorded on the copy stream after
     * the copy out of slot s. */
    int32_t *stream_list;
    int32_t n_stream;
    int32_t n_slots;
    struct nvl_read *rd[GPU_MAX_RING];
    cudaEvent_t slot_free[GPU_MAX_RING];
    bool slot_recorded[GPU_MAX_RING];
    uint64_t issued;
    uint64_t consumed;
    int stream_err; /* first failed read, reported by the next forward pass */

    pthread_mutex_t lock; /* one forward pass at a time over the ring and the loader */
};

/* VRAM one session takes: KV cache, scratch, GEMM buffers (for the default budget). */
uint64_t nvl__gpu_session_vram_bytes(const struct nvl_llama_hparams *hp, int32_t n_ctx,
                                     int32_t n_batch);

/* The layer's tensors with data pointing into `base`, the layer's extent wherever it is. */
void nvl__gpu_layer_bind(const struct nvl_gpu_model *gm, int32_t il, const uint8_t *base,
                         struct nvl_llama_layer *out);

/* Makes the layer's bytes available to `compute` and returns where they are: the VRAM copy, or
 * a ring buffer the copy stream fills (the compute stream is made to wait for it). *ring_slot is
 * the ring buffer used, -1 for VRAM. Call nvl__gpu_layer_release() after the layer's kernels. */
int nvl__gpu_layer_acquire(struct nvl_gpu_model *gm, int32_t il, cudaStream_t compute,
                           const uint8_t **base, int32_t *ring_slot);
int nvl__gpu_layer_release(struct nvl_gpu_model *gm, int32_t ring_slot, cudaStream_t compute);
/* Issues reads while slots are free (without blocking). */
void nvl__gpu_stream_pump(struct nvl_gpu_model *gm);

/* Waits until the event has happened, polling and sleeping rather than spinning. */
int nvl__gpu_event_wait(cudaEvent_t ev);

/* Logs a failed CUDA call and maps it to -EIO (-ENOMEM for allocation failures). */
int nvl__gpu_cuda_err(cudaError_t e, const char *what);

#endif /* NVL_HAVE_CUDA */

#endif
