/* Registration of host memory and BAR0 with CUDA, so the GPU gets device pointers for them. */
#include "host_internal.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>

/* A PCI address ("0000:01:00.0") names a VFIO transport: its BAR0 is I/O memory. */
static int looks_like_bdf(const char *s)
{
    const char *pat = "hhhh:hh:hh.h";
    size_t i;

    if (!s || strlen(s) != strlen(pat))
        return 0;
    for (i = 0; pat[i]; i++) {
        if (pat[i] == 'h' ? !isxdigit((unsigned char)s[i]) : s[i] != pat[i])
            return 0;
    }
    return 1;
}

int nvl__host_register(struct nvl__host_reg *r, void *p, size_t len, int io_memory,
                       const char *what, int quiet)
{
    unsigned flags = cudaHostRegisterMapped | cudaHostRegisterPortable;
    cudaError_t err;

    memset(r, 0, sizeof(*r));
    if (io_memory)
        flags |= cudaHostRegisterIoMemory;
    err = cudaHostRegister(p, len, flags);
    if (err == cudaErrorHostMemoryAlreadyRegistered) {
        /* Someone else (another engine on the same controller, the loader) registered it; use
         * their registration and leave it to them to undo. */
        cudaGetLastError();
    } else if (err != cudaSuccess) {
        nvl_log_msg(quiet ? NVL_LOG_DEBUG : NVL_LOG_ERROR, NVL_HOST_WHO,
                    "cudaHostRegister%s of %s (%zu bytes at %p) failed: %s",
                    io_memory ? "(IoMemory)" : "", what, len, p, cudaGetErrorString(err));
        cudaGetLastError();
        return -EIO;
    } else {
        r->owned = 1;
    }
    err = cudaHostGetDevicePointer(&r->dev, p, 0);
    if (err != cudaSuccess) {
        nvl_log_error(NVL_HOST_WHO, "no device pointer for %s: %s", what, cudaGetErrorString(err));
        cudaGetLastError();
        if (r->owned)
            cudaHostUnregister(p);
        memset(r, 0, sizeof(*r));
        return -EIO;
    }
    r->host = p;
    r->len = len;
    return 0;
}

void nvl__host_unregister(struct nvl__host_reg *r)
{
    if (r->owned)
        cudaHostUnregister(r->host);
    memset(r, 0, sizeof(*r));
}

int nvl__host_register_bar(struct nvl__host_reg *r, struct nvl_transport *t)
{
    int io = looks_like_bdf(t->name);
    int rc;

    /* VFIO BAR0 is device memory: only cudaHostRegisterIoMemory can map it (it cannot be
     * pinned like RAM). The sim's register page is RAM: plain registration. If the guess from
     * the name is wrong, the other kind is tried. */
    rc = nvl__host_register(r, (void *)t->bar0, t->bar0_len, io, "BAR0", 1);
    if (rc) {
        rc = nvl__host_register(r, (void *)t->bar0, t->bar0_len, !io, "BAR0", 0);
        if (rc == 0)
            nvl_log_info(NVL_HOST_WHO, "%s: BAR0 registered as %s", t->name,
                         io ? "RAM" : "I/O memory");
    }
    return rc;
}
