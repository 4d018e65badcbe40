/* The persistent GPU I/O engine kernel and its launcher (interface: nvl_device/engine.h).
 *
 * Block q (one warp) owns I/O queue pair q. Its loop:
 *   1. reap: poll 32 CQEs at once, account each completion to its request, free the CIDs,
 *      honour sqhd, ring the CQ head doorbell once for everything reaped;
 *   2. submit: claim commands of posted requests (lock-free, shared with the other warps through
 *      a per-request claim counter in device memory), write up to max_batch SQEs, ring the SQ
 *      tail doorbell once;
 *   3. now and then: read ctl (stop, mirrored CSTS), check for commands outstanding too long;
 *   4. leave when stop is set, everything posted has been claimed and nothing is in flight,
 *      or when the engine has failed (after failing every request it still owns).
 * Lane 0 does the scalar bookkeeping (claims, CID allocation, ring indices); all lanes build
 * SQEs, poll CQEs and account completions in parallel. */
#include <errno.h>
#include <stdint.h>

#include "doorbell.cuh"
#include "nvl_device/cmd.h"
#include "nvl_device/engine.h"
#include "queue.cuh"
#include "sysmem.cuh"

#define FULL_MASK 0xffffffffu

/* Where the commands claimed in one round come from: seg lanes [lane0, lane0 + n) get commands
 * c0, c0 + 1, ... of request req. */
struct seg {
    struct nvl_engine_req desc;
    struct nvl_engine_plan plan;
    uint32_t req;
    uint32_t c0;
    uint32_t n;
    uint32_t lane0;
};

/* What the warp remembers about a command in flight, by CID. */
struct cid_info {
    uint32_t req;    /* request number */
    uint32_t n_cmds; /* commands of that request */
    uint64_t t_submit;
};

/* The warp's shared state. Only lane 0 writes the scalar fields. */
struct warp_state {
    struct nvme_sq sq;
    struct nvme_cq cq;
    struct nvme_cid_map cids;
    uint64_t cid_words[NVL_ENGINE_MAX_CIDS / 64];
    struct cid_info info[NVL_ENGINE_MAX_CIDS];
    /* 16-byte aligned: nvl_dev_sq_copy moves it with 16-byte vector loads. */
    alignas(16) struct nvme_sqe stage[32];
    struct seg seg[32];
    /* The CIDs of a submit batch, as bitmap words (nvme_cid_alloc_word): lane i takes the i-th
     * CID counting through new_mask[0], new_mask[1], ... */
    uint64_t new_mask[32];
    uint32_t new_word[32];
    uint32_t n_new_words;
    uint64_t reap_spurious; /* bits of the word just given back that were not in flight */
    uint32_t n_seg;
    uint32_t n_new;
    uint32_t want;
    uint32_t producer; /* last value read of ctl.producer */
    uint32_t protocol_error;
    /* The descriptor lane 0 read last, to spare a PCIe round trip per claim. */
    struct nvl_engine_req cur;
    struct nvl_engine_plan cur_plan;
    uint32_t cur_req;
    int cur_valid;
    int cur_ok;
    uint64_t gate_since; /* when a closed gate started holding the ring back; 0 = open */
    struct nvl_engine_qp_stats stats;
};

static __device__ __forceinline__ uint32_t ld_volatile_u32(const uint32_t *p)
{
    return *(const volatile uint32_t *)p;
}

static __device__ __forceinline__ uint64_t ld_volatile_u64(const uint64_t *p)
{
    return *(const volatile uint64_t *)p;
}

static __device__ void set_fatal(const struct nvl_engine_params &p, uint32_t st)
{
    atomicCAS(&p.global->fatal, 0u, st);
}

/* Reads request r's descriptor from the ring in host memory. The caller has observed
 * ctl.producer > r with an acquire fence after it. */
static __device__ void load_desc(const struct nvl_engine_params &p, uint32_t r,
                                 struct nvl_engine_req *out)
{
    const uint64_t *src = (const uint64_t *)&p.ring[r & (p.ring_entries - 1u)];
    uint64_t w[8];
    int i;

    /* Eight independent loads, all in flight at once: one PCIe round trip. */
    for (i = 0; i < 8; i++)
        w[i] = nvl_dev_ld_sys_u64(&src[i]);
    memcpy(out, w, sizeof(*out));
}

/* Request r has finished every command: publish its completion entry, reset its bookkeeping for
 * request r + R, and, when it is the last of its group, store the group's notify word. */
static __device__ void finish_req(const struct nvl_engine_params &p, uint32_t r)
{
    const uint32_t mask = p.ring_entries - 1u;
    struct nvl_engine_mirror *m = &p.mirror[r & mask];
    struct nvl_engine_cpl *c = &p.cpl[r & mask];
    const uint64_t *src = (const uint64_t *)&p.ring[r & mask];
    uint64_t group, notify_addr, notify_val;
    uint32_t st, group_size, group_first;

    /* Pairs with the fence every finisher of a command issues before its atomicAdd on done. */
    __threadfence();
    group = nvl_dev_ld_sys_u64(&src[3]);
    notify_addr = nvl_dev_ld_sys_u64(&src[4]);
    notify_val = nvl_dev_ld_sys_u64(&src[5]);
    st = atomicExch(&m->status, 0u);
    atomicExch(&m->done, 0u);
    __threadfence();
    /* From here on, a late claimer of r sees another request number and leaves it alone. */
    atomicExch((unsigned long long *)&m->claim, (unsigned long long)(uint32_t)(r + p.ring_entries)
                                                    << 32);

    nvl_dev_st_sys_u32(&c->status, st);
    nvl_dev_st_release_sys_u32(&c->seq, r + 1u);

    group_first = (uint32_t)group;
    group_size = (uint32_t)(group >> 32);
    if (group_size > 1) {
        struct nvl_engine_mirror *g = &p.mirror[group_first & mask];
        uint32_t old;

        if (st)
            atomicCAS(&g->group_status, 0u, st);
        /* Our completion entry is visible before the group can be seen complete. */
        __threadfence_system();
        old = atomicAdd(&g->group_done, 1u);
        if (old + 1u != group_size)
            return;
        __threadfence_system();
        atomicExch(&g->group_done, 0u);
        atomicExch(&g->group_status, 0u);
    }
    if (notify_addr)
        nvl_dev_st_release_sys_u32((void *)notify_addr, (uint32_t)notify_val);
}

/* k commands of request r (which has n_cmds) are finished with status st (0 = success). */
static __device__ void cmd_done(const struct nvl_engine_params &p, uint32_t r, uint32_t n_cmds,
                                uint32_t k, uint32_t st)
{
    struct nvl_engine_mirror *m = &p.mirror[r & (p.ring_entries - 1u)];
    uint32_t old;

    if (st)
        atomicCAS(&m->status, 0u, st);
    /* Status before count: whoever sees the final count sees the status. */
    __threadfence();
    old = atomicAdd(&m->done, k);
    if (old + k == n_cmds)
        finish_req(p, r);
}

/* Warp-collective: lanes with valid set each finished one command, the one CQE e names. Lanes
 * whose commands belong to the same request add to its count with one atomic (a request's
 * commands tend to complete together, and 32 atomics on one address would serialise); a failed
 * status is recorded first, and the __syncwarp() orders it before the leader's fence and add. */
static __device__ void cmds_done_warp(struct warp_state *w, const struct nvl_engine_params &p,
                                      uint32_t lane, int valid, const struct nvl_dev_cqe_tail &e)
{
    const uint32_t vmask = __ballot_sync(FULL_MASK, valid);
    struct cid_info ci = {0, 0, 0};

    if (valid) {
        ci = w->info[e.cid];
        if (e.status)
            atomicCAS(&p.mirror[ci.req & (p.ring_entries - 1u)].status, 0u,
                      nvl_engine_st_make(NVL_ENGINE_ST_NVME, e.status));
    }
    __syncwarp();
    if (valid) {
        uint32_t group = __match_any_sync(vmask, ci.req);

        if (lane == (uint32_t)__ffs(group) - 1u) {
            struct nvl_engine_mirror *m = &p.mirror[ci.req & (p.ring_entries - 1u)];
            uint32_t k = (uint32_t)__popc(group), old;

            __threadfence();
            old = atomicAdd(&m->done, k);
            if (old + k == ci.n_cmds)
                finish_req(p, ci.req);
        }
    }
    __syncwarp();
}

/* Lane 0 only. Claims up to `want` commands from the posted requests, oldest first, into
 * w->seg. In abort mode, claimed commands are finished at once with status `abort_st` instead
 * (requests the failed engine will never run). Returns the number of commands placed in w->seg;
 * *claimed_any tells whether anything at all was claimed. */
static __device__ uint32_t claim(struct warp_state *w, const struct nvl_engine_params &p,
                                 uint32_t want, uint32_t abort_st, int *claimed_any)
{
    const uint32_t mask = p.ring_entries - 1u;
    uint32_t got = 0, n_seg = 0, guard;
    int refreshed = 0, gated = 0;

    *claimed_any = 0;
    for (guard = 0; guard < 4096u && got < want && n_seg < 32u; guard++) {
        uint32_t r = ld_volatile_u32(&p.global->req_next);
        struct nvl_engine_mirror *m = &p.mirror[r & mask];
        uint64_t old;
        uint32_t n_cmds, claimed, take;

        /* Posted means before the producer. The cached producer may be older than a request
         * number another warp has moved req_next to: then refresh it. */
        if ((int32_t)(w->producer - r) <= 0) {
            if (refreshed)
                break;
            w->producer = nvl_dev_ld_sys_u32(&p.ctl->producer);
            nvl_dev_fence_acquire_sys();
            refreshed = 1;
            continue;
        }
        if (!w->cur_valid || w->cur_req != r) {
            uint32_t b;

            load_desc(p, r, &w->cur);
            b = w->cur.buf;
            w->cur_ok = nvl_engine_plan_req(&w->cur, b < p.n_bufs ? &p.bufs[b] : NULL, p.lba_shift,
                                            p.max_cmd_shift, &w->cur_plan) == 0;
            w->cur_req = r;
            w->cur_valid = 1;
        }
        if (!abort_st && w->cur.gate_addr) {
            uint32_t g = nvl_dev_ld_sys_u32((const void *)w->cur.gate_addr);

            if ((int32_t)(g - w->cur.gate_value) < 0) {
                gated = 1;
                break;
            }
            nvl_dev_fence_acquire_sys();
        }
        n_cmds = w->cur_ok ? w->cur_plan.n_cmds : 1u;
        old = ld_volatile_u64(&m->claim);
        if ((uint32_t)(old >> 32) != r)
            continue; /* finished and recycled: req_next has moved on */
        claimed = (uint32_t)old;
        if (claimed >= n_cmds) {
            atomicCAS(&p.global->req_next, r, r + 1u);
            continue;
        }
        take = min(want - got, n_cmds - claimed);
        if (atomicCAS((unsigned long long *)&m->claim, (unsigned long long)old,
                      (unsigned long long)(old + take)) != (unsigned long long)old)
            continue;
        if (claimed + take == n_cmds)
            atomicCAS(&p.global->req_next, r, r + 1u);
        *claimed_any = 1;
        if (abort_st || !w->cur_ok) {
            cmd_done(p, r, n_cmds, take,
                     abort_st ? abort_st : nvl_engine_st_make(NVL_ENGINE_ST_BADREQ, 0));
            continue;
        }
        w->seg[n_seg].desc = w->cur;
        w->seg[n_seg].plan = w->cur_plan;
        w->seg[n_seg].req = r;
        w->seg[n_seg].c0 = claimed;
        w->seg[n_seg].n = take;
        w->seg[n_seg].lane0 = got;
        n_seg++;
        got += take;
    }
    if (!gated)
        w->gate_since = 0;
    else if (!w->gate_since)
        w->gate_since = nvl_dev_now_ns() | 1u;
    w->n_seg = n_seg;
    return got;
}

/* Warp-collective: gives back the CIDs named by the n CQEs in the lanes' e (lane < n), a bitmap
 * word at a time (nvme_cid_free_word), and returns, per lane, whether its completion is valid:
 * for this SQ, and naming a CID in flight that no lower lane of this batch names too. A CID
 * named twice in one batch must not pass twice; __match_any_sync finds the repeats (the later
 * lanes lose), which nvme_cid_free_word cannot see in a merged mask. */
static __device__ bool reap_free_cids(struct warp_state *w, uint32_t lane, uint32_t n,
                                      const struct nvl_dev_cqe_tail &e)
{
    bool mine = lane < n && e.sqid == w->sq.qid;
    /* Lanes without a CID of their own get keys no CID can have, so they match nobody. */
    uint32_t key = mine ? (uint32_t)e.cid : 0x10000u + lane;
    uint32_t peers = __match_any_sync(FULL_MASK, key), word = key / 64u, bit = key % 64u;
    bool cand = mine && (peers & ((1u << lane) - 1u)) == 0 && e.cid < w->cids.count;
    bool ok = false;
    uint32_t pending = __ballot_sync(FULL_MASK, cand);

    while (pending) {
        uint32_t wd = __shfl_sync(FULL_MASK, word, (uint32_t)__ffs(pending) - 1u);
        bool in = cand && word == wd;
        uint32_t lo = __reduce_or_sync(FULL_MASK, in && bit < 32u ? 1u << bit : 0u);
        uint32_t hi = __reduce_or_sync(FULL_MASK, in && bit >= 32u ? 1u << (bit - 32u) : 0u);

        if (lane == 0)
            w->reap_spurious =
                nvme_cid_free_word(&w->cids, wd, ((uint64_t)hi << 32) | (uint64_t)lo);
        __syncwarp();
        if (in)
            ok = !((w->reap_spurious >> bit) & 1u);
        pending &= ~__ballot_sync(FULL_MASK, in);
        __syncwarp();
    }
    return ok;
}

/* Warp-collective: reaps completions (up to 8 polls of 32) and rings the CQ head doorbell once.
 * Returns the number of CQEs consumed. */
static __device__ uint32_t reap(struct warp_state *w, const struct nvl_engine_params &p,
                                uint32_t lane)
{
    uint32_t total = 0, round;

    for (round = 0; round < 8u; round++) {
        struct nvl_dev_cqe_tail e;
        uint32_t n = nvl_dev_cq_poll(&w->cq, lane, &e), last_sqhd, errs, bad;
        bool ok;

        if (lane == 0) {
            w->stats.polls++;
            if (n == 0 && total == 0)
                w->stats.empty_polls++;
        }
        if (n == 0)
            break;
        last_sqhd = __shfl_sync(FULL_MASK, (uint32_t)e.sqhd, n - 1u);
        ok = reap_free_cids(w, lane, n, e);
        if (lane == 0) {
            nvme_cq_advance_n(&w->cq, n);
            if (nvme_sq_update_head(&w->sq, (uint16_t)last_sqhd) != 0)
                w->protocol_error = 1;
            w->stats.completions += n;
        }
        __syncwarp();
        cmds_done_warp(w, p, lane, ok, e);
        if (lane < n && !ok)
            w->protocol_error = 1;
        errs = __popc(__ballot_sync(FULL_MASK, ok && e.status != 0));
        bad = __popc(__ballot_sync(FULL_MASK, lane < n && !ok));
        if (lane == 0) {
            w->stats.errors += errs;
            w->stats.spurious += bad;
        }
        total += n;
        if (n < 32u)
            break;
    }
    if (total) {
        __syncwarp();
        nvl_dev_doorbell_write(w->cq.doorbell, w->cq.head);
        if (lane == 0)
            w->stats.cq_doorbells++;
    }
    __syncwarp();
    return total;
}

/* Warp-collective: claims and writes up to max_batch commands, then rings the SQ tail doorbell
 * once. Returns the number of SQEs submitted. */
static __device__ uint32_t submit(struct warp_state *w, const struct nvl_engine_params &p,
                                  uint32_t lane)
{
    uint32_t total = 0;

    while (total < p.max_batch) {
        uint32_t n;

        if (lane == 0) {
            uint32_t want = min(nvme_sq_free(&w->sq), w->cids.count - w->cids.used);
            int any;
            uint32_t j, got;

            want = min(min(want, 32u), p.max_batch - total);
            n = want ? claim(w, p, want, 0, &any) : 0;
            /* n <= free CIDs (want counts them), so the loop always ends with all n, usually
             * from one word. */
            for (j = 0, got = 0; got < n; j++) {
                w->new_mask[j] = nvme_cid_alloc_word(&w->cids, n - got, &w->new_word[j]);
                got += nvme__popc64(w->new_mask[j]);
            }
            w->n_new_words = j;
            w->n_new = n;
            w->want = want;
        }
        __syncwarp();
        n = w->n_new;
        if (n == 0)
            break;
        if (lane < n) {
            const struct seg *s = &w->seg[0];
            struct nvl_engine_cmd cmd;
            const struct nvl_engine_buf *b;
            uint64_t prp1, prp2;
            uint16_t cid = NVME_CID_NONE;
            uint32_t k, base = 0;

            for (k = 0; k < w->n_new_words; k++) {
                uint32_t c = nvme__popc64(w->new_mask[k]);

                if (lane < base + c) {
                    cid = nvme_cid_of(w->new_word[k], nvme__nth_bit64(w->new_mask[k], lane - base));
                    break;
                }
                base += c;
            }

            for (k = 0; k < w->n_seg; k++) {
                if (lane >= w->seg[k].lane0 && lane < w->seg[k].lane0 + w->seg[k].n) {
                    s = &w->seg[k];
                    break;
                }
            }
            b = &p.bufs[s->desc.buf];
            nvl_engine_plan_cmd(&s->desc, &s->plan, b, p.lba_shift, s->c0 + (lane - s->lane0),
                                &cmd);
            nvl_engine_cmd_prp(b, cmd.off, cmd.bytes, &prp1, &prp2);
            nvl_engine_sqe_read(&w->stage[lane], cid, p.nsid, cmd.slba, cmd.nlb, prp1, prp2);
            w->info[cid].req = s->req;
            w->info[cid].n_cmds = s->plan.n_cmds;
            w->info[cid].t_submit = nvl_dev_now_ns();
        }
        __syncwarp();
        nvl_dev_sq_copy(&w->sq, w->stage, n, lane);
        __syncwarp();
        if (lane == 0) {
            nvme_sq_advance(&w->sq, n);
            w->stats.commands += n;
        }
        __syncwarp();
        total += n;
        if (n < w->want)
            break;
    }
    if (total) {
        nvl_dev_doorbell_write(w->sq.doorbell, w->sq.tail);
        if (lane == 0)
            w->stats.sq_doorbells++;
    }
    __syncwarp();
    return total;
}

/* Warp-collective: the age of the oldest command in flight, in ns (0 when none). */
static __device__ uint64_t oldest_age(struct warp_state *w, uint64_t now, uint32_t lane)
{
    uint64_t age = 0;
    uint32_t cid;
    int off;

    for (cid = lane; cid < w->cids.count; cid += 32u) {
        if (nvme_cid_busy(&w->cids, (uint16_t)cid)) {
            uint64_t a = now - w->info[cid].t_submit;

            age = a > age ? a : age;
        }
    }
    for (off = 16; off > 0; off /= 2) {
        uint64_t o = __shfl_xor_sync(FULL_MASK, age, off);

        age = o > age ? o : age;
    }
    return age;
}

/* Warp-collective, once the engine has failed with status `fatal`: finishes every command this
 * warp has in flight and every command nobody has claimed yet with an error status, so each
 * posted request gets its completion entry and notify word. The queue pair is dead afterwards
 * (its commands may still complete at the controller): the host resets the controller. */
static __device__ void abort_all(struct warp_state *w, const struct nvl_engine_params &p,
                                 uint32_t fatal, uint32_t lane)
{
    const uint32_t aborted = nvl_engine_st_make(NVL_ENGINE_ST_ABORTED, 0);
    uint32_t cid;

    for (cid = lane; cid < w->cids.count; cid += 32u) {
        if (nvme_cid_busy(&w->cids, (uint16_t)cid))
            cmd_done(p, w->info[cid].req, w->info[cid].n_cmds, 1u, fatal);
    }
    __syncwarp();
    if (lane == 0) {
        int any = 1;
        uint32_t i, guard;

        for (i = 0; i < nvme_cid_map_words(w->cids.count); i++)
            w->cids.words[i] = 0;
        w->cids.used = 0;
        for (guard = 0; any && guard < (1u << 20); guard++)
            claim(w, p, 32u, aborted, &any);
    }
    __syncwarp();
}

static __device__ void load_state(struct warp_state *w, const struct nvl_engine_qp *q)
{
    uint32_t i;

    w->sq = q->sq;
    w->cq = q->cq;
    w->cids.words = w->cid_words;
    w->cids.count = q->n_cids;
    w->cids.hint = q->cid_hint;
    w->cids.used = q->cid_used;
    for (i = 0; i < NVL_ENGINE_MAX_CIDS / 64; i++)
        w->cid_words[i] = q->cid_words[i];
    w->stats = q->stats;
    w->n_seg = 0;
    w->n_new = 0;
    w->want = 0;
    w->producer = 0;
    w->protocol_error = 0;
    w->cur_valid = 0;
    w->cur_ok = 0;
    w->gate_since = 0;
}

static __device__ void store_state(const struct warp_state *w, struct nvl_engine_qp *q)
{
    uint32_t i;

    q->sq.tail = w->sq.tail;
    q->sq.head = w->sq.head;
    q->cq.head = w->cq.head;
    q->cq.phase = w->cq.phase;
    q->cid_hint = w->cids.hint;
    q->cid_used = w->cids.used;
    for (i = 0; i < NVL_ENGINE_MAX_CIDS / 64; i++)
        q->cid_words[i] = w->cid_words[i];
    q->stats = w->stats;
}

/* Re-reads ctl.stop and ctl.csts (and, once stop is seen, ctl.producer behind an acquire fence,
 * so the final producer value is known). Warp-collective; returns stop. */
static __device__ uint32_t poll_ctl(struct warp_state *w, const struct nvl_engine_params &p,
                                    uint32_t lane)
{
    uint32_t v = 0, stop, csts;

    if (lane == 0)
        v = nvl_dev_ld_sys_u32(&p.ctl->stop);
    else if (lane == 1)
        v = nvl_dev_ld_sys_u32(&p.ctl->csts);
    stop = __shfl_sync(FULL_MASK, v, 0);
    csts = __shfl_sync(FULL_MASK, v, 1);
    if (lane == 0) {
        if (nvme_csts_cfs(csts))
            set_fatal(p, nvl_engine_st_make(NVL_ENGINE_ST_CFS, csts));
        if (stop) {
            nvl_dev_fence_acquire_sys();
            w->producer = nvl_dev_ld_sys_u32(&p.ctl->producer);
            nvl_dev_fence_acquire_sys();
        }
    }
    __syncwarp();
    return stop;
}

/* Lane 0. Idle exit: a warp idle for idle_exit_ns sets its bit; the warp that completes the mask
 * publishes CLOSING, then (after a full system fence) looks at the producer once more. The host
 * posts by storing the producer, fencing, then reading the state: one of the two sides is bound
 * to see the other's store (the store-buffering pattern with a full fence on each side), so
 * either this look finds the new request and the exit is called off (state back to RUNNING,
 * idle bits restarted through the epoch), or the host saw CLOSING and relaunches the kernel
 * once it has exited. */
static __device__ void idle_exit_step(struct warp_state *w, const struct nvl_engine_params &p,
                                      int idle, uint64_t now, uint64_t my_bit, uint64_t all_bits,
                                      uint64_t *idle_since, int *idle_bit, uint32_t *epoch)
{
    struct nvl_engine_global *g = p.global;
    uint32_t e = ld_volatile_u32(&g->idle_epoch);

    if (e != *epoch) {
        *epoch = e;
        *idle_bit = 0;
    }
    if (!idle) {
        *idle_since = 0;
        if (*idle_bit) {
            atomicAnd((unsigned long long *)&g->idle_mask, ~(unsigned long long)my_bit);
            *idle_bit = 0;
        }
        return;
    }
    if (!*idle_since) {
        *idle_since = now;
        return;
    }
    if (*idle_bit || now - *idle_since < p.idle_exit_ns)
        return;
    *idle_bit = 1;
    if ((atomicOr((unsigned long long *)&g->idle_mask, my_bit) | my_bit) != all_bits)
        return;
    /* This warp closes. */
    nvl_dev_st_release_sys_u32(&p.ctl->state, NVL_ENGINE_CLOSING);
    __threadfence_system();
    w->producer = nvl_dev_ld_sys_u32(&p.ctl->producer);
    nvl_dev_fence_acquire_sys();
    if (w->producer == ld_volatile_u32(&g->req_next) && !nvl_dev_ld_sys_u32(&p.ctl->stop)) {
        atomicExch(&g->exit_now, 1u);
        return;
    }
    /* Work arrived (or a stop, which drains by itself): call it off. */
    atomicExch((unsigned long long *)&g->idle_mask, 0ull);
    atomicAdd(&g->idle_epoch, 1u);
    nvl_dev_st_release_sys_u32(&p.ctl->state, NVL_ENGINE_RUNNING);
    *idle_bit = 0;
    *idle_since = 0;
}

/* Control polls happen at least this often while busy (they cost a PCIe round trip). */
#define CTL_PERIOD_NS     20000u
#define TIMEOUT_PERIOD_NS 100000u

static __global__ void __launch_bounds__(32, 1) engine_kernel(const struct nvl_engine_params p)
{
    __shared__ struct warp_state w;
    const uint32_t lane = threadIdx.x;
    struct nvl_engine_qp *q = &p.qp[blockIdx.x];
    const uint64_t my_bit = 1ull << blockIdx.x;
    const uint64_t all_bits = p.n_queues == 64 ? ~0ull : (1ull << p.n_queues) - 1;
    uint64_t last_ctl = 0, last_to = 0, idle_since = 0;
    uint32_t stop = 0, fatal = 0, epoch = 0;
    int idle_bit = 0;

    if (lane == 0) {
        load_state(&w, q);
        if (blockIdx.x == 0)
            nvl_dev_st_release_sys_u32(&p.ctl->state, NVL_ENGINE_RUNNING);
    }
    __syncwarp();

    for (;;) {
        uint32_t reaped = 0, sent = 0, idle, done = 0;
        uint64_t now;

        if (w.cids.used)
            reaped = reap(&w, p, lane);
        if (lane == 0) {
            if (w.protocol_error)
                set_fatal(p, nvl_engine_st_make(NVL_ENGINE_ST_PROTOCOL, 0));
            fatal = ld_volatile_u32(&p.global->fatal);
        }
        fatal = __shfl_sync(FULL_MASK, fatal, 0);
        if (fatal)
            break;
        sent = submit(&w, p, lane);
        idle = !reaped && !sent;
        now = nvl_dev_now_ns();
        if (idle || now - last_ctl > CTL_PERIOD_NS) {
            stop = poll_ctl(&w, p, lane);
            last_ctl = now;
        }
        if (w.cids.used && now - last_to > TIMEOUT_PERIOD_NS) {
            if (oldest_age(&w, now, lane) > p.timeout_ns && lane == 0)
                set_fatal(p, nvl_engine_st_make(NVL_ENGINE_ST_TIMEOUT, 0));
            last_to = now;
        }
        if (lane == 0) {
            /* A gate that stays closed past the timeout would keep a stop from ever draining.
             * While running, a closed gate is the host's business (it opens it when it has
             * copied a staging buffer out). */
            if (stop && w.gate_since && now - w.gate_since > p.timeout_ns)
                set_fatal(p, nvl_engine_st_make(NVL_ENGINE_ST_TIMEOUT, 1));
            if (p.idle_exit_ns)
                idle_exit_step(&w, p, idle && !w.cids.used && !w.gate_since, now, my_bit, all_bits,
                               &idle_since, &idle_bit, &epoch);
            done =
                w.cids.used == 0 && ((stop && ld_volatile_u32(&p.global->req_next) == w.producer) ||
                                     ld_volatile_u32(&p.global->exit_now));
        }
        done = __shfl_sync(FULL_MASK, done, 0);
        if (done)
            break;
        if (idle && p.idle_ns)
            __nanosleep(p.idle_ns);
    }

    if (fatal)
        abort_all(&w, p, fatal, lane);
    if (lane == 0) {
        store_state(&w, q);
        __threadfence_system();
        if (atomicSub(&p.global->warps_active, 1u) == 1u) {
            uint32_t f = ld_volatile_u32(&p.global->fatal);

            /* Plain stores: atomics on host memory need PCIe AtomicOps, which the engine does
             * not rely on. The count of warps lives in device memory. */
            nvl_dev_st_sys_u32(&p.ctl->fatal, f);
            nvl_dev_st_sys_u32(&p.ctl->warps_exited, p.n_queues);
            nvl_dev_st_release_sys_u32(&p.ctl->state, f ? NVL_ENGINE_FAILED : NVL_ENGINE_STOPPED);
        }
    }
}

static __global__ void wait_word_kernel(const uint32_t *word, uint32_t value, uint64_t timeout_ns,
                                        uint32_t *timed_out)
{
    uint64_t t0 = nvl_dev_now_ns();

    while ((int32_t)(nvl_dev_ld_sys_u32(word) - value) < 0) {
        if (nvl_dev_now_ns() - t0 > timeout_ns) {
            if (timed_out)
                nvl_dev_st_release_sys_u32(timed_out, 1u);
            return;
        }
        __nanosleep(1000);
    }
    nvl_dev_fence_acquire_sys();
}

static __global__ void write_word_kernel(uint32_t *word, uint32_t value)
{
    nvl_dev_st_release_sys_u32(word, value);
}

static int is_pow2(uint32_t v)
{
    return v && !(v & (v - 1));
}

extern "C" int nvl_engine_launch(const struct nvl_engine_params *p, cudaStream_t stream)
{
    cudaError_t err;

    if (!p || !p->qp || p->n_queues == 0 || p->n_queues > NVL_ENGINE_MAX_QUEUES || !p->ring ||
        !p->cpl || !p->ctl || !p->mirror || !p->global || !p->bufs || !is_pow2(p->ring_entries) ||
        p->max_batch == 0 || p->max_batch > NVL_ENGINE_MAX_BATCH || p->lba_shift < 9 ||
        p->lba_shift > 12 || p->max_cmd_shift < p->lba_shift ||
        p->max_cmd_shift > NVL_ENGINE_CMD_SHIFT_MAX)
        return -EINVAL;
    engine_kernel<<<p->n_queues, 32, 0, stream>>>(*p);
    err = cudaGetLastError();
    return err == cudaSuccess ? 0 : -EIO;
}

extern "C" int nvl_engine_wait_word_launch(const uint32_t *word, uint32_t value,
                                           uint64_t timeout_ns, uint32_t *timed_out,
                                           cudaStream_t stream)
{
    if (!word)
        return -EINVAL;
    wait_word_kernel<<<1, 1, 0, stream>>>(word, value, timeout_ns, timed_out);
    return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

extern "C" int nvl_engine_write_word_launch(uint32_t *word, uint32_t value, cudaStream_t stream)
{
    if (!word)
        return -EINVAL;
    write_word_kernel<<<1, 1, 0, stream>>>(word, value);
    return cudaGetLastError() == cudaSuccess ? 0 : -EIO;
}

extern "C" const char *nvl_engine_st_str(uint32_t st)
{
    switch (nvl_engine_st_kind(st)) {
    case NVL_ENGINE_ST_OK:
        return "ok";
    case NVL_ENGINE_ST_NVME:
        return "nvme";
    case NVL_ENGINE_ST_TIMEOUT:
        return "timeout";
    case NVL_ENGINE_ST_CFS:
        return "cfs";
    case NVL_ENGINE_ST_ABORTED:
        return "aborted";
    case NVL_ENGINE_ST_BADREQ:
        return "badreq";
    case NVL_ENGINE_ST_PROTOCOL:
        return "protocol";
    default:
        return "unknown";
    }
}
