/* A minimal host for the sim conformance tests: it writes registers, SQEs and doorbells by hand
 * (deliberately not through the driver's controller or ring code), so that each test controls
 * every bit the sim sees and can break one rule at a time. */
#ifndef NVL_TESTS_SIM_HOST_H
#define NVL_TESTS_SIM_HOST_H

#include <stddef.h>
#include <stdint.h>

#include "nvl_sim.h"

/* Host memory registered with the sim's transport. */
struct hbuf {
    uint8_t *p;
    size_t len;
    uint64_t iova;
};

/* One queue pair as the host tracks it. */
struct hq {
    uint16_t qid;
    uint32_t size;
    struct hbuf sqm;
    struct hbuf cqm;
    struct nvme_sqe *sq;
    struct nvme_cqe *cq;
    uint32_t sq_tail;
    uint32_t cq_head;
    uint16_t phase;
    uint16_t next_cid;
};

#define HOST_MAX_QUEUES 16
#define HOST_MAX_BUFS   512

struct host {
    struct nvl_sim *sim;
    struct nvl_transport *tr;
    volatile uint8_t *bar;
    uint32_t stride;
    struct hq aq;
    struct hq ioq[HOST_MAX_QUEUES + 1];
    void *bufs[HOST_MAX_BUFS]; /* every host_buf allocation, freed by host_destroy */
};

/* Status field (no phase) of a CQE. */
#define CQE_STATUS(c) ((uint16_t)((c)->status >> 1))
/* SCT/SC of a status field, DNR and More masked off. */
#define ST_CODE(s)  ((uint16_t)((s)&0x7ff))
#define SC(sct, sc) ((uint16_t)(((sct) << 8) | (sc)))

/* Creates a sim from a spec string (nvl_sim_opts_parse syntax; fast delays are added first). */
int host_create(struct host *h, const char *spec);
void host_destroy(struct host *h);

/* Page-aligned, zeroed memory mapped through the sim's transport. Buffers still allocated when
 * the host is destroyed are freed then. */
int host_buf(struct host *h, size_t len, struct hbuf *b);
/* Unmaps and frees b. */
void host_buf_free(struct host *h, struct hbuf *b);

uint32_t host_reg32(struct host *h, uint32_t off);
void host_reg32_write(struct host *h, uint32_t off, uint32_t v);
void host_reg64_write(struct host *h, uint32_t off, uint64_t v);
volatile uint32_t *host_sq_db(struct host *h, uint32_t qid);
volatile uint32_t *host_cq_db(struct host *h, uint32_t qid);
void host_db_write(volatile uint32_t *db, uint32_t v);

/* Waits until (CSTS & mask) == want; 0 or -ETIMEDOUT. */
int host_wait_csts(struct host *h, uint32_t mask, uint32_t want, int timeout_ms);

/* Allocates the admin queues (entries each), programs AQA/ASQ/ACQ and CC with the standard
 * configuration, waits for RDY. */
int host_enable(struct host *h, uint32_t entries);
/* CC.EN = 0 and wait for RDY = 0. */
int host_disable(struct host *h);
/* The standard CC value with EN = 1. */
uint32_t host_cc_enabled(void);

/* Writes sqe (CID assigned unless keep_cid) at the tail of q and rings the doorbell. */
void host_submit(struct host *h, struct hq *q, struct nvme_sqe *sqe, int keep_cid);
/* Writes the SQE without ringing; host_ring rings once for everything written. */
void host_push(struct hq *q, struct nvme_sqe *sqe, int keep_cid);
void host_ring(struct host *h, struct hq *q);
/* Waits for the next CQE of q, copies it out, advances and rings the CQ head doorbell.
 * 0 or -ETIMEDOUT. */
int host_reap(struct host *h, struct hq *q, struct nvme_cqe *out, int timeout_ms);
/* Like host_reap but leaves the head doorbell alone (the caller rings it). */
int host_reap_noring(struct hq *q, struct nvme_cqe *out, int timeout_ms);
/* Whether a CQE is waiting at the head. */
int host_cqe_ready(struct hq *q);

/* Submits an admin command and waits: returns the CQE status field, or -1 on timeout. */
int host_admin(struct host *h, struct nvme_sqe *sqe, struct nvme_cqe *out);
/* Creates I/O CQ + SQ qid with `entries` entries each: 0 or the failing status / -1. */
int host_create_ioq(struct host *h, uint16_t qid, uint32_t entries);
int host_delete_ioq(struct host *h, uint16_t qid);
/* Enable + Set Features Number of Queues + create nq queue pairs. 0 or -1. */
int host_bringup(struct host *h, uint16_t nq, uint32_t entries);

/* A Read or Write SQE for [slba, slba + nlb) using PRPs built in `prp_list` (may be NULL when
 * the transfer needs no list) from buffer b at byte offset off. */
void host_rw_sqe(struct nvme_sqe *sqe, uint8_t opc, uint64_t slba, uint32_t nlb, uint32_t lba_size,
                 struct hbuf *b, size_t off, struct hbuf *prp_list);
/* Synchronous I/O on queue qid: returns the status field, or -1 on timeout. */
int host_io(struct host *h, uint16_t qid, uint8_t opc, uint64_t slba, uint32_t nlb, struct hbuf *b,
            size_t off, struct hbuf *prp_list);

/* Counter helpers. */
uint64_t host_viol(struct host *h, enum nvl_sim_violation v);
/* Waits until violation v was counted at least `min` times: 0 or -ETIMEDOUT. The sim's threads
 * nap when idle, so a test never assumes a fixed reaction time. */
int host_wait_viol(struct host *h, enum nvl_sim_violation v, uint64_t min, int timeout_ms);
void host_stats(struct host *h, struct nvl_sim_stats *s);

/* Fills/compares a deterministic pattern: byte i of block `lba` depends on (seed, lba, i). */
void pattern_fill(uint8_t *p, size_t len, uint64_t first_byte, uint32_t seed);
int pattern_check(const uint8_t *p, size_t len, uint64_t first_byte, uint32_t seed);

void sleep_us(uint64_t us);
uint64_t now_ms(void);

#endif
