/* Opening the drive that `nvload-setup write` and `--status` talk to: a controller bound to
 * vfio-pci, or the software controller serving a file. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "image.h"
#include "nvl_driver.h"
#include "nvl_sim.h"

int nvl_setup_drive_open(const char *bdf, const char *sim_spec, uint32_t n_queues,
                         struct nvl_setup_drive *d, char *err, size_t err_len)
{
    struct nvl_ctrl_opts co;
    int rc;

    memset(d, 0, sizeof(*d));
    if (sim_spec) {
        struct nvl_sim_opts so;
        struct nvl_sim *sim;
        char why[256] = "";
        nvl_sim_opts_init(&so);
        if (nvl_sim_opts_parse(&so, sim_spec, why, sizeof(why))) {
            snprintf(err, err_len, "bad --sim '%s': %s", sim_spec, why);
            return -EINVAL;
        }
        if (!so.path[0]) {
            snprintf(err, err_len, "--sim '%s' names no file to serve", sim_spec);
            return -EINVAL;
        }
        if (so.max_io_queues < n_queues)
            so.max_io_queues = (uint16_t)n_queues;
        if ((rc = nvl_sim_create(&so, &sim))) {
            snprintf(err, err_len, "cannot start the software controller on %s: %s", so.path,
                     nvl_strerror(rc));
            return rc;
        }
        d->transport = nvl_sim_transport(sim);
        snprintf(d->name, sizeof(d->name), "sim:%.58s", so.path);
    } else {
        if ((rc = nvl_vfio_open(bdf, NVL_VFIO_AUTO, &d->transport))) {
            snprintf(err, err_len,
                     "cannot open %s through VFIO: %s (prepare it with `nvload-setup %s` first)",
                     bdf, nvl_strerror(rc), bdf);
            return rc;
        }
        snprintf(d->name, sizeof(d->name), "%s", bdf);
    }
    nvl_ctrl_opts_init(&co);
    co.n_io_queues = n_queues;
    if ((rc = nvl_ctrl_create(d->transport, &co, &d->ctrl))) {
        snprintf(err, err_len, "%s: controller bring-up failed: %s", d->name, nvl_strerror(rc));
        nvl_transport_destroy(d->transport);
        d->transport = NULL;
        return rc;
    }
    const struct nvl_ctrl_info *in = nvl_ctrl_get_info(d->ctrl);
    d->lba_size = in->lba_size;
    d->capacity = in->ns_lbas * in->lba_size;
    return 0;
}

void nvl_setup_drive_close(struct nvl_setup_drive *d)
{
    nvl_ctrl_destroy(d->ctrl);
    nvl_transport_destroy(d->transport);
    memset(d, 0, sizeof(*d));
}
