/* nvgguf pack [--check] IN OUT: rewrites IN in the packed layout (model/include/nvl_model/pack.h):
 * general.alignment 4096, global tensors first, then each layer's tensors as one contiguous,
 * block-aligned extent. Tensor bytes and metadata are copied unchanged. `--check IN` only says
 * whether IN is packed already (exit 0) or not (exit 1). */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "nvl_model.h"

static void pack_usage(FILE *f)
{
    fprintf(f,
            "usage: nvgguf pack IN.gguf OUT.gguf\n"
            "       nvgguf pack --check IN.gguf\n"
            "\n"
            "Writes OUT with general.alignment = %u and the tensors ordered globals first,\n"
            "then blk.0, blk.1, ...: each layer becomes one contiguous extent that starts on\n"
            "a 4 KiB boundary, which is the layout nvload-setup write puts on a drive.\n"
            "--check says whether IN is laid out like that already.\n",
            NVL_PACK_ALIGNMENT);
}

static int pack_check(const char *path)
{
    struct nvl_gguf *g;
    char err[512] = "";
    if (nvl_gguf_open(path, &g, err, sizeof(err))) {
        fprintf(stderr, "nvgguf pack: %s: %s\n", path, err);
        return 2;
    }
    char why[256];
    const bool packed = nvl_gguf_is_packed(g, why, sizeof(why));
    if (packed)
        printf("%s: packed\n", path);
    else
        printf("%s: not packed: %s\n", path, why);
    nvl_gguf_close(g);
    return packed ? 0 : 1;
}

int nvgguf_cmd_pack(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"check", no_argument, NULL, 'c'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool check = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case 'c':
            check = true;
            break;
        case 'h':
            pack_usage(stdout);
            return 0;
        default:
            pack_usage(stderr);
            return 2;
        }
    }
    if (argc - optind != (check ? 1 : 2)) {
        pack_usage(stderr);
        return 2;
    }
    if (check)
        return pack_check(argv[optind]);

    const char *in = argv[optind], *out = argv[optind + 1];
    char err[512] = "";
    if (nvl_gguf_pack_file(in, out, err, sizeof(err))) {
        fprintf(stderr, "nvgguf pack: %s\n", err);
        return 1;
    }
    struct nvl_gguf *g;
    if (nvl_gguf_open(out, &g, err, sizeof(err))) {
        fprintf(stderr, "nvgguf pack: %s does not read back: %s\n", out, err);
        return 1;
    }
    struct nvl_disk_extent *ext = calloc(NVL_DISK_MAX_EXTENTS, sizeof(*ext));
    const int n = ext ? nvl_disk_layout(g, ext, NVL_DISK_MAX_EXTENTS, err, sizeof(err)) : -ENOMEM;
    if (n < 0) {
        fprintf(stderr, "nvgguf pack: %s has no drive layout: %s\n", out,
                ext ? err : "out of memory");
        free(ext);
        nvl_gguf_close(g);
        return 1;
    }
    uint32_t layers = 0;
    uint64_t largest = 0;
    for (int i = 0; i < n; i++)
        if (ext[i].kind == NVL_DISK_EXTENT_LAYER) {
            layers++;
            largest = ext[i].bytes > largest ? ext[i].bytes : largest;
        }
    printf("%s: %" PRIu64 " tensors, %u layers (largest %.1f MiB), %" PRIu64 " bytes, alignment "
           "%u\n",
           out, nvl_gguf_tensor_count(g), layers, (double)largest / (1 << 20),
           nvl_gguf_file_size(g), nvl_gguf_alignment(g));
    free(ext);
    nvl_gguf_close(g);
    return 0;
}
