/* nvl_model: public header. */
#ifndef NVL_MODEL_H
#define NVL_MODEL_H

#include "nvl_loader.h"
#include "nvl_model/quant.h"
#include "nvl_model/gguf.h"
#include "nvl_model/sampler.h"
#include "nvl_model/chat.h"
#include "nvl_model/llama.h"
#include "nvl_model/gpu.h"
#include "nvl_model/tokenizer.h"
#include "nvl_model/crc32c.h"
#include "nvl_model/pack.h"
#include "nvl_model/disk_image.h"

#endif
