/* nvl_sim: public header. */
#ifndef NVL_SIM_H
#define NVL_SIM_H

#include "nvl_driver.h"

#endif
