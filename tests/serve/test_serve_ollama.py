"""curl against the Ollama endpoints of `nvinfer serve`: /api/generate and /api/chat streaming
NDJSON (the default) and with "stream": false, /api/tags, /api/show, /api/version.

References: the chat template and context length /api/show reports are read from the GGUF file
with the `gguf` PyPI package; the file size comes from the file system; greedy text must be the
same streamed or not, and the same as the OpenAI endpoint's for the same conversation."""
import json
import os
import subprocess
import sys

import gguf

from serve_common import Server, args, check

N = 8


def curl(s, method, path, body=None):
    cmd = ["curl", "-sS", "-N", "--max-time", "120", "-X", method, "-w", "\n%{http_code}",
           s.base() + path]
    if body is not None:
        cmd += ["-d", body if isinstance(body, str) else json.dumps(body)]
    r = subprocess.run(cmd, capture_output=True, timeout=150)
    check(r.returncode == 0, "curl %s %s: %s" % (method, path, r.stderr.decode()))
    out, _, code = r.stdout.decode("utf-8").rpartition("\n")
    return int(code), out


def ndjson(out):
    lines = out.split("\n")
    check(lines[-1] == "", "NDJSON does not end with a newline")
    return [json.loads(line) for line in lines[:-1]]


def check_final(obj, n):
    check(obj["done"] is True, "last line not done: %r" % obj)
    check(obj["done_reason"] in ("stop", "length"), "done_reason %r" % obj["done_reason"])
    check(1 <= obj["eval_count"] <= n, "eval_count %r" % obj["eval_count"])
    check(obj["prompt_eval_count"] > 0, "prompt_eval_count %r" % obj["prompt_eval_count"])
    for k in ("total_duration", "prompt_eval_duration", "eval_duration"):
        check(isinstance(obj[k], int) and obj[k] >= 0, "%s %r" % (k, obj[k]))
    check(obj["created_at"].endswith("Z"), "created_at %r" % obj["created_at"])


def gguf_str(reader, key):
    f = reader.fields[key]
    return bytes(f.parts[f.data[0]]).decode("utf-8")


def main():
    nvinfer, model = args()
    reader = gguf.GGUFReader(model)
    with Server(nvinfer, model) as s:
        code, out = curl(s, "GET", "/api/tags")
        check(code == 200, "tags %d" % code)
        tags = json.loads(out)["models"]
        check(len(tags) == 1, "tags %r" % tags)
        name = tags[0]["name"]
        check(tags[0]["size"] == os.path.getsize(model), "size %r" % tags[0]["size"])
        check(tags[0]["details"]["format"] == "gguf", "details %r" % tags[0]["details"])
        check(tags[0]["details"]["quantization_level"] == "Q4_1", "quant %r" % tags[0]["details"])

        code, out = curl(s, "POST", "/api/show", {"model": name})
        check(code == 200, "show %d: %s" % (code, out))
        show = json.loads(out)
        check(show["template"] == gguf_str(reader, "tokenizer.chat_template"), "show template")
        ctx = int(reader.fields["llama.context_length"].parts[-1][0])
        check(show["model_info"]["llama.context_length"] == ctx, "show context length")
        code, out = curl(s, "POST", "/api/show", "{")
        check(code == 400 and isinstance(json.loads(out)["error"], str), "show bad: %s" % out)

        code, out = curl(s, "GET", "/api/version")
        check(code == 200 and "version" in json.loads(out), "version: %s" % out)

        # /api/generate streams NDJSON by default.
        req = {"model": name, "prompt": "Why is the sky blue?",
               "options": {"temperature": 0, "num_predict": N}}
        code, out = curl(s, "POST", "/api/generate", req)
        check(code == 200, "generate %d: %s" % (code, out))
        lines = ndjson(out)
        check(len(lines) >= 2, "generate stream: %d lines" % len(lines))
        check(all(not x["done"] for x in lines[:-1]), "done before the end")
        check_final(lines[-1], N)
        streamed = "".join(x["response"] for x in lines)
        req["stream"] = False
        code, out = curl(s, "POST", "/api/generate", req)
        check(code == 200, "generate %d" % code)
        whole = json.loads(out)
        check_final(whole, N)
        check(whole["response"] == streamed, "generate %r != %r" % (whole["response"], streamed))
        print("generate: %r" % streamed)

        # /api/chat, and the same conversation through the OpenAI endpoint.
        msgs = [{"role": "system", "content": "You are terse."},
                {"role": "user", "content": "Name a color."}]
        req = {"model": name, "messages": msgs, "options": {"temperature": 0, "num_predict": N}}
        code, out = curl(s, "POST", "/api/chat", req)
        check(code == 200, "chat %d: %s" % (code, out))
        lines = ndjson(out)
        check_final(lines[-1], N)
        check(all(x["message"]["role"] == "assistant" for x in lines), "roles")
        streamed = "".join(x["message"]["content"] for x in lines)
        req["stream"] = False
        code, out = curl(s, "POST", "/api/chat", req)
        whole = json.loads(out)
        check(code == 200 and whole["message"]["content"] == streamed,
              "chat %r != %r" % (whole["message"]["content"], streamed))
        code, out = curl(s, "POST", "/v1/chat/completions",
                         {"model": name, "messages": msgs, "temperature": 0, "max_tokens": N})
        check(code == 200, "openai chat %d" % code)
        oa = json.loads(out)["choices"][0]["message"]["content"]
        check(oa == streamed, "ollama chat %r != openai chat %r" % (streamed, oa))
        print("chat: %r" % streamed)

        # Ollama's "load" call (no prompt) answers at once; errors are {"error": "..."}.
        code, out = curl(s, "POST", "/api/generate", {"model": name})
        check(code == 200 and json.loads(out)["done_reason"] == "load", "load: %s" % out)
        code, out = curl(s, "POST", "/api/chat", {"model": name, "messages": "hi"})
        check(code == 400 and isinstance(json.loads(out)["error"], str), "bad chat: %s" % out)
        code, out = curl(s, "POST", "/api/generate", '{"prompt": ')
        check(code == 400 and isinstance(json.loads(out)["error"], str), "bad json: %s" % out)

        check(s.stop() == 0, "exit status")
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
