/* nvl_model: public header. */
#ifndef NVL_MODEL_H
#define NVL_MODEL_H

#include "nvl_loader.h"

#endif
