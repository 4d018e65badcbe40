"""`nvinfer serve --sim IMAGE`: the server loads a model from a drive image (written with
`nvload-setup write --sim`, read back through the software NVMe controller) by the CLI's loading
code, says so in /metrics, and generates the same greedy text as when serving the GGUF file."""
import os
import subprocess
import sys
import tempfile

from serve_common import Server, check

REQ = {"model": "m", "prompt": "Once upon a time", "max_tokens": 8, "temperature": 0}


def main():
    if len(sys.argv) != 4:
        print("usage: %s NVINFER MODEL.gguf NVLOAD-SETUP" % sys.argv[0], file=sys.stderr)
        return 1
    nvinfer, model, setup = sys.argv[1:]
    if not os.path.exists(model):
        print("skip: %s not found (scripts/fetch-model.sh)" % model)
        return 77
    with Server(nvinfer, model) as s:
        want = s.json("POST", "/v1/completions", REQ)["choices"][0]["text"]
        check(s.stop() == 0, "exit status")
    with tempfile.TemporaryDirectory() as d:
        image = os.path.join(d, "drive.img")
        with open(image, "wb") as f:
            f.truncate(os.path.getsize(model) + (64 << 20))
        r = subprocess.run([setup, "write", "--yes", "--sim", image, model], capture_output=True,
                           text=True, timeout=300)
        check(r.returncode == 0, "nvload-setup write: %s" % r.stderr)
        s = Server(nvinfer, model)
        s.cmd = [nvinfer, "serve", "--sim", image, "--port", "0", "-c", "512", "-v"]
        with s:
            m = s.metrics()
            backend = [k for k in m if k.startswith("nvl_serve_backend_info{")]
            check(len(backend) == 1 and 'data_path="ram",source="sim"' in backend[0],
                  "backend gauge %r" % backend)
            models = s.json("GET", "/v1/models")["data"]
            check(len(models) == 1, "models %r" % models)
            got = s.json("POST", "/v1/completions", REQ)["choices"][0]["text"]
            check(got == want, "from the drive %r, from the file %r" % (got, want))
            check(s.stop() == 0, "exit status")
            print("drive: %s, %r" % (models[0]["id"], got))
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
