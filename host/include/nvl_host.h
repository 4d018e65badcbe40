/* nvl_host: public header of the CPU-side CUDA glue: the engine's lifecycle (claim queue pairs,
 * register BAR0 and queue memory with CUDA, start/stop, post requests, learn outcomes) and
 * GPU-side stream waits on completion words. */
#ifndef NVL_HOST_H
#define NVL_HOST_H

#include "nvl_device.h"
#include "nvl_host/engine.h"
#include "nvl_host/stream.h"

#endif
