/* A small deterministic NVMe controller for the driver's unit tests: a register page in RAM and
 * one thread that answers admin and NVM commands, with knobs that break it on purpose (never
 * ready, fatal status, lost completions, error status, malformed completions, out-of-order
 * completion). It walks PRPs itself, so it checks the driver's PRP lists independently of the
 * driver's builder. The strict controller of the project is nvl_sim; this fake stays small so
 * that each test controls exactly one behaviour. */
#ifndef NVL_TEST_FAKE_NVME_H
#define NVL_TEST_FAKE_NVME_H

#include <stdint.h>

#include "nvl_driver.h"

struct fake_nvme_opts {
    uint16_t mqes;        /* CAP.MQES, 0's based */
    uint8_t dstrd;        /* CAP.DSTRD */
    uint8_t to;           /* CAP.TO, 500 ms units */
    uint8_t mdts;         /* Identify MDTS, units of 4 KiB */
    uint8_t lbads;        /* log2 LBA size */
    uint64_t nsze;        /* namespace blocks */
    uint16_t max_queues;  /* queue pairs Set Features grants */
    int never_ready;      /* CSTS.RDY never follows CC.EN=1 */
    int cfs_on_admin_opc; /* admin opcode that sets CSTS.CFS instead of completing; -1 none */
    int drop_admin_opc;   /* admin opcode that is never completed; -1 none */
    int fail_admin_opc;   /* admin opcode that completes with fail_status; -1 none */
    uint16_t fail_status; /* status field (no phase) for fail_admin_opc / fail_io_nth */
    uint64_t fail_io_nth; /* the nth I/O command (1-based) fails with fail_status; 0 none */
    uint64_t drop_io_nth; /* the nth I/O command is never completed; 0 none */
    int bad_cid_io_nth;   /* the nth I/O completion carries an unknown CID; 0 none */
    uint64_t cfs_io_nth;  /* the nth I/O command sets CSTS.CFS instead of completing; 0 none */
    int reverse;          /* complete each batch of fetched commands in reverse order */
};

struct fake_nvme;

void fake_nvme_opts_init(struct fake_nvme_opts *o);
struct fake_nvme *fake_nvme_create(const struct fake_nvme_opts *o);
void fake_nvme_destroy(struct fake_nvme *f);
struct nvl_transport *fake_nvme_transport(struct fake_nvme *f);
uint8_t *fake_nvme_data(struct fake_nvme *f); /* namespace contents */

struct fake_nvme_counts {
    uint64_t admin, io, reads, writes, flushes, resets, dma_errors, prp_errors, max_inflight;
    uint64_t shutdowns, deleted_sqs, deleted_cqs, created_sqs, created_cqs;
    uint64_t reversed_batches;
};
void fake_nvme_counts(struct fake_nvme *f, struct fake_nvme_counts *c);

#endif
