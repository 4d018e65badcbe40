/* nvinfer: options shared by its subcommands, and the subcommands' entry points. */
#ifndef NVINFER_H
#define NVINFER_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "nvl_model.h"

struct nvinfer_opts {
    const char *model;         /* -m: GGUF file */
    const char *prompt;        /* -p: prompt text, or NULL */
    const char *system;        /* --system: system message for chat */
    const char *chat_template; /* --chat-template: family name overriding the file's */
    int32_t n_predict;         /* -n: tokens to generate; < 0: until end of generation */
    int32_t n_ctx;             /* -c: context length; 0: the model's, at most 4096 */
    int32_t n_threads;         /* -t: 0: one per CPU */
    int32_t n_batch;           /* -b: prompt tokens per forward pass; 0: default */
    struct nvl_sampler_params sampling;
    bool seed_set;  /* --seed was given; otherwise a seed is drawn and shown with -v */
    bool chat;      /* -i: interactive chat */
    bool benchmark; /* --benchmark */
    bool verbose;   /* -v */
    bool kv_f32;    /* --kv-f32 */
    /* A model on a drive (drive.c): --nvme BDF or --sim IMAGE. model then names the drive
     * ("nvme:BDF"), and same_as is the -m FILE the drive must hold, or NULL. */
    const char *nvme;     /* --nvme: PCI address of a controller bound to vfio-pci */
    const char *sim;      /* --sim: image file (or sim options) for the software controller */
    const char *same_as;  /* -m FILE given together with a drive */
    bool verify;          /* --verify: check each extent's CRC32C as it arrives */
    char drive_label[96]; /* storage for model when it names a drive */
    /* GPU inference (gpu.c): --device, the loader --backend, placement budgets, read-ahead. */
    const char *device;  /* "auto" (default), "cpu" or "gpu" */
    const char *backend; /* loader backend for streamed/resident layers; NULL: auto */
    int64_t vram_budget; /* --vram-budget bytes; -1: default */
    int32_t vram_layers; /* --vram-budget NL: globals and N layers; -1: not given */
    int64_t ram_budget;  /* --ram-budget bytes */
    int32_t prefetch;    /* --prefetch K */
    const char *sim_bw;  /* --sim-bw: bandwidth model of the software controller */
};

/* Parses the options of `nvinfer [run]`. Returns 0, 1 when help was printed, or -1 after
 * printing an error. */
int nvinfer_parse_args(int argc, char **argv, struct nvinfer_opts *opts);
void nvinfer_usage(FILE *out);

/* A loaded model with its vocab and chat template, and the session that runs it. */
struct nvinfer_model {
    struct nvl_llama_model *model;
    struct nvl_vocab *vocab;
    struct nvl_chat_template *tmpl; /* NULL when the model has no known template */
    struct nvl_session *session;
    int32_t *eog; /* end-of-generation token ids */
    int32_t n_eog;
    struct nvl_gpu_model *gpu;     /* the GPU placement when the session runs on the GPU */
    struct nvinfer_gpu_io *gpu_io; /* what feeds it (gpu.c) */
};

/* GPU inference (gpu.c). nvinfer_gpu_wanted() says whether the options select the GPU (auto: a
 * GPU is present and the build has the backend), with the reason. nvinfer_gpu_load_model() loads
 * the model when --sim names a plain GGUF file (the namespace then is the file), returning 1 when
 * the options are not that case. nvinfer_gpu_open() creates the loader and places the weights;
 * in auto mode a model the GPU cannot run falls back to the CPU (returns 1). */
bool nvinfer_gpu_wanted(const struct nvinfer_opts *opts, char *why, size_t why_len);
int nvinfer_gpu_load_model(const struct nvinfer_opts *opts, struct nvinfer_model *m);
int nvinfer_gpu_open(const struct nvinfer_opts *opts, struct nvinfer_model *m);
void nvinfer_gpu_close(struct nvinfer_model *m);
void nvinfer_gpu_print_verbose(const struct nvinfer_opts *opts, const struct nvinfer_model *m);
int nvinfer_gpu_benchmark(const struct nvinfer_opts *opts, struct nvinfer_model *m);

/* Loads the model from the drive image that --nvme or --sim names (drive.c); prints errors.
 * Returns 0 or -errno. */
int nvinfer_drive_load(const struct nvinfer_opts *opts, struct nvl_llama_model **out);

/* Loads the model and creates a session as the options say; prints errors. Returns 0 or -1. */
int nvinfer_model_open(const struct nvinfer_opts *opts, struct nvinfer_model *m);
void nvinfer_model_close(struct nvinfer_model *m);

/* Subcommands. Each returns the process exit status. */
int nvinfer_run_prompt(const struct nvinfer_opts *opts, struct nvinfer_model *m);
int nvinfer_run_chat(const struct nvinfer_opts *opts, struct nvinfer_model *m);
int nvinfer_run_benchmark(const struct nvinfer_opts *opts, struct nvinfer_model *m);

#endif
