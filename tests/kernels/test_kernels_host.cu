// The GPU kernels' block arithmetic (model/kernels/qblock.cuh), run on the host: every format's
// unit dot product against a double-precision reference built from nvl_dequantize_row() and the
// dequantized activations, and every 32-element dequantizer against nvl_dequantize_row(). This
// needs no GPU, so CI checks the bit layouts the kernels decode; tests/kernels/test_kernels.c
// runs the kernels themselves on a GPU.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "kernels_test_util.h"
#include "qblock.cuh"

// The CPU backend's dot products of the formats whose GPU blocks follow them one block after
// the other (model/src/cpu_ops.c): the same integer sums and per-block float expression, added
// in the same order, so the host run of k_unit_dot must agree to rounding.
extern "C" float nvl__cpu_dot_q2_K_generic(const void *w, const void *x, int64_t n);
extern "C" float nvl__cpu_dot_q3_K_generic(const void *w, const void *x, int64_t n);

template <int T> static bool cpu_dot(const uint8_t *row, const uint8_t *x, int64_t k, float *out)
{
    if (T == NVL_GGML_TYPE_Q2_K)
        *out = nvl__cpu_dot_q2_K_generic(row, x, k);
    else if (T == NVL_GGML_TYPE_Q3_K)
        *out = nvl__cpu_dot_q3_K_generic(row, x, k);
    else
        return false;
    return true;
}

static int failures = 0;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            std::printf("FAIL %s:%d: ", __FILE__, __LINE__);                                       \
            std::printf(__VA_ARGS__);                                                              \
            std::printf("\n");                                                                     \
            failures++;                                                                            \
        }                                                                                          \
    } while (0)

// Reference activation quantization (the CPU's definition): d = amax / 127, q = rint(x / d).
static void quantize_act(int act, const float *x, int64_t k, std::vector<uint8_t> &out,
                         std::vector<float> &deq)
{
    out.assign(nvl__k_act_row_bytes((enum nvl_k_act)act, k), 0);
    deq.assign((size_t)k, 0.0f);
    if (act == NVL_K_ACT_F32) {
        std::memcpy(out.data(), x, (size_t)k * 4);
        deq.assign(x, x + k);
        return;
    }
    const int bl = act == NVL_K_ACT_Q8 ? 32 : 256;
    for (int64_t b = 0; b < k / bl; b++) {
        const float *xb = x + b * bl;
        float amax = 0.0f;
        for (int j = 0; j < bl; j++)
            amax = std::fmax(amax, std::fabs(xb[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        int8_t q[256];
        int sum = 0;
        for (int j = 0; j < bl; j++) {
            q[j] = (int8_t)std::lrint(xb[j] * id);
            sum += q[j];
            deq[(size_t)(b * bl + j)] = d * (float)q[j];
        }
        if (act == NVL_K_ACT_Q8) {
            nvl_k_block_q8 blk;
            blk.d = d;
            blk.sum = sum;
            std::memcpy(blk.qs, q, 32);
            std::memcpy(out.data() + b * sizeof(blk), &blk, sizeof(blk));
        } else {
            nvl_block_q8_K blk;
            blk.d = d;
            std::memcpy(blk.qs, q, 256);
            for (int g = 0; g < 16; g++) {
                int s = 0;
                for (int j = 0; j < 16; j++)
                    s += q[g * 16 + j];
                blk.bsums[g] = (int16_t)s;
            }
            std::memcpy(out.data() + b * sizeof(blk), &blk, sizeof(blk));
        }
    }
}

// Dot of one row through k_unit_dot with NB blocks per unit.
template <int T, int NB> static float unit_row_dot(const uint8_t *row, const uint8_t *x, int64_t k)
{
    constexpr int UB = NB * k_type<T>::block_bytes;
    constexpr int NW = (UB + 3) / 4;
    constexpr int XU = NB * K_ACT_BLOCK_BYTES(T);
    const int64_t units = k / ((int64_t)NB * k_type<T>::block_elems);
    float acc = 0.0f;
    for (int64_t u = 0; u < units; u++) {
        uint32_t w[NW + 1] = {0};
        std::memcpy(w, row + u * UB, UB);
        k_unit_dot<T, NB>(w, x + u * XU, acc);
    }
    return acc;
}

template <int T> static void check_type(int64_t k)
{
    const enum nvl_ggml_type type = (enum nvl_ggml_type)T;
    const char *name = nvl_ggml_type_name(T);
    const int rows = 8;
    uint64_t rb;
    uint8_t *w = ku_matrix(type, rows, k, &rb);
    std::vector<float> x((size_t)k), wd((size_t)k);
    ku_floats(x.data(), k, 2.0f);
    std::vector<uint8_t> xq;
    std::vector<float> xd;
    quantize_act(k_type<T>::act, x.data(), k, xq, xd);
    for (int r = 0; r < rows; r++) {
        const uint8_t *row = w + (uint64_t)r * rb;
        CHECK(nvl_dequantize_row(T, row, wd.data(), k) == 0, "%s dequantize", name);
        double ref = 0.0, mag = 0.0;
        for (int64_t i = 0; i < k; i++) {
            ref += (double)wd[(size_t)i] * xd[(size_t)i];
            mag += std::fabs((double)wd[(size_t)i] * xd[(size_t)i]);
        }
        const double tol = 2e-6 * mag + 1e-30;
        const float one = unit_row_dot<T, 1>(row, xq.data(), k);
        CHECK(std::fabs(one - ref) <= tol, "%s k=%lld row %d: one-block units %.9g, ref %.9g", name,
              (long long)k, r, one, ref);
        float cpu;
        if (cpu_dot<T>(row, xq.data(), k, &cpu))
            CHECK(std::fabs(one - cpu) <= 1e-6 * mag, "%s k=%lld row %d: %.9g, CPU dot %.9g", name,
                  (long long)k, r, one, cpu);
        constexpr int FB = k_type<T>::fast_blocks;
        if (k % (FB * k_type<T>::block_elems) == 0) {
            const float fast = unit_row_dot<T, FB>(row, xq.data(), k);
            CHECK(std::fabs(fast - ref) <= tol, "%s k=%lld row %d: fast units %.9g, ref %.9g", name,
                  (long long)k, r, fast, ref);
        }
        // Dequantization, 32 elements at a time.
        for (int64_t c = 0; c < k / 32; c++) {
            int64_t off;
            int sub;
            k_chunk_pos<T>(c, &off, &sub);
            float y[32];
            k_dequant32<T>(row + off, sub, y);
            for (int j = 0; j < 32; j++) {
                const float e = wd[(size_t)(c * 32 + j)];
                CHECK(std::fabs(y[j] - e) <= 1e-6f * std::fabs(e),
                      "%s dequant chunk %lld [%d]: %g != %g", name, (long long)c, j, y[j], e);
                if (std::fabs(y[j] - e) > 1e-6f * std::fabs(e))
                    return;
            }
        }
    }
    std::free(w);
}

int main()
{
    for (int64_t k : {256, 512, 2048}) {
        check_type<NVL_GGML_TYPE_F32>(k);
        check_type<NVL_GGML_TYPE_F16>(k);
        check_type<NVL_GGML_TYPE_BF16>(k);
        check_type<NVL_GGML_TYPE_Q4_0>(k);
        check_type<NVL_GGML_TYPE_Q4_1>(k);
        check_type<NVL_GGML_TYPE_Q5_0>(k);
        check_type<NVL_GGML_TYPE_Q5_1>(k);
        check_type<NVL_GGML_TYPE_Q8_0>(k);
        check_type<NVL_GGML_TYPE_Q2_K>(k);
        check_type<NVL_GGML_TYPE_Q3_K>(k);
        check_type<NVL_GGML_TYPE_Q4_K>(k);
        check_type<NVL_GGML_TYPE_Q5_K>(k);
        check_type<NVL_GGML_TYPE_Q6_K>(k);
    }
    // Rows that are not whole fast units (one-block units only).
    for (int64_t k : {96, 576}) {
        check_type<NVL_GGML_TYPE_F16>(k);
        check_type<NVL_GGML_TYPE_Q4_0>(k);
        check_type<NVL_GGML_TYPE_Q4_1>(k);
        check_type<NVL_GGML_TYPE_Q5_0>(k);
        check_type<NVL_GGML_TYPE_Q5_1>(k);
        check_type<NVL_GGML_TYPE_Q8_0>(k);
    }
    if (failures) {
        std::printf("%d failures\n", failures);
        return 1;
    }
    std::printf("qblock: all formats match the reference\n");
    return 0;
}
