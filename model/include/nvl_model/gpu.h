/* GPU inference: where a llama model's weights live on the GPU side, and the state that sessions
 * running on the GPU share.
 *
 * Placement, in this order of preference: the norms, the output matrix and the token embeddings
 * ("globals"), then layer 0, 1, ... go to VRAM while they fit the VRAM budget; the next layers
 * go to pinned host memory while they fit the RAM budget (copied to VRAM by the DMA engine each
 * token); the rest are streamed each token through the Layer Loader (loader.h): the loader reads
 * layer N + k into one of its pinned slots while layer N computes, a copy stream waits for the
 * read's completion word on the GPU and copies the slot into a VRAM ring buffer, and the compute
 * stream waits for that copy through an event. No CPU memcpy and no CPU wait sits between a
 * layer's bytes and its kernels; the CPU only queues reads and recycles slots k layers later.
 * Every layer runs the same kernels wherever its bytes came from, so the output does not depend
 * on placement (bit for bit).
 *
 * A session runs on the GPU when nvl_session_params.gpu points at a GPU model (llama.h); its KV
 * cache (fp16) and scratch are in VRAM. Sessions of one GPU model take turns (a mutex) when
 * layers stream, since they share the ring and the loader. */
#ifndef NVL_MODEL_GPU_H
#define NVL_MODEL_GPU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_llama_model;
struct nvl_loader;
struct nvl_gpu_model;

enum nvl_gpu_tier {
    NVL_GPU_TIER_VRAM = 0,   /* resident in VRAM */
    NVL_GPU_TIER_RAM = 1,    /* resident in pinned host memory, copied to VRAM each token */
    NVL_GPU_TIER_STREAM = 2, /* read through the Layer Loader each token */
};
#define NVL_GPU_TIER_COUNT 3

/* Loading the resident tiers: called after each layer (and once for the globals). */
struct nvl_gpu_progress {
    int32_t layers_done; /* layers placed so far */
    int32_t layers_total;
    uint64_t bytes_done; /* bytes placed so far */
    uint64_t bytes_total;
    double seconds; /* since loading started */
};
typedef void (*nvl_gpu_progress_fn)(void *ctx, const struct nvl_gpu_progress *p);

struct nvl_gpu_params {
    int device;           /* CUDA device (default 0) */
    int64_t vram_budget;  /* bytes of VRAM for weights; < 0 (default): free VRAM minus the KV
                             caches and scratch of max_sessions sessions and a reserve */
    int32_t vram_layers;  /* >= 0: exactly the globals and layers [0, vram_layers) in VRAM,
                             overriding vram_budget (default -1) */
    int64_t ram_budget;   /* bytes of pinned host memory for weights (default 0) */
    int32_t prefetch;     /* layers read ahead while one computes (>= 2, default 3; capped by the
                             loader's slot count) */
    int32_t n_ctx;        /* context of the sessions (sizes the default VRAM budget; default
                             4096) */
    int32_t n_batch;      /* prompt tokens per forward pass (default 512) */
    int32_t max_sessions; /* sessions the default budget leaves room for (default 1) */
    /* Reads the layers that stream, and loads the resident tiers when not NULL (otherwise they
     * are copied from the model's memory: its file mapping). Its slots must hold
     * nvl_gpu_slot_bytes() each. Owned by the caller; it must outlive the GPU model. */
    struct nvl_loader *loader;
    uint64_t loader_base; /* byte offset of the GGUF file in the loader's target */
    nvl_gpu_progress_fn progress;
    void *progress_ctx;
};

/* Where the bytes are and where they came from. */
struct nvl_gpu_stats {
    char device_name[128];
    int32_t layers[NVL_GPU_TIER_COUNT];       /* layers per tier */
    uint64_t layer_bytes[NVL_GPU_TIER_COUNT]; /* bytes of those layers */
    uint64_t globals_bytes;                   /* norms, output, token embeddings */
    bool globals_in_vram;                     /* else in pinned host memory, read over PCIe */
    uint64_t vram_budget;                     /* the budget used (default or given) */
    uint64_t vram_weights;                    /* bytes of weights in VRAM */
    uint64_t loaded_via_loader;               /* resident bytes read through the loader */
    uint64_t loaded_from_memory;              /* resident bytes copied from model memory */
    double load_seconds;                      /* placing the resident tiers */
    uint64_t streamed_bytes;                  /* read through the loader by forward passes */
    uint64_t ram_copied_bytes;                /* copied from the RAM tier by forward passes */
    int32_t prefetch;                         /* the depth used */
    bool graphs;                              /* single-token passes replay a CUDA graph */
};

/* 0 when CUDA device `device` can run the GPU backend, else -ENODEV (or -ENOTSUP in a build
 * without CUDA) with the reason in why. */
int nvl_gpu_probe(int device, char *why, size_t why_len);

void nvl_gpu_params_default(struct nvl_gpu_params *p);

/* Bytes a loader slot needs to hold any one layer of the model (its extent, plus room for the
 * block alignment of the read). */
uint64_t nvl_gpu_slot_bytes(const struct nvl_llama_model *model, uint32_t block_size);

/* Places the weights as params say and loads the resident tiers. The model's descriptors are not
 * modified (the CPU backend keeps working). Refuses (-ENOTSUP) tensor types the kernels lack,
 * and (-EINVAL) layers that must stream when no loader is given. The reason is written to err
 * (logged when err is NULL). */
int nvl_gpu_model_create(struct nvl_llama_model *model, const struct nvl_gpu_params *params,
                         struct nvl_gpu_model **out, char *err, size_t err_len);
/* Waits for reads in flight, frees VRAM and pinned memory. NULL is a no-op. */
void nvl_gpu_model_destroy(struct nvl_gpu_model *gm);

enum nvl_gpu_tier nvl_gpu_layer_tier(const struct nvl_gpu_model *gm, int32_t layer);
const char *nvl_gpu_tier_name(enum nvl_gpu_tier tier);
void nvl_gpu_model_stats(const struct nvl_gpu_model *gm, struct nvl_gpu_stats *st);

#ifdef __cplusplus
}
#endif

#endif
