/* The image part of `nvload-setup --status`: what the drive holds, read through nvload's driver
 * from the header at LBA 0 (docs/disk-layout.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "image.h"
#include "nvl_driver.h"
#include "nvl_model.h"

static void print_image(FILE *out, const struct nvl_setup_drive *d, const struct nvl_disk_header *h,
                        const struct nvl_disk_extent *ext, int table_rc, const char *table_err)
{
    char when[32] = "?";
    const time_t t = (time_t)h->created_unix;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%d %H:%M UTC", &tm);
    fprintf(out, "  image:         '%s' (%s), %s\n", h->model_name, h->arch,
            nvl_disk_header_complete(h) ? "complete"
                                        : "INCOMPLETE (the write was interrupted; write again)");
    fprintf(out, "  written:       %s by %s, format version %u, %u-byte blocks\n", when, h->writer,
            h->version, h->lba_size);
    fprintf(out,
            "  GGUF:          %" PRIu64 " bytes at byte %" PRIu64 " (LBA %" PRIu64
            "), alignment %u\n",
            h->gguf_bytes, h->gguf_offset, h->gguf_offset / d->lba_size, h->gguf_alignment);
    if (table_rc) {
        fprintf(out, "  extents:       %s\n", table_err);
        return;
    }
    uint64_t largest = 0;
    for (uint32_t i = 0; i < h->n_extents; i++)
        if (ext[i].kind == NVL_DISK_EXTENT_LAYER && ext[i].bytes > largest)
            largest = ext[i].bytes;
    fprintf(out, "  extents:       %u (metadata, globals, %u layers of up to %.1f MiB)%s\n",
            h->n_extents, h->n_layers, largest / 1048576.0,
            nvl_disk_header_complete(h) ? ", each with its CRC32C" : "");
    fprintf(out, "  free after it: %.1f GB\n",
            (d->capacity - h->gguf_offset - h->gguf_bytes) / 1e9);
}

int nvl_setup_image_status(const char *bdf, const char *sim_spec, FILE *out)
{
    struct nvl_setup_drive d;
    struct nvl_dma *buf;
    char err[512] = "";
    uint16_t status = 0;
    int rc;

    if ((rc = nvl_setup_drive_open(bdf, sim_spec, 1, &d, err, sizeof(err)))) {
        fprintf(out, "  image:         cannot read the drive: %s\n", err);
        return rc;
    }
    if ((rc = nvl_dma_create(d.transport, NVL_DISK_GGUF_OFFSET, 0, &buf))) {
        fprintf(out, "  image:         cannot allocate DMA memory: %s\n", nvl_strerror(rc));
        goto err_close;
    }
    const uint64_t bytes = NVL_DISK_GGUF_OFFSET < d.capacity ? NVL_DISK_GGUF_OFFSET : d.capacity;
    if ((rc = nvl_io_read(d.ctrl, NULL, 0, bytes / d.lba_size, buf, 0, &status))) {
        fprintf(out, "  image:         reading LBA 0 failed: %s\n", nvl_strerror(rc));
        goto err_free_dma;
    }
    const struct nvl_ctrl_info *in = nvl_ctrl_get_info(d.ctrl);
    fprintf(out, "  namespace:     %u: %.1f GB in %u-byte blocks (%s, serial %s)\n", in->nsid,
            d.capacity / 1e9, d.lba_size, in->mn, in->sn);
    rc = nvl_disk_header_check(buf->vaddr, bytes, d.capacity, d.lba_size, err, sizeof(err));
    if (rc == 0) {
        const struct nvl_disk_header *h = buf->vaddr;
        const struct nvl_disk_extent *ext =
            (const struct nvl_disk_extent *)((const uint8_t *)buf->vaddr + h->table_offset);
        char terr[256] = "";
        const int trc = nvl_disk_table_check(h, ext, terr, sizeof(terr));
        print_image(out, &d, h, ext, trc, terr);
    } else if (rc == -ENOENT) {
        char what[160];
        if (nvl_setup_signature(buf->vaddr, bytes, d.lba_size, what, sizeof(what)))
            fprintf(out, "  image:         none; the drive holds %s\n", what);
        else
            fprintf(out, "  image:         none (no nvload image at LBA 0)\n");
        rc = 0;
    } else {
        fprintf(out, "  image:         unreadable: %s\n", err);
        rc = 0;
    }

err_free_dma:
    nvl_dma_destroy(buf);
err_close:
    nvl_setup_drive_close(&d);
    return rc;
}
