/* nvgguf: GGUF file utilities. `nvgguf COMMAND ARGS...`; the commands are in the table below,
 * one source file each. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

struct nvgguf_command {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *usage;
};

static const struct nvgguf_command commands[] = {
    {"info", nvgguf_cmd_info, "info [--all] MODEL.gguf          metadata and tensor table"},
    {"quantize", nvgguf_cmd_quantize,
     "quantize [--threads N] IN OUT TYPE  requantize weights (q8_0, q4_0, q4_1, q5_0, q5_1, "
     "q4_K, q6_K, f16, bf16, f32)"},
    {"tokenize", nvgguf_cmd_tokenize,
     "tokenize MODEL.gguf [--file F] [--add-special] [--parse-special]  text (F or stdin) to ids"},
    {"detokenize", nvgguf_cmd_detokenize,
     "detokenize MODEL.gguf [--special] [--no-cleanup] [ID...]  ids (args or stdin) to text"},
    {"pack", nvgguf_cmd_pack,
     "pack IN OUT | pack --check IN  4 KiB-aligned layout, one extent per layer (for drives)"},
    {"synth", nvgguf_cmd_synth,
     "synth --shape llama3-8b|llama2-70b|... --type q4_0|q4_K|q6_K|q8_0|... -o OUT  random "
     "weights, real shape"},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: nvgguf COMMAND ARGS...\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  %s\n", commands[i].usage);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "-h") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "nvgguf: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return 2;
}
