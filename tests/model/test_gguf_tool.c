/* Helper program for test_gguf_pyref.py, which checks our GGUF reader, writer and quant code
 * against the independent `gguf` Python package:
 *
 *   test_gguf_tool write-all OUT.gguf          write a file with every metadata type and tensors
 *   test_gguf_tool dump FILE.gguf              print metadata and tensors in a canonical form
 *   test_gguf_tool dequant TYPE IN.bin OUT.f32 dequantize raw blocks
 *   test_gguf_tool quant TYPE IN.f32 OUT.bin   quantize fp32 values
 *   test_gguf_tool types                       print the ggml type table
 *
 * The values written by write-all follow simple formulas that the Python side recomputes. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "model_test_util.h"
#include "nvl_model.h"

static int write_file(const char *path, const void *p, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok;

    if (!f)
        return -1;
    ok = fwrite(p, 1, len, f) == len;
    return fclose(f) == 0 && ok ? 0 : -1;
}

static int write_all(const char *path)
{
    static const uint8_t u8s[] = {0, 1, 2, 255};
    static const int8_t i8s[] = {-128, -1, 0, 127};
    static const uint16_t u16s[] = {0, 1, 65535};
    static const int16_t i16s[] = {-32768, 0, 32767};
    static const uint32_t u32s[] = {0, 123456789, 4294967295u};
    static const int32_t i32s[] = {-2147483647 - 1, 0, 2147483647};
    static const float f32s[] = {0.5f, -1.25f, 1e30f};
    static const bool bools[] = {true, false, false, true};
    static const uint64_t u64s[] = {0, 18446744073709551615ull};
    static const int64_t i64s[] = {-9223372036854775807ll - 1, 9223372036854775807ll};
    static const double f64s[] = {0.1, -1e-300};
    static const char *const strs[] = {"one", "", "tr\xc3\xa8s", "<|im_start|>"};
    const uint64_t ne_f32[2] = {4, 3}, ne_f16[2] = {8, 2}, ne_q8[2] = {64, 2}, ne_q4k[1] = {256},
                   ne_3d[3] = {2, 3, 4};
    float f32[12], f32_3d[24];
    uint16_t f16[16], bf16[16];
    uint8_t q8[4 * 34], q4k[144];
    struct nvl_gguf_writer *w;
    char err[512];
    int ret;

    for (int i = 0; i < 12; i++)
        f32[i] = (float)i * 0.25f - 1.0f;
    for (int i = 0; i < 24; i++)
        f32_3d[i] = (float)i;
    for (int i = 0; i < 16; i++) {
        f16[i] = nvl_fp32_to_fp16((float)i - 7.5f);
        bf16[i] = nvl_fp32_to_bf16((float)i * 1.5f);
    }
    for (size_t i = 0; i < sizeof(q8); i++)
        q8[i] = (uint8_t)((i * 31 + 7) % 256);
    for (size_t i = 0; i < sizeof(q4k); i++)
        q4k[i] = (uint8_t)((i * 17 + 3) % 256);

    if (nvl_gguf_writer_create(&w))
        return 1;
    ret = nvl_gguf_writer_set_str(w, "general.architecture", "llama");
    ret |= nvl_gguf_writer_set_u8(w, "test.u8", 250);
    ret |= nvl_gguf_writer_set_i8(w, "test.i8", -120);
    ret |= nvl_gguf_writer_set_u16(w, "test.u16", 65000);
    ret |= nvl_gguf_writer_set_i16(w, "test.i16", -32000);
    ret |= nvl_gguf_writer_set_u32(w, "test.u32", 4000000000u);
    ret |= nvl_gguf_writer_set_i32(w, "test.i32", -2000000000);
    ret |= nvl_gguf_writer_set_f32(w, "test.f32", 3.5f);
    ret |= nvl_gguf_writer_set_bool(w, "test.bool", true);
    ret |= nvl_gguf_writer_set_str(w, "test.str", "h\xc3\xa9llo, world");
    ret |= nvl_gguf_writer_set_u64(w, "test.u64", 18000000000000000000ull);
    ret |= nvl_gguf_writer_set_i64(w, "test.i64", -9000000000000000000ll);
    ret |= nvl_gguf_writer_set_f64(w, "test.f64", 2.718281828459045);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.u8", NVL_GGUF_TYPE_UINT8, u8s, 4);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.i8", NVL_GGUF_TYPE_INT8, i8s, 4);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.u16", NVL_GGUF_TYPE_UINT16, u16s, 3);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.i16", NVL_GGUF_TYPE_INT16, i16s, 3);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.u32", NVL_GGUF_TYPE_UINT32, u32s, 3);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.i32", NVL_GGUF_TYPE_INT32, i32s, 3);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.f32", NVL_GGUF_TYPE_FLOAT32, f32s, 3);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.bool", NVL_GGUF_TYPE_BOOL, bools, 4);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.u64", NVL_GGUF_TYPE_UINT64, u64s, 2);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.i64", NVL_GGUF_TYPE_INT64, i64s, 2);
    ret |= nvl_gguf_writer_set_arr(w, "test.arr.f64", NVL_GGUF_TYPE_FLOAT64, f64s, 2);
    ret |= nvl_gguf_writer_set_arr_str(w, "test.arr.str", strs, NULL, 4);
    ret |= nvl_gguf_writer_set_alignment(w, 64);
    ret |= nvl_gguf_writer_add_tensor(w, "t.f32", NVL_GGML_TYPE_F32, 2, ne_f32, f32);
    ret |= nvl_gguf_writer_add_tensor(w, "t.f16", NVL_GGML_TYPE_F16, 2, ne_f16, f16);
    ret |= nvl_gguf_writer_add_tensor(w, "t.bf16", NVL_GGML_TYPE_BF16, 2, ne_f16, bf16);
    ret |= nvl_gguf_writer_add_tensor(w, "t.q8_0", NVL_GGML_TYPE_Q8_0, 2, ne_q8, q8);
    ret |= nvl_gguf_writer_add_tensor(w, "t.q4_k", NVL_GGML_TYPE_Q4_K, 1, ne_q4k, q4k);
    ret |= nvl_gguf_writer_add_tensor(w, "t.f32_3d", NVL_GGML_TYPE_F32, 3, ne_3d, f32_3d);
    if (ret) {
        fprintf(stderr, "writer setup failed\n");
        return 1;
    }
    ret = nvl_gguf_writer_write_file(w, path, err, sizeof(err));
    nvl_gguf_writer_destroy(w);
    if (ret) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    return 0;
}

static void print_hex(const void *p, uint64_t len)
{
    for (uint64_t i = 0; i < len; i++)
        printf("%02x", ((const uint8_t *)p)[i]);
}

/* A string as "x" and its hex, a number or bool as the library formats it (which Python reads
 * back exactly). */
static void print_value(const struct nvl_gguf_value *v)
{
    char buf[64];

    if (v->type == NVL_GGUF_TYPE_STRING) {
        print_hex(v->str.data, v->str.len);
    } else if (nvl_gguf_value_format(v, buf, sizeof(buf)) > 0) {
        fputs(buf, stdout);
    } else {
        putchar('?');
    }
}

static int dump(const char *path)
{
    struct nvl_gguf *g;
    char err[512];

    if (nvl_gguf_open(path, &g, err, sizeof(err))) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    printf("version %" PRIu32 "\nalignment %" PRIu32 "\ndata_offset %" PRIu64 "\n",
           nvl_gguf_version(g), nvl_gguf_alignment(g), nvl_gguf_data_offset(g));
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g); i++) {
        struct nvl_gguf_value v;

        nvl_gguf_kv_value(g, (int64_t)i, &v);
        printf("kv %s %s ", nvl_gguf_kv_key(g, (int64_t)i), nvl_gguf_type_name(v.type));
        if (v.type == NVL_GGUF_TYPE_ARRAY) {
            printf("%s %" PRIu64, nvl_gguf_type_name(v.arr.type), v.arr.count);
            for (uint64_t j = 0; j < v.arr.count; j++) {
                struct nvl_gguf_value e;

                nvl_gguf_arr_value(g, (int64_t)i, j, &e);
                printf(e.type == NVL_GGUF_TYPE_STRING ? " x" : " ");
                print_value(&e);
            }
        } else {
            print_value(&v);
        }
        printf("\n");
    }
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);

        printf("tensor %s %s %" PRIu32, t->name, nvl_ggml_type_name(t->type), t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            printf("%c%" PRIu64, d ? ',' : ' ', t->ne[d]);
        printf(" %" PRIu64 " %" PRIu64 " ", t->offset, t->size);
        print_hex(nvl_gguf_tensor_data(g, t), t->size);
        printf("\n");
    }
    nvl_gguf_close(g);
    return 0;
}

static int convert(int quantize, const char *type_name, const char *in, const char *out)
{
    enum nvl_ggml_type type;
    size_t len;
    uint64_t n, bytes;
    void *src, *dst;
    int ret;

    if (nvl_ggml_type_from_name(type_name, &type)) {
        fprintf(stderr, "unknown type %s\n", type_name);
        return 1;
    }
    src = mt_read_file(in, &len);
    if (!src) {
        fprintf(stderr, "cannot read %s\n", in);
        return 1;
    }
    if (quantize) {
        n = len / sizeof(float);
        if (nvl_ggml_row_size(type, n, &bytes)) {
            fprintf(stderr, "bad element count %" PRIu64 "\n", n);
            return 1;
        }
        dst = malloc(bytes ? bytes : 1);
        ret = nvl_quantize_row(type, src, dst, (int64_t)n);
    } else {
        n = len / nvl_ggml_type_size(type) * nvl_ggml_block_size(type);
        bytes = n * sizeof(float);
        dst = malloc(bytes ? bytes : 1);
        ret = nvl_dequantize_row(type, src, dst, (int64_t)n);
    }
    if (ret) {
        fprintf(stderr, "conversion failed: %d\n", ret);
        return 1;
    }
    ret = write_file(out, dst, (size_t)bytes);
    free(src);
    free(dst);
    return ret ? 1 : 0;
}

static int types(void)
{
    for (uint32_t t = 0; t < NVL_GGML_TYPE_COUNT; t++) {
        const struct nvl_ggml_type_traits *tr = nvl_ggml_type_traits(t);

        if (tr)
            printf("%" PRIu32 " %s %" PRIu32 " %" PRIu32 " %d %d\n", t, tr->name, tr->block_size,
                   tr->type_size, tr->can_dequantize, tr->can_quantize);
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 3 && !strcmp(argv[1], "write-all"))
        return write_all(argv[2]);
    if (argc == 3 && !strcmp(argv[1], "dump"))
        return dump(argv[2]);
    if (argc == 5 && !strcmp(argv[1], "dequant"))
        return convert(0, argv[2], argv[3], argv[4]);
    if (argc == 5 && !strcmp(argv[1], "quant"))
        return convert(1, argv[2], argv[3], argv[4]);
    if (argc == 2 && !strcmp(argv[1], "types"))
        return types();
    fprintf(stderr, "usage: see the comment at the top of test_gguf_tool.c\n");
    return 2;
}
