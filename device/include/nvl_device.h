/* nvl_device: public header of the GPU half of the driver. The persistent I/O engine's shared
 * memory layouts and launcher (engine.h) and the request-to-command arithmetic it shares with the
 * CPU tests (cmd.h). The GPU-only parts (SQE stores, the doorbell, CQ polling) are private to
 * device/src. */
#ifndef NVL_DEVICE_H
#define NVL_DEVICE_H

#include "nvl_device/engine.h"
#include "nvl_device/cmd.h"

#endif
