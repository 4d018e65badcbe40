/* The strict software NVMe controller.
 *
 * A sim is a controller in ordinary memory: its BAR0 register file is a page-aligned mapping
 * (so the GPU can register it with cudaHostRegister), service threads poll its doorbells, and
 * every address it dereferences is translated through the DMA regions the host registered with
 * the transport's dma_map. The driver brings it up through register writes exactly as it would
 * hardware. docs/sim.md lists the rules it enforces and its knobs. */
#ifndef NVL_SIM_SIM_H
#define NVL_SIM_SIM_H

#include <stddef.h>
#include <stdint.h>

#include "nvl_driver/transport.h"
#include "nvl_sim/opts.h"
#include "nvl_sim/stats.h"

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_sim;

/* Creates a controller from `opts` (NULL = defaults) and starts its threads. The controller is
 * disabled (CC.EN = 0) until the host enables it. Returns 0, -EINVAL for bad options, or the
 * errno of the backing file or of thread creation. */
int nvl_sim_create(const struct nvl_sim_opts *opts, struct nvl_sim **out);

/* Stops the threads and frees everything. The transport handed out must not be used after this.
 * NULL is a no-op. */
void nvl_sim_destroy(struct nvl_sim *sim);

/* The transport the driver uses: bar0/bar0_len are the register file; dma_map hands out IOVAs
 * that are deliberately not the virtual address; reset is a function-level reset; destroy
 * destroys the sim. Owned by the sim. */
struct nvl_transport *nvl_sim_transport(struct nvl_sim *sim);

/* The sim behind a transport made by nvl_sim_transport, or NULL for any other transport. */
struct nvl_sim *nvl_sim_from_transport(struct nvl_transport *t);

/* A consistent-enough snapshot of the counters (each counter is read atomically). */
void nvl_sim_get_stats(struct nvl_sim *sim, struct nvl_sim_stats *out);

/* Zeroes every counter. */
void nvl_sim_reset_stats(struct nvl_sim *sim);

/* Namespace geometry as Identify reports it. */
uint32_t nvl_sim_lba_size(const struct nvl_sim *sim);
uint64_t nvl_sim_nblocks(const struct nvl_sim *sim);

/* The backing memory of a MEM sim (`*len` gets its size), NULL for other backings. Tests read
 * and seed it directly to check data independently of the sim's own Read path. */
void *nvl_sim_mem(struct nvl_sim *sim, size_t *len);

/* The options the sim runs with, after defaults and file sizes were applied. */
const struct nvl_sim_opts *nvl_sim_opts(const struct nvl_sim *sim);

#ifdef __cplusplus
}
#endif

#endif
