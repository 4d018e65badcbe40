// The quant and GGUF headers are shared with CUDA kernels, so they must compile as C++ (STYLE
// rule 11) and give the same layouts there. This test is mostly a compile check; it also calls
// the inline half-precision helpers from C++.
#include <cstdio>
#include <cstring>

#include "nvl_model/gguf.h"
#include "nvl_model/quant.h"

static_assert(sizeof(nvl_block_q4_0) == 18, "q4_0");
static_assert(sizeof(nvl_block_q8_0) == 34, "q8_0");
static_assert(sizeof(nvl_block_q4_K) == 144, "q4_K");
static_assert(sizeof(nvl_block_q6_K) == 210, "q6_K");
static_assert(offsetof(nvl_block_q6_K, d) == 208, "q6_K.d");

int main()
{
    float x = nvl_fp16_to_fp32(nvl_fp32_to_fp16(1.5f)) + nvl_bf16_to_fp32(nvl_fp32_to_bf16(-0.5f));
    nvl_gguf_value v;

    std::memset(&v, 0, sizeof(v));
    v.type = NVL_GGUF_TYPE_UINT32;
    if (x != 1.0f || nvl_ggml_block_size(NVL_GGML_TYPE_Q4_K) != NVL_QK_K || v.u32 != 0) {
        std::printf("C++ view of the quant headers is wrong\n");
        return 1;
    }
    return 0;
}
