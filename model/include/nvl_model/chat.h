/* Chat templates: turn a list of {role, content} messages into the prompt text a chat model was
 * trained on.
 *
 * GGUF files carry the model's Jinja template in `tokenizer.chat_template`. Rather than run Jinja,
 * the template is recognized by substrings only its family uses, and the family's format is
 * written out in C (llama.cpp does the same). Supported families:
 *
 *   chatml  "<|im_start|>role\ncontent<|im_end|>\n"           (SmolLM2, Qwen, ...)
 *   llama3  "<|start_header_id|>role<|end_header_id|>\n\ncontent<|eot_id|>"
 *   llama2  "[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] assistant </s><s>[INST] ..."
 *   zephyr  "<|role|>\ncontent</s>\n"                          (TinyLlama chat)
 *
 * The text never contains the BOS token at its start: the tokenizer adds it (add_bos), as it does
 * for a plain prompt. Special tokens in the text (<|im_start|>, </s>, ...) must be tokenized with
 * special-token parsing on. */
#ifndef NVL_MODEL_CHAT_H
#define NVL_MODEL_CHAT_H

#include <stdbool.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum nvl_chat_family {
    NVL_CHAT_FAMILY_CHATML = 0,
    NVL_CHAT_FAMILY_LLAMA2 = 1,
    NVL_CHAT_FAMILY_LLAMA3 = 2,
    NVL_CHAT_FAMILY_ZEPHYR = 3,
};

struct nvl_chat_message {
    const char *role;    /* "system", "user" or "assistant" */
    const char *content; /* UTF-8 text */
};

struct nvl_chat_template;

/* Recognizes the family of a Jinja template (the value of `tokenizer.chat_template`). A chatml
 * template that inserts a system message when the conversation has none (SmolLM2's does) keeps
 * that default system text. Returns 0, -EINVAL for NULL, -ENOTSUP for a template of no known
 * family, or -ENOMEM. */
int nvl_chat_template_create(const char *jinja, struct nvl_chat_template **out);
/* A template by family name ("chatml", "llama2", "llama3", "zephyr"), with no default system
 * message. Returns 0, -ENOTSUP for an unknown name, or -ENOMEM. */
int nvl_chat_template_create_named(const char *name, struct nvl_chat_template **out);
void nvl_chat_template_destroy(struct nvl_chat_template *tmpl);

enum nvl_chat_family nvl_chat_template_family(const struct nvl_chat_template *tmpl);
const char *nvl_chat_family_name(enum nvl_chat_family family);

/* Formats the messages; with add_assistant it ends with the header of an assistant turn, so the
 * model's continuation is the reply. On success *out is a NUL-terminated string the caller frees.
 * Returns 0, -EINVAL for a message with a NULL role or content, or -ENOMEM. */
int nvl_chat_template_apply(const struct nvl_chat_template *tmpl,
                            const struct nvl_chat_message *msgs, size_t n_msgs, bool add_assistant,
                            char **out);

#ifdef __cplusplus
}
#endif

#endif
