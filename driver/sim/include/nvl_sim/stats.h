/* What the software controller counts: commands, bytes, DMA faults and each kind of rule the host
 * broke. Tests read these to prove that a deliberate violation was caught. */
#ifndef NVL_SIM_STATS_H
#define NVL_SIM_STATS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Each rule the sim enforces. A command that breaks one also fails with the NVMe status the spec
 * names; a doorbell or register rule sets CSTS.CFS instead, as hardware does. */
enum nvl_sim_violation {
    NVL_SIM_VIOL_DMA = 0,          /* an address outside every registered DMA region */
    NVL_SIM_VIOL_PRP_OFFSET,       /* PRP2 or a list entry with an offset; PRP1 not dword aligned */
    NVL_SIM_VIOL_MDTS,             /* transfer larger than MDTS */
    NVL_SIM_VIOL_LBA_RANGE,        /* SLBA + NLB beyond the namespace */
    NVL_SIM_VIOL_NAMESPACE,        /* NSID that is not an active namespace */
    NVL_SIM_VIOL_OPCODE,           /* opcode the controller does not implement */
    NVL_SIM_VIOL_FIELD,            /* an invalid or reserved field (FUSE, PSDT, CNS, FID, ...) */
    NVL_SIM_VIOL_CID_CONFLICT,     /* a CID already outstanding on the same SQ */
    NVL_SIM_VIOL_QUEUE_ID,         /* create/delete with a bad or busy queue identifier */
    NVL_SIM_VIOL_QUEUE_SIZE,       /* queue size 0 or above CAP.MQES */
    NVL_SIM_VIOL_QUEUE_CQ,         /* Create I/O SQ naming a CQ that does not exist */
    NVL_SIM_VIOL_QUEUE_DELETE,     /* Delete I/O CQ while an SQ still uses it */
    NVL_SIM_VIOL_QUEUE_CONTIG,     /* PC = 0 although CAP.CQR = 1 */
    NVL_SIM_VIOL_CMD_SEQUENCE,     /* Set Features Number of Queues after queues exist */
    NVL_SIM_VIOL_LOG_PAGE,         /* Get Log Page of an unsupported log or past its end */
    NVL_SIM_VIOL_SQ_TAIL,          /* SQ tail doorbell >= queue size, or past the head (CFS) */
    NVL_SIM_VIOL_CQ_HEAD,          /* CQ head doorbell >= size, or past posted entries (CFS) */
    NVL_SIM_VIOL_DOORBELL_NOQUEUE, /* doorbell of a queue that does not exist (CFS) */
    NVL_SIM_VIOL_DOORBELL_EARLY,   /* doorbell written while CSTS.RDY = 0 (write is dropped) */
    NVL_SIM_VIOL_ENABLE,           /* CC.EN = 1 with bad CC/AQA/ASQ/ACQ (CFS) */
    NVL_SIM_VIOL_RO_REGISTER,      /* host wrote CAP or VS (the value is restored) */
    NVL_SIM_VIOL_CQ_FULL,          /* completions wait because the host does not free CQ slots */
    NVL_SIM_VIOL_UNMAP_IN_USE,     /* dma_unmap of memory that holds a live queue (refused) */
    NVL_SIM_VIOL_QUEUE_OVERLAP,    /* a new queue's memory overlaps a live queue's */
    NVL_SIM_VIOL_COUNT
};

/* A short stable name ("prp_offset", "sq_tail", ...) for logs and test messages. */
const char *nvl_sim_violation_name(enum nvl_sim_violation v);

struct nvl_sim_stats {
    uint64_t admin_commands; /* admin SQEs fetched */
    uint64_t io_commands;    /* I/O SQEs fetched */
    uint64_t reads;          /* successful Read commands */
    uint64_t writes;         /* successful Write commands */
    uint64_t flushes;        /* successful Flush commands */
    uint64_t bytes_read;     /* bytes moved to host memory by Read */
    uint64_t bytes_written;  /* bytes taken from host memory by Write */
    uint64_t completions;    /* CQEs posted, admin and I/O */
    uint64_t errors;         /* CQEs posted with a non-zero status */
    uint64_t dma_faults;     /* same as violations[NVL_SIM_VIOL_DMA] */
    uint64_t faults_injected;
    uint64_t resets; /* CC.EN 1 -> 0 transitions and transport resets */
    uint64_t fatal;  /* times CSTS.CFS was set */
    uint64_t violations_total;
    uint64_t violations[NVL_SIM_VIOL_COUNT];
};

#ifdef __cplusplus
}
#endif

#endif
