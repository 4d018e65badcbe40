/* NVMe queue-ring operations shared by the CPU driver and the GPU engine.
 *
 * Everything here is pure ring arithmetic on host- or device-visible memory, as static inline
 * functions that compile as C11 and as CUDA C++ (__host__ __device__). None of them contains a
 * memory-ordering primitive or touches a doorbell: ordering lives in the caller's helpers (CPU:
 * nvl_mmio_* in mmio.h; GPU: the doorbell file of device/). Each operation says what its caller
 * must fence.
 *
 * Ring conventions (NVMe 1.4 §4.1):
 *  - A queue of `depth` slots is full when tail + 1 == head (mod depth), so at most depth - 1
 *    entries are outstanding in the SQ.
 *  - The SQ head the host sees is the sqhd field of the latest CQE for that SQ (§4.6); slots
 *    before it may be reused. The SQ head tells nothing about which commands have completed.
 *  - A CQ entry is new when its phase tag equals the queue's current phase; the phase starts
 *    at 1 (the host zeroes the CQ memory before creating the queue) and flips each wrap.
 *
 * CID scheme: CIDs are allocated from a bitmap (struct nvme_cid_map), independent of SQ slots.
 * CID = slot would be wrong: a slot is reusable as soon as sqhd passes it, while the command in
 * it may still be running, and completions arrive in any order. The number of CIDs in the map
 * bounds the commands in flight; keep it <= CQ depth - 1 so the CQ can never overflow (a
 * controller may post at most depth - 1 entries before the host moves the CQ head). */
#ifndef NVL_DRIVER_NVME_QUEUE_H
#define NVL_DRIVER_NVME_QUEUE_H

#include <stdint.h>

#include "nvme_spec.h"

#if defined(__CUDACC__)
#define NVL_HD __host__ __device__
#else
#define NVL_HD
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Submission queue ring state, owned by exactly one submitter (one CPU thread under the qpair
 * lock, or one GPU warp). */
struct nvme_sq {
    struct nvme_sqe *entries;    /* depth SQEs in memory the controller reads (DMA) */
    volatile uint32_t *doorbell; /* SQ tail doorbell: BAR0 (hardware) or the sim's page */
    uint32_t depth;              /* number of slots, 2..65536 (QSIZE + 1) */
    uint32_t tail;               /* next slot to fill; the value the doorbell gets */
    uint32_t head;               /* controller's head as last reported in a CQE's sqhd */
    uint16_t qid;                /* queue id: 0 admin, 1.. I/O */
};

/* Completion queue ring state, owned by exactly one consumer. */
struct nvme_cq {
    struct nvme_cqe *entries;    /* depth CQEs the controller writes (DMA); zeroed at creation */
    volatile uint32_t *doorbell; /* CQ head doorbell */
    uint32_t depth;              /* number of slots, 2..65536 */
    uint32_t head;               /* next entry to inspect; the value the doorbell gets */
    uint16_t phase;              /* phase tag that marks a new entry: 1 after creation */
    uint16_t qid;                /* queue id, equal to its SQ's in nvload (1:1 pairs) */
};

/* Sets up ring state for a freshly created queue pair. The CQ memory must already be zeroed
 * (phase tags 0) and visible to the controller before the Create I/O CQ command. */
NVL_HD static inline void nvme_sq_init(struct nvme_sq *sq, struct nvme_sqe *entries, uint32_t depth,
                                       volatile uint32_t *doorbell, uint16_t qid)
{
    sq->entries = entries;
    sq->doorbell = doorbell;
    sq->depth = depth;
    sq->tail = 0;
    sq->head = 0;
    sq->qid = qid;
}

NVL_HD static inline void nvme_cq_init(struct nvme_cq *cq, struct nvme_cqe *entries, uint32_t depth,
                                       volatile uint32_t *doorbell, uint16_t qid)
{
    cq->entries = entries;
    cq->doorbell = doorbell;
    cq->depth = depth;
    cq->head = 0;
    cq->phase = 1;
    cq->qid = qid;
}

/* ---- submission ------------------------------------------------------------------------- */

/* Free SQ slots: depth - 1 minus the entries the controller has not consumed yet. */
NVL_HD static inline uint32_t nvme_sq_free(const struct nvme_sq *sq)
{
    return (sq->head + sq->depth - sq->tail - 1) % sq->depth;
}

NVL_HD static inline int nvme_sq_full(const struct nvme_sq *sq)
{
    return nvme_sq_free(sq) == 0;
}

/* Entries written but not yet consumed by the controller (as far as the host knows). */
NVL_HD static inline uint32_t nvme_sq_used(const struct nvme_sq *sq)
{
    return (sq->tail + sq->depth - sq->head) % sq->depth;
}

/* Reserves n consecutive slots starting at the tail, without moving it. Returns the first
 * slot index, or -1 when fewer than n slots are free. A reservation is only valid until the
 * next nvme_sq_advance by the same owner. */
NVL_HD static inline int64_t nvme_sq_reserve(const struct nvme_sq *sq, uint32_t n)
{
    if (n == 0 || nvme_sq_free(sq) < n)
        return -1;
    return (int64_t)sq->tail;
}

/* The SQE at tail + i (i < free slots). */
NVL_HD static inline struct nvme_sqe *nvme_sq_slot(struct nvme_sq *sq, uint32_t i)
{
    return &sq->entries[(sq->tail + i) % sq->depth];
}

/* Copies an SQE into the slot at the tail (the caller checked nvme_sq_free() >= 1). Plain
 * stores: they become visible to the controller only through the release fence the caller
 * issues before the doorbell (nvl_mmio_doorbell_write on the CPU). */
NVL_HD static inline uint32_t nvme_sq_write(struct nvme_sq *sq, const struct nvme_sqe *sqe)
{
    uint32_t slot = sq->tail;

    sq->entries[slot] = *sqe;
    return slot;
}

/* Moves the tail past n written slots and returns the new tail: the value to write to the SQ
 * tail doorbell. Several SQEs may be written and advanced before one doorbell write (doorbell
 * coalescing). Caller fence: all n SQEs must be globally visible before the doorbell store
 * (release fence, or __threadfence_system() on the GPU). */
NVL_HD static inline uint32_t nvme_sq_advance(struct nvme_sq *sq, uint32_t n)
{
    sq->tail = (sq->tail + n) % sq->depth;
    return sq->tail;
}

/* Records the SQ head reported by a completion (cqe.sqhd): slots up to it are free again.
 * A completion is input: sqhd must lie in the window [head, tail] of entries the host
 * submitted, otherwise the controller is misbehaving and -1 is returned with nothing changed.
 * No fence needed: the caller already ordered its read of the CQE after the phase check. */
NVL_HD static inline int nvme_sq_update_head(struct nvme_sq *sq, uint16_t sqhd)
{
    uint32_t ahead = ((uint32_t)sqhd + sq->depth - sq->head) % sq->depth;

    if (sqhd >= sq->depth || ahead > nvme_sq_used(sq))
        return -1;
    sq->head = sqhd;
    return 0;
}

/* ---- completion ------------------------------------------------------------------------- */

/* The CQE at the head. */
NVL_HD static inline struct nvme_cqe *nvme_cq_head_entry(struct nvme_cq *cq)
{
    return &cq->entries[cq->head];
}

/* Whether the CQE at the head is new (its phase tag equals cq->phase). The status half-word
 * is read through a volatile lvalue so that a polling loop re-reads memory. Caller fence: when
 * this returns true, issue an acquire/read fence (nvl_mmio_rmb on the CPU, a fence or
 * ld.acquire on the GPU) before reading the rest of the CQE, so the body is not read before
 * the phase tag that publishes it. */
NVL_HD static inline int nvme_cq_ready(const struct nvme_cq *cq)
{
    const volatile uint16_t *st = &cq->entries[cq->head].status;

    return nvme_cqe_phase(*st) == cq->phase;
}

/* Consumes the CQE at the head: advances the head, flipping the phase on wrap, and returns the
 * new head: the value to write to the CQ head doorbell. The doorbell may be written once after
 * several CQEs (coalescing). Caller fence: finish reading the CQE(s) before the doorbell store
 * hands the slots back to the controller (a full fence before the doorbell on the CPU). */
NVL_HD static inline uint32_t nvme_cq_advance(struct nvme_cq *cq)
{
    if (++cq->head == cq->depth) {
        cq->head = 0;
        cq->phase ^= 1u;
    }
    return cq->head;
}

/* Consumes n CQEs at once (n <= depth): nvme_cq_advance n times, without the loop. */
NVL_HD static inline uint32_t nvme_cq_advance_n(struct nvme_cq *cq, uint32_t n)
{
    cq->head += n;
    if (cq->head >= cq->depth) {
        cq->head -= cq->depth;
        cq->phase ^= 1u;
    }
    return cq->head;
}

/* ---- command identifiers ---------------------------------------------------------------- */

#define NVME_CID_NONE 0xffffu

/* A CID bitmap over caller-provided words: bit set = CID in flight. count <= 65535 CIDs
 * (0xffff is reserved as "none"). Not thread safe: one per qpair, used by its owner. */
struct nvme_cid_map {
    uint64_t *words; /* (count + 63) / 64 words, zeroed by nvme_cid_map_init */
    uint32_t count;  /* number of CIDs: 0 .. count - 1 */
    uint32_t hint;   /* word index where the next search starts */
    uint32_t used;   /* CIDs currently allocated */
};

NVL_HD static inline uint32_t nvme_cid_map_words(uint32_t count)
{
    return (count + 63) / 64;
}

NVL_HD static inline void nvme_cid_map_init(struct nvme_cid_map *m, uint64_t *words, uint32_t count)
{
    uint32_t i;

    m->words = words;
    m->count = count;
    m->hint = 0;
    m->used = 0;
    for (i = 0; i < nvme_cid_map_words(count); i++)
        m->words[i] = 0;
}

NVL_HD static inline uint32_t nvme__ctz64(uint64_t v)
{
#if defined(__CUDA_ARCH__)
    return (uint32_t)(__ffsll((long long)v) - 1);
#else
    return (uint32_t)__builtin_ctzll(v);
#endif
}

NVL_HD static inline uint32_t nvme__popc64(uint64_t v)
{
#if defined(__CUDA_ARCH__)
    return (uint32_t)__popcll((unsigned long long)v);
#else
    return (uint32_t)__builtin_popcountll(v);
#endif
}

/* Index of the n-th (from 0) set bit of v; v must have more than n bits set. */
NVL_HD static inline uint32_t nvme__nth_bit64(uint64_t v, uint32_t n)
{
#if defined(__CUDA_ARCH__)
    uint32_t lo = (uint32_t)v, c = (uint32_t)__popc(lo);

    if (n < c)
        return __fns(lo, 0, (int)n + 1);
    return 32u + __fns((uint32_t)(v >> 32), 0, (int)(n - c) + 1);
#else
    while (n--)
        v &= v - 1;
    return nvme__ctz64(v);
#endif
}

/* Bits of CID word w that name CIDs below count. */
NVL_HD static inline uint64_t nvme__cid_word_valid(const struct nvme_cid_map *m, uint32_t w)
{
    if (w == nvme_cid_map_words(m->count) - 1 && (m->count % 64) != 0)
        return ((uint64_t)1 << (m->count % 64)) - 1;
    return ~(uint64_t)0;
}

/* The CID named by bit `bit` of bitmap word w. */
NVL_HD static inline uint16_t nvme_cid_of(uint32_t w, uint32_t bit)
{
    return (uint16_t)(w * 64u + bit);
}

/* Takes up to max free CIDs with one read-modify-write of one bitmap word: the lowest free bits
 * of the first word at or after the hint word that has any. Returns their mask and sets *word;
 * the CIDs are nvme_cid_of(*word, each set bit), and the k-th lowest is
 * nvme_cid_of(*word, nvme__nth_bit64(mask, k)), so lanes of a warp can each compute theirs.
 * Returns 0 when max is 0 or every CID is taken. Fewer than max may come back (the word had
 * fewer free): call again for the rest. */
NVL_HD static inline uint64_t nvme_cid_alloc_word(struct nvme_cid_map *m, uint32_t max,
                                                  uint32_t *word)
{
    uint32_t nwords = nvme_cid_map_words(m->count);
    uint32_t k;

    if (max == 0 || m->used >= m->count)
        return 0;
    for (k = 0; k < nwords; k++) {
        uint32_t w = (m->hint + k) % nwords, c;
        uint64_t take = ~m->words[w] & nvme__cid_word_valid(m, w);

        if (!take)
            continue;
        c = nvme__popc64(take);
        if (c > max) {
            /* The lowest max free bits: up to and including the max-th one. */
            uint32_t last = nvme__nth_bit64(take, max - 1);

            take &= last == 63 ? ~(uint64_t)0 : ((uint64_t)2 << last) - 1;
            c = max;
        }
        m->words[w] |= take;
        m->hint = w;
        m->used += c;
        *word = w;
        return take;
    }
    return 0;
}

/* Gives back the CIDs of mask in bitmap word `word` (a batch of completions gathered per word).
 * Completions are input: bits out of range or not in flight are spurious, change nothing and
 * are returned (0: all were freed). A CID named twice in one batch sets its bit once, so the
 * caller must detect such duplicates itself (nvme_cid_free, one CID at a time, does). */
NVL_HD static inline uint64_t nvme_cid_free_word(struct nvme_cid_map *m, uint32_t word,
                                                 uint64_t mask)
{
    uint64_t busy;

    if (word >= nvme_cid_map_words(m->count))
        return mask;
    busy = m->words[word] & mask & nvme__cid_word_valid(m, word);
    m->words[word] &= ~busy;
    m->used -= nvme__popc64(busy);
    return mask & ~busy;
}

/* Allocates the lowest free CID at or after the hint word; NVME_CID_NONE when all are taken. */
NVL_HD static inline uint16_t nvme_cid_alloc(struct nvme_cid_map *m)
{
    uint32_t nwords = nvme_cid_map_words(m->count);
    uint32_t k;

    if (m->used >= m->count)
        return (uint16_t)NVME_CID_NONE;
    for (k = 0; k < nwords; k++) {
        uint32_t w = (m->hint + k) % nwords;
        uint64_t free_bits = ~m->words[w];
        uint32_t bit, cid;

        if (w == nwords - 1 && (m->count % 64) != 0)
            free_bits &= ((uint64_t)1 << (m->count % 64)) - 1;
        if (!free_bits)
            continue;
        bit = nvme__ctz64(free_bits);
        cid = w * 64 + bit;
        m->words[w] |= (uint64_t)1 << bit;
        m->hint = w;
        m->used++;
        return (uint16_t)cid;
    }
    return (uint16_t)NVME_CID_NONE;
}

NVL_HD static inline int nvme_cid_busy(const struct nvme_cid_map *m, uint16_t cid)
{
    if (cid >= m->count)
        return 0;
    return (int)((m->words[cid / 64] >> (cid % 64)) & 1u);
}

/* Frees a CID named by a completion. Completions are input: a CID that is out of range or not
 * in flight returns -1 (a spurious or duplicate completion) and changes nothing. */
NVL_HD static inline int nvme_cid_free(struct nvme_cid_map *m, uint16_t cid)
{
    if (!nvme_cid_busy(m, cid))
        return -1;
    m->words[cid / 64] &= ~((uint64_t)1 << (cid % 64));
    m->used--;
    return 0;
}

#ifdef __cplusplus
}
#endif

#endif
