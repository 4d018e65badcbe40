/* nvinfer --nvme BDF / --sim IMAGE: the model, its metadata and its tokenizer come from an image
 * on a drive (written by nvload-setup write; docs/disk-layout.md), not from a file.
 *
 * The CPU backend reads the whole GGUF into memory through the Layer Loader's cpu-nvme backend
 * (nvload's own queues, over VFIO or on the software controller), extent by extent, checking each
 * extent's CRC32C as it arrives with --verify; the model is then built from that memory and the
 * drive is closed. With -m FILE as well, the drive must hold the same model as FILE. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvinfer.h"
#include "nvl_driver.h"
#include "nvl_sim.h"

/* Queue pairs the loader reads through, and its staging memory (bounce buffers for the reads
 * into ordinary memory): small, since the CPU path copies each extent out at once. */
#define DRIVE_QUEUES     4
#define DRIVE_SLOT_BYTES (4u << 20)

struct drive {
    struct nvl_transport *transport;
    struct nvl_ctrl *ctrl;
    struct nvl_loader *loader;
};

static void drive_close(struct drive *d)
{
    nvl_loader_destroy(d->loader);
    nvl_ctrl_destroy(d->ctrl);
    nvl_transport_destroy(d->transport);
}

static int drive_open(const struct nvinfer_opts *o, struct drive *d)
{
    struct nvl_ctrl_opts co;
    struct nvl_loader_opts lo;
    int rc;

    memset(d, 0, sizeof(*d));
    if (o->sim) {
        struct nvl_sim_opts so;
        struct nvl_sim *sim;
        char err[256] = "";
        nvl_sim_opts_init(&so);
        if (nvl_sim_opts_parse(&so, o->sim, err, sizeof(err))) {
            fprintf(stderr, "nvinfer: --sim '%s': %s\n", o->sim, err);
            return -EINVAL;
        }
        so.read_only = 1;
        if (so.max_io_queues < DRIVE_QUEUES)
            so.max_io_queues = DRIVE_QUEUES;
        if ((rc = nvl_sim_create(&so, &sim))) {
            fprintf(stderr, "nvinfer: cannot serve %s with the software controller: %s\n",
                    so.path[0] ? so.path : o->sim, nvl_strerror(rc));
            return rc;
        }
        d->transport = nvl_sim_transport(sim);
    } else if ((rc = nvl_vfio_open(o->nvme, NVL_VFIO_AUTO, &d->transport))) {
        fprintf(stderr,
                "nvinfer: cannot open %s through VFIO: %s (prepare it with `nvload-setup %s`)\n",
                o->nvme, nvl_strerror(rc), o->nvme);
        return rc;
    }
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = DRIVE_QUEUES;
    if ((rc = nvl_ctrl_create(d->transport, &co, &d->ctrl))) {
        fprintf(stderr, "nvinfer: %s: controller bring-up failed: %s\n", o->model,
                nvl_strerror(rc));
        goto err_close;
    }
    nvl_loader_opts_init(&lo);
    lo.backend = NVL_LOADER_CPU_NVME;
    lo.ctrl = d->ctrl;
    lo.n_slots = 1;
    lo.slot_bytes = DRIVE_SLOT_BYTES;
    lo.n_queues =
        nvl_ctrl_qpair_count(d->ctrl) < DRIVE_QUEUES ? nvl_ctrl_qpair_count(d->ctrl) : DRIVE_QUEUES;
    if ((rc = nvl_loader_create(&lo, &d->loader))) {
        fprintf(stderr, "nvinfer: %s: cannot start the cpu-nvme loader: %s\n", o->model,
                nvl_strerror(rc));
        goto err_close;
    }
    return 0;

err_close:
    drive_close(d);
    return rc;
}

/* Refuses to go on when -m FILE names another model than the drive holds. */
static int check_same_model(const struct nvinfer_opts *o, const struct nvl_gguf *drive_g)
{
    struct nvl_gguf *file_g;
    char err[512] = "";
    int rc = nvl_gguf_open(o->same_as, &file_g, err, sizeof(err));
    if (rc) {
        fprintf(stderr, "nvinfer: cannot open %s: %s\n", o->same_as, err);
        return rc;
    }
    rc = nvl_disk_same_model(drive_g, file_g, err, sizeof(err));
    if (rc)
        fprintf(stderr, "nvinfer: %s holds another model than %s (%s); refusing to run\n", o->model,
                o->same_as, err);
    else if (o->verbose)
        fprintf(stderr, "nvinfer: %s holds the model of %s (metadata and every tensor match)\n",
                o->model, o->same_as);
    nvl_gguf_close(file_g);
    return rc;
}

int nvinfer_drive_load(const struct nvinfer_opts *o, struct nvl_llama_model **out)
{
    struct drive d;
    struct nvl_disk_image *img;
    struct nvl_disk_read_stats st;
    struct nvl_gguf *g;
    char err[512] = "";
    void *data;
    uint64_t len;
    int rc;

    *out = NULL;
    if ((rc = drive_open(o, &d)))
        return rc;
    if ((rc = nvl_disk_image_open(d.loader, &img, err, sizeof(err)))) {
        fprintf(stderr, "nvinfer: %s: %s\n", o->model, err);
        goto err_close_drive;
    }
    const struct nvl_disk_header *h = nvl_disk_image_header(img);
    if (o->verbose)
        fprintf(stderr,
                "nvinfer: drive image: '%s' (%s), %.1f MB GGUF at LBA %llu, %u layers, written by "
                "%s\n",
                h->model_name, h->arch, h->gguf_bytes / 1e6,
                (unsigned long long)(h->gguf_offset / nvl_loader_block_size(d.loader)), h->n_layers,
                h->writer);
    /* On the GPU path nvinfer_gpu_open() checks every extent as the GPU path reads it. */
    const bool verify = o->verify && !nvinfer_gpu_wanted(o, NULL, 0);
    if ((rc = nvl_disk_image_read_gguf(img, verify, &data, &len, &st, err, sizeof(err)))) {
        fprintf(stderr, "nvinfer: %s: %s\n", o->model, err);
        goto err_destroy_image;
    }
    if (o->verbose)
        fprintf(stderr,
                "nvinfer: data path: weights read from %s through the %s loader (%s): %.1f MB in "
                "%.2f s (%.2f GB/s)%s",
                o->model, nvl_loader_backend_name(d.loader), nvl_loader_reason(d.loader),
                st.bytes / 1e6, st.seconds, st.seconds > 0 ? st.bytes / st.seconds / 1e9 : 0.0,
                verify ? ", CRC32C of every extent checked" : "\n");
    if (o->verbose && verify)
        fprintf(stderr, " (%s, %.2f s)\n", nvl_crc32c_impl(), st.crc_seconds);
    nvl_disk_image_destroy(img);
    img = NULL;
    drive_close(&d);

    if ((rc = nvl_gguf_open_memory(data, len, &g, err, sizeof(err)))) {
        fprintf(stderr, "nvinfer: %s: the drive's GGUF does not parse: %s\n", o->model, err);
        free(data);
        return rc;
    }
    if (o->same_as && (rc = check_same_model(o, g))) {
        nvl_gguf_close(g);
        free(data);
        return rc;
    }
    if ((rc = nvl_llama_load_gguf(g, data, out, err, sizeof(err))))
        fprintf(stderr, "nvinfer: cannot load %s: %s\n", o->model, err[0] ? err : nvl_strerror(rc));
    return rc;

err_destroy_image:
    nvl_disk_image_destroy(img);
err_close_drive:
    drive_close(&d);
    return rc;
}
