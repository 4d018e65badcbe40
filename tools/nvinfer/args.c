/* Command-line options of nvinfer. */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nvinfer.h"

void nvinfer_usage(FILE *out)
{
    fprintf(
        out,
        "usage: nvinfer -m MODEL.gguf [-p PROMPT] [-n N] [options]\n"
        "       nvinfer -m MODEL.gguf -i [--system TEXT] [options]\n"
        "\n"
        "Runs a llama-family GGUF model: prints the prompt followed by the generated text,\n"
        "or chats interactively (-i). Without a GPU it runs on the CPU.\n"
        "\n"
        "  -m, --model FILE        GGUF model file (required without --nvme/--sim)\n"
        "      --nvme BDF          run the model nvload-setup wrote onto this drive: weights,\n"
        "                          metadata and tokenizer from the drive (with -m FILE: check\n"
        "                          that the drive holds that model)\n"
        "      --sim IMAGE         the same from a drive image file, served by the software\n"
        "                          NVMe controller (or sim options: file=IMAGE,lba=4096)\n"
        "      --verify            check each layer's CRC32C as it arrives from the drive\n"
        "      --device D          auto (default: the GPU when there is one), cpu or gpu\n"
        "      --backend B         loader for the GPU's layers: auto, gpu-nvme, cpu-nvme, gds,\n"
        "                          file\n"
        "      --vram-budget SIZE  VRAM for weights (e.g. 8G, 24GB; NL: the globals and N\n"
        "                          layers; default: free VRAM minus KV cache and scratch)\n"
        "      --ram-budget SIZE   pinned RAM for layers beyond the VRAM budget (default 0);\n"
        "                          the rest stream from the loader each token\n"
        "      --prefetch K        layers read ahead while one computes (default 3, >= 2)\n"
        "      --sim-bw BW         bandwidth model of --sim (e.g. 7GB/s)\n"
        "  -p, --prompt TEXT       prompt to complete (with -i: the first chat message)\n"
        "  -n, --n-predict N       tokens to generate (default 128; -1: until end of text)\n"
        "  -i, --chat              interactive chat using the model's chat template\n"
        "      --system TEXT       system message for chat\n"
        "      --chat-template F   chatml, llama2, llama3 or zephyr instead of the file's\n"
        "      --temp T            temperature (default 0.8; 0: greedy)\n"
        "      --top-k K           keep the K most likely tokens (default 40; 0: off)\n"
        "      --top-p P           nucleus sampling threshold (default 0.95; 1: off)\n"
        "      --min-p P           drop tokens below P x the top probability (default 0.05)\n"
        "      --repeat-penalty R  penalty for recent tokens (default 1.0: off)\n"
        "      --repeat-last-n N   tokens the penalty looks back on (default 64)\n"
        "      --seed S            random seed (default: drawn at start; -v shows it)\n"
        "  -t, --threads N         CPU threads (default: all online CPUs)\n"
        "  -c, --ctx N             context length in tokens (default: model's, max 4096)\n"
        "  -b, --batch N           prompt tokens per forward pass (default 64; GPU 512)\n"
        "      --kv-f32            keep the KV cache in fp32 instead of fp16\n"
        "      --benchmark         measure prompt processing and generation speed\n"
        "  -v, --verbose           print the backend, data path, model and settings\n"
        "  -h, --help              this text\n");
}

static int parse_int(const char *name, const char *s, long min, long max, int32_t *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < min || v > max) {
        fprintf(stderr, "nvinfer: %s: '%s' is not an integer in [%ld, %ld]\n", name, s, min, max);
        return -1;
    }
    *out = (int32_t)v;
    return 0;
}

static int parse_float(const char *name, const char *s, double min, double max, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end || !(v >= min && v <= max)) {
        fprintf(stderr, "nvinfer: %s: '%s' is not a number in [%g, %g]\n", name, s, min, max);
        return -1;
    }
    *out = (float)v;
    return 0;
}

enum {
    OPT_TEMP = 256,
    OPT_TOP_K,
    OPT_TOP_P,
    OPT_MIN_P,
    OPT_REPEAT_PENALTY,
    OPT_REPEAT_LAST_N,
    OPT_SEED,
    OPT_SYSTEM,
    OPT_CHAT_TEMPLATE,
    OPT_KV_F32,
    OPT_BENCHMARK,
    OPT_NVME,
    OPT_SIM,
    OPT_VERIFY,
    OPT_DEVICE,
    OPT_BACKEND,
    OPT_VRAM_BUDGET,
    OPT_RAM_BUDGET,
    OPT_PREFETCH,
    OPT_SIM_BW,
};

/* Sizes: a number with an optional K/M/G/T suffix (binary; "GB" = "G"), or for --vram-budget
 * "NL": N layers. */
static int parse_size(const char *name, const char *s, bool layers_ok, int64_t *bytes,
                      int32_t *layers)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v >= 0)) {
        fprintf(stderr, "nvinfer: %s: '%s' is not a size\n", name, s);
        return -1;
    }
    if (layers_ok && (*end == 'L' || *end == 'l') && end[1] == '\0') {
        *layers = (int32_t)v;
        return 0;
    }
    double mul = 1;
    switch (*end) {
    case 'k':
    case 'K':
        mul = 1024.0;
        end++;
        break;
    case 'm':
    case 'M':
        mul = 1024.0 * 1024;
        end++;
        break;
    case 'g':
    case 'G':
        mul = 1024.0 * 1024 * 1024;
        end++;
        break;
    case 't':
    case 'T':
        mul = 1024.0 * 1024 * 1024 * 1024;
        end++;
        break;
    default:
        break;
    }
    if ((*end == 'B' || *end == 'b') && mul > 1)
        end++;
    if (*end) {
        fprintf(stderr, "nvinfer: %s: '%s' is not a size (e.g. 8G, 512M%s)\n", name, s,
                layers_ok ? ", 16L" : "");
        return -1;
    }
    *bytes = (int64_t)(v * mul);
    return 0;
}

int nvinfer_parse_args(int argc, char **argv, struct nvinfer_opts *o)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},
        {"prompt", required_argument, NULL, 'p'},
        {"n-predict", required_argument, NULL, 'n'},
        {"chat", no_argument, NULL, 'i'},
        {"threads", required_argument, NULL, 't'},
        {"ctx", required_argument, NULL, 'c'},
        {"batch", required_argument, NULL, 'b'},
        {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {"temp", required_argument, NULL, OPT_TEMP},
        {"top-k", required_argument, NULL, OPT_TOP_K},
        {"top-p", required_argument, NULL, OPT_TOP_P},
        {"min-p", required_argument, NULL, OPT_MIN_P},
        {"repeat-penalty", required_argument, NULL, OPT_REPEAT_PENALTY},
        {"repeat-last-n", required_argument, NULL, OPT_REPEAT_LAST_N},
        {"seed", required_argument, NULL, OPT_SEED},
        {"system", required_argument, NULL, OPT_SYSTEM},
        {"chat-template", required_argument, NULL, OPT_CHAT_TEMPLATE},
        {"kv-f32", no_argument, NULL, OPT_KV_F32},
        {"benchmark", no_argument, NULL, OPT_BENCHMARK},
        {"nvme", required_argument, NULL, OPT_NVME},
        {"sim", required_argument, NULL, OPT_SIM},
        {"verify", no_argument, NULL, OPT_VERIFY},
        {"device", required_argument, NULL, OPT_DEVICE},
        {"backend", required_argument, NULL, OPT_BACKEND},
        {"vram-budget", required_argument, NULL, OPT_VRAM_BUDGET},
        {"ram-budget", required_argument, NULL, OPT_RAM_BUDGET},
        {"prefetch", required_argument, NULL, OPT_PREFETCH},
        {"sim-bw", required_argument, NULL, OPT_SIM_BW},
        {NULL, 0, NULL, 0},
    };
    memset(o, 0, sizeof(*o));
    o->n_predict = 128;
    nvl_sampler_params_default(&o->sampling);
    o->device = "auto";
    o->vram_budget = -1;
    o->vram_layers = -1;
    o->prefetch = 3;

    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:p:n:it:c:b:vh", longopts, NULL)) != -1) {
        int rc = 0;
        switch (c) {
        case 'm':
            o->model = optarg;
            break;
        case 'p':
            o->prompt = optarg;
            break;
        case 'n':
            rc = parse_int("-n", optarg, -1, 1 << 30, &o->n_predict);
            break;
        case 'i':
            o->chat = true;
            break;
        case 't':
            rc = parse_int("--threads", optarg, 1, 1024, &o->n_threads);
            break;
        case 'c':
            rc = parse_int("--ctx", optarg, 1, 1 << 24, &o->n_ctx);
            break;
        case 'b':
            rc = parse_int("--batch", optarg, 1, 1 << 16, &o->n_batch);
            break;
        case 'v':
            o->verbose = true;
            break;
        case 'h':
            nvinfer_usage(stdout);
            return 1;
        case OPT_TEMP:
            rc = parse_float("--temp", optarg, 0.0, 100.0, &o->sampling.temperature);
            break;
        case OPT_TOP_K:
            rc = parse_int("--top-k", optarg, 0, 1 << 30, &o->sampling.top_k);
            break;
        case OPT_TOP_P:
            rc = parse_float("--top-p", optarg, 0.0, 1.0, &o->sampling.top_p);
            break;
        case OPT_MIN_P:
            rc = parse_float("--min-p", optarg, 0.0, 1.0, &o->sampling.min_p);
            break;
        case OPT_REPEAT_PENALTY:
            rc = parse_float("--repeat-penalty", optarg, 1e-3, 100.0, &o->sampling.repeat_penalty);
            break;
        case OPT_REPEAT_LAST_N:
            rc = parse_int("--repeat-last-n", optarg, 0, 1 << 20, &o->sampling.repeat_last_n);
            break;
        case OPT_SEED: {
            char *end;
            errno = 0;
            unsigned long long v = strtoull(optarg, &end, 10);
            if (errno || end == optarg || *end || optarg[0] == '-') {
                fprintf(stderr, "nvinfer: --seed: '%s' is not a non-negative integer\n", optarg);
                rc = -1;
            }
            o->sampling.seed = v;
            o->seed_set = true;
            break;
        }
        case OPT_SYSTEM:
            o->system = optarg;
            break;
        case OPT_CHAT_TEMPLATE:
            o->chat_template = optarg;
            break;
        case OPT_KV_F32:
            o->kv_f32 = true;
            break;
        case OPT_BENCHMARK:
            o->benchmark = true;
            break;
        case OPT_NVME:
            o->nvme = optarg;
            break;
        case OPT_SIM:
            o->sim = optarg;
            break;
        case OPT_VERIFY:
            o->verify = true;
            break;
        case OPT_DEVICE:
            if (strcmp(optarg, "auto") && strcmp(optarg, "cpu") && strcmp(optarg, "gpu")) {
                fprintf(stderr, "nvinfer: --device: '%s' is not auto, cpu or gpu\n", optarg);
                rc = -1;
            }
            o->device = optarg;
            break;
        case OPT_BACKEND: {
            enum nvl_loader_backend b;
            if (nvl_loader_backend_parse(optarg, &b)) {
                fprintf(stderr,
                        "nvinfer: --backend: '%s' is not auto, gpu-nvme, cpu-nvme, gds or file\n",
                        optarg);
                rc = -1;
            }
            o->backend = optarg;
            break;
        }
        case OPT_VRAM_BUDGET:
            rc = parse_size("--vram-budget", optarg, true, &o->vram_budget, &o->vram_layers);
            break;
        case OPT_RAM_BUDGET:
            rc = parse_size("--ram-budget", optarg, false, &o->ram_budget, NULL);
            break;
        case OPT_PREFETCH:
            rc = parse_int("--prefetch", optarg, 2, 16, &o->prefetch);
            break;
        case OPT_SIM_BW:
            o->sim_bw = optarg;
            break;
        default:
            fprintf(stderr, "Try 'nvinfer --help'.\n");
            return -1;
        }
        if (rc)
            return -1;
    }
    if (optind < argc) {
        fprintf(stderr, "nvinfer: unexpected argument '%s'\nTry 'nvinfer --help'.\n", argv[optind]);
        return -1;
    }
    if (o->nvme && o->sim) {
        fprintf(stderr, "nvinfer: --nvme and --sim exclude each other\n");
        return -1;
    }
    if (o->verify && !o->nvme && !o->sim) {
        fprintf(stderr, "nvinfer: --verify checks a model read from a drive (--nvme or --sim)\n");
        return -1;
    }
    if (o->sim_bw && !o->sim) {
        fprintf(stderr, "nvinfer: --sim-bw sets the bandwidth of --sim\n");
        return -1;
    }
    if (o->nvme || o->sim) {
        /* The model is the drive's; a file given as well is only compared with it. */
        o->same_as = o->model;
        snprintf(o->drive_label, sizeof(o->drive_label), "%s:%s", o->nvme ? "nvme" : "sim",
                 o->nvme ? o->nvme : o->sim);
        o->model = o->drive_label;
    }
    if (!o->model) {
        fprintf(stderr, "nvinfer: no model given (-m MODEL.gguf)\nTry 'nvinfer --help'.\n");
        return -1;
    }
    if (o->chat && o->benchmark) {
        fprintf(stderr, "nvinfer: --chat and --benchmark cannot be combined\n");
        return -1;
    }
    return 0;
}
