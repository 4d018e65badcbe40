/* nvinfer on the GPU: chooses the GPU backend, opens what feeds it (the Layer Loader on -m FILE,
 * or on the drive of --nvme / --sim), places the weights (nvl_model/gpu.h) and reports where
 * they sit.
 *
 * With -m FILE the loader reads the file (gds or file backend, auto-selected unless --backend
 * says). With --sim FILE the software NVMe controller serves FILE and the loader drives it
 * (gpu-nvme first): FILE may be a plain GGUF file (the namespace is the file; the metadata comes
 * from mapping it) or a drive image written by nvload-setup (the GGUF sits at the image's
 * gguf_offset). --nvme BDF does the same on hardware. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nvinfer.h"
#include "nvl_driver.h"
#include "nvl_sim.h"

/* Queue pairs for the loader: enough for a drive (or the sim's threads) to work in parallel. */
#define GPU_IO_QUEUES 8

struct nvinfer_gpu_io {
    struct nvl_transport *transport;
    struct nvl_ctrl *ctrl;
    struct nvl_loader *loader;
    uint64_t base;
    bool verbose;
    bool progress_open; /* a progress line without its newline is on the terminal */
    char source[4200];  /* where the loader reads */
    char *path;         /* the file behind the drive, when it is a plain GGUF */
};

bool nvinfer_gpu_wanted(const struct nvinfer_opts *o, char *why, size_t why_len)
{
    char buf[256];
    if (!why) {
        why = buf;
        why_len = sizeof(buf);
    }
    if (strcmp(o->device, "cpu") == 0) {
        snprintf(why, why_len, "--device cpu");
        return false;
    }
    const int rc = nvl_gpu_probe(0, why, why_len);
    return rc == 0 || strcmp(o->device, "gpu") == 0;
}

/* The backing file of a --sim spec. */
static int sim_path(const struct nvinfer_opts *o, char *path, size_t len)
{
    struct nvl_sim_opts so;
    char err[256] = "";
    nvl_sim_opts_init(&so);
    if (nvl_sim_opts_parse(&so, o->sim, err, sizeof(err)) || !so.path[0])
        return -EINVAL;
    snprintf(path, len, "%s", so.path);
    return 0;
}

static bool is_gguf_file(const char *path)
{
    char magic[4];
    FILE *f = fopen(path, "rb");
    if (!f)
        return false;
    const bool ok = fread(magic, 1, 4, f) == 4 && memcmp(magic, "GGUF", 4) == 0;
    fclose(f);
    return ok;
}

int nvinfer_gpu_load_model(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    char path[4096], err[512] = "";
    if (!o->sim || !nvinfer_gpu_wanted(o, NULL, 0) || sim_path(o, path, sizeof(path)) ||
        !is_gguf_file(path))
        return 1;
    /* The namespace is the GGUF file itself: map it for the metadata and the tokenizer; the
     * weights come through the loader. */
    const char *file = o->same_as ? o->same_as : path;
    const int rc = nvl_llama_load(file, &m->model, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "nvinfer: cannot load %s: %s\n", file, err[0] ? err : nvl_strerror(rc));
        return -1;
    }
    return 0;
}

static void io_close(struct nvinfer_gpu_io *io)
{
    nvl_loader_destroy(io->loader);
    nvl_ctrl_destroy(io->ctrl);
    nvl_transport_destroy(io->transport);
    io->loader = NULL;
    io->ctrl = NULL;
    io->transport = NULL;
}

/* The loader on the drive of --sim / --nvme. */
static int open_drive(const struct nvinfer_opts *o, struct nvinfer_gpu_io *io,
                      struct nvl_loader_opts *lo)
{
    char path[4096] = "", err[256] = "";
    int rc;
    if (o->sim) {
        struct nvl_sim_opts so;
        struct nvl_sim *sim;
        nvl_sim_opts_init(&so);
        if (nvl_sim_opts_parse(&so, o->sim, err, sizeof(err))) {
            fprintf(stderr, "nvinfer: --sim '%s': %s\n", o->sim, err);
            return -EINVAL;
        }
        if (o->sim_bw) {
            char spec[96];
            snprintf(spec, sizeof(spec), "bw=%s", o->sim_bw);
            if (nvl_sim_opts_parse(&so, spec, err, sizeof(err))) {
                fprintf(stderr, "nvinfer: --sim-bw '%s': %s\n", o->sim_bw, err);
                return -EINVAL;
            }
        }
        so.read_only = 1;
        if (so.max_io_queues < GPU_IO_QUEUES)
            so.max_io_queues = GPU_IO_QUEUES;
        snprintf(path, sizeof(path), "%s", so.path);
        if ((rc = nvl_sim_create(&so, &sim))) {
            fprintf(stderr, "nvinfer: cannot serve %s with the software controller: %s\n", path,
                    nvl_strerror(rc));
            return rc;
        }
        io->transport = nvl_sim_transport(sim);
        snprintf(io->source, sizeof(io->source), "the software NVMe controller on %s%s%s", path,
                 o->sim_bw ? " at " : "", o->sim_bw ? o->sim_bw : "");
    } else {
        if ((rc = nvl_vfio_open(o->nvme, NVL_VFIO_AUTO, &io->transport))) {
            fprintf(stderr, "nvinfer: cannot open %s through VFIO: %s\n", o->nvme,
                    nvl_strerror(rc));
            return rc;
        }
        snprintf(io->source, sizeof(io->source), "NVMe drive %s", o->nvme);
    }
    struct nvl_ctrl_opts co;
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = GPU_IO_QUEUES;
    if ((rc = nvl_ctrl_create(io->transport, &co, &io->ctrl))) {
        fprintf(stderr, "nvinfer: %s: controller bring-up failed: %s\n", o->model,
                nvl_strerror(rc));
        return rc;
    }
    lo->ctrl = io->ctrl;
    lo->n_queues = nvl_ctrl_qpair_count(io->ctrl) < GPU_IO_QUEUES ? nvl_ctrl_qpair_count(io->ctrl)
                                                                  : GPU_IO_QUEUES;
    if (path[0] && is_gguf_file(path)) {
        io->path = strdup(path); /* file and gds can read the same bytes */
        lo->path = io->path;
    }
    return 0;
}

static void on_progress(void *ctx, const struct nvl_gpu_progress *p)
{
    struct nvinfer_gpu_io *io = ctx;
    if (!isatty(STDERR_FILENO) && p->layers_done < p->layers_total)
        return;
    fprintf(stderr, "\rnvinfer: loading %d/%d layers, %.2f/%.2f GB, %.2f GB/s", p->layers_done,
            p->layers_total, p->bytes_done / 1e9, p->bytes_total / 1e9,
            p->seconds > 0 ? p->bytes_done / p->seconds / 1e9 : 0.0);
    io->progress_open = p->layers_done < p->layers_total;
    if (!io->progress_open)
        fputc('\n', stderr);
    fflush(stderr);
}

int nvinfer_gpu_open(const struct nvinfer_opts *o, struct nvinfer_model *m)
{
    const bool forced = strcmp(o->device, "gpu") == 0;
    const struct nvl_llama_hparams *hp = nvl_llama_hparams(m->model);
    struct nvinfer_gpu_io *io = calloc(1, sizeof(*io));
    if (!io)
        return -1;
    io->verbose = o->verbose;
    m->gpu_io = io;

    struct nvl_loader_opts lo;
    nvl_loader_opts_init(&lo);
    if (o->backend)
        nvl_loader_backend_parse(o->backend, &lo.backend);
    lo.n_slots = (uint32_t)o->prefetch;
    lo.slot_bytes = nvl_gpu_slot_bytes(m->model, 4096);
    int rc = 0;
    if (o->nvme || o->sim) {
        rc = open_drive(o, io, &lo);
    } else {
        lo.path = o->model;
        snprintf(io->source, sizeof(io->source), "%s", o->model);
    }
    if (rc == 0)
        rc = nvl_loader_create(&lo, &io->loader);
    if (rc) {
        if (o->nvme || o->sim || o->backend) {
            fprintf(stderr, "nvinfer: cannot start the %s loader on %s: %s\n",
                    o->backend ? o->backend : "auto", io->source, nvl_strerror(rc));
            goto err_close;
        }
        /* -m FILE without a usable loader: resident layers come from the file mapping. */
        io->loader = NULL;
    }
    char sp[4096];
    if (io->loader && (o->nvme || (o->sim && (sim_path(o, sp, sizeof(sp)) || !is_gguf_file(sp))))) {
        /* A drive image: the GGUF sits at the image's offset. */
        struct nvl_disk_image *img;
        char err[512] = "";
        if ((rc = nvl_disk_image_open(io->loader, &img, err, sizeof(err)))) {
            fprintf(stderr, "nvinfer: %s: %s\n", o->model, err);
            goto err_close;
        }
        io->base = nvl_disk_image_header(img)->gguf_offset;
        if (o->verify) {
            /* The bytes the GPU path reads, checked where they land (drive.c read the model's
             * metadata without checking, leaving this to the GPU). */
            struct nvl_disk_read_stats st;
            bool on_gpu = false;
            rc = nvl_disk_image_verify(img, &st, &on_gpu, err, sizeof(err));
            if (rc) {
                fprintf(stderr, "nvinfer: %s: %s\n", o->model, err);
                nvl_disk_image_destroy(img);
                goto err_close;
            }
            if (o->verbose)
                fprintf(stderr,
                        "nvinfer: verify: CRC32C of all %u extents checked on the %s, read "
                        "through the %s loader into a slot: %.1f MB in %.2f s (CRC %.3f s)\n",
                        nvl_disk_image_header(img)->n_extents, on_gpu ? "GPU" : "CPU",
                        nvl_loader_backend_name(io->loader), st.bytes / 1e6, st.seconds,
                        st.crc_seconds);
        }
        nvl_disk_image_destroy(img);
    }

    struct nvl_gpu_params gp;
    nvl_gpu_params_default(&gp);
    gp.vram_budget = o->vram_budget;
    gp.vram_layers = o->vram_layers;
    gp.ram_budget = o->ram_budget;
    gp.prefetch = o->prefetch;
    gp.n_ctx = o->n_ctx ? o->n_ctx : (hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096);
    gp.n_batch = o->n_batch ? o->n_batch : 512;
    gp.loader = io->loader;
    gp.loader_base = io->base;
    gp.progress = on_progress;
    gp.progress_ctx = io;
    char err[512] = "";
    rc = nvl_gpu_model_create(m->model, &gp, &m->gpu, err, sizeof(err));
    if (io->progress_open)
        fputc('\n', stderr);
    if (rc) {
        if (!forced && rc == -ENOTSUP) {
            if (o->verbose)
                fprintf(stderr, "nvinfer: running on the CPU: %s\n", err);
            nvinfer_gpu_close(m);
            return 1;
        }
        fprintf(stderr, "nvinfer: GPU backend: %s\n", err[0] ? err : nvl_strerror(rc));
        goto err_close;
    }
    return 0;

err_close:
    nvinfer_gpu_close(m);
    return -1;
}

void nvinfer_gpu_close(struct nvinfer_model *m)
{
    struct nvinfer_gpu_io *io = m->gpu_io;
    if (m->gpu && io && io->verbose) {
        struct nvl_gpu_stats st;
        nvl_gpu_model_stats(m->gpu, &st);
        fprintf(stderr,
                "nvinfer: gpu summary: resident weights %.2f GB (%.2f GB through the loader, "
                "%.2f GB from memory, %.2f s); forward passes streamed %.2f GB through the "
                "loader and copied %.2f GB from the RAM tier\n",
                (st.globals_bytes + st.layer_bytes[0] + st.layer_bytes[1]) / 1e9,
                st.loaded_via_loader / 1e9, st.loaded_from_memory / 1e9, st.load_seconds,
                st.streamed_bytes / 1e9, st.ram_copied_bytes / 1e9);
    }
    nvl_gpu_model_destroy(m->gpu);
    m->gpu = NULL;
    if (io) {
        io_close(io);
        free(io->path);
    }
    free(io);
    m->gpu_io = NULL;
}

/* "a-b" runs of layers in one tier. */
static void print_runs(const struct nvl_gpu_model *gm, int32_t n_layer, enum nvl_gpu_tier tier)
{
    const char *sep = "";
    for (int32_t il = 0; il < n_layer;) {
        if (nvl_gpu_layer_tier(gm, il) != tier) {
            il++;
            continue;
        }
        int32_t end = il;
        while (end + 1 < n_layer && nvl_gpu_layer_tier(gm, end + 1) == tier)
            end++;
        if (end == il)
            fprintf(stderr, "%s%d", sep, il);
        else
            fprintf(stderr, "%s%d-%d", sep, il, end);
        sep = ",";
        il = end + 1;
    }
}

void nvinfer_gpu_print_verbose(const struct nvinfer_opts *o, const struct nvinfer_model *m)
{
    const struct nvinfer_gpu_io *io = m->gpu_io;
    const int32_t n_layer = nvl_llama_hparams(m->model)->n_layer;
    struct nvl_gpu_stats st;
    nvl_gpu_model_stats(m->gpu, &st);
    (void)o;
    fprintf(stderr, "nvinfer: backend: gpu (%s), KV cache and activations in VRAM\n",
            st.device_name);
    if (io->loader)
        fprintf(stderr, "nvinfer: loader: %s on %s (%s)\n", nvl_loader_backend_name(io->loader),
                io->source, nvl_loader_reason(io->loader));
    else
        fprintf(stderr, "nvinfer: loader: none (weights copied from the file mapping of %s)\n",
                o->model);
    fprintf(stderr,
            "nvinfer: placement: VRAM budget %.2f GB; globals (embeddings, output, "
            "norms) %.2f GB in %s",
            st.vram_budget / 1e9, st.globals_bytes / 1e9,
            st.globals_in_vram ? "VRAM" : "pinned RAM (read over PCIe)");
    for (int t = 0; t < NVL_GPU_TIER_COUNT; t++) {
        if (!st.layers[t])
            continue;
        fprintf(stderr, "; layers ");
        print_runs(m->gpu, n_layer, (enum nvl_gpu_tier)t);
        fprintf(stderr, " %s (%.2f GB)", nvl_gpu_tier_name((enum nvl_gpu_tier)t),
                st.layer_bytes[t] / 1e9);
    }
    fprintf(stderr, "\n");
    if (st.layers[NVL_GPU_TIER_STREAM] || st.layers[NVL_GPU_TIER_RAM])
        fprintf(stderr,
                "nvinfer: per token: %.2f GB streamed through the loader, %.2f GB copied from "
                "pinned RAM; prefetch depth %d\n",
                st.layer_bytes[NVL_GPU_TIER_STREAM] / 1e9, st.layer_bytes[NVL_GPU_TIER_RAM] / 1e9,
                st.prefetch);
    fprintf(stderr,
            "nvinfer: data path: resident weights %.2f GB in %.2f s (%.2f GB/s): %.2f GB "
            "through the loader, %.2f GB from memory\n",
            (st.loaded_via_loader + st.loaded_from_memory) / 1e9, st.load_seconds,
            st.load_seconds > 0
                ? (st.loaded_via_loader + st.loaded_from_memory) / st.load_seconds / 1e9
                : 0.0,
            st.loaded_via_loader / 1e9, st.loaded_from_memory / 1e9);
}
