"""SIGTERM drains `nvinfer serve`: a stream in flight runs to its end ([DONE], every token), a
request arriving meanwhile gets 503, /health says "draining", and the process exits 0."""
import json
import signal
import socket
import sys
import threading
import time

from serve_common import HOST, Server, args, check, sse_events

N = 48


def main():
    nvinfer, model = args()
    with Server(nvinfer, model) as s:
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
        s.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)

        # While draining: new work is refused, health says so.
        status, _, data = s.request("POST", "/v1/completions",
                                    {"prompt": "Hi", "max_tokens": 2})
        check(status == 503, "request while draining: %d %r" % (status, data))
        check(json.loads(data)["error"]["code"] == "shutting_down", "503 body %r" % data)
        status, _, data = s.request("GET", "/health")
        check(status == 503 and json.loads(data)["status"] == "draining", "health %r" % data)

        # The stream in flight completes.
        def rest():
            nonlocal got
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                got += chunk
        t = threading.Thread(target=rest)
        t.start()
        t.join(120)
        check(not t.is_alive(), "stream did not finish")
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
        status = s.proc.wait(60)
        check(status == 0, "exit status %d after SIGTERM\n%s" % (status, s.stderr()))
        check("draining" in s.stderr(), "no drain message")
        print("drained: %d tokens streamed after SIGTERM, exit 0" % usage["completion_tokens"])
    print("ok")


if __name__ == "__main__":
    sys.exit(main())
