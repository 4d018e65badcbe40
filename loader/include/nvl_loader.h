/* nvl_loader: the Layer Loader API. Byte extents of an NVMe namespace or a file -> a destination,
 * through the gpu-nvme, cpu-nvme, gds or file backend. It knows nothing of GGUF. */
#ifndef NVL_LOADER_H
#define NVL_LOADER_H

#include "nvl_driver.h"
#include "nvl_loader/loader.h"

#endif
