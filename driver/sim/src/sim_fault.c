/* Fault injection: armed descriptions matched against every fetched command. The hot path pays
 * one relaxed load when nothing is armed. */
#include "sim_internal.h"

#include <errno.h>
#include <string.h>

uint64_t nvl__sim_rng_next(uint64_t *state)
{
    /* xorshift64*: fast, and good enough to draw fault probabilities. */
    uint64_t x = *state ? *state : 0x9e3779b97f4a7c15ull;

    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545f4914f6cdd1dull;
}

static int fault_valid(const struct nvl_sim_fault *f)
{
    if (f->kind < NVL_SIM_FAULT_STATUS || f->kind > NVL_SIM_FAULT_FATAL)
        return 0;
    if (f->opcode > 0xff && f->opcode != NVL_SIM_FAULT_ANY)
        return 0;
    if (!f->nth && !(f->probability > 0.0 && f->probability <= 1.0))
        return 0;
    if (f->kind == NVL_SIM_FAULT_STATUS && (f->status == 0 || f->status > 0x7fff))
        return 0;
    return 1;
}

int nvl_sim_fault_add(struct nvl_sim *sim, const struct nvl_sim_fault *f)
{
    struct sim_faults *fs = &sim->faults;
    uint32_t i;

    if (!f || !fault_valid(f))
        return -EINVAL;
    for (i = 0; i < NVL_SIM_FAULT_SLOTS; i++) {
        struct sim_fault_slot *s = &fs->slot[i];

        if (SIM_LOAD_ACQ(&s->armed))
            continue;
        s->f = *f;
        SIM_STORE(&s->matched, 0);
        SIM_STORE(&s->fired, 0);
        SIM_STORE_REL(&s->armed, 1);
        __atomic_fetch_add(&fs->n_armed, 1, __ATOMIC_RELEASE);
        return 0;
    }
    return -ENOSPC;
}

void nvl_sim_fault_clear(struct nvl_sim *sim)
{
    struct sim_faults *fs = &sim->faults;
    uint32_t i;

    for (i = 0; i < NVL_SIM_FAULT_SLOTS; i++) {
        if (SIM_LOAD(&fs->slot[i].armed)) {
            SIM_STORE_REL(&fs->slot[i].armed, 0);
            __atomic_fetch_sub(&fs->n_armed, 1, __ATOMIC_RELEASE);
        }
    }
}

static int sqid_matches(uint16_t want, uint16_t sqid)
{
    if (want == NVL_SIM_FAULT_ANY)
        return 1;
    if (want == NVL_SIM_FAULT_IO)
        return sqid != 0;
    return want == sqid;
}

void nvl__sim_fault_match(struct sim_faults *fs, uint16_t sqid, uint8_t opcode, uint64_t *rng,
                          struct sim_fault_action *act)
{
    uint32_t i;

    act->fired = 0;
    if (sim_likely(!SIM_LOAD(&fs->n_armed)))
        return;
    for (i = 0; i < NVL_SIM_FAULT_SLOTS; i++) {
        struct sim_fault_slot *s = &fs->slot[i];
        const struct nvl_sim_fault *f = &s->f;
        uint64_t m;
        int fire;

        if (!SIM_LOAD_ACQ(&s->armed))
            continue;
        if ((f->opcode != NVL_SIM_FAULT_ANY && f->opcode != opcode) || !sqid_matches(f->sqid, sqid))
            continue;
        m = __atomic_add_fetch(&s->matched, 1, __ATOMIC_RELAXED);
        if (f->nth) {
            fire = m == f->nth;
        } else {
            double u = (double)(nvl__sim_rng_next(rng) >> 11) * (1.0 / 9007199254740992.0);

            fire = u < f->probability;
            if (fire && f->count && __atomic_fetch_add(&s->fired, 1, __ATOMIC_RELAXED) >= f->count)
                fire = 0;
        }
        if (!fire)
            continue;
        act->fired = 1;
        act->kind = f->kind;
        act->status = f->status;
        act->delay_ns = f->delay_us * 1000ull;
        return;
    }
}
