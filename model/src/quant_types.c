/* ggml type table (names, block sizes, bytes per block) and the row (de)quantization dispatch. */
#include "nvl_model/quant.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

#include "quant_internal.h"

/* Block sizes and byte sizes as in ggml's type_traits table (ggml.c). */
static const struct nvl_ggml_type_traits type_traits[NVL_GGML_TYPE_COUNT] = {
    [NVL_GGML_TYPE_F32] = {"f32", 1, 4, false, true, true},
    [NVL_GGML_TYPE_F16] = {"f16", 1, 2, false, true, true},
    [NVL_GGML_TYPE_Q4_0] = {"q4_0", NVL_QK4_0, sizeof(struct nvl_block_q4_0), true, true, true},
    [NVL_GGML_TYPE_Q4_1] = {"q4_1", NVL_QK4_1, sizeof(struct nvl_block_q4_1), true, true, true},
    [NVL_GGML_TYPE_Q5_0] = {"q5_0", NVL_QK5_0, sizeof(struct nvl_block_q5_0), true, true, true},
    [NVL_GGML_TYPE_Q5_1] = {"q5_1", NVL_QK5_1, sizeof(struct nvl_block_q5_1), true, true, true},
    [NVL_GGML_TYPE_Q8_0] = {"q8_0", NVL_QK8_0, sizeof(struct nvl_block_q8_0), true, true, true},
    [NVL_GGML_TYPE_Q8_1] = {"q8_1", NVL_QK8_1, sizeof(struct nvl_block_q8_1), true, true, true},
    [NVL_GGML_TYPE_Q2_K] = {"q2_K", NVL_QK_K, sizeof(struct nvl_block_q2_K), true, true, false},
    [NVL_GGML_TYPE_Q3_K] = {"q3_K", NVL_QK_K, sizeof(struct nvl_block_q3_K), true, true, false},
    [NVL_GGML_TYPE_Q4_K] = {"q4_K", NVL_QK_K, sizeof(struct nvl_block_q4_K), true, true, true},
    [NVL_GGML_TYPE_Q5_K] = {"q5_K", NVL_QK_K, sizeof(struct nvl_block_q5_K), true, true, false},
    [NVL_GGML_TYPE_Q6_K] = {"q6_K", NVL_QK_K, sizeof(struct nvl_block_q6_K), true, true, true},
    [NVL_GGML_TYPE_Q8_K] = {"q8_K", NVL_QK_K, sizeof(struct nvl_block_q8_K), true, true, true},
    [NVL_GGML_TYPE_IQ2_XXS] = {"iq2_xxs", NVL_QK_K, 66, true, false, false},
    [NVL_GGML_TYPE_IQ2_XS] = {"iq2_xs", NVL_QK_K, 74, true, false, false},
    [NVL_GGML_TYPE_IQ3_XXS] = {"iq3_xxs", NVL_QK_K, 98, true, false, false},
    [NVL_GGML_TYPE_IQ1_S] = {"iq1_s", NVL_QK_K, 50, true, false, false},
    [NVL_GGML_TYPE_IQ4_NL] = {"iq4_nl", 32, 18, true, false, false},
    [NVL_GGML_TYPE_IQ3_S] = {"iq3_s", NVL_QK_K, 110, true, false, false},
    [NVL_GGML_TYPE_IQ2_S] = {"iq2_s", NVL_QK_K, 82, true, false, false},
    [NVL_GGML_TYPE_IQ4_XS] = {"iq4_xs", NVL_QK_K, 136, true, false, false},
    [NVL_GGML_TYPE_I8] = {"i8", 1, 1, false, false, false},
    [NVL_GGML_TYPE_I16] = {"i16", 1, 2, false, false, false},
    [NVL_GGML_TYPE_I32] = {"i32", 1, 4, false, false, false},
    [NVL_GGML_TYPE_I64] = {"i64", 1, 8, false, false, false},
    [NVL_GGML_TYPE_F64] = {"f64", 1, 8, false, false, false},
    [NVL_GGML_TYPE_IQ1_M] = {"iq1_m", NVL_QK_K, 56, true, false, false},
    [NVL_GGML_TYPE_BF16] = {"bf16", 1, 2, false, true, true},
    [NVL_GGML_TYPE_TQ1_0] = {"tq1_0", NVL_QK_K, 54, true, false, false},
    [NVL_GGML_TYPE_TQ2_0] = {"tq2_0", NVL_QK_K, 66, true, false, false},
    [NVL_GGML_TYPE_MXFP4] = {"mxfp4", 32, 17, true, false, false},
    [NVL_GGML_TYPE_NVFP4] = {"nvfp4", 64, 36, true, false, false},
    [NVL_GGML_TYPE_Q1_0] = {"q1_0", 128, 18, true, false, false},
};

const struct nvl_ggml_type_traits *nvl_ggml_type_traits(uint32_t type)
{
    if (type >= NVL_GGML_TYPE_COUNT || !type_traits[type].name)
        return NULL;
    return &type_traits[type];
}

const char *nvl_ggml_type_name(uint32_t type)
{
    const struct nvl_ggml_type_traits *t = nvl_ggml_type_traits(type);

    return t ? t->name : "unknown";
}

int nvl_ggml_type_from_name(const char *name, enum nvl_ggml_type *out)
{
    if (!name)
        return -EINVAL;
    for (uint32_t i = 0; i < NVL_GGML_TYPE_COUNT; i++) {
        if (type_traits[i].name && !strcasecmp(type_traits[i].name, name)) {
            *out = (enum nvl_ggml_type)i;
            return 0;
        }
    }
    return -EINVAL;
}

uint32_t nvl_ggml_block_size(uint32_t type)
{
    const struct nvl_ggml_type_traits *t = nvl_ggml_type_traits(type);

    return t ? t->block_size : 0;
}

uint32_t nvl_ggml_type_size(uint32_t type)
{
    const struct nvl_ggml_type_traits *t = nvl_ggml_type_traits(type);

    return t ? t->type_size : 0;
}

int nvl_ggml_row_size(uint32_t type, uint64_t n, uint64_t *bytes)
{
    const struct nvl_ggml_type_traits *t = nvl_ggml_type_traits(type);
    uint64_t blocks;

    if (!t || n % t->block_size)
        return -EINVAL;
    blocks = n / t->block_size;
    if (blocks > UINT64_MAX / t->type_size)
        return -EOVERFLOW;
    *bytes = blocks * t->type_size;
    return 0;
}

static void copy_f32_dequant(const void *restrict src, float *restrict dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

static void copy_f32_quant(const float *restrict src, void *restrict dst, int64_t n)
{
    memcpy(dst, src, (size_t)n * sizeof(float));
}

/* Row kernels by type; a type has one exactly when its traits say can_dequantize / can_quantize
 * (test_quant checks the two tables agree). */
static const struct {
    void (*dequant)(const void *restrict src, float *restrict dst, int64_t n);
    void (*quant)(const float *restrict src, void *restrict dst, int64_t n);
} row_kernels[NVL_GGML_TYPE_COUNT] = {
    [NVL_GGML_TYPE_F32] = {copy_f32_dequant, copy_f32_quant},
    [NVL_GGML_TYPE_F16] = {nvl__dequant_f16, nvl__quant_f16},
    [NVL_GGML_TYPE_BF16] = {nvl__dequant_bf16, nvl__quant_bf16},
    [NVL_GGML_TYPE_Q4_0] = {nvl__dequant_q4_0, nvl__quant_q4_0},
    [NVL_GGML_TYPE_Q4_1] = {nvl__dequant_q4_1, nvl__quant_q4_1},
    [NVL_GGML_TYPE_Q5_0] = {nvl__dequant_q5_0, nvl__quant_q5_0},
    [NVL_GGML_TYPE_Q5_1] = {nvl__dequant_q5_1, nvl__quant_q5_1},
    [NVL_GGML_TYPE_Q8_0] = {nvl__dequant_q8_0, nvl__quant_q8_0},
    [NVL_GGML_TYPE_Q8_1] = {nvl__dequant_q8_1, nvl__quant_q8_1},
    [NVL_GGML_TYPE_Q2_K] = {nvl__dequant_q2_K, NULL},
    [NVL_GGML_TYPE_Q3_K] = {nvl__dequant_q3_K, NULL},
    [NVL_GGML_TYPE_Q4_K] = {nvl__dequant_q4_K, nvl__quant_q4_K},
    [NVL_GGML_TYPE_Q5_K] = {nvl__dequant_q5_K, NULL},
    [NVL_GGML_TYPE_Q6_K] = {nvl__dequant_q6_K, nvl__quant_q6_K},
    [NVL_GGML_TYPE_Q8_K] = {nvl__dequant_q8_K, nvl__quant_q8_K},
};

/* The kernels run only on whole blocks of a known type. */
static int row_check(uint32_t type, int64_t n, bool can)
{
    const struct nvl_ggml_type_traits *t = nvl_ggml_type_traits(type);

    if (!t || !can)
        return -ENOTSUP;
    if (n < 0 || n % t->block_size)
        return -EINVAL;
    return 0;
}

int nvl_dequantize_row(uint32_t type, const void *src, float *dst, int64_t n)
{
    int rc = row_check(type, n, type < NVL_GGML_TYPE_COUNT && row_kernels[type].dequant);

    if (!rc)
        row_kernels[type].dequant(src, dst, n);
    return rc;
}

int nvl_quantize_row(uint32_t type, const float *src, void *dst, int64_t n)
{
    int rc = row_check(type, n, type < NVL_GGML_TYPE_COUNT && row_kernels[type].quant);

    if (!rc)
        row_kernels[type].quant(src, dst, n);
    return rc;
}
