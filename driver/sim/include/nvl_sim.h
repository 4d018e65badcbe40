/* nvl_sim: the strict software NVMe controller, the project's main test substrate. It offers a
 * struct nvl_transport, so the driver brings it up exactly as it brings up hardware. */
#ifndef NVL_SIM_H
#define NVL_SIM_H

#include "nvl_driver.h"

#include "nvl_sim/fault.h"
#include "nvl_sim/opts.h"
#include "nvl_sim/sim.h"
#include "nvl_sim/stats.h"

#endif
