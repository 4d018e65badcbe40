/* The llama model's private state, shared by the loader and the CPU forward pass. */
#ifndef NVL_MODEL_LLAMA_INTERNAL_H
#define NVL_MODEL_LLAMA_INTERNAL_H

#include "nvl_model/gguf.h"
#include "nvl_model/llama.h"

struct nvl_llama_model {
    struct nvl_gguf *gguf; /* the mapped file the weight descriptors point into */
    void *owned_data;      /* the memory gguf reads from when it is not a file (freed), or NULL */
    struct nvl_llama_hparams hp;
    struct nvl_llama_weights w;
    uint64_t weight_bytes;    /* bytes of all weight tensors */
    uint64_t bytes_per_token; /* see nvl_llama_bytes_per_token() */
};

#endif
