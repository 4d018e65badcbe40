/* nvl_driver: the public header of the CPU-side NVMe driver. Its parts live in nvl_driver/, one
 * header per noun; this header is the one other layers include. */
#ifndef NVL_DRIVER_H
#define NVL_DRIVER_H

#include "nvl_driver/log.h"
#include "nvl_driver/nvme_spec.h"
#include "nvl_driver/nvme_queue.h"
#include "nvl_driver/transport.h"
#include "nvl_driver/mmio.h"
#include "nvl_driver/dma.h"
#include "nvl_driver/prp.h"
#include "nvl_driver/ctrl.h"
#include "nvl_driver/io.h"
#include "nvl_driver/vfio.h"

#endif
