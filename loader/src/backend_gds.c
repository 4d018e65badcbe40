#include "backend.h"
#include <errno.h>
#include <stdio.h>
static int gds_probe(const struct nvl_loader_opts *o, char *why, size_t why_len)
{
    (void)o;
    snprintf(why, why_len, "unavailable");
    return -ENODEV;
}
static int gds_create(struct nvl_loader *l)
{
    (void)l;
    return -ENOTSUP;
}
static void gds_destroy(struct nvl_loader *l)
{
    (void)l;
}
static int gds_submit(struct nvl_loader *l, struct nvl_read *r)
{
    (void)l;
    (void)r;
    return -ENOTSUP;
}
const struct nvl_backend_ops nvl__backend_gds = {
    .kind = NVL_LOADER_GDS,
    .name = "gds",
    .probe = gds_probe,
    .create = gds_create,
    .destroy = gds_destroy,
    .submit = gds_submit,
};
