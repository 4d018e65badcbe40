"""The real `openai` client against `nvinfer serve` on the CPU backend: models, chat completions
(non-streaming and streaming, with usage), text completions, stop strings and seeds.

Independent references: greedy replies must equal what the `nvinfer` CLI prints for the same
prompt (C's generation path, tested against llama.cpp elsewhere); streamed deltas must join to
the non-streaming text; a stop string taken from a reply must cut that reply where the string
first occurs."""
import re
import subprocess
import sys

import openai

from serve_common import Server, args, check, fail

MAX_TOKENS = 12


def cli(nvinfer, model, *argv, stdin=None):
    r = subprocess.run([nvinfer, "-m", model, "-c", "512", "--temp", "0", *argv], input=stdin,
                       capture_output=True, text=True, timeout=120)
    check(r.returncode == 0, "nvinfer %s: %s" % (argv, r.stderr))
    return r.stdout


def chat_stream(client, mid, msgs, **kw):
    pieces, finish, usage, roles = [], [], None, []
    for chunk in client.chat.completions.create(model=mid, messages=msgs, stream=True,
                                                stream_options={"include_usage": True}, **kw):
        check(chunk.object == "chat.completion.chunk", "chunk object %r" % chunk.object)
        if chunk.usage is not None:
            check(not chunk.choices, "the usage chunk has choices")
            usage = chunk.usage
            continue
        check(len(chunk.choices) == 1, "chunk with %d choices" % len(chunk.choices))
        c = chunk.choices[0]
        if c.delta.role:
            roles.append(c.delta.role)
        if c.delta.content:
            pieces.append(c.delta.content)
        if c.finish_reason:
            finish.append(c.finish_reason)
    check(roles == ["assistant"], "roles in the stream: %r" % roles)
    check(len(finish) == 1, "finish reasons in the stream: %r" % finish)
    check(usage is not None, "no usage chunk with include_usage")
    return pieces, finish[0], usage


def main():
    nvinfer, model = args()
    with Server(nvinfer, model) as s:
        client = openai.OpenAI(base_url=s.base() + "/v1", api_key="none", max_retries=0,
                               timeout=120)
        ids = [m.id for m in client.models.list().data]
        check(ids == ["SmolLM2-135M-Instruct.Q4_1"], "models: %r" % ids)
        mid = ids[0]

        # Chat, non-streaming: greedy, so it must be what the CLI's chat prints.
        question = "What is the capital of France?"
        msgs = [{"role": "user", "content": question}]
        r = client.chat.completions.create(model=mid, messages=msgs, max_tokens=MAX_TOKENS,
                                           temperature=0)
        check(r.object == "chat.completion", "object %r" % r.object)
        check(r.id.startswith("chatcmpl-"), "id %r" % r.id)
        check(len(r.choices) == 1, "choices %r" % r.choices)
        msg = r.choices[0].message
        check(msg.role == "assistant", "role %r" % msg.role)
        text = msg.content
        check(isinstance(text, str) and text, "empty reply")
        u = r.usage
        check(u.total_tokens == u.prompt_tokens + u.completion_tokens, "usage %r" % u)
        check(1 <= u.completion_tokens <= MAX_TOKENS, "completion_tokens %d" % u.completion_tokens)
        fr = r.choices[0].finish_reason
        check(fr in ("stop", "length"), "finish_reason %r" % fr)
        check(fr != "length" or u.completion_tokens == MAX_TOKENS, "length before max_tokens")
        out = cli(nvinfer, model, "-i", "-n", str(MAX_TOKENS), stdin=question + "\n")
        expected = out.split("\n", 1)[1].rstrip("\n")
        check(text == expected, "server %r != CLI chat %r" % (text, expected))
        print("chat: %r (%s, usage %d+%d)" % (text, fr, u.prompt_tokens, u.completion_tokens))

        # Chat, streaming: the deltas join to the same text, with the same usage.
        pieces, sfr, su = chat_stream(client, mid, msgs, max_tokens=MAX_TOKENS, temperature=0)
        check("".join(pieces) == text, "stream %r != %r" % ("".join(pieces), text))
        check(sfr == fr, "stream finish %r != %r" % (sfr, fr))
        check((su.prompt_tokens, su.completion_tokens) == (u.prompt_tokens, u.completion_tokens),
              "stream usage %r != %r" % (su, u))
        print("chat stream: %d deltas" % len(pieces))

        # Text completion: the CLI prints the prompt, then the continuation.
        prompt = "Once upon a time"
        c = client.completions.create(model=mid, prompt=prompt, max_tokens=16, temperature=0)
        check(c.object == "text_completion", "object %r" % c.object)
        ctext = c.choices[0].text
        out = cli(nvinfer, model, "-p", prompt, "-n", "16")
        check(out.startswith(prompt), "CLI output %r" % out)
        check(ctext == out[len(prompt):].rstrip("\n"),
              "completion %r != CLI %r" % (ctext, out[len(prompt):]))
        cs = client.completions.create(model=mid, prompt=prompt, max_tokens=16, temperature=0,
                                       stream=True)
        joined = "".join(ch.choices[0].text for ch in cs if ch.choices)
        check(joined == ctext, "completion stream %r != %r" % (joined, ctext))
        print("completion: %r" % ctext)

        # Stop strings: cut where a piece of the greedy text first occurs, in both modes, and the
        # stream never shows any part of it.
        k = len(ctext) // 2
        stop = ctext[k:k + 3]
        check(len(stop.strip()) > 0, "stop string %r" % stop)
        want = ctext[:ctext.find(stop)]
        r2 = client.completions.create(model=mid, prompt=prompt, max_tokens=16, temperature=0,
                                       stop=[stop, "no such text"])
        check(r2.choices[0].text == want, "stop %r: %r != %r" % (stop, r2.choices[0].text, want))
        check(r2.choices[0].finish_reason == "stop", "finish %r" % r2.choices[0].finish_reason)
        cs = client.completions.create(model=mid, prompt=prompt, max_tokens=16, temperature=0,
                                       stop=stop, stream=True)
        pieces = [ch.choices[0].text for ch in cs if ch.choices]
        check("".join(pieces) == want, "stop stream %r != %r" % ("".join(pieces), want))
        print("stop %r: %r" % (stop, want))

        # Sampling with a seed repeats itself.
        kw = dict(model=mid, messages=msgs, max_tokens=MAX_TOKENS, temperature=0.9, top_p=0.9,
                  seed=1234)
        a = client.chat.completions.create(**kw).choices[0].message.content
        b = client.chat.completions.create(**kw).choices[0].message.content
        check(a == b, "seeded replies differ: %r vs %r" % (a, b))

        # A bad request is a 400 the client reports as BadRequestError.
        try:
            client.chat.completions.create(model=mid, messages=[], max_tokens=4)
            fail("empty messages accepted")
        except openai.BadRequestError as e:
            check(e.status_code == 400 and "messages" in str(e), "error %r" % e)

        # /metrics: Prometheus text with HELP and TYPE for every metric, the backend gauge, and
        # counters that saw the work above.
        status, hdrs, data = s.request("GET", "/metrics")
        check(status == 200 and hdrs["content-type"].startswith("text/plain"), "metrics")
        typed = set()
        for line in data.decode().splitlines():
            if line.startswith("# TYPE "):
                typed.add(line.split()[2])
            elif not line.startswith("# HELP "):
                check(re.fullmatch(r'[a-z_]+(\{([a-z_]+="[^"]*",?)+\})? [0-9.]+', line),
                      "metrics line %r" % line)
                check(line.split("{")[0].split(" ")[0] in typed, "no TYPE for %r" % line)
        m = s.metrics()
        backend = [k for k in m if k.startswith("nvl_serve_backend_info{")]
        check(len(backend) == 1 and m[backend[0]] == 1, "backend gauge %r" % backend)
        check('backend="cpu",data_path="mmap"' in backend[0] and 'model="%s"' % mid in backend[0],
              "backend labels %r" % backend[0])
        check(m["nvl_serve_tokens_generated_total"] >= 5 * MAX_TOKENS, "tokens counter")
        check(m["nvl_serve_bytes_streamed_total"] > 0, "bytes counter")
        check(m["nvl_serve_tokens_per_second"] > 0, "tokens/s gauge")
        check(m['nvl_serve_requests_total{endpoint="/v1/chat/completions"}'] == 5, "chat count")
        check(m["nvl_serve_queue_depth"] == 0 and m["nvl_serve_workers"] == 1, "queue gauges")

        status = s.stop()
        check(status == 0, "exit status %d" % status)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
