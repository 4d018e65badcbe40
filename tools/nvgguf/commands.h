/* nvgguf subcommands. Each takes the arguments after its name (argv[0] is the subcommand) and
 * returns the process exit status: 0 on success, 1 on a runtime error, 2 on a usage error. */
#ifndef NVGGUF_COMMANDS_H
#define NVGGUF_COMMANDS_H

int nvgguf_cmd_info(int argc, char **argv);
int nvgguf_cmd_quantize(int argc, char **argv);
int nvgguf_cmd_tokenize(int argc, char **argv);
int nvgguf_cmd_detokenize(int argc, char **argv);
int nvgguf_cmd_pack(int argc, char **argv);
int nvgguf_cmd_synth(int argc, char **argv);

#endif
