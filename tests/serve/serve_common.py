"""Shared helpers for the `nvinfer serve` tests: start a server on a free loopback port, talk HTTP
to it, stop it. Everything is bounded: the server is killed when a test ends, however it ends."""
import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time

SKIP = 77
HOST = "127.0.0.1"


def fail(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def args():
    """argv: NVINFER MODEL. Exits 77 (skip) when the model has not been fetched."""
    if len(sys.argv) != 3:
        fail("usage: %s NVINFER MODEL.gguf" % sys.argv[0])
    nvinfer, model = sys.argv[1], sys.argv[2]
    if not os.path.exists(model):
        print("skip: %s not found (scripts/fetch-model.sh)" % model)
        sys.exit(SKIP)
    return nvinfer, model


class Server:
    """nvinfer serve on 127.0.0.1 and a port the kernel picks (--port 0)."""

    def __init__(self, nvinfer, model, *extra, ctx=512, start_timeout=60):
        self.cmd = [nvinfer, "serve", "-m", model, "--port", "0", "-c", str(ctx), "-v"]
        self.cmd += list(extra)
        self.start_timeout = start_timeout
        self.proc = None
        self.port = None
        self.log = tempfile.NamedTemporaryFile(prefix="nvl-serve-", suffix=".log", delete=False)

    def __enter__(self):
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.PIPE, stderr=self.log)
        deadline = time.monotonic() + self.start_timeout
        line = b""
        while time.monotonic() < deadline and b"\n" not in line:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                b = os.read(self.proc.stdout.fileno(), 4096)
                if not b:
                    break
                line += b
        m = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", line)
        if not m:
            self.kill()
            fail("server did not start: %r\n%s" % (line, self.stderr()))
        self.port = int(m.group(1))
        return self

    def __exit__(self, *exc):
        self.kill()
        os.unlink(self.log.name)
        return False

    def stderr(self):
        with open(self.log.name, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self, sig=signal.SIGTERM, timeout=60):
        """Sends sig and returns the exit status (fails the test if it does not exit)."""
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            fail("server did not exit within %d s of signal %d\n%s" % (timeout, sig,
                                                                       self.stderr()))

    def base(self):
        return "http://%s:%d" % (HOST, self.port)

    def request(self, method, path, body=None, headers=None, timeout=120):
        """One request on a fresh connection. body: dict (sent as JSON), str or bytes.
        Returns (status, headers dict with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            h = dict(headers or {})
            if isinstance(body, dict):
                body = json.dumps(body)
                h.setdefault("Content-Type", "application/json")
            if isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data
        finally:
            conn.close()

    def json(self, method, path, body=None, headers=None, expect=200, timeout=120):
        status, _, data = self.request(method, path, body, headers, timeout)
        check(status == expect, "%s %s: status %d, expected %d: %r" % (method, path, status,
                                                                        expect, data[:500]))
        return json.loads(data)

    def metrics(self, headers=None):
        status, _, data = self.request("GET", "/metrics", headers=headers)
        check(status == 200, "GET /metrics: %d" % status)
        out = {}
        for line in data.decode().splitlines():
            if line.startswith("#") or not line.strip():
                continue
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
        return out


def sse_events(data):
    """The `data:` payloads of a text/event-stream body, in order."""
    text = data.decode("utf-8")
    check(text.endswith("\n\n"), "SSE stream does not end with a blank line: %r" % text[-80:])
    events = []
    for block in text.split("\n\n"):
        if not block:
            continue
        check(block.startswith("data: "), "SSE event without data: %r" % block[:200])
        events.append(block[len("data: "):])
    return events
