/* nvl_host: public header of the CPU-side CUDA glue. */
#ifndef NVL_HOST_H
#define NVL_HOST_H

#include "nvl_device.h"

#endif
