/* nvload-setup write and the image part of --status: a model laid onto the raw drive (see
 * model/include/nvl_model/disk_image.h and docs/disk-layout.md), written and read back through
 * nvload's own driver. The target is a controller bound to vfio-pci (a BDF) or, for tests and
 * for building image files, the software controller serving a file (--sim SPEC). */
#ifndef NVL_SETUP_IMAGE_H
#define NVL_SETUP_IMAGE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct nvl_ctrl;
struct nvl_transport;

/* An opened target: the controller and what it is. */
struct nvl_setup_drive {
    struct nvl_transport *transport;
    struct nvl_ctrl *ctrl;
    char name[64];     /* the BDF, or "sim:<path>" */
    uint32_t lba_size; /* of the namespace used */
    uint64_t capacity; /* bytes of the namespace */
};

/* Opens bdf through VFIO (or, when sim_spec is not NULL, the software controller with that
 * option string, bdf ignored) and brings the controller up with n_queues I/O queue pairs.
 * Returns 0 or -errno with the reason in err. */
int nvl_setup_drive_open(const char *bdf, const char *sim_spec, uint32_t n_queues,
                         struct nvl_setup_drive *d, char *err, size_t err_len);
void nvl_setup_drive_close(struct nvl_setup_drive *d);

/* Looks for a filesystem, partition table or volume signature in the first bytes of a drive
 * (buf holds bytes [0, len) of the namespace, lba_size its block size). Returns 1 with what it
 * found in `what` ("a GPT partition table (\"EFI PART\" at byte 512)"), or 0 when none is
 * known. Bytes beyond len are not looked at: 256 KiB covers every signature checked. */
#define NVL_SETUP_SIGNATURE_BYTES (256u * 1024u)
int nvl_setup_signature(const uint8_t *buf, size_t len, uint32_t lba_size, char *what,
                        size_t what_len);

/* `nvload-setup write ...` (argv[0] is "write"). Returns the exit status. */
int nvl_setup_write_main(int argc, char **argv);

/* Prints what the drive holds (the image header and extent summary) on out. Returns 0, or
 * -errno when the drive cannot be read (the reason is printed too). */
int nvl_setup_image_status(const char *bdf, const char *sim_spec, FILE *out);

#endif
