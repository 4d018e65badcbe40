/* cpu-nvme: a loader thread drives I/O queue pairs of the CPU driver. */
#include "backend.h"

#include <errno.h>
#include <stdio.h>

static int cpu_nvme_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    if (!o->ctrl) {
        snprintf(why, why_len, "no NVMe target (no controller given)");
        return -ENODEV;
    }
    snprintf(why, why_len, "not implemented yet");
    return -ENOTSUP;
}

static int cpu_nvme_create(struct nvl_loader *l)
{
    (void)l;
    return -ENOTSUP;
}

static void cpu_nvme_destroy(struct nvl_loader *l)
{
    (void)l;
}

static int cpu_nvme_submit(struct nvl_loader *l, struct nvl_read *r)
{
    (void)l;
    (void)r;
    return -ENOTSUP;
}

const struct nvl_backend_ops nvl__backend_cpu_nvme = {
    .kind = NVL_LOADER_CPU_NVME,
    .name = "cpu-nvme",
    .probe = cpu_nvme_probe,
    .create = cpu_nvme_create,
    .destroy = cpu_nvme_destroy,
    .submit = cpu_nvme_submit,
    .caps = NVL_BACKEND_NEEDS_CTRL,
};
