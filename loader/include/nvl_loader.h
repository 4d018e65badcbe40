/* nvl_loader: public header. */
#ifndef NVL_LOADER_H
#define NVL_LOADER_H

#include "nvl_driver.h"

#endif
