/* Fault injection: make chosen commands fail, complete late, never complete, or make the whole
 * controller fatal, so that the driver's timeout and recovery paths can be exercised. */
#ifndef NVL_SIM_FAULT_H
#define NVL_SIM_FAULT_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct nvl_sim;

enum nvl_sim_fault_kind {
    NVL_SIM_FAULT_STATUS = 0, /* complete with `status` instead of executing the command */
    NVL_SIM_FAULT_DELAY = 1,  /* execute, then post the completion `delay_us` later */
    NVL_SIM_FAULT_LOSE = 2,   /* execute, never post the completion */
    NVL_SIM_FAULT_FATAL = 3,  /* set CSTS.CFS and stop processing, as a dying controller would */
};

/* Matches any opcode / any queue. */
#define NVL_SIM_FAULT_ANY 0xffffu
/* As sqid: matches any I/O queue (not the admin queue, whose opcodes overlap the NVM ones). */
#define NVL_SIM_FAULT_IO 0xfffeu

struct nvl_sim_fault {
    enum nvl_sim_fault_kind kind;
    uint16_t opcode;    /* opcode to match, or NVL_SIM_FAULT_ANY */
    uint16_t sqid;      /* SQ to match (0 = admin), NVL_SIM_FAULT_IO or NVL_SIM_FAULT_ANY */
    uint64_t nth;       /* fire on the nth matching command (1-based); 0 = use `probability` */
    double probability; /* with nth = 0: chance that a matching command fires, 0..1 */
    uint32_t count;     /* fire at most this many times; 0 = no limit (nth fires once) */
    uint16_t status;    /* STATUS: (SCT << 8) | SC, e.g. 0x0281 Unrecovered Read Error */
    uint64_t delay_us;  /* DELAY: extra time before the completion is posted */
};

/* Room for this many faults at once. */
#define NVL_SIM_FAULT_SLOTS 16

/* Arms a fault. Matching starts with the next fetched command; counters start at zero. Returns 0,
 * -EINVAL for a bad description or -ENOSPC when every slot is armed. Not to be called
 * concurrently with itself or nvl_sim_fault_clear (the pollers may run meanwhile). */
int nvl_sim_fault_add(struct nvl_sim *sim, const struct nvl_sim_fault *f);

/* Disarms every fault. Delayed completions already scheduled are still posted. */
void nvl_sim_fault_clear(struct nvl_sim *sim);

#ifdef __cplusplus
}
#endif

#endif
