/* nvl_device: public header of the GPU half of the driver. */
#ifndef NVL_DEVICE_H
#define NVL_DEVICE_H

#include "nvl_driver.h"

#endif
