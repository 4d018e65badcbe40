/* Fused dequantize + matrix-vector product (decode, and batches below the GEMM threshold).
 *
 * Work: a row group is RPW = 32 / LPR rows that one warp's lanes share, LPR lanes per row, and a
 * row is read in chunks of LPR units (qblock.cuh: a unit is NB whole weight blocks). The grid is
 * persistent (at most as many blocks as fit on the GPU at once): warp w of the grid takes row
 * groups w, w + W, w + 2W, ... of the launch's matrices, so every warp gets the same number of
 * groups give or take one, and streams their chunks through MV_STAGES shared-memory buffers:
 * while it multiplies chunk s, the copies of chunks s + 1 .. s + MV_STAGES - 1 are in flight
 * (16-byte cp.async, lane i taking bytes [16 i, 16 i + 16) of each 512-byte stretch, so every
 * warp-wide load reads whole 32-byte sectors of one contiguous span). Loading and multiplying
 * thus overlap inside each warp instead of alternating, which is what held the earlier
 * one-chunk-per-warp kernel to ~1.4-1.9 TB/s on an H100.
 *
 * Activations: the block's tokens are staged in shared memory once per block (each lane reads a
 * different unit's activation). With NVL_K_MV_IN_F32 / NVL_K_MV_IN_RMSNORM the block makes them
 * itself from the fp32 rows (RMS normalization, then quantization, exactly as the separate
 * kernels do), which saves the launch of those kernels on the decode path. fp32 activations
 * (F32/F16/BF16 weights) are read from global memory, coalesced, with 16-byte loads.
 *
 * Launch order: the first chunks' weight copies are issued before k_pdl_wait(), so under
 * programmatic dependent launch they overlap the tail of the previous kernel; nothing written by
 * an earlier kernel is read before it.
 *
 * Sums: each lane accumulates its units in chunk order, then the row's lanes add up with a
 * fixed butterfly. No atomics, and a row's arithmetic does not depend on the grid or on which
 * warp computes it, so the result is the same on every run and for every placement of the
 * weights. Q/K/V and gate/up go out as one launch (a group); up to MV_TOK tokens share one pass
 * over the weights. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

#include "kcommon.cuh"
#include "nvl_driver/log.h"
#include "qblock.cuh"

#define MV_WARPS     8 /* warps per block (NVL_MV_WARPS overrides it, for tuning) */
#define MV_MAX_WARPS 8 /* the most NVL_MV_WARPS may ask for (the register budget) */
#ifndef MV_STAGES
#define MV_STAGES 3 /* chunk buffers per warp: MV_STAGES - 1 chunks in flight while one is used */
#endif
#define MV_TOK 4
#define MV_PAD 16 /* bytes after each staged span: the 2-byte-aligned unit loads read past it */

/* Blocks per unit on the fast path: units of 8- or 16-byte multiples, so that a unit comes out
 * of shared memory with 8- or 16-byte loads and a chunk of 32 units is a few KB (Q4_0: 144-byte
 * units, so that a 4096-element row is a 16-unit span and two rows share a warp). */
template <int T> static constexpr int mv_fast_blocks()
{
    return T == NVL_GGML_TYPE_Q4_0 || T == NVL_GGML_TYPE_Q5_0 ? 8
           : T == NVL_GGML_TYPE_Q5_1                          ? 2
           : k_type<T>::block_elems == 256                    ? 1
           : k_type<T>::block_elems == 1                      ? 8
                                                              : 4;
}

/* An asynchronous N-byte copy (4, 8 or 16) from global to shared memory. 16-byte copies (the
 * weights, read once) bypass L1 and ask L2 for whole 128-byte lines; smaller ones (the
 * activations, which every warp of the block reads) go through L1. */
template <int N>
static __device__ __forceinline__ void mv_cp_async(uint8_t *dst, const uint8_t *src)
{
    const unsigned d = (unsigned)__cvta_generic_to_shared(dst);
    if constexpr (N == 16)
        asm volatile("cp.async.cg.shared.global.L2::128B [%0], [%1], 16;\n" ::"r"(d), "l"(src)
                     : "memory");
    else
        asm volatile("cp.async.ca.shared.global [%0], [%1], %2;\n" ::"r"(d), "l"(src), "n"(N)
                     : "memory");
}

static __device__ __forceinline__ void mv_cp_async_commit(void)
{
    asm volatile("cp.async.commit_group;\n" ::: "memory");
}

/* Waits until at most N of this thread's committed copy groups are still in flight. */
template <int N> static __device__ __forceinline__ void mv_cp_async_wait(void)
{
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

/* Copies n bytes (n even) from global src to shared dst (16-byte aligned), thread tid of nthr:
 * asynchronous 16-byte copies when src is 16-byte aligned, 2-byte loads for the rest. The
 * caller commits, waits (mv_cp_async_wait) and synchronizes before reading dst. */
static __device__ __forceinline__ void mv_stage(uint8_t *dst, const uint8_t *src, int n, int tid,
                                                int nthr)
{
    int done = 0;
    if (((uintptr_t)src & 15) == 0) {
        const int n16 = n >> 4;
        for (int i = tid; i < n16; i += nthr)
            mv_cp_async<16>(dst + 16 * i, src + 16 * i);
        done = n16 << 4;
    }
    for (int i = (done >> 1) + tid; i < (n >> 1); i += nthr)
        ((uint16_t *)dst)[i] = __ldg((const unsigned short *)src + i);
}

/* Loads the UB-byte unit at p (shared memory, 2-byte aligned) into w: the widest loads the
 * unit's alignment allows; a 2-byte-aligned unit (Q3_K, Q6_K) through aligned words and funnel
 * shifts (reads up to 6 bytes past the unit: MV_PAD). */
template <int UB> static __device__ __forceinline__ void mv_lds(const uint8_t *p, uint32_t *w)
{
    constexpr int NW = (UB + 3) / 4;
    if constexpr (UB % 16 == 0) {
        const uint4 *v = (const uint4 *)p;
#pragma unroll
        for (int i = 0; i < UB / 16; i++) {
            const uint4 t = v[i];
            w[4 * i + 0] = t.x;
            w[4 * i + 1] = t.y;
            w[4 * i + 2] = t.z;
            w[4 * i + 3] = t.w;
        }
    } else if constexpr (UB % 8 == 0) {
        const uint2 *v = (const uint2 *)p;
#pragma unroll
        for (int i = 0; i < UB / 8; i++) {
            const uint2 t = v[i];
            w[2 * i + 0] = t.x;
            w[2 * i + 1] = t.y;
        }
    } else if constexpr (UB % 4 == 0) {
        const uint32_t *v = (const uint32_t *)p;
#pragma unroll
        for (int i = 0; i < NW; i++)
            w[i] = v[i];
    } else {
        const uint32_t *v = (const uint32_t *)((uintptr_t)p & ~(uintptr_t)3);
        const unsigned sh = (unsigned)((uintptr_t)p & 2) * 8u;
        uint32_t t[NW + 1];
#pragma unroll
        for (int i = 0; i < NW + 1; i++)
            t[i] = v[i];
#pragma unroll
        for (int i = 0; i < NW; i++)
            w[i] = __funnelshift_r(t[i], t[i + 1], sh);
    }
}

/* acc += a unit of NB plain weights (F32/F16/BF16) times fp32 activations at xp (global). */
template <int T, int NB>
static __device__ __forceinline__ void mv_plain_dot(const uint32_t *w, const uint8_t *xp,
                                                    float &acc)
{
    float xv[NB];
    if (NB % 4 == 0 && ((uintptr_t)xp & 15) == 0) {
#pragma unroll
        for (int i = 0; i < NB / 4; i++) {
            const float4 f = __ldg((const float4 *)xp + i);
            xv[4 * i + 0] = f.x;
            xv[4 * i + 1] = f.y;
            xv[4 * i + 2] = f.z;
            xv[4 * i + 3] = f.w;
        }
    } else {
#pragma unroll
        for (int j = 0; j < NB; j++)
            xv[j] = __ldg((const float *)xp + j);
    }
#pragma unroll
    for (int j = 0; j < NB; j++)
        acc += k_plain<T>(w, j) * xv[j];
}

/* The matrices of one launch: up to NVL_K_MV_GROUP products with the same type, row length and
 * input. Row group i belongs to matrix m when item_end[m - 1] <= i < item_end[m]. */
struct mv_group {
    const uint8_t *w[NVL_K_MV_GROUP];
    uint64_t row_bytes[NVL_K_MV_GROUP];
    int rows[NVL_K_MV_GROUP];
    float *y[NVL_K_MV_GROUP];
    size_t y_stride[NVL_K_MV_GROUP];
    int item_end[NVL_K_MV_GROUP];
    int aligned; /* every matrix and row starts on 16 bytes: chunks copy without checks */
    /* SwiGLU fused (gate and up, equal shapes): row group i of both matrices goes to one warp,
     * gate's as item 2i, up's as item 2i + 1, and the warp writes silu(gate) * up into gate's
     * output instead of the two products. */
    int swiglu;
};

/* The activations of one launch: NT rows x_stride bytes apart, in the form `in` says. */
struct mv_input {
    const uint8_t *x;
    size_t x_stride;
    int in; /* enum nvl_k_mv_in */
    const float *norm;
    float eps;
};

/* Bytes between consecutive units' activations in shared memory. A lane reads its unit's q8
 * blocks with 8-byte loads, the lanes of a row taking consecutive units; packed, the 320-byte
 * (Q4_0, Q5_0) or 160-byte (Q4_1, Q8_0) units put 16 lanes on two or four bank pairs, an 8- or
 * 4-way conflict that made shared memory, not DRAM, the limit of those types. An odd number of
 * 8-byte words between units spreads a half-warp over all 16 bank pairs. (Q8_K units, 292
 * bytes, are read in 4-byte words 73 apart: already conflict-free.) */
template <int T, int NB> struct mv_act_stride {
    static constexpr int bytes = NB * K_ACT_BLOCK_BYTES(T);
    static constexpr int value = bytes % 16 == 0 ? bytes + 8 : bytes;
};

/* Shared memory of one warp's buffer: RPW row spans of LPR units, each followed by MV_PAD bytes. */
template <int UB, int LPR> struct mv_span {
    static constexpr int value = (LPR * UB + 15) / 16 * 16 + MV_PAD;
};

/* A warp's position in its work: row group `item` (its matrix m, first row, rows), chunk, and
 * where the chunk's bytes of the group's first row start (src; rows rb apart). */
struct mv_cursor {
    int item;
    int chunk;
    int nrows;
    int row0;
    const uint8_t *src;
    uint64_t rb;
    float *y; /* the matrix's output, rows ys floats apart */
    size_t ys;
};

/* Places c at chunk 0 of row group `item` of the launch. The matrix's fields are picked by
 * compares and selects, not by indexing the parameter arrays with a register (which compiles to
 * indexed constant loads on the copy path of every stage). */
template <int RPW>
static __device__ __forceinline__ void mv_cursor_start(const struct mv_group &g, int item,
                                                       struct mv_cursor &c)
{
    int m = 0, base = 0;
#pragma unroll
    for (int i = 0; i < NVL_K_MV_GROUP - 1; i++)
        if (item >= g.item_end[i]) {
            m = i + 1;
            base = g.item_end[i];
        }
    if (g.swiglu) { /* items alternate between the two matrices */
        m = item & 1;
        base = item - (item >> 1);
    }
    const uint8_t *w = g.w[0];
    uint64_t rb = g.row_bytes[0];
    int rows = g.rows[0];
    c.y = g.y[0];
    c.ys = g.y_stride[0];
#pragma unroll
    for (int i = 1; i < NVL_K_MV_GROUP; i++)
        if (m == i) {
            w = g.w[i];
            rb = g.row_bytes[i];
            rows = g.rows[i];
            c.y = g.y[i];
            c.ys = g.y_stride[i];
        }
    c.item = item;
    c.chunk = 0;
    c.row0 = (item - base) * RPW;
    c.nrows = min(rows - c.row0, RPW);
    c.rb = rb;
    c.src = w + (uint64_t)c.row0 * rb;
}

/* The warp's first row group (gw of tw warps), and the one after `item`: tw row groups on, or
 * with SwiGLU fused the up half of a pair, then the gate half of the pair tw pairs on. */
static __device__ __forceinline__ int mv_first_item(const struct mv_group &g, int gw)
{
    return g.swiglu ? 2 * gw : gw;
}

static __device__ __forceinline__ int mv_next_item(const struct mv_group &g, int item, int tw)
{
    return !g.swiglu ? item + tw : (item & 1 ? item - 1 + 2 * tw : item + 1);
}

/* The next chunk (chunk_bytes on): of this row group, else chunk 0 of the warp's next one. */
template <int RPW>
static __device__ __forceinline__ void mv_cursor_next(const struct mv_group &g, int n_chunks,
                                                      int chunk_bytes, int tw, struct mv_cursor &c)
{
    if (++c.chunk < n_chunks) {
        c.src += chunk_bytes;
        return;
    }
    const int next = mv_next_item(g, c.item, tw);
    if (next < g.item_end[NVL_K_MV_GROUP - 1]) {
        mv_cursor_start<RPW>(g, next, c);
    } else { /* past the warp's last row group: only the stage count stops it now */
        c.chunk = 0;
        c.item = next;
    }
}

/* Quantizes a row's 32-element blocks (struct nvl_k_block_q8) into xs, four lanes a block,
 * eight elements a lane (k_quant8): the expressions of k_quant_q8_warp, whose maximum and
 * integer sum do not depend on the order of reduction, so the same bits, with 2 + 2 shuffles a
 * block instead of 5 + 5 and four blocks a warp at once. Block b goes to byte
 * (b / NB) * XUS + (b % NB) * 40. */
template <int NB, int XUS>
static __device__ __forceinline__ void
mv_quant_q8_row(const float *xr, const float *norm, float scale, bool rms, int64_t k, uint8_t *dst)
{
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int64_t pieces = k / 8;
    const bool vec = (((uintptr_t)xr | (uintptr_t)(rms ? norm : xr)) & 15) == 0;
    /* The eight values of a piece (x times its RMS scale and gain). */
    auto load = [&](int64_t piece, float *v) {
        const bool live = piece < pieces; /* whole blocks: k % 32 == 0 */
        float nv[8];
        if (live && vec) {
            const float4 a = ((const float4 *)xr)[2 * piece],
                         b = ((const float4 *)xr)[2 * piece + 1];
            v[0] = a.x, v[1] = a.y, v[2] = a.z, v[3] = a.w, v[4] = b.x, v[5] = b.y, v[6] = b.z,
            v[7] = b.w;
            if (rms) {
                const float4 c = ((const float4 *)norm)[2 * piece],
                             d = ((const float4 *)norm)[2 * piece + 1];
                nv[0] = c.x, nv[1] = c.y, nv[2] = c.z, nv[3] = c.w, nv[4] = d.x, nv[5] = d.y,
                nv[6] = d.z, nv[7] = d.w;
            }
        } else {
#pragma unroll
            for (int j = 0; j < 8; j++) {
                v[j] = live ? xr[8 * piece + j] : 0.0f;
                nv[j] = live && rms ? norm[8 * piece + j] : 0.0f;
            }
        }
        if (rms) {
#pragma unroll
            for (int j = 0; j < 8; j++)
                v[j] = v[j] * scale * nv[j];
        }
    };
    /* The next piece's loads are issued before this one's stores to shared memory, which the
     * compiler may not reorder them past: a 14336-element row is seven pieces a lane, and seven
     * memory latencies in a row were most of the down product's prologue. */
    float v[8], next[8];
    int64_t base = (int64_t)warp * 32;
    load(base + lane, v);
    for (; base < pieces; base += (int64_t)nw * 32) {
        const int64_t piece = base + lane;
        const bool live = piece < pieces;
        if (base + (int64_t)nw * 32 < pieces)
            load(piece + (int64_t)nw * 32, next);
        float amax = k_amax8(v);
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 1));
        amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, 2));
        uint32_t packed[2];
        int sum;
        const float d = k_quant8(v, amax, packed, &sum);
        sum += __shfl_xor_sync(0xffffffffu, sum, 1);
        sum += __shfl_xor_sync(0xffffffffu, sum, 2);
        if (live) {
            const int64_t b = piece >> 2;
            const int sub = (int)(piece & 3);
            uint8_t *blk = dst + (b / NB) * XUS + (b % NB) * (int64_t)sizeof(struct nvl_k_block_q8);
            *(uint2 *)(blk + 8 + 8 * sub) = make_uint2(packed[0], packed[1]);
            if (sub == 0)
                *(int2 *)blk = make_int2(__float_as_int(d), sum);
        }
#pragma unroll
        for (int j = 0; j < 8; j++)
            v[j] = next[j];
    }
}

/* The block's quantized activations, made in shared memory (xs, rows x_pad apart) from fp32
 * rows: RMS normalization as k_rmsnorm (k_rms_scale), quantization as k_quant_q8 / k_quant_q8k,
 * so the bits are those of the separate kernels. Every thread takes part; the block has 1, 2, 4
 * or 8 warps. */
template <int ACT, int NT, int NB, int XUS>
static __device__ void mv_make_act(const struct mv_input &in, int64_t k, uint8_t *xs,
                                   uint32_t x_pad)
{
    __shared__ double scratch[8];
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll 1
    for (int t = 0; t < NT; t++) {
        const float *xr = (const float *)(in.x + (size_t)t * in.x_stride);
        float scale = 1.0f;
        const bool rms = in.in == NVL_K_MV_IN_RMSNORM;
        if (rms)
            scale = k_rms_scale(xr, k, in.eps, scratch);
        uint8_t *dst = xs + (size_t)t * x_pad;
        if (ACT == NVL_K_ACT_Q8) {
            mv_quant_q8_row<NB, XUS>(xr, in.norm, scale, rms, k, dst);
        } else {
            /* As in mv_quant_q8_row: the next block's loads go out before this one's stores. */
            auto load = [&](int64_t b, float *v) {
#pragma unroll
                for (int j = 0; j < 8; j++) {
                    const int64_t i = b * NVL_QK_K + 8 * lane + j;
                    v[j] = rms ? xr[i] * scale * in.norm[i] : xr[i];
                }
            };
            const int64_t nb = k / NVL_QK_K;
            float v[8], next[8];
            if (warp < nb)
                load(warp, v);
            for (int64_t b = warp; b < nb; b += nw) {
                if (b + nw < nb)
                    load(b + nw, next);
                k_quant_q8k_warp(
                    v, (struct nvl_block_q8_K *)(dst + (b / NB) * XUS +
                                                 (b % NB) * sizeof(struct nvl_block_q8_K)));
#pragma unroll
                for (int j = 0; j < 8; j++)
                    v[j] = next[j];
            }
        }
    }
}

template <int T, int NB, int NT, int LPR>
static __global__ void __launch_bounds__(MV_MAX_WARPS * 32, 1)
    k_matvec(const struct mv_group g, const struct mv_input in, int64_t n_units, int64_t n_items,
             uint32_t x_pad, bool accumulate)
{
    constexpr int UB = NB * k_type<T>::block_bytes;
    constexpr int NW = (UB + 3) / 4;
    constexpr int XU = NB * K_ACT_BLOCK_BYTES(T);
    constexpr int XUS = mv_act_stride<T, NB>::value;
    constexpr bool XS = k_type<T>::act != NVL_K_ACT_F32; /* activations staged */
    constexpr int RPW = 32 / LPR;
    constexpr int SPAN = mv_span<UB, LPR>::value;
    constexpr int BUF = RPW * SPAN;
    extern __shared__ __align__(16) uint8_t mv_smem[];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nw = blockDim.x >> 5;
    const int grp = lane / LPR, gl = lane % LPR;
    /* Counts fit in 32 bits (row groups of a launch, chunks of a row): no 64-bit divisions in
     * the loop, which cost as much as a unit's dot product. */
    const int gw = blockIdx.x * nw + warp, tw = gridDim.x * nw;
    const int n_chunks = (int)((n_units + LPR - 1) / LPR);
    const int64_t n_work = g.swiglu ? n_items / 2 : n_items; /* a SwiGLU pair is one unit */
    const int my_items =
        (gw < n_work ? (int)((n_work - gw + tw - 1) / tw) : 0) * (g.swiglu ? 2 : 1);
    const int n_stages = my_items * n_chunks;
    uint8_t *xs = mv_smem;
    uint8_t *ws = mv_smem + (XS ? (size_t)NT * x_pad : 0) + (size_t)warp * MV_STAGES * BUF;

    /* Stage s of this warp: chunk s % n_chunks of its row group s / n_chunks, into buffer
     * s % MV_STAGES, walked by two cursors (the copies run MV_STAGES - 1 stages ahead of the
     * products). Always one commit group per stage (empty past the end), so that
     * mv_cp_async_wait<MV_STAGES - 1> means "stage s has landed". */
    struct mv_cursor ic, cc;
    mv_cursor_start<RPW>(g, mv_first_item(g, gw), ic);
    cc = ic;
    /* A whole chunk of an aligned group is N16 16-byte copies a row, a count known here, so the
     * copy loop unrolls with constant offsets; the last, shorter chunk of a row and unaligned
     * matrices take mv_stage. */
    constexpr int N16 = LPR * UB / 16;
    static_assert(LPR * UB % 16 == 0, "a whole chunk is a multiple of 16 bytes");
    const int last_cu = (int)(n_units - (int64_t)(n_chunks - 1) * LPR);
    int ibuf = 0; /* buffer of the next stage issued */
    auto issue = [&](int s) {
        if (s < n_stages) {
            uint8_t *buf = ws + ibuf * BUF;
            const bool full = ic.chunk < n_chunks - 1 || last_cu == LPR;
            if (full && g.aligned) {
#pragma unroll
                for (int r = 0; r < RPW; r++) {
                    if (r < ic.nrows) {
                        const uint8_t *rs = ic.src + r * ic.rb;
#pragma unroll
                        for (int j = 0; j < (N16 + 31) / 32; j++) {
                            const int i = lane + 32 * j;
                            if (N16 % 32 == 0 || i < N16)
                                mv_cp_async<16>(buf + r * SPAN + 16 * i, rs + 16 * i);
                        }
                    }
                }
            } else {
                const int cu = full ? LPR : last_cu;
                for (int r = 0; r < ic.nrows; r++)
                    mv_stage(buf + r * SPAN, ic.src + r * ic.rb, cu * UB, lane, 32);
            }
            mv_cursor_next<RPW>(g, n_chunks, LPR * UB, tw, ic);
            ibuf = ibuf == MV_STAGES - 1 ? 0 : ibuf + 1;
        }
        mv_cp_async_commit();
    };
#pragma unroll
    for (int s = 0; s < MV_STAGES - 1; s++)
        issue(s);

    k_pdl_wait();
    if (XS) {
        const int64_t k = n_units * NB * k_type<T>::block_elems;
        if (in.in == NVL_K_MV_IN_READY) {
            /* Asynchronous copies, all in flight at once (a 14336-element row is 65 KB: one
             * load after another cost the down product ~2.5 us a launch), 8 bytes each where
             * the layout allows, else 4. */
            constexpr bool CAN8 = XU % 8 == 0 && XUS % 8 == 0;
            constexpr int XU8 = CAN8 ? XU / 8 : 1; /* 8-byte words of a unit */
            const bool w8 = CAN8 && (((uintptr_t)in.x | in.x_stride) & 7) == 0;
            const int words = (int)(n_units * XU / (w8 ? 8 : 4));
#pragma unroll 1
            for (int t = 0; t < NT; t++) {
                const uint8_t *src = in.x + (size_t)t * in.x_stride;
                uint8_t *dst = xs + (size_t)t * x_pad;
                if (w8) {
                    for (int i = threadIdx.x; i < words; i += blockDim.x)
                        mv_cp_async<8>(dst + i / XU8 * XUS + i % XU8 * 8, src + 8 * i);
                } else {
                    for (int i = threadIdx.x; i < words; i += blockDim.x)
                        mv_cp_async<4>(dst + i / (XU / 4) * XUS + i % (XU / 4) * 4, src + 4 * i);
                }
            }
            mv_cp_async_commit();
            mv_cp_async_wait<0>();
        } else {
            mv_make_act<k_type<T>::act, NT, NB, XUS>(in, k, xs, x_pad);
        }
        __syncthreads();
    }
    k_pdl_launch();

    /* The main loop; with XR the lane's activations are in registers (xv), loaded once: a
     * single-token launch whose rows are one chunk (a 4096-element Q4_0 or Q4_K row: 16 lanes a
     * row) has each lane meet the same activation unit in every row it multiplies, so the
     * shared-memory loads of the activations (5 of every 6 shared loads of a Q4_0 unit) are
     * made once instead of once per row. */
    auto main_loop = [&](auto xr_tag) {
        constexpr bool XR = decltype(xr_tag)::value;
        alignas(16) uint32_t xv[XR ? (XU + 3) / 4 : 1];
        if constexpr (XR) {
            const uint32_t *src = (const uint32_t *)(xs + (size_t)gl * XUS);
#pragma unroll
            for (int i = 0; i < (XU + 3) / 4; i++)
                xv[i] = gl < n_units ? src[i] : 0u;
        }
        float acc[NT], gate[NT]; /* gate: with SwiGLU, the pair's gate rows */
#pragma unroll
        for (int t = 0; t < NT; t++)
            acc[t] = gate[t] = 0.0f;
        int cbuf = 0; /* buffer of the stage multiplied */
        for (int s = 0; s < n_stages; s++) {
            issue(s + MV_STAGES - 1);
            mv_cp_async_wait<MV_STAGES - 1>();
            __syncwarp();
            const int nrows = cc.nrows, c = cc.chunk, row0 = cc.row0;
            const int u0 = c * LPR;
            const int cu = n_units - u0 < LPR ? (int)(n_units - u0) : LPR;
            if (grp < nrows && gl < cu) {
                uint32_t w[NW];
                mv_lds<UB>(ws + cbuf * BUF + grp * SPAN + gl * UB, w);
                const int64_t u = u0 + gl;
                if constexpr (XR) {
                    k_unit_dot<T, NB>(w, (const uint8_t *)xv, acc[0]);
                } else {
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        if (XS)
                            k_unit_dot<T, NB>(w, xs + (size_t)t * x_pad + (size_t)u * XUS, acc[t]);
                        else
                            mv_plain_dot<T, NB>(w, in.x + (size_t)t * in.x_stride + (size_t)u * XU,
                                                acc[t]);
                    }
                }
            }
            if (c == n_chunks - 1) {
                /* The row's lanes, in a fixed order. */
#pragma unroll
                for (int t = 0; t < NT; t++) {
#pragma unroll
                    for (int o = LPR / 2; o > 0; o >>= 1)
                        acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
                }
                if (g.swiglu && (cc.item & 1) == 0) {
#pragma unroll
                    for (int t = 0; t < NT; t++)
                        gate[t] = acc[t];
                } else if (gl == 0 && grp < nrows) {
                    const int row = row0 + grp;
#pragma unroll
                    for (int t = 0; t < NT; t++) {
                        if (g.swiglu) {
                            g.y[0][(size_t)t * g.y_stride[0] + row] = k_silu_mul(gate[t], acc[t]);
                        } else {
                            float *dst = cc.y + (size_t)t * cc.ys + row;
                            *dst = accumulate ? *dst + acc[t] : acc[t];
                        }
                    }
                }
#pragma unroll
                for (int t = 0; t < NT; t++)
                    acc[t] = 0.0f;
            }
            mv_cursor_next<RPW>(g, n_chunks, LPR * UB, tw, cc);
            cbuf = cbuf == MV_STAGES - 1 ? 0 : cbuf + 1;
            __syncwarp(); /* every lane is done with buffer s before stage s + MV_STAGES reuses it
                           */
        }
    };
    if constexpr (NT == 1 && XS) {
        if (n_chunks == 1)
            main_loop(std::true_type{});
        else
            main_loop(std::false_type{});
    } else {
        main_loop(std::false_type{});
    }
    mv_cp_async_wait<0>();
}

/* Warps per block: MV_WARPS, or NVL_MV_WARPS for tuning. */
static int mv_warps(void)
{
    static int warps;
    if (!warps) {
        const char *v = getenv("NVL_MV_WARPS");
        const long n = v ? atol(v) : 0;
        /* Powers of two: the prologue's reduction plays 8 warps' order (k_rms_scale). */
        warps = n == 1 || n == 2 || n == 4 || n == 8 ? (int)n : MV_WARPS;
    }
    return warps;
}

/* Static shared memory of the kernels (mv_make_act's scratch), rounded up. */
#define MV_STATIC_SMEM 256

/* Largest dynamic shared memory a block may have on this device: the opt-in limit covers static
 * and dynamic shared memory together. */
static size_t mv_smem_limit(void)
{
    static size_t limit;
    if (!limit) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) !=
                cudaSuccess ||
            v < 48 * 1024)
            v = 48 * 1024;
        limit = (size_t)v - MV_STATIC_SMEM;
    }
    return limit;
}

/* Lanes per row: the smallest of 8, 16, 32 that covers the row's units (short rows share a
 * warp, so that lanes are not left idle). */
static int mv_lpr(int64_t n_units)
{
    return n_units <= 8 ? 8 : (n_units <= 16 ? 16 : 32);
}

template <int T, int NB> static size_t mv_x_pad(int64_t n_units)
{
    return k_type<T>::act == NVL_K_ACT_F32
               ? 0
               : ((size_t)n_units * mv_act_stride<T, NB>::value + 15) / 16 * 16;
}

template <int T, int NB, int NT> static size_t mv_smem_bytes(int64_t n_units, int warps)
{
    constexpr int UB = NB * k_type<T>::block_bytes;
    const int lpr = mv_lpr(n_units);
    const size_t span = lpr == 8 ? mv_span<UB, 8>::value
                                 : (lpr == 16 ? mv_span<UB, 16>::value : mv_span<UB, 32>::value);
    return NT * mv_x_pad<T, NB>(n_units) + (size_t)warps * MV_STAGES * (32 / lpr) * span;
}

/* Multiprocessors of the current device. */
static int mv_sms(void)
{
    static int sms;
    if (!sms) {
        int dev = 0, v = 0;
        if (cudaGetDevice(&dev) != cudaSuccess ||
            cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || v < 1)
            v = 1;
        sms = v;
    }
    return sms;
}

template <int T, int NB, int NT, int LPR>
static int mv_go(const struct mv_group &g, const struct mv_input &in, int64_t n_units,
                 bool accumulate, int warps, size_t smem, cudaStream_t stream)
{
    static size_t opted; /* per kernel: the dynamic shared memory it was allowed */
    if (smem > 48 * 1024 && smem > opted) {
        const size_t lim = mv_smem_limit();
        if (cudaFuncSetAttribute(k_matvec<T, NB, NT, LPR>,
                                 cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 (int)lim) != cudaSuccess)
            return nvl__k_launch_check("matvec (shared memory)");
        opted = lim;
    }
    /* Persistent grid: the blocks that fit on the GPU at once, or fewer for a small launch. */
    int per_sm = 0;
    if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, k_matvec<T, NB, NT, LPR>, warps * 32,
                                                      smem) != cudaSuccess) {
        cudaGetLastError(); /* a smaller grid is still right: not the launch's error */
        per_sm = 1;
    }
    if (per_sm < 1)
        per_sm = 1;
    const int64_t n_items = g.item_end[NVL_K_MV_GROUP - 1];
    int64_t blocks = (n_items + warps - 1) / warps;
    if (blocks > (int64_t)per_sm * mv_sms())
        blocks = (int64_t)per_sm * mv_sms();
    return k_launch("matvec", k_matvec<T, NB, NT, LPR>, dim3((unsigned)blocks), dim3(warps * 32),
                    smem, stream, g, in, n_units, n_items, (uint32_t)mv_x_pad<T, NB>(n_units),
                    accumulate);
}

/* Launches the group for type T over tokens [t0, t0 + NT). The shape (lanes per row, warps)
 * depends only on the matrices' shapes; the grid only on them and the device. */
template <int T, int NB, int NT>
static int mv_launch(const struct nvl_k_matmul *mm, int n, bool swiglu, int32_t t0,
                     cudaStream_t stream)
{
    const int64_t n_units = mm[0].k / ((int64_t)NB * k_type<T>::block_elems);
    const int lpr = mv_lpr(n_units), rpw = 32 / lpr;
    int warps = mv_warps();
    while (warps > 1 && mv_smem_bytes<T, NB, NT>(n_units, warps) > mv_smem_limit())
        warps /= 2;
    const size_t smem = mv_smem_bytes<T, NB, NT>(n_units, warps);
    if (smem > mv_smem_limit())
        return -E2BIG;
    struct mv_group g;
    memset(&g, 0, sizeof(g));
    int end = 0; /* row counts are below 2^31 (nvl__k_matvec_group), row groups no more */
    g.aligned = 1;
    g.swiglu = swiglu;
    for (int i = 0; i < NVL_K_MV_GROUP; i++) {
        if (i < n) {
            g.w[i] = (const uint8_t *)mm[i].w;
            g.row_bytes[i] = mm[i].row_bytes;
            g.rows[i] = (int)mm[i].rows;
            if (((uintptr_t)mm[i].w | mm[i].row_bytes) & 15)
                g.aligned = 0;
            g.y[i] = mm[i].y + (size_t)t0 * mm[i].y_stride;
            g.y_stride[i] = mm[i].y_stride;
            end += (int)((mm[i].rows + rpw - 1) / rpw);
        }
        g.item_end[i] = end;
    }
    struct mv_input in;
    in.x = (const uint8_t *)mm[0].x + (size_t)t0 * mm[0].x_stride;
    in.x_stride = mm[0].x_stride;
    in.in = (int)mm[0].in;
    in.norm = mm[0].norm;
    in.eps = mm[0].eps;
    const bool acc = mm[0].accumulate;
    switch (lpr) {
    case 8:
        return mv_go<T, NB, NT, 8>(g, in, n_units, acc, warps, smem, stream);
    case 16:
        return mv_go<T, NB, NT, 16>(g, in, n_units, acc, warps, smem, stream);
    default:
        return mv_go<T, NB, NT, 32>(g, in, n_units, acc, warps, smem, stream);
    }
}

template <int T>
static int mv_type(const struct nvl_k_matmul *mm, int n, bool swiglu, cudaStream_t stream)
{
    constexpr int FB = mv_fast_blocks<T>();
    const bool fast = mm[0].k % ((int64_t)FB * k_type<T>::block_elems) == 0;
    int32_t t = 0;
    int rc = 0;
    /* Several tokens per pass while their activations fit in shared memory. */
    const bool multi =
        fast ? mv_smem_bytes<T, FB, MV_TOK>(mm[0].k / (FB * k_type<T>::block_elems), 1) <=
                   mv_smem_limit()
             : mv_smem_bytes<T, 1, MV_TOK>(mm[0].k / k_type<T>::block_elems, 1) <= mv_smem_limit();
    for (; multi && rc == 0 && t + MV_TOK <= mm[0].n_tok; t += MV_TOK)
        rc = fast ? mv_launch<T, FB, MV_TOK>(mm, n, swiglu, t, stream)
                  : mv_launch<T, 1, MV_TOK>(mm, n, swiglu, t, stream);
    for (; rc == 0 && t < mm[0].n_tok; t++)
        rc = fast ? mv_launch<T, FB, 1>(mm, n, swiglu, t, stream)
                  : mv_launch<T, 1, 1>(mm, n, swiglu, t, stream);
    return rc;
}

static int mv_group(const struct nvl_k_matmul *mm, int n, bool swiglu, cudaStream_t stream)
{
    if (n < 1 || n > NVL_K_MV_GROUP)
        return -EINVAL;
    for (int i = 0; i < n; i++)
        if (!nvl__k_type_supported(mm[i].type) || mm[i].n_tok < 1 || mm[i].rows < 1 ||
            mm[i].rows > INT32_MAX / NVL_K_MV_GROUP || mm[i].k < 1 ||
            mm[i].k % nvl_ggml_block_size(mm[i].type) != 0 || mm[i].type != mm[0].type ||
            mm[i].k != mm[0].k || mm[i].x != mm[0].x || mm[i].x_stride != mm[0].x_stride ||
            mm[i].n_tok != mm[0].n_tok || mm[i].accumulate != mm[0].accumulate ||
            mm[i].in != mm[0].in || mm[i].norm != mm[0].norm || mm[i].eps != mm[0].eps)
            return -EINVAL;
    /* A prologue makes quantized activations (so only for quantized weights) from fp32 rows;
     * ready activation rows are copied to shared memory in 4-byte words. */
    if (mm[0].in != NVL_K_MV_IN_READY &&
        (nvl__k_act_for(mm[0].type) == NVL_K_ACT_F32 || mm[0].k % 32 ||
         (nvl__k_act_for(mm[0].type) == NVL_K_ACT_Q8K && mm[0].k % NVL_QK_K) ||
         (mm[0].in == NVL_K_MV_IN_RMSNORM && !mm[0].norm) ||
         (mm[0].in != NVL_K_MV_IN_F32 && mm[0].in != NVL_K_MV_IN_RMSNORM) ||
         mm[0].x_stride % sizeof(float)))
        return -EINVAL;
    if (mm[0].in == NVL_K_MV_IN_READY && nvl__k_act_for(mm[0].type) != NVL_K_ACT_F32 &&
        (mm[0].x_stride % 4 || ((uintptr_t)mm[0].x & 3)))
        return -EINVAL;
    int rc;
    switch (mm[0].type) {
#define MV_CASE(S)                                                                                 \
    case NVL_GGML_TYPE_##S:                                                                        \
        rc = mv_type<NVL_GGML_TYPE_##S>(mm, n, swiglu, stream);                                    \
        break;
        K_PLAIN_TYPES(MV_CASE)
        K_QUANT_TYPES(MV_CASE)
#undef MV_CASE
    default:
        return -EINVAL;
    }
    if (rc == -E2BIG)
        nvl_log_error("kernels", "matvec: rows of %lld elements do not fit in shared memory",
                      (long long)mm[0].k);
    return rc;
}

extern "C" int nvl__k_matvec_group(const struct nvl_k_matmul *mm, int n, cudaStream_t stream)
{
    return mv_group(mm, n, false, stream);
}

extern "C" int nvl__k_matvec(const struct nvl_k_matmul *mm, cudaStream_t stream)
{
    return mv_group(mm, 1, false, stream);
}

extern "C" int nvl__k_matvec_swiglu(const struct nvl_k_matmul *gate_up, cudaStream_t stream)
{
    if (gate_up[0].rows != gate_up[1].rows || gate_up[0].accumulate || gate_up[0].y == gate_up[1].y)
        return -EINVAL;
    return mv_group(gate_up, 2, true, stream);
}
