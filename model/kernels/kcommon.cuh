/* Helpers shared by the kernels of model/kernels (private, CUDA C++ only). */
#ifndef NVL_MODEL_KCOMMON_CUH
#define NVL_MODEL_KCOMMON_CUH

#include <cuda_runtime.h>
#include <errno.h>
#include <stdint.h>

#include "kernels.h"

/* Checks the launch just made: 0, or -EIO with CUDA's message logged under `what`. */
extern "C" int nvl__k_launch_check(const char *what);

/* Programmatic dependent launch, device side: k_pdl_wait() returns once the kernels ahead in the
 * stream have finished and their writes are visible (at once when the launch was an ordinary
 * one); k_pdl_launch() lets the next kernel start launching. A kernel calls k_pdl_launch() only
 * after k_pdl_wait(), so that a kernel started early overlaps one predecessor, never two. */
static __device__ __forceinline__ void k_pdl_wait(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

static __device__ __forceinline__ void k_pdl_launch(void)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}

/* Launches kern<<<grid, block, smem, stream>>>(args...), as a programmatic dependent launch when
 * nvl__k_pdl() is on: 0, or -EIO with CUDA's message logged under `what`. */
template <typename... P, typename... A>
static int k_launch(const char *what, void (*kern)(P...), dim3 grid, dim3 block, size_t smem,
                    cudaStream_t stream, A... args)
{
    cudaLaunchConfig_t cfg = {};
    cudaLaunchAttribute attr[1];
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    if (nvl__k_pdl()) {
        attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
        attr[0].val.programmaticStreamSerializationAllowed = 1;
        cfg.attrs = attr;
        cfg.numAttrs = 1;
    }
    cudaLaunchKernelEx(&cfg, kern, args...);
    return nvl__k_launch_check(what);
}

/* Threads per block of the element-wise and reduction kernels. */
#define K_THREADS 256

static __device__ __forceinline__ float k_warp_sum(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ int k_warp_sum_int(int v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

static __device__ __forceinline__ float k_warp_max(float v)
{
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
    return v;
}

/* Sum of one double per thread over the block (blockDim.x a multiple of 32, at most 1024),
 * returned to every thread. The order is fixed by the thread layout, so the result is the same
 * on every run. scratch holds 32 doubles. */
static __device__ __forceinline__ double k_block_sum_double(double v, double *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, o);
    __syncthreads(); /* scratch may still be read by a previous call */
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    double s = 0.0;
    for (int w = 0; w < nw; w++)
        s += scratch[w];
    return s;
}

/* Maximum of one float per thread over the block, returned to every thread (scratch: 32). */
static __device__ __forceinline__ float k_block_max(float v, float *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    v = k_warp_max(v);
    __syncthreads();
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    float m = scratch[0];
    for (int w = 1; w < nw; w++)
        m = fmaxf(m, scratch[w]);
    return m;
}

/* Quantizes one 32-element activation block held one value per lane (the CPU's rounding). */
static __device__ __forceinline__ void k_quant_q8_warp(float v, struct nvl_k_block_q8 *blk)
{
    const int lane = threadIdx.x & 31;
    const float amax = k_warp_max(fabsf(v));
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    const int q = __float2int_rn(v * id);
    const int sum = k_warp_sum_int(q);
    blk->qs[lane] = (int8_t)q;
    if (lane == 0) {
        blk->d = d;
        blk->sum = sum;
    }
}

/* The largest magnitude of eight values. */
static __device__ __forceinline__ float k_amax8(const float *v)
{
    float amax = 0.0f;
#pragma unroll
    for (int j = 0; j < 8; j++)
        amax = fmaxf(amax, fabsf(v[j]));
    return amax;
}

/* Eight values' part of a quantized block whose largest magnitude is amax (reduced over the
 * block's lanes by the caller): the CPU's rounding of v / (amax / 127), packed four to a word,
 * and their sum. Returns the block's scale. k_quant_q8k_warp and the matrix-vector prologue's q8
 * quantizer (matvec.cu) both come through here, so that the expressions the CPU's bits depend on
 * exist once. */
static __device__ __forceinline__ float k_quant8(const float *v, float amax, uint32_t packed[2],
                                                 int *sum)
{
    const float d = amax / 127.0f;
    const float id = d != 0.0f ? 1.0f / d : 0.0f;
    packed[0] = packed[1] = 0;
    *sum = 0;
#pragma unroll
    for (int j = 0; j < 8; j++) {
        const int q = __float2int_rn(v[j] * id);
        *sum += q;
        packed[j >> 2] |= ((uint32_t)q & 0xffu) << (8 * (j & 3));
    }
    return d;
}

/* Quantizes one 256-element block, lane l holding elements 8l .. 8l + 7 (lanes 2g and 2g + 1
 * make bsums[g]). */
static __device__ __forceinline__ void k_quant_q8k_warp(const float *v, struct nvl_block_q8_K *blk)
{
    const int lane = threadIdx.x & 31;
    uint32_t packed[2];
    int sum;
    const float d = k_quant8(v, k_warp_max(k_amax8(v)), packed, &sum);
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    uint32_t *qs = (uint32_t *)blk->qs;
    qs[2 * lane] = packed[0];
    qs[2 * lane + 1] = packed[1];
    if ((lane & 1) == 0)
        blk->bsums[lane >> 1] = (int16_t)sum;
    if (lane == 0)
        blk->d = d;
}

/* RoPE of the pair (x0, x1) at dimension i (even) of a head, for position pos: the angle as the
 * CPU builds it (llama_session.c rope_prepare): theta = pos * freq_scale, multiplied by
 * theta_scale i / 2 times, so both sides round the same products. k_rope_kv and the decode
 * attention's fused RoPE both come through here. */
static __device__ __forceinline__ void k_rope_pair(float &x0, float &x1, int i, int pos,
                                                   const struct nvl_k_rope &r)
{
    if (i >= r.n_rot)
        return;
    float theta = (float)pos * r.freq_scale;
    for (int j = 0; j < i / 2; j++)
        theta *= r.theta_scale;
    const float th = r.freq_factors ? theta / r.freq_factors[i / 2] : theta;
    const float c = cosf(th), s = sinf(th);
    const float y0 = x0 * c - x1 * s, y1 = x0 * s + x1 * c;
    x0 = y0;
    x1 = y1;
}

/* SwiGLU of one element, the CPU's expression (expf, not the fast intrinsic): the SwiGLU kernels
 * and the gate/up product's fused epilogue (matvec.cu) both come through here. */
static __device__ __forceinline__ float k_silu_mul(float g, float u)
{
    return g / (1.0f + expf(-g)) * u;
}

/* RMSNorm's scale 1 / sqrt(mean(x^2) + eps) of a row of n, the sum of squares in double in one
 * fixed order: 256 strided partial sums, each group of 32 added by a butterfly, then the 8 groups
 * in order. A block of 1, 2, 4 or 8 warps plays the 8 groups in turn, so every block size gives
 * the same bits (k_rmsnorm and the matrix-vector prologue must agree). Every thread calls it;
 * scratch holds 8 doubles. */
static __device__ __forceinline__ float k_rms_scale(const float *x, int64_t n, float eps,
                                                    double *scratch)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    __syncthreads(); /* scratch may still be read by a previous call */
    for (int g = warp; g < 8; g += nw) {
        double ss = 0.0;
        for (int64_t i = g * 32 + lane; i < n; i += 256)
            ss += (double)x[i] * x[i];
#pragma unroll
        for (int o = 16; o > 0; o >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, o);
        if (lane == 0)
            scratch[g] = ss;
    }
    __syncthreads();
    double ss = 0.0;
    for (int g = 0; g < 8; g++)
        ss += scratch[g];
    return (float)(1.0 / sqrt(ss / (double)n + eps));
}

static inline unsigned k_blocks(int64_t n, int per_block)
{
    return (unsigned)((n + per_block - 1) / per_block);
}

#endif
