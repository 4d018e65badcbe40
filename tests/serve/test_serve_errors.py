"""Refusals of `nvinfer serve`: wrong or missing API key (401, before any model work), bodies over
--max-body (413, with and without Content-Length), malformed JSON and bad fields (400 with an
error message in the API's format), unknown paths (404), wrong methods (405), prompts longer than
the context. After all of it the server still answers."""
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile

import openai

from serve_common import HOST, Server, args, check, fail

KEY = "sk-test_0123456789+/=AbCdEf"
MAX_BODY = 4096


def openai_error(data, status):
    body = json.loads(data)
    e = body.get("error")
    check(isinstance(e, dict) and isinstance(e.get("message"), str) and e["message"],
          "status %d without an OpenAI error object: %r" % (status, data))
    return e


def bad_command_lines(nvinfer, model, keyfile_dir):
    """Options the server refuses before it listens: exit status 2 and a message."""
    empty = os.path.join(keyfile_dir, "empty.key")
    open(empty, "w").close()
    for argv, word in ((["--queue", "x"], "--queue"), (["--port", "70000"], "--port"),
                       (["--parallel", "0"], "--parallel"), (["--max-body", "1"], "--max-body"),
                       (["--api-key-file", empty], "empty"),
                       (["--api-key-file", empty + ".none"], "cannot open"),
                       (["-p", "hi"], "not server options"), (["--port"], "needs a value")):
        r = subprocess.run([nvinfer, "serve", "-m", model, *argv], capture_output=True,
                           text=True, timeout=60)
        check(r.returncode == 2 and word in r.stderr, "serve %r: %d %r" % (argv, r.returncode,
                                                                           r.stderr))
    r = subprocess.run([nvinfer, "serve", "--help"], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "--api-key-file" in r.stdout, "serve --help")


def main():
    nvinfer, model = args()
    with tempfile.TemporaryDirectory() as d:
        bad_command_lines(nvinfer, model, d)
    with tempfile.NamedTemporaryFile("w", suffix=".key", delete=False) as f:
        f.write(KEY + "\n")
        keyfile = f.name
    os.chmod(keyfile, 0o600)
    auth = {"Authorization": "Bearer " + KEY}
    try:
        with Server(nvinfer, model, "--api-key-file", keyfile, "--max-body",
                    str(MAX_BODY)) as s:
            run(s, auth)
            check(s.stop() == 0, "exit status")
    finally:
        os.unlink(keyfile)
    print("ok")


def chat(content="Hi", **kw):
    body = {"model": "m", "messages": [{"role": "user", "content": content}], "max_tokens": 4}
    body.update(kw)
    return body


def run(s, auth):
    # /health needs no key; everything else does.
    check(s.json("GET", "/health") == {"status": "ok"}, "health")
    m0 = s.metrics(auth)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic " + KEY},
                    {"Authorization": "Bearer " + KEY[:-1]},
                    {"Authorization": "Bearer " + KEY + "x"}):
        for method, path, body in (("GET", "/v1/models", None), ("GET", "/metrics", None),
                                   ("POST", "/v1/chat/completions", chat()),
                                   ("POST", "/api/generate", {"prompt": "Hi"})):
            status, hdrs, data = s.request(method, path, body, headers)
            check(status == 401, "%s %s with %r: %d" % (method, path, headers, status))
            check(hdrs.get("www-authenticate") == "Bearer", "no WWW-Authenticate")
    m1 = s.metrics(auth)
    for k in ("nvl_serve_tokens_generated_total", "nvl_serve_prompt_tokens_total",
              "nvl_serve_jobs_completed_total"):
        check(m1[k] == m0[k], "%s moved on refused requests: %r -> %r" % (k, m0[k], m1[k]))
    check(m1['nvl_serve_responses_total{code="401"}'] == 20, "401 count")

    client = openai.OpenAI(base_url=s.base() + "/v1", api_key="wrong", max_retries=0, timeout=60)
    try:
        client.models.list()
        fail("wrong key accepted")
    except openai.AuthenticationError:
        pass
    client = openai.OpenAI(base_url=s.base() + "/v1", api_key=KEY, max_retries=0, timeout=60)
    check(len(client.models.list().data) == 1, "models with the key")

    # Bodies over --max-body: refused on Content-Length before the body is read, and when a
    # chunked body grows past the limit.
    big = json.dumps(chat("x" * MAX_BODY))
    status, _, data = s.request("POST", "/v1/chat/completions", big, auth)
    check(status == 413, "oversized body: %d" % status)
    check(openai_error(data, 413)["code"] == "body_too_large", "413 code")
    conn = http.client.HTTPConnection(HOST, s.port, timeout=60)
    conn.request("POST", "/v1/chat/completions", body=iter([big[i:i + 1000].encode()
                                                            for i in range(0, len(big), 1000)]),
                 headers=dict(auth, **{"Transfer-Encoding": "chunked"}), encode_chunked=True)
    r = conn.getresponse()
    check(r.status == 413, "oversized chunked body: %d" % r.status)
    openai_error(r.read(), 413)
    conn.close()
    status, _, data = s.request("POST", "/v1/chat/completions",
                                json.dumps(chat("x" * (MAX_BODY - 200))), auth)
    check(status != 413, "a body under the limit got 413")

    # Malformed JSON and bad fields: 400 with a message naming the problem.
    bad = [
        ("/v1/chat/completions", '{"model": "m", "messages": [', "JSON"),
        ("/v1/chat/completions", "", "body"),
        ("/v1/chat/completions", "[1, 2]", "object"),
        ("/v1/chat/completions", '"text"', "object"),
        ("/v1/chat/completions", {"model": "m"}, "messages"),
        ("/v1/chat/completions", chat(temperature="hot"), "temperature"),
        ("/v1/chat/completions", chat(temperature=7), "temperature"),
        ("/v1/chat/completions", chat(top_p=1.5), "top_p"),
        ("/v1/chat/completions", chat(max_tokens=0), "max_tokens"),
        ("/v1/chat/completions", chat(max_tokens=2.5), "max_tokens"),
        ("/v1/chat/completions", chat(stop=5), "stop"),
        ("/v1/chat/completions", chat(stop=["a", 1]), "stop"),
        ("/v1/chat/completions", chat(stop=["s"] * 17), "stop"),
        ("/v1/chat/completions", chat(stream="yes"), "stream"),
        ("/v1/chat/completions", chat(seed="x"), "seed"),
        ("/v1/chat/completions", chat(n=2), "'n'"),
        ("/v1/chat/completions", {"messages": "hi"}, "messages"),
        ("/v1/chat/completions", {"messages": [{"role": "wizard", "content": "x"}]}, "role"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": 5}]}, "content"),
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "x"}}]}]}, "text"),
        ("/v1/chat/completions", {"messages": [3]}, "messages[0]"),
        ("/v1/completions", {"model": "m"}, "prompt"),
        ("/v1/completions", {"prompt": 7}, "prompt"),
        ("/v1/completions", {"prompt": "a", "echo": True}, "echo"),
        ("/v1/completions", {"prompt": "x " * 600, "max_tokens": 4}, "context"),
    ]
    for path, body, word in bad:
        status, _, data = s.request("POST", path, body, auth)
        check(status == 400, "%s %r: %d %r" % (path, body, status, data[:200]))
        e = openai_error(data, 400)
        check(word.lower() in e["message"].lower(), "message %r lacks %r" % (e["message"], word))
        check(e["type"] == "invalid_request_error", "type %r" % e["type"])
    for body, word in ((b'{"prompt": "a", "options": 3}', "options"),
                       (b'{"prompt": "a", "options": {"num_predict": "x"}}', "num_predict"),
                       (b'{"prompt": "a", "format": "json"}', "format"),
                       (b'{"prompt": ', "JSON")):
        status, _, data = s.request("POST", "/api/generate", body, auth)
        check(status == 400, "/api/generate %r: %d" % (body, status))
        msg = json.loads(data)["error"]
        check(isinstance(msg, str) and word.lower() in msg.lower(), "ollama error %r" % msg)
    # Invalid UTF-8 in the body is not a crash either.
    status, _, data = s.request("POST", "/v1/completions",
                                b'{"prompt": "\xff\xfe", "max_tokens": 2}', auth)
    check(status in (200, 400), "invalid UTF-8: %d" % status)

    # Deep nesting is refused by the parser's depth limit, not by the stack.
    status, _, data = s.request("POST", "/v1/chat/completions", "[" * 3000, auth)
    check(status == 400, "deeply nested JSON: %d" % status)

    # Broken HTTP is libmicrohttpd's to refuse; the server must not notice.
    for raw in (b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
                b"POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"pro",
                b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 100000 + b"\r\n\r\n",
                b"POST /v1/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"):
        c = socket.create_connection((HOST, s.port), timeout=30)
        try:
            c.sendall(raw)
            c.shutdown(socket.SHUT_WR)
            while c.recv(65536):
                pass
        except OSError:
            pass  # a reset is a fine answer to garbage
        finally:
            c.close()

    status, _, data = s.request("GET", "/v1/nothing", None, auth)
    check(status == 404, "404: %d" % status)
    openai_error(data, 404)
    status, _, data = s.request("GET", "/v1/chat/completions", None, auth)
    check(status == 405, "405: %d" % status)
    status, _, data = s.request("GET", "/v1/models/other-model", None, auth)
    check(status == 404, "unknown model: %d" % status)

    # Still healthy and still generating.
    check(s.json("GET", "/health") == {"status": "ok"}, "health after")
    r = s.json("POST", "/v1/chat/completions", chat(), auth)
    check(r["choices"][0]["message"]["content"] is not None, "generation after the errors")
    m = s.metrics(auth)
    check(m["nvl_serve_requests_active"] == 0 and m["nvl_serve_queue_depth"] == 0, "idle")


if __name__ == "__main__":
    sys.exit(main())
