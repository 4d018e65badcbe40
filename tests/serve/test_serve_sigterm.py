"""SIGTERM drains `nvinfer serve`: a stream in flight and a request waiting in the queue both run
to their end ([DONE] and every token; a complete body), a request arriving meanwhile gets 503,
/health says "draining", and the process exits 0."""
import json
import signal
import socket
import sys
import threading
import time

from serve_common import HOST, Server, args, check, sse_events

N = 200  # tokens per request: long enough that the drain outlasts the probes below


def main():
    nvinfer, model = args()
    with Server(nvinfer, model, ctx=1024) as s:
        # A: a stream, running.
        body = json.dumps({"model": "m", "temperature": 0, "max_tokens": N, "stream": True,
                           "messages": [{"role": "user", "content": "Tell me a story."}],
                           "stream_options": {"include_usage": True}}).encode()
        sock = socket.create_connection((HOST, s.port), timeout=120)
        sock.sendall(b"POST /v1/chat/completions HTTP/1.0\r\nContent-Length: %d\r\n\r\n%s" %
                     (len(body), body))
        got = b""
        while got.count(b"data: ") < 3:  # the role chunk and two tokens
            chunk = sock.recv(65536)
            check(chunk, "stream closed early")
            got += chunk

        def rest():
            nonlocal got
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                got += chunk
        reader = threading.Thread(target=rest)
        reader.start()

        # B: waiting in the queue behind A.
        queued = {}

        def b():
            queued["r"] = s.request("POST", "/v1/completions", {
                "prompt": "Once upon a time", "max_tokens": N, "temperature": 0})
        tb = threading.Thread(target=b)
        tb.start()
        deadline = time.monotonic() + 30
        while s.metrics()["nvl_serve_queue_depth"] < 1:
            check(time.monotonic() < deadline, "the second request never queued")
            time.sleep(0.02)

        s.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        while True:
            status, _, data = s.request("GET", "/health")
            if status == 503:
                break
            check(status == 200 and time.monotonic() < deadline, "health %d %r" % (status, data))
            time.sleep(0.02)
        check(json.loads(data)["status"] == "draining", "health while draining: %r" % data)

        # New work is refused while A and B finish.
        status, _, data = s.request("POST", "/v1/completions", {"prompt": "Hi", "max_tokens": 2})
        check(status == 503, "request while draining: %d %r" % (status, data))
        check(json.loads(data)["error"]["code"] == "shutting_down", "503 body %r" % data)

        reader.join(300)
        tb.join(300)
        check(not reader.is_alive() and not tb.is_alive(), "requests did not finish")
        sock.close()
        head, _, payload = got.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200") or head.startswith(b"HTTP/1.0 200"),
              "status line %r" % head[:40])
        events = sse_events(payload)
        check(events[-1] == "[DONE]", "stream ends with %r" % events[-1])
        usage = json.loads(events[-2])["usage"]
        finish = [json.loads(e)["choices"][0]["finish_reason"] for e in events[:-2]]
        check(finish[-1] in ("stop", "length") and not any(finish[:-1]), "finish %r" % finish)
        check(finish[-1] == "stop" or usage["completion_tokens"] == N, "usage %r" % usage)
        status, _, data = queued["r"]
        check(status == 200, "queued request: %d %r" % (status, data[:200]))
        c = json.loads(data)
        check(c["choices"][0]["finish_reason"] == "stop" or c["usage"]["completion_tokens"] == N,
              "queued request usage %r" % c["usage"])

        status = s.proc.wait(60)
        check(status == 0, "exit status %d after SIGTERM\n%s" % (status, s.stderr()))
        check("draining" in s.stderr(), "no drain message")
        print("drained: %d + %d tokens after SIGTERM, exit 0" % (usage["completion_tokens"],
                                                                 c["usage"]["completion_tokens"]))
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
