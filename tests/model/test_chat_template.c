/* Chat template tests. The expected prompts are written out by hand from each family's reference
 * Jinja template (quoted in the comments), not taken from the formatter's output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "nvl_model.h"

/* SmolLM2-135M-Instruct's `tokenizer.chat_template`, as stored in its GGUF file. */
static const char smollm2_jinja[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|im_start|>assistant\n' }}{% endif %}";

/* Meta Llama 3 Instruct's template. */
static const char llama3_jinja[] =
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% "
    "endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}";

/* Meta Llama 2 chat's template (abridged to its distinctive parts). */
static const char llama2_jinja[] =
    "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set "
    "system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set "
    "system_message = false %}{% endif %}{% for message in loop_messages %}{% if loop.index0 == 0 "
    "and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + "
    "'\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% "
    "endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' "
    "[/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + "
    "eos_token }}{% endif %}{% endfor %}";

static const char zephyr_jinja[] =
    "{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + "
    "message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' "
    "+ message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ "
    "'<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and "
    "add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}";

static const struct nvl_chat_message conv[] = {
    {"system", "Be brief."},
    {"user", " Hi there \n"},
    {"assistant", "Hello!"},
    {"user", "What is 2+2?"},
};

static char *apply(const char *jinja, const struct nvl_chat_message *m, size_t n, bool gen,
                   enum nvl_chat_family family)
{
    struct nvl_chat_template *t = NULL;
    assert_int_equal(nvl_chat_template_create(jinja, &t), 0);
    assert_int_equal(nvl_chat_template_family(t), family);
    char *s = NULL;
    assert_int_equal(nvl_chat_template_apply(t, m, n, gen, &s), 0);
    nvl_chat_template_destroy(t);
    return s;
}

static void test_chatml_smollm2(void **state)
{
    (void)state;
    /* No system message: the template inserts its own. */
    char *s = apply(smollm2_jinja, &conv[1], 1, true, NVL_CHAT_FAMILY_CHATML);
    assert_string_equal(s, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
                           "trained by Hugging Face<|im_end|>\n"
                           "<|im_start|>user\n Hi there \n<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
    /* With one, it is used as given; chatml does not trim. */
    s = apply(smollm2_jinja, conv, 4, true, NVL_CHAT_FAMILY_CHATML);
    assert_string_equal(s, "<|im_start|>system\nBe brief.<|im_end|>\n"
                           "<|im_start|>user\n Hi there \n<|im_end|>\n"
                           "<|im_start|>assistant\nHello!<|im_end|>\n"
                           "<|im_start|>user\nWhat is 2+2?<|im_end|>\n"
                           "<|im_start|>assistant\n");
    free(s);
}

static void test_llama3(void **state)
{
    (void)state;
    char *s = apply(llama3_jinja, conv, 4, true, NVL_CHAT_FAMILY_LLAMA3);
    assert_string_equal(s, "<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>"
                           "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
                           "<|start_header_id|>assistant<|end_header_id|>\n\n");
    free(s);
}

static void test_llama2(void **state)
{
    (void)state;
    char *s = apply(llama2_jinja, conv, 4, true, NVL_CHAT_FAMILY_LLAMA2);
    assert_string_equal(s, "[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\n Hi there [/INST]"
                           " Hello! </s>"
                           "<s>[INST] What is 2+2? [/INST]");
    free(s);
    /* Without a system message the first turn is plain. */
    s = apply(llama2_jinja, &conv[1], 1, true, NVL_CHAT_FAMILY_LLAMA2);
    assert_string_equal(s, "[INST] Hi there [/INST]");
    free(s);
}

static void test_zephyr(void **state)
{
    (void)state;
    char *s = apply(zephyr_jinja, conv, 2, true, NVL_CHAT_FAMILY_ZEPHYR);
    assert_string_equal(s, "<|system|>\nBe brief.</s>\n<|user|>\n Hi there \n</s>\n"
                           "<|assistant|>\n");
    free(s);
}

static void test_unknown_and_named(void **state)
{
    (void)state;
    struct nvl_chat_template *t = NULL;
    assert_int_equal(nvl_chat_template_create("{{ messages }}", &t), -ENOTSUP);
    assert_null(t);
    assert_int_equal(nvl_chat_template_create(NULL, &t), -EINVAL);
    assert_int_equal(nvl_chat_template_create_named("vicuna", &t), -ENOTSUP);
    assert_int_equal(nvl_chat_template_create_named("chatml", &t), 0);
    assert_string_equal(nvl_chat_family_name(nvl_chat_template_family(t)), "chatml");
    /* A named chatml template has no default system message. */
    char *s = NULL;
    assert_int_equal(nvl_chat_template_apply(t, &conv[3], 1, false, &s), 0);
    assert_string_equal(s, "<|im_start|>user\nWhat is 2+2?<|im_end|>\n");
    free(s);
    struct nvl_chat_message bad = {"user", NULL};
    assert_int_equal(nvl_chat_template_apply(t, &bad, 1, false, &s), -EINVAL);
    nvl_chat_template_destroy(t);
    nvl_chat_template_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chatml_smollm2),
        cmocka_unit_test(test_llama3),
        cmocka_unit_test(test_llama2),
        cmocka_unit_test(test_zephyr),
        cmocka_unit_test(test_unknown_and_named),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
