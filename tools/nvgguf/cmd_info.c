/* nvgguf info [--all] MODEL.gguf: prints the header, every metadata key (long strings and arrays
 * summarized unless --all), the tensor table (type, shape, offset, size) and totals per type. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "nvl_model.h"

/* Shown elements of an array and characters of a string, unless --all. */
#define INFO_ARRAY_HEAD  8
#define INFO_STRING_HEAD 96

/* Prints s as a quoted string with C escapes, at most max bytes of it (0 = all). */
static void print_str(const char *s, uint64_t len, uint64_t max)
{
    uint64_t n = max && len > max ? max : len;

    putchar('"');
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char c = (unsigned char)s[i];

        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c == '\n')
            printf("\\n");
        else if (c == '\t')
            printf("\\t");
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (n < len)
        printf("... (%" PRIu64 " bytes)", len);
}

/* A string is quoted and escaped, shortened unless --all; numbers and bools as the library
 * formats them. */
static void print_value(const struct nvl_gguf_value *v, int all)
{
    char buf[64];

    if (v->type == NVL_GGUF_TYPE_STRING)
        print_str(v->str.data, v->str.len, all ? 0 : INFO_STRING_HEAD);
    else if (nvl_gguf_value_format(v, buf, sizeof(buf)) >= 0)
        fputs(buf, stdout);
    else
        putchar('?');
}

static void print_kv(const struct nvl_gguf *g, int64_t i, int all)
{
    struct nvl_gguf_value v;

    nvl_gguf_kv_value(g, i, &v);
    printf("  %-40s ", nvl_gguf_kv_key(g, i));
    if (v.type == NVL_GGUF_TYPE_ARRAY) {
        const uint64_t n = all || v.arr.count <= INFO_ARRAY_HEAD ? v.arr.count : INFO_ARRAY_HEAD;
        char type[32];

        snprintf(type, sizeof(type), "[%s x %" PRIu64 "]", nvl_gguf_type_name(v.arr.type),
                 v.arr.count);
        printf("%-8s ", type);
        for (uint64_t j = 0; j < n; j++) {
            struct nvl_gguf_value e;

            if (j)
                printf(", ");
            nvl_gguf_arr_value(g, i, j, &e);
            print_value(&e, all);
        }
        if (n < v.arr.count)
            printf(", ...");
    } else {
        printf("%-8s ", nvl_gguf_type_name(v.type));
        print_value(&v, all);
    }
    putchar('\n');
}

int nvgguf_cmd_info(int argc, char **argv)
{
    uint64_t type_count[NVL_GGML_TYPE_COUNT] = {0}, type_bytes[NVL_GGML_TYPE_COUNT] = {0};
    uint64_t n_elements = 0, n_bytes = 0;
    const char *path = NULL;
    struct nvl_gguf *g;
    char err[512];
    int all = 0;

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--all")) {
            all = 1;
        } else if (argv[i][0] == '-' && argv[i][1]) {
            fprintf(stderr, "nvgguf info: unknown option '%s'\n", argv[i]);
            return 2;
        } else if (!path) {
            path = argv[i];
        } else {
            fprintf(stderr, "nvgguf info: more than one file given\n");
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "usage: nvgguf info [--all] MODEL.gguf\n");
        return 2;
    }
    if (nvl_gguf_open(path, &g, err, sizeof(err))) {
        fprintf(stderr, "nvgguf info: %s\n", err);
        return 1;
    }

    printf("%s: GGUF v%" PRIu32 ", %" PRIu64 " bytes, %" PRIu64 " metadata keys, %" PRIu64
           " tensors, alignment %" PRIu32 ", data at offset 0x%" PRIx64 "\n",
           path, nvl_gguf_version(g), nvl_gguf_file_size(g), nvl_gguf_kv_count(g),
           nvl_gguf_tensor_count(g), nvl_gguf_alignment(g), nvl_gguf_data_offset(g));
    printf("\nmetadata:\n");
    for (uint64_t i = 0; i < nvl_gguf_kv_count(g); i++)
        print_kv(g, (int64_t)i, all);

    printf("\ntensors:\n  %5s %-40s %-7s %-24s %14s %12s\n", "#", "name", "type", "shape",
           "file offset", "bytes");
    for (uint64_t i = 0; i < nvl_gguf_tensor_count(g); i++) {
        const struct nvl_gguf_tensor *t = nvl_gguf_tensor(g, i);
        char shape[96];
        int len = 0;

        for (uint32_t d = 0; d < t->n_dims; d++)
            len += snprintf(shape + len, sizeof(shape) - (size_t)len, "%s%" PRIu64, d ? " x " : "",
                            t->ne[d]);
        printf("  %5" PRIu64 " %-40s %-7s %-24s %#14" PRIx64 " %12" PRIu64 "\n", i, t->name,
               nvl_ggml_type_name(t->type), shape, nvl_gguf_tensor_file_offset(g, t), t->size);
        type_count[t->type]++;
        type_bytes[t->type] += t->size;
        n_elements += nvl_gguf_tensor_nelements(t);
        n_bytes += t->size;
    }

    printf("\ntotal: %" PRIu64 " elements in %" PRIu64 " bytes (%.3f bits per element)\n",
           n_elements, n_bytes, n_elements ? 8.0 * (double)n_bytes / (double)n_elements : 0.0);
    for (uint32_t t = 0; t < NVL_GGML_TYPE_COUNT; t++)
        if (type_count[t])
            printf("  %-7s %5" PRIu64 " tensors %14" PRIu64 " bytes\n", nvl_ggml_type_name(t),
                   type_count[t], type_bytes[t]);
    nvl_gguf_close(g);
    return 0;
}
