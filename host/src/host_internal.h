/* Private parts of nvl_host. */
#ifndef NVL_HOST_INTERNAL_H
#define NVL_HOST_INTERNAL_H

#include <stddef.h>

#include <cuda_runtime_api.h>

#include "nvl_driver/log.h"
#include "nvl_driver/transport.h"

#define NVL_HOST_WHO "gpu-engine"

/* A range of host memory (or BAR0) registered with CUDA. */
struct nvl__host_reg {
    void *host;
    void *dev; /* the GPU's pointer to it */
    size_t len;
    int owned; /* 1: this registration made it (and undoes it) */
};

/* Registers [p, p + len) mapped for the GPU; io_memory for device memory (a VFIO BAR). Memory
 * already registered by someone else is reused, not re-registered. quiet logs a failure at debug
 * level (a first try that has a fallback). Returns 0 or -EIO. */
int nvl__host_register(struct nvl__host_reg *r, void *p, size_t len, int io_memory,
                       const char *what, int quiet);
void nvl__host_unregister(struct nvl__host_reg *r);

/* Registers t's BAR0: cudaHostRegisterIoMemory for VFIO, plain cudaHostRegister for the sim. */
int nvl__host_register_bar(struct nvl__host_reg *r, struct nvl_transport *t);

#endif
