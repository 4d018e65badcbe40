/* nvl_driver: the public header of the CPU-side NVMe driver. Its parts live in nvl_driver/, one
 * header per noun; this header is the one other layers include. */
#ifndef NVL_DRIVER_H
#define NVL_DRIVER_H

#include "nvl_driver/log.h"

#endif
