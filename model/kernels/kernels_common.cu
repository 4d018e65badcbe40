/* What the kernels support, activation row sizes, and the launch check shared by the launchers. */
#include <errno.h>

#include "kcommon.cuh"
#include "nvl_driver/log.h"
#include "qblock.cuh"

extern "C" int nvl__k_launch_check(const char *what)
{
    const cudaError_t e = cudaGetLastError();
    if (e == cudaSuccess)
        return 0;
    nvl_log_error("kernels", "%s: launch failed: %s", what, cudaGetErrorString(e));
    return -EIO;
}

/* Per thread: each session's forward pass runs on one thread, under the model's lock. */
static thread_local bool pdl_on;

extern "C" void nvl__k_set_pdl(bool on)
{
    pdl_on = on;
}

extern "C" bool nvl__k_pdl(void)
{
    return pdl_on;
}

extern "C" bool nvl__k_type_supported(enum nvl_ggml_type type)
{
    switch (type) {
#define SUPPORTED(S) case NVL_GGML_TYPE_##S:
        K_PLAIN_TYPES(SUPPORTED)
        K_QUANT_TYPES(SUPPORTED)
#undef SUPPORTED
        return true;
    default:
        return false;
    }
}

extern "C" enum nvl_k_act nvl__k_act_for(enum nvl_ggml_type type)
{
    /* The activation format of each type is the one its dot product (qblock.cuh) reads. */
    switch (type) {
#define ACT(S)                                                                                     \
    case NVL_GGML_TYPE_##S:                                                                        \
        return (enum nvl_k_act)k_type<NVL_GGML_TYPE_##S>::act;
        K_QUANT_TYPES(ACT)
#undef ACT
    default:
        return NVL_K_ACT_F32;
    }
}

extern "C" size_t nvl__k_act_row_bytes(enum nvl_k_act act, int64_t k)
{
    switch (act) {
    case NVL_K_ACT_Q8:
        return (size_t)(k / 32) * sizeof(struct nvl_k_block_q8);
    case NVL_K_ACT_Q8K:
        return (size_t)(k / NVL_QK_K) * sizeof(struct nvl_block_q8_K);
    default:
        return (size_t)k * sizeof(float);
    }
}
