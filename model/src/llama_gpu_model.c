/* GPU backend, model side: placement of the weights over VRAM, pinned RAM and the Layer Loader,
 * loading of the resident tiers, and the streaming pipeline that forward passes draw layers
 * from (see nvl_model/gpu.h for the design). */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama_gpu.h"
#include "model_fail.h"
#include "nvl_driver/log.h"

#ifdef NVL_HAVE_CUDA

#include "kernels.h"
#include "nvl_loader.h"

#define GPU_LOG "gpu"
/* VRAM left free by the default budget, for the CUDA context, cuBLAS and fragmentation. */
#define GPU_VRAM_RESERVE (768ull << 20)

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static uint64_t align_up(uint64_t v)
{
    return (v + GPU_ALIGN - 1) & ~(uint64_t)(GPU_ALIGN - 1);
}

int nvl__gpu_event_wait(cudaEvent_t ev)
{
    /* Spinning would burn a core for the whole token while layers stream: poll for 100 us,
     * then sleep between polls. */
    const double t0 = now_s();
    for (;;) {
        const cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess)
            return 0;
        if (q != cudaErrorNotReady)
            return nvl__gpu_cuda_err(q, "event");
        if (now_s() - t0 > 100e-6) {
            const struct timespec ts = {0, 20000};
            nanosleep(&ts, NULL);
        }
    }
}

int nvl__gpu_cuda_err(cudaError_t e, const char *what)
{
    nvl_log_error(GPU_LOG, "%s: %s", what, cudaGetErrorString(e));
    cudaGetLastError(); /* clear it: the context stays usable */
    return e == cudaErrorMemoryAllocation ? -ENOMEM : -EIO;
}

int nvl_gpu_probe(int device, char *why, size_t why_len)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess || n <= device || device < 0) {
        snprintf(why, why_len, "no CUDA device %d (%s)", device,
                 e != cudaSuccess ? cudaGetErrorString(e) : "not that many devices");
        cudaGetLastError();
        return -ENODEV;
    }
    struct cudaDeviceProp prop;
    if (cudaGetDeviceProperties(&prop, device) != cudaSuccess) {
        snprintf(why, why_len, "CUDA device %d does not answer", device);
        cudaGetLastError();
        return -ENODEV;
    }
    snprintf(why, why_len, "CUDA device %d: %s, compute capability %d.%d, %.1f GB", device,
             prop.name, prop.major, prop.minor, (double)prop.totalGlobalMem / 1e9);
    return 0;
}

void nvl_gpu_params_default(struct nvl_gpu_params *p)
{
    *p = (struct nvl_gpu_params){
        .device = 0,
        .vram_budget = -1,
        .vram_layers = -1,
        .ram_budget = 0,
        .prefetch = 3,
        .n_ctx = 4096,
        .n_batch = 512,
        .max_sessions = 1,
    };
}

static const struct nvl_llama_tensor *layer_tensor(const struct nvl_llama_layer *l, int i)
{
    const struct nvl_llama_tensor *ts[] = {&l->attn_norm, &l->wq,     &l->wk,
                                           &l->wv,        &l->wo,     &l->ffn_norm,
                                           &l->ffn_gate,  &l->ffn_up, &l->ffn_down};
    return ts[i];
}
#define LAYER_TENSORS 9

uint64_t nvl_gpu_slot_bytes(const struct nvl_llama_model *model, uint32_t block_size)
{
    uint64_t max = 0;
    for (int32_t il = 0; il < model->hp.n_layer; il++) {
        const struct nvl_llama_layer *l = &model->w.layers[il];
        if (l->file_end - l->file_begin > max)
            max = l->file_end - l->file_begin;
    }
    /* A read starts on a block (and page) boundary of its slot: room for the head and tail. */
    return max + 2ull * (block_size > 4096 ? block_size : 4096);
}

void nvl__gpu_layer_bind(const struct nvl_gpu_model *gm, int32_t il, const uint8_t *base,
                         struct nvl_llama_layer *out)
{
    const struct nvl_llama_layer *src = &gm->model->w.layers[il];
    const uint64_t begin = gm->layers[il].begin;
    *out = *src;
    struct nvl_llama_tensor *ts[] = {&out->attn_norm, &out->wq,     &out->wk,
                                     &out->wv,        &out->wo,     &out->ffn_norm,
                                     &out->ffn_gate,  &out->ffn_up, &out->ffn_down};
    for (int i = 0; i < LAYER_TENSORS; i++)
        ts[i]->data = base + (ts[i]->file_offset - begin);
}

/* ------------------------------------------------------------------------------------------ */
/* Loading */

/* Copies `len` bytes of the GGUF file at `offset` (whose host copy, when the model is in memory,
 * is at host_src) to dst: through the loader when there is one, else from memory. */
static int place_bytes(struct nvl_gpu_model *gm, uint64_t offset, uint64_t len,
                       const void *host_src, void *dst, bool dst_device)
{
    if (gm->p.loader) {
        struct nvl_extent ext = {gm->p.loader_base + offset, len};
        struct nvl_read *rd;
        int rc = nvl_loader_read_async(
            gm->p.loader, &ext, 1, dst_device ? nvl_dst_device(dst, len) : nvl_dst_host(dst, len),
            &rd);
        if (rc == 0)
            rc = nvl_loader_wait(rd, NULL);
        if (rc == 0)
            gm->st.loaded_via_loader += len;
        return rc;
    }
    if (dst_device) {
        cudaError_t e = cudaMemcpy(dst, host_src, len, cudaMemcpyHostToDevice);
        if (e != cudaSuccess)
            return nvl__gpu_cuda_err(e, "copy weights to VRAM");
    } else {
        memcpy(dst, host_src, len);
    }
    gm->st.loaded_from_memory += len;
    return 0;
}

/* A device-visible pointer for memory in the pinned allocation. */
static void *pinned_dev(void *p)
{
    void *d = NULL;
    if (cudaHostGetDevicePointer(&d, p, 0) != cudaSuccess) {
        cudaGetLastError();
        return p; /* unified addressing: the host pointer works on the device */
    }
    return d;
}

static int place_global(struct nvl_gpu_model *gm, struct nvl_llama_tensor *t, uint8_t **cursor,
                        bool in_vram)
{
    if (!t->data)
        return 0;
    int rc = place_bytes(gm, t->file_offset, t->nbytes, t->data, *cursor, in_vram);
    if (rc)
        return rc;
    t->data = in_vram ? (void *)*cursor : pinned_dev(*cursor);
    *cursor += align_up(t->nbytes);
    return 0;
}

static void report(struct nvl_gpu_model *gm, struct nvl_gpu_progress *pr, double t0)
{
    if (!gm->p.progress)
        return;
    pr->seconds = now_s() - t0;
    gm->p.progress(gm->p.progress_ctx, pr);
}

/* ------------------------------------------------------------------------------------------ */
/* Placement */

static int check_types(const struct nvl_llama_model *m, char *err, size_t err_len)
{
    const struct nvl_llama_tensor *g[] = {&m->w.token_embd, &m->w.output};
    for (int i = 0; i < 2; i++)
        if (!nvl__k_type_supported(g[i]->type))
            return nvl__model_fail(GPU_LOG, err, err_len, -ENOTSUP,
                                   "the GPU kernels do not handle %s weights (token_embd/output)",
                                   nvl_ggml_type_name(g[i]->type));
    for (int32_t il = 0; il < m->hp.n_layer; il++)
        for (int i = 0; i < LAYER_TENSORS; i++) {
            const struct nvl_llama_tensor *t = layer_tensor(&m->w.layers[il], i);
            if (!nvl__k_type_supported(t->type))
                return nvl__model_fail(GPU_LOG, err, err_len, -ENOTSUP,
                                       "the GPU kernels do not handle %s weights (layer %d)",
                                       nvl_ggml_type_name(t->type), il);
        }
    if (m->hp.head_dim > 256 || m->hp.head_dim % 2)
        return nvl__model_fail(GPU_LOG, err, err_len, -ENOTSUP,
                               "head size %d is not supported on the GPU", m->hp.head_dim);
    return 0;
}

static uint64_t globals_bytes(const struct nvl_llama_model *m)
{
    const struct nvl_llama_weights *w = &m->w;
    uint64_t b = align_up(w->token_embd.nbytes) + align_up(w->output_norm.nbytes);
    if (!w->output_tied)
        b += align_up(w->output.nbytes);
    if (w->rope_freqs.data)
        b += align_up(w->rope_freqs.nbytes);
    return b;
}

/* Decides each layer's tier; fills the stats' per-tier counts. */
static int plan(struct nvl_gpu_model *gm, uint64_t vram_free, char *err, size_t err_len)
{
    const struct nvl_llama_hparams *hp = gm->hp;
    const struct nvl_gpu_params *p = &gm->p;
    const uint64_t gbytes = globals_bytes(gm->model);
    uint64_t total = gbytes, max_extent = 0;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        total += align_up(gm->layers[il].len);
        if (gm->layers[il].len > max_extent)
            max_extent = gm->layers[il].len;
    }
    const uint64_t sessions = (uint64_t)(p->max_sessions > 0 ? p->max_sessions : 1) *
                              nvl__gpu_session_vram_bytes(hp, p->n_ctx, p->n_batch);

    uint64_t budget;
    if (p->vram_layers >= 0) {
        budget = gbytes;
        for (int32_t il = 0; il < hp->n_layer && il < p->vram_layers; il++)
            budget += align_up(gm->layers[il].len);
    } else if (p->vram_budget >= 0) {
        budget = (uint64_t)p->vram_budget;
    } else {
        const uint64_t avail =
            vram_free > sessions + GPU_VRAM_RESERVE ? vram_free - sessions - GPU_VRAM_RESERVE : 0;
        const uint64_t ring = (uint64_t)(p->prefetch > 2 ? p->prefetch : 2) * max_extent;
        budget = total <= avail ? total : (avail > ring ? avail - ring : 0);
    }
    gm->st.vram_budget = budget;
    gm->st.globals_bytes = gbytes;
    gm->st.globals_in_vram = gbytes <= budget;
    uint64_t used = gm->st.globals_in_vram ? gbytes : 0, ram_used = 0;
    bool vram_open = true, ram_open = true;
    for (int32_t il = 0; il < hp->n_layer; il++) {
        struct gpu_layer *L = &gm->layers[il];
        const uint64_t b = align_up(L->len);
        if (vram_open && used + b <= budget) {
            L->tier = NVL_GPU_TIER_VRAM;
            used += b;
        } else if (ram_open && ram_used + b <= (uint64_t)(p->ram_budget > 0 ? p->ram_budget : 0)) {
            vram_open = false; /* tiers are contiguous runs of layers */
            L->tier = NVL_GPU_TIER_RAM;
            ram_used += b;
        } else {
            vram_open = ram_open = false;
            L->tier = NVL_GPU_TIER_STREAM;
        }
        gm->st.layers[L->tier]++;
        gm->st.layer_bytes[L->tier] += L->len;
        if (L->tier != NVL_GPU_TIER_VRAM && L->len > gm->ring_size)
            gm->ring_size = L->len;
    }
    gm->st.vram_weights = used;
    if (p->loader) {
        /* Everything the loader may read must lie inside its target: a drive's namespace is
         * whole blocks, shorter than a GGUF whose size is not. */
        uint64_t end = 0;
        const struct nvl_llama_weights *w = &gm->model->w;
        const struct nvl_llama_tensor *g[] = {&w->token_embd, &w->output, &w->output_norm,
                                              &w->rope_freqs};
        for (int i = 0; i < 4; i++)
            if (g[i]->data && g[i]->file_offset + g[i]->nbytes > end)
                end = g[i]->file_offset + g[i]->nbytes;
        for (int32_t il = 0; il < hp->n_layer; il++)
            if (gm->layers[il].begin + gm->layers[il].len > end)
                end = gm->layers[il].begin + gm->layers[il].len;
        if (p->loader_base + end > nvl_loader_capacity(p->loader))
            return nvl__model_fail(
                GPU_LOG, err, err_len, -ERANGE,
                "the loader's target holds %llu bytes, the model reaches byte %llu "
                "(a namespace is whole blocks: pad the file, e.g. to a multiple of "
                "4096 bytes)",
                (unsigned long long)nvl_loader_capacity(p->loader),
                (unsigned long long)(p->loader_base + end));
    }
    if (gm->st.layers[NVL_GPU_TIER_STREAM] && !p->loader)
        return nvl__model_fail(
            GPU_LOG, err, err_len, -EINVAL,
            "%d layers do not fit the VRAM budget (%.2f GB) and RAM budget (%.2f GB), "
            "and no loader was given to stream them",
            gm->st.layers[NVL_GPU_TIER_STREAM], (double)budget / 1e9,
            (double)(p->ram_budget > 0 ? p->ram_budget : 0) / 1e9);
    if (used + sessions > vram_free)
        return nvl__model_fail(
            GPU_LOG, err, err_len, -ENOMEM,
            "%.2f GB of weights and %.2f GB of KV cache and scratch do not fit the "
            "%.2f GB of free VRAM",
            (double)used / 1e9, (double)sessions / 1e9, (double)vram_free / 1e9);
    return 0;
}

static int alloc_and_load(struct nvl_gpu_model *gm)
{
    const struct nvl_llama_hparams *hp = gm->hp;
    struct nvl_gpu_stats *st = &gm->st;
    uint64_t vram_bytes = st->vram_weights, pinned_bytes = 0;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if (gm->layers[il].tier == NVL_GPU_TIER_RAM)
            pinned_bytes += align_up(gm->layers[il].len);
    if (!st->globals_in_vram)
        pinned_bytes += st->globals_bytes;
    cudaError_t e;
    if (vram_bytes && (e = cudaMalloc(&gm->vram, vram_bytes)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "VRAM for the weights");
    if (pinned_bytes &&
        (e = cudaHostAlloc(&gm->pinned, pinned_bytes,
                           cudaHostAllocMapped | cudaHostAllocPortable)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "pinned memory for the RAM tier");

    struct nvl_gpu_progress pr = {.layers_total = st->layers[0] + st->layers[1],
                                  .bytes_total =
                                      st->globals_bytes + st->layer_bytes[0] + st->layer_bytes[1]};
    const double t0 = now_s();
    uint8_t *vcur = gm->vram, *pcur = gm->pinned;
    uint8_t **gcur = st->globals_in_vram ? &vcur : &pcur;
    const bool gv = st->globals_in_vram;
    int rc;
    if ((rc = place_global(gm, &gm->tok_embd, gcur, gv)) ||
        (rc = place_global(gm, &gm->output_norm, gcur, gv)) ||
        (rc = place_global(gm, &gm->rope_freqs, gcur, gv)))
        return rc;
    if (gm->model->w.output_tied)
        gm->output.data = gm->tok_embd.data;
    else if ((rc = place_global(gm, &gm->output, gcur, gv)))
        return rc;
    pr.bytes_done = st->globals_bytes;
    report(gm, &pr, t0);

    for (int32_t il = 0; il < hp->n_layer; il++) {
        struct gpu_layer *L = &gm->layers[il];
        if (L->tier == NVL_GPU_TIER_STREAM)
            continue;
        const struct nvl_llama_layer *src = &gm->model->w.layers[il];
        const uint8_t *host = (const uint8_t *)src->wq.data - (src->wq.file_offset - L->begin);
        if (L->tier == NVL_GPU_TIER_VRAM) {
            L->vram = vcur;
            vcur += align_up(L->len);
            rc = place_bytes(gm, L->begin, L->len, host, L->vram, true);
        } else {
            L->ram = pcur;
            pcur += align_up(L->len);
            rc = place_bytes(gm, L->begin, L->len, host, L->ram, false);
        }
        if (rc)
            return rc;
        pr.layers_done++;
        pr.bytes_done += L->len;
        report(gm, &pr, t0);
    }
    st->load_seconds = now_s() - t0;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Streaming */

/* Issues reads until prefetch slots are ahead of the consumer; with block, waits for a slot's
 * previous copy-out when needed, otherwise stops at the first busy slot. */
static int stream_pump(struct nvl_gpu_model *gm, bool block)
{
    while (gm->issued < gm->consumed + (uint64_t)gm->n_slots) {
        const int s = (int)(gm->issued % (uint64_t)gm->n_slots);
        if (gm->rd[s]) {
            /* The read in this slot was consumed (its copy-out is queued): wait for the copy. */
            if (!block) {
                const cudaError_t q = cudaEventQuery(gm->slot_free[s]);
                if (q == cudaErrorNotReady)
                    return 0;
                if (q != cudaSuccess)
                    return nvl__gpu_cuda_err(q, "slot copy");
            } else {
                const int rc = nvl__gpu_event_wait(gm->slot_free[s]);
                if (rc)
                    return rc;
            }
            struct nvl_read_stats rs;
            const int rc = nvl_loader_wait(gm->rd[s], &rs);
            gm->rd[s] = NULL;
            gm->slot_recorded[s] = false;
            if (rc && !gm->stream_err)
                gm->stream_err = rc;
        }
        const struct gpu_layer *L =
            &gm->layers[gm->stream_list[gm->issued % (uint64_t)gm->n_stream]];
        const struct nvl_extent ext = {gm->p.loader_base + L->begin, L->len};
        const int rc =
            nvl_loader_read_async(gm->p.loader, &ext, 1, nvl_dst_slot((uint32_t)s), &gm->rd[s]);
        if (rc) {
            gm->rd[s] = NULL;
            nvl_log_error(GPU_LOG, "cannot queue the read of a streamed layer: %s",
                          nvl_strerror(rc));
            if (!gm->stream_err)
                gm->stream_err = rc;
            return rc;
        }
        gm->issued++;
    }
    return 0;
}

void nvl__gpu_stream_pump(struct nvl_gpu_model *gm)
{
    if (gm->n_stream)
        stream_pump(gm, false);
}

int nvl__gpu_layer_acquire(struct nvl_gpu_model *gm, int32_t il, cudaStream_t compute,
                           const uint8_t **base, int32_t *ring_slot)
{
    struct gpu_layer *L = &gm->layers[il];
    if (L->tier == NVL_GPU_TIER_VRAM) {
        *base = L->vram;
        *ring_slot = -1;
        return 0;
    }
    const int32_t b = (int32_t)(gm->ring_next++ % (uint64_t)gm->n_ring);
    cudaError_t e = cudaStreamWaitEvent(gm->copy, gm->ring_free[b], 0);
    if (e != cudaSuccess)
        return nvl__gpu_cuda_err(e, "ring wait");
    if (L->tier == NVL_GPU_TIER_RAM) {
        e = cudaMemcpyAsync(gm->ring[b], L->ram, L->len, cudaMemcpyHostToDevice, gm->copy);
        if (e != cudaSuccess)
            return nvl__gpu_cuda_err(e, "RAM tier copy");
        gm->st.ram_copied_bytes += L->len;
    } else {
        const uint64_t j = gm->consumed;
        while (gm->issued <= j) {
            const int rc = stream_pump(gm, true);
            if (rc)
                return rc;
        }
        const int s = (int)(j % (uint64_t)gm->n_slots);
        if (gm->stream_list[j % (uint64_t)gm->n_stream] != il) {
            nvl_log_error(GPU_LOG, "streamed layer %d requested out of order", il);
            return -EIO;
        }
        int rc = nvl_read_stream_wait(gm->rd[s], gm->copy);
        if (rc)
            return rc;
        const uint8_t *src = (const uint8_t *)nvl_loader_slot_host(gm->p.loader, (uint32_t)s) +
                             nvl_read_offset(gm->rd[s], 0);
        e = cudaMemcpyAsync(gm->ring[b], src, L->len, cudaMemcpyHostToDevice, gm->copy);
        if (e == cudaSuccess)
            e = cudaEventRecord(gm->slot_free[s], gm->copy);
        if (e != cudaSuccess)
            return nvl__gpu_cuda_err(e, "streamed layer copy");
        gm->slot_recorded[s] = true;
        gm->consumed++;
        gm->st.streamed_bytes += L->len;
    }
    e = cudaEventRecord(gm->ring_ready[b], gm->copy);
    if (e == cudaSuccess)
        e = cudaStreamWaitEvent(compute, gm->ring_ready[b], 0);
    if (e != cudaSuccess)
        return nvl__gpu_cuda_err(e, "ring ready");
    *base = gm->ring[b];
    *ring_slot = b;
    return 0;
}

int nvl__gpu_layer_release(struct nvl_gpu_model *gm, int32_t ring_slot, cudaStream_t compute)
{
    if (ring_slot < 0)
        return 0;
    const cudaError_t e = cudaEventRecord(gm->ring_free[ring_slot], compute);
    if (e != cudaSuccess)
        return nvl__gpu_cuda_err(e, "ring release");
    nvl__gpu_stream_pump(gm);
    return 0;
}

static int stream_init(struct nvl_gpu_model *gm, char *err, size_t err_len)
{
    const struct nvl_llama_hparams *hp = gm->hp;
    int32_t depth = gm->p.prefetch < 2 ? 2 : gm->p.prefetch;
    if (depth > GPU_MAX_RING)
        depth = GPU_MAX_RING;
    const bool ring = gm->st.layers[NVL_GPU_TIER_RAM] + gm->st.layers[NVL_GPU_TIER_STREAM] > 0;
    gm->st.prefetch = depth;
    if (!ring)
        return 0;
    cudaError_t e = cudaStreamCreateWithFlags(&gm->copy, cudaStreamNonBlocking);
    if (e != cudaSuccess)
        return nvl__gpu_cuda_err(e, "copy stream");
    gm->n_ring = depth;
    const uint64_t rb = align_up(gm->ring_size);
    if ((e = cudaMalloc(&gm->ring_mem, rb * (uint64_t)depth)) != cudaSuccess)
        return nvl__gpu_cuda_err(e, "VRAM ring buffers");
    for (int32_t b = 0; b < depth; b++) {
        gm->ring[b] = (uint8_t *)gm->ring_mem + rb * (uint64_t)b;
        if ((e = cudaEventCreateWithFlags(&gm->ring_ready[b], cudaEventDisableTiming)) ||
            (e = cudaEventCreateWithFlags(&gm->ring_free[b], cudaEventDisableTiming)))
            return nvl__gpu_cuda_err(e, "ring events");
    }
    if (!gm->st.layers[NVL_GPU_TIER_STREAM])
        return 0;

    const uint32_t slots = nvl_loader_slot_count(gm->p.loader);
    const uint64_t need = nvl_gpu_slot_bytes(gm->model, nvl_loader_block_size(gm->p.loader));
    if (slots < 2 || nvl_loader_slot_bytes(gm->p.loader) < need)
        return nvl__model_fail(
            GPU_LOG, err, err_len, -EINVAL,
            "the loader has %u slots of %.1f MB; streaming needs 2 or more of %.1f MB", slots,
            (double)nvl_loader_slot_bytes(gm->p.loader) / 1e6, (double)need / 1e6);
    gm->n_slots = depth < (int32_t)slots ? depth : (int32_t)slots;
    gm->st.prefetch = gm->n_slots;
    gm->stream_list = malloc((size_t)hp->n_layer * sizeof(*gm->stream_list));
    if (!gm->stream_list)
        return -ENOMEM;
    for (int32_t il = 0; il < hp->n_layer; il++)
        if (gm->layers[il].tier == NVL_GPU_TIER_STREAM)
            gm->stream_list[gm->n_stream++] = il;
    for (int32_t s = 0; s < gm->n_slots; s++)
        if ((e = cudaEventCreateWithFlags(&gm->slot_free[s], cudaEventDisableTiming)))
            return nvl__gpu_cuda_err(e, "slot events");
    /* The first token's reads start now. */
    return stream_pump(gm, true);
}

static void stream_drain(struct nvl_gpu_model *gm)
{
    for (int32_t s = 0; s < gm->n_slots; s++) {
        if (!gm->rd[s])
            continue;
        if (gm->slot_recorded[s])
            cudaEventSynchronize(gm->slot_free[s]);
        nvl_loader_wait(gm->rd[s], NULL);
        gm->rd[s] = NULL;
    }
}

/* ------------------------------------------------------------------------------------------ */
/* Create / destroy */

int nvl_gpu_model_create(struct nvl_llama_model *model, const struct nvl_gpu_params *params,
                         struct nvl_gpu_model **out, char *err, size_t err_len)
{
    *out = NULL;
    int rc = check_types(model, err, err_len);
    if (rc)
        return rc;
    char why[256];
    if ((rc = nvl_gpu_probe(params->device, why, sizeof(why))))
        return nvl__model_fail(GPU_LOG, err, err_len, rc, "%s", why);
    cudaError_t e = cudaSetDevice(params->device);
    if (e != cudaSuccess)
        return nvl__model_fail(GPU_LOG, err, err_len, -ENODEV, "cudaSetDevice: %s",
                               cudaGetErrorString(e));

    struct nvl_gpu_model *gm = calloc(1, sizeof(*gm));
    if (!gm)
        return -ENOMEM;
    gm->model = model;
    gm->hp = &model->hp;
    gm->p = *params;
    if (gm->p.n_ctx <= 0)
        gm->p.n_ctx = 4096;
    if (gm->p.n_batch <= 0)
        gm->p.n_batch = 512;
    gm->tok_embd = model->w.token_embd;
    gm->output = model->w.output;
    gm->output_norm = model->w.output_norm;
    gm->rope_freqs = model->w.rope_freqs;
    pthread_mutex_init(&gm->lock, NULL);
    gm->layers = calloc((size_t)model->hp.n_layer, sizeof(*gm->layers));
    if (!gm->layers) {
        rc = -ENOMEM;
        goto err_destroy;
    }
    for (int32_t il = 0; il < model->hp.n_layer; il++) {
        gm->layers[il].begin = model->w.layers[il].file_begin;
        gm->layers[il].len = model->w.layers[il].file_end - model->w.layers[il].file_begin;
    }

    struct cudaDeviceProp prop;
    size_t vram_free = 0, vram_total = 0;
    if ((e = cudaGetDeviceProperties(&prop, params->device)) != cudaSuccess ||
        (e = cudaMemGetInfo(&vram_free, &vram_total)) != cudaSuccess) {
        rc = nvl__gpu_cuda_err(e, "device properties");
        goto err_destroy;
    }
    snprintf(gm->st.device_name, sizeof(gm->st.device_name), "%.*s",
             (int)sizeof(gm->st.device_name) - 1, prop.name);
    if ((rc = plan(gm, vram_free, err, err_len)))
        goto err_destroy;
    if ((rc = alloc_and_load(gm))) {
        nvl__model_fail(GPU_LOG, err, err_len, rc, "loading the resident layers failed: %s",
                        nvl_strerror(rc));
        goto err_destroy;
    }
    if ((rc = stream_init(gm, err, err_len))) {
        if (err && !err[0])
            nvl__model_fail(GPU_LOG, err, err_len, rc, "streaming setup failed: %s",
                            nvl_strerror(rc));
        goto err_destroy;
    }
    *out = gm;
    return 0;

err_destroy:
    nvl_gpu_model_destroy(gm);
    return rc;
}

void nvl_gpu_model_destroy(struct nvl_gpu_model *gm)
{
    if (!gm)
        return;
    stream_drain(gm);
    if (gm->copy)
        cudaStreamSynchronize(gm->copy);
    for (int32_t s = 0; s < GPU_MAX_RING; s++) {
        if (gm->slot_free[s])
            cudaEventDestroy(gm->slot_free[s]);
        if (gm->ring_ready[s])
            cudaEventDestroy(gm->ring_ready[s]);
        if (gm->ring_free[s])
            cudaEventDestroy(gm->ring_free[s]);
    }
    if (gm->copy)
        cudaStreamDestroy(gm->copy);
    cudaFree(gm->ring_mem);
    cudaFree(gm->vram);
    if (gm->pinned)
        cudaFreeHost(gm->pinned);
    free(gm->stream_list);
    free(gm->layers);
    pthread_mutex_destroy(&gm->lock);
    free(gm);
}

enum nvl_gpu_tier nvl_gpu_layer_tier(const struct nvl_gpu_model *gm, int32_t layer)
{
    return gm->layers[layer].tier;
}

void nvl_gpu_model_stats(const struct nvl_gpu_model *gm, struct nvl_gpu_stats *st)
{
    *st = gm->st;
}

#else /* !NVL_HAVE_CUDA */

int nvl_gpu_probe(int device, char *why, size_t why_len)
{
    (void)device;
    snprintf(why, why_len, "built without CUDA");
    return -ENOTSUP;
}

void nvl_gpu_params_default(struct nvl_gpu_params *p)
{
    memset(p, 0, sizeof(*p));
    p->vram_budget = -1;
    p->vram_layers = -1;
    p->prefetch = 3;
}

uint64_t nvl_gpu_slot_bytes(const struct nvl_llama_model *model, uint32_t block_size)
{
    (void)model;
    (void)block_size;
    return 0;
}

int nvl_gpu_model_create(struct nvl_llama_model *model, const struct nvl_gpu_params *params,
                         struct nvl_gpu_model **out, char *err, size_t err_len)
{
    (void)model;
    (void)params;
    *out = NULL;
    if (err && err_len)
        snprintf(err, err_len, "this build has no GPU backend (built without CUDA)");
    return -ENOTSUP;
}

void nvl_gpu_model_destroy(struct nvl_gpu_model *gm)
{
    (void)gm;
}

enum nvl_gpu_tier nvl_gpu_layer_tier(const struct nvl_gpu_model *gm, int32_t layer)
{
    (void)gm;
    (void)layer;
    return NVL_GPU_TIER_VRAM;
}

void nvl_gpu_model_stats(const struct nvl_gpu_model *gm, struct nvl_gpu_stats *st)
{
    (void)gm;
    memset(st, 0, sizeof(*st));
}

int nvl__gpu_session_create(struct nvl_gpu_model *gm, int32_t n_ctx, int32_t n_batch,
                            struct nvl_gpu_session **out)
{
    (void)gm;
    (void)n_ctx;
    (void)n_batch;
    *out = NULL;
    return -ENOTSUP;
}

void nvl__gpu_session_destroy(struct nvl_gpu_session *gs)
{
    (void)gs;
}

int nvl__gpu_session_forward(struct nvl_gpu_session *gs, const int32_t *tokens, int32_t n_tok,
                             int32_t pos0, int32_t out_first, float *logits)
{
    (void)gs;
    (void)tokens;
    (void)n_tok;
    (void)pos0;
    (void)out_first;
    (void)logits;
    return -ENOTSUP;
}

int nvl__gpu_session_decode(struct nvl_gpu_session *gs, int32_t token, int32_t pos0, int32_t steps,
                            const struct nvl_gpu_sampling *sampling, nvl_greedy_fn next, void *ctx,
                            int32_t *n_eval, bool *logits_kept, float *logits)
{
    (void)gs;
    (void)sampling;
    (void)token;
    (void)pos0;
    (void)steps;
    (void)next;
    (void)ctx;
    (void)logits;
    *n_eval = 0;
    *logits_kept = false;
    return -ENOTSUP;
}

#endif /* NVL_HAVE_CUDA */

const char *nvl_gpu_tier_name(enum nvl_gpu_tier tier)
{
    switch (tier) {
    case NVL_GPU_TIER_VRAM:
        return "vram";
    case NVL_GPU_TIER_RAM:
        return "ram";
    default:
        return "stream";
    }
}
