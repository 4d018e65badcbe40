// Compile check: the block layouts and half-precision helpers of quant.h are usable in device
// code (STYLE rule 11). The kernel is compiled, not launched, so this runs without a GPU.
#include <cstdio>

#include "nvl_model/quant.h"

static_assert(sizeof(nvl_block_q4_K) == 144, "q4_K");
static_assert(offsetof(nvl_block_q6_K, d) == 208, "q6_K.d");

__global__ void dequant_q8_0(const nvl_block_q8_0 *b, float *y, int n_blocks)
{
    const int i = blockIdx.x * blockDim.x + threadIdx.x;

    if (i < n_blocks * NVL_QK8_0)
        y[i] = nvl_fp16_to_fp32(b[i / NVL_QK8_0].d) * (float)b[i / NVL_QK8_0].qs[i % NVL_QK8_0];
}

int main()
{
    // The same helper on the host side of the same translation unit.
    if (nvl_fp16_to_fp32(nvl_fp32_to_fp16(0.25f)) != 0.25f) {
        std::printf("fp16 helper broken under nvcc\n");
        return 1;
    }
    return 0;
}
