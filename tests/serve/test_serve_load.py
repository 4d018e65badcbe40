"""Load on `nvinfer serve`: a full queue answers 503 (never crashes), a client that disconnects
frees its slot at once (queued or streaming), and a bounded load test - 200 requests from 8
concurrent clients over the four generation endpoints, on two workers - ends with every request
either answered correctly (the same greedy text as when the request ran alone) or refused with
503, and the server healthy and idle."""
import json
import socket
import sys
import threading
import time

from serve_common import HOST, Server, args, check, sse_events

CLIENTS = 8
REQUESTS = 200
PROMPTS = ["Name a fruit.", "What is 2+2?", "Say hello.", "Name a planet."]


def gen_request(kind, prompt, n):
    if kind == "chat":
        return "/v1/chat/completions", {"model": "m", "temperature": 0, "max_tokens": n,
                                         "messages": [{"role": "user", "content": prompt}]}
    if kind == "chat-stream":
        return "/v1/chat/completions", {"model": "m", "temperature": 0, "max_tokens": n,
                                         "stream": True,
                                         "messages": [{"role": "user", "content": prompt}]}
    if kind == "completion":
        return "/v1/completions", {"model": "m", "temperature": 0, "max_tokens": n,
                                    "prompt": prompt}
    return "/api/generate", {"model": "m", "prompt": prompt, "stream": False,
                              "options": {"temperature": 0, "num_predict": n}}


def answer_text(kind, data):
    """The generated text of a 200 response, checking its structure on the way."""
    if kind == "chat-stream":
        events = sse_events(data)
        assert events[-1] == "[DONE]", events[-1]
        text = ""
        finishes = 0
        for e in events[:-1]:
            c = json.loads(e)["choices"][0]
            text += c["delta"].get("content") or ""
            finishes += c["finish_reason"] is not None
        assert finishes == 1
        return text
    body = json.loads(data)
    if kind == "chat":
        assert body["object"] == "chat.completion"
        u = body["usage"]
        assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]
        return body["choices"][0]["message"]["content"]
    if kind == "completion":
        assert body["object"] == "text_completion"
        return body["choices"][0]["text"]
    assert body["done"] is True
    return body["response"]


def full_queue(nvinfer, model):
    """--queue 1 --parallel 1: one request runs, one waits, the others get 503."""
    with Server(nvinfer, model, "--queue", "1") as s:
        long_prompt = "Tell me a long story about a dragon and a knight. " * 4
        for attempt in range(3):
            results = []
            barrier = threading.Barrier(8)

            def one():
                path, body = gen_request("completion", long_prompt, 24)
                barrier.wait()
                results.append(s.request("POST", path, body))

            threads = [threading.Thread(target=one) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(300)
            codes = sorted(r[0] for r in results)
            check(len(codes) == 8 and set(codes) <= {200, 503}, "codes %r" % codes)
            for status, hdrs, data in results:
                if status == 503:
                    e = json.loads(data)["error"]
                    check(e["code"] == "queue_full" and "queue" in e["message"], "503 %r" % e)
                    check(hdrs.get("retry-after") == "1", "no Retry-After")
                else:
                    answer_text("completion", data)
            print("full queue, attempt %d: %r" % (attempt, codes))
            if 503 in codes:
                break
        check(503 in codes, "never a 503 with --queue 1 and 8 concurrent requests")
        check(200 in codes, "no request served")
        check(s.json("GET", "/health") == {"status": "ok"}, "health")
        check(s.stop() == 0, "exit status")


def raw_post(port, path, body):
    sock = socket.create_connection((HOST, port), timeout=60)
    data = json.dumps(body).encode()
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (path.encode(), len(data), data))
    return sock


def disconnects(nvinfer, model):
    """A streaming client that goes away and a queued client that goes away free the worker."""
    with Server(nvinfer, model, "--queue", "4", ctx=1024) as s:
        m0 = s.metrics()
        path, body = gen_request("chat-stream", "Write a very long essay about the sea.", 900)
        a = raw_post(s.port, path, body)
        got = b""
        while b"data: " not in got:
            chunk = a.recv(4096)
            check(chunk, "stream closed early")
            got += chunk
        path, body = gen_request("chat", "Write a very long essay about the sea.", 900)
        b = raw_post(s.port, path, body)
        deadline = time.monotonic() + 30
        while s.metrics()["nvl_serve_queue_depth"] < 1:
            check(time.monotonic() < deadline, "the second request never queued")
            time.sleep(0.02)
        check(s.metrics()["nvl_serve_requests_active"] == 1, "expected one running")
        b.close()
        a.close()
        t0 = time.monotonic()
        path, body = gen_request("chat", "Say hello.", 4)
        s.json("POST", path, body)
        took = time.monotonic() - t0
        m1 = s.metrics()
        gen = m1["nvl_serve_tokens_generated_total"] - m0["nvl_serve_tokens_generated_total"]
        check(m1["nvl_serve_client_disconnects_total"] == 2, "disconnects %r" %
              m1["nvl_serve_client_disconnects_total"])
        # The streaming job stopped within a few tokens of the hang-up, the queued one never ran.
        check(gen < 200, "%d tokens generated for cancelled requests" % gen)
        print("disconnects: next request served in %.2f s, %d tokens generated in all" %
              (took, gen), flush=True)
        check(s.stop() == 0, "exit status")


def load(nvinfer, model):
    kinds = ["chat", "chat-stream", "completion", "generate"]
    # Two workers (two KV caches) and 8 clients: 2 running + 5 waiting, so mostly served and
    # some refused.
    with Server(nvinfer, model, "--parallel", "2", "--queue", "5") as s:
        # References: each request alone.
        ref = {}
        for kind in kinds:
            for p in PROMPTS:
                path, body = gen_request(kind, p, 4)
                status, _, data = s.request("POST", path, body)
                check(status == 200, "reference %s %r: %d" % (kind, p, status))
                ref[kind, p] = answer_text(kind, data)
        m0 = s.metrics()

        lock = threading.Lock()
        outcome = {"ok": 0, "503": 0, "bad": []}
        counter = iter(range(REQUESTS))

        def client(ci):
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                kind, p = kinds[i % 4], PROMPTS[(i // 4 + ci) % 4]
                path, body = gen_request(kind, p, 4)
                try:
                    status, _, data = s.request("POST", path, body, timeout=120)
                    if status == 503:
                        e = json.loads(data)["error"]
                        # Ollama's errors are plain strings, OpenAI's objects with a code.
                        assert kind == "generate" and "queue is full" in e or \
                            e["code"] == "queue_full", e
                        res = "503"
                        time.sleep(0.25)  # a polite client backs off (Retry-After)
                    else:
                        assert status == 200, status
                        text = answer_text(kind, data)
                        assert text == ref[kind, p], (text, ref[kind, p])
                        res = "ok"
                except Exception as e:  # noqa: BLE001 - every failure is recorded
                    res = "bad"
                    with lock:
                        outcome["bad"].append("%s %r: %r" % (kind, p, e))
                with lock:
                    if res != "bad":
                        outcome[res] += 1

        t0 = time.monotonic()
        threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(600)
        took = time.monotonic() - t0
        check(not any(t.is_alive() for t in threads), "clients still running")
        check(not outcome["bad"], "%d bad answers: %s" % (len(outcome["bad"]),
                                                          outcome["bad"][:5]))
        check(outcome["ok"] + outcome["503"] == REQUESTS, "outcome %r" % outcome)
        check(outcome["ok"] > 0, "nothing served")
        m = s.metrics()
        served = m['nvl_serve_responses_total{code="200"}'] - m0['nvl_serve_responses_total{code="200"}']
        refused = m['nvl_serve_responses_total{code="503"}'] - m0['nvl_serve_responses_total{code="503"}']
        # The response to the first /metrics request is counted after it was rendered.
        check(served == outcome["ok"] + 1 and refused == outcome["503"],
              "metrics: %r served, %r refused; clients saw %r" % (served, refused, outcome))
        check(m["nvl_serve_queue_depth"] == 0 and m["nvl_serve_requests_active"] == 0, "idle")
        check(m["nvl_serve_tokens_generated_total"] > m0["nvl_serve_tokens_generated_total"],
              "tokens")
        check(s.json("GET", "/health") == {"status": "ok"}, "health after the load")
        print("load: %d requests from %d clients in %.1f s: %d answered, %d refused with 503" %
              (REQUESTS, CLIENTS, took, outcome["ok"], outcome["503"]))
        check(s.stop() == 0, "exit status")


def main():
    which = sys.argv[3:] if len(sys.argv) > 3 else ["queue", "disconnect", "load"]
    sys.argv = sys.argv[:3]
    nvinfer, model = args()
    if "queue" in which:
        full_queue(nvinfer, model)
    if "disconnect" in which:
        disconnects(nvinfer, model)
    if "load" in which:
        load(nvinfer, model)
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
