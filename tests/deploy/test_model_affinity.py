"""Model-affine routing through a stock proxy, on loopback: three `zerodet serve` replicas with a
budget of two models each behind nginx (Debian's), configured by deploy/nginx/render.sh from the
same template the Kubernetes ConfigMap uses.

A mixed stream of /v1/detect requests (a real model and real images from ../shared) over six
models goes through nginx: every request succeeds and each model is loaded on exactly one
replica (each replica's repository index and load counter say so), six loads in all. Then one
replica is SIGKILLed: the requests keep succeeding (nginx retries the next replica on the ring)
and its models load on the survivors. Fleet memory is compared with replicas that each load
all six models.

The six names are picked among 36 candidates so that the ring gives each replica two
(consistent hashing spreads a handful of keys unevenly, and the replicas' ports differ per run; a fleet sized exactly N x B needs a
balanced ring or headroom in the budget, see the README).

Run through CTest (deploy.model_affinity) or by hand:
  ZERODET_BINARY=build/zerodet python3 -m pytest tests/deploy
"""

import json
import os
import pathlib
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("ZERODET_BINARY", ROOT / "build" / "zerodet"))
SHARED = pathlib.Path(os.environ.get("ZERODET_SHARED_DIR", ROOT.parent / "shared")).resolve()
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
BUDGET = 2
REPLICAS = 3
MODELS = 6
CANDIDATES = 36  # a replica gets fewer than 2 of them with a probability under 1e-4


def http(method, url, body=None, timeout=60):
    """(status, headers, body bytes) of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, data=body, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def metric(text, name):
    """Sum of the samples of `name` in a Prometheus text exposition."""
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


class Replica:
    """A `zerodet serve` child on a free loopback port."""

    def __init__(self, repo, budget):
        self.process = subprocess.Popen(
            [str(BINARY), "serve", "--repo", str(repo), "--http", "127.0.0.1:0", "--grpc", "off",
             "--max-models", str(budget), "--threads", "1", "--request-threads", "4"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        line = self.process.stdout.readline()
        assert line, "zerodet serve exited before listening"
        self.port = json.loads(line)["http_port"]
        self.url = f"http://127.0.0.1:{self.port}"

    def ready_models(self):
        status, _, body = http("POST", self.url + "/v2/repository/index", b"{}")
        assert status == 200
        return sorted(e["name"] for e in json.loads(body) if e["state"] == "READY")

    def metrics(self):
        return http("GET", self.url + "/metrics")[2].decode()

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=30)


@pytest.fixture
def fleet():
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is not built")
    if not os.path.exists(NGINX):
        pytest.skip("nginx is not installed (apt install nginx)")
    work = pathlib.Path(tempfile.mkdtemp(prefix="zerodet-affinity-"))
    repo = work / "repo"
    model = SHARED / "models" / "yolo11n-320.onnx"
    first = None
    for i in range(CANDIDATES):
        version = repo / f"m{i:02d}" / "1"
        version.mkdir(parents=True)
        if first is None:
            first = version / "model.onnx"
            shutil.copyfile(model, first)
            old = time.time() - 3600
            os.utime(first, (old, old))  # stable at once for the repository scan
        else:
            os.link(first, version / "model.onnx")
    replicas = [Replica(repo, BUDGET) for _ in range(REPLICAS)]

    # nginx in the foreground, its files under `work`, the rendered template included.
    rendered = subprocess.run(
        [str(ROOT / "deploy" / "nginx" / "render.sh"), "127.0.0.1:0"] +
        [f"127.0.0.1:{r.port}" for r in replicas],
        check=True, capture_output=True, text=True).stdout
    port = free_port()
    (work / "zerodet.conf").write_text(rendered.replace("listen 127.0.0.1:0;",
                                                        f"listen 127.0.0.1:{port};"))
    (work / "nginx.conf").write_text(f"""
worker_processes 1;
error_log {work}/error.log;
pid {work}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {work}/body;
  proxy_temp_path {work}/proxy;
  fastcgi_temp_path {work}/fastcgi;
  uwsgi_temp_path {work}/uwsgi;
  scgi_temp_path {work}/scgi;
  include {work}/zerodet.conf;
}}
""")
    nginx = subprocess.Popen([NGINX, "-p", str(work), "-c", str(work / "nginx.conf"),
                              "-g", "daemon off;"], stderr=subprocess.PIPE)
    proxy = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 10
    while True:
        try:
            if http("GET", proxy + "/v2/health/live", timeout=2)[0] == 200:
                break
        except OSError:
            pass
        assert time.monotonic() < deadline, "nginx did not start: " + \
            (work / "error.log").read_text(errors="replace")
        time.sleep(0.05)
    yield proxy, replicas, repo
    nginx.terminate()
    nginx.wait(timeout=10)
    for replica in replicas:
        replica.stop()
    shutil.rmtree(work, ignore_errors=True)


def free_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stream(proxy, names, images, requests, threads=4):
    """Posts `requests` detections over `names` (shuffled) through the proxy; returns the
    (status, upstream) of each."""
    order = [names[i % len(names)] for i in range(requests)]
    random.Random(7).shuffle(order)
    results = []
    lock = threading.Lock()

    def worker(chunk):
        for i, name in chunk:
            status, headers, body = http(
                "POST", f"{proxy}/v1/detect?model={name}", images[i % len(images)])
            ok = status == 200 and json.loads(body)["model"] == name
            with lock:
                results.append((status if ok else -status, headers.get("X-Zerodet-Upstream")))

    chunks = [list(enumerate(order))[k::threads] for k in range(threads)]
    workers = [threading.Thread(target=worker, args=(c,)) for c in chunks]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return results


def test_each_model_lives_on_one_replica_and_survives_a_replica_dying(fleet):
    proxy, replicas, repo = fleet
    by_port = {f"127.0.0.1:{r.port}": r for r in replicas}
    # Where the ring puts each candidate (readiness answers without loading anything).
    placement = {}
    for name in sorted(p.name for p in repo.iterdir()):
        status, headers, _ = http("GET", f"{proxy}/v2/models/{name}/ready")
        assert status == 400, (name, status)  # known, not loaded
        placement[name] = headers.get("X-Zerodet-Upstream")
    chosen = []
    for replica in replicas:
        mine = [n for n, up in placement.items() if up == f"127.0.0.1:{replica.port}"]
        assert len(mine) >= BUDGET, f"the ring gave a replica {len(mine)} of {CANDIDATES} names"
        chosen += mine[:BUDGET]
    assert len(chosen) == MODELS
    images = [(SHARED / "images" / n).read_bytes()
              for n in ("bus.jpg", "dog.jpg", "zidane.jpg", "kite.jpg")]

    results = stream(proxy, chosen, images, requests=60)
    assert all(status == 200 for status, _ in results), results
    loads = 0
    for replica in replicas:
        expected = sorted(n for n in chosen if placement[n] == f"127.0.0.1:{replica.port}")
        assert replica.ready_models() == expected
        loads += metric(replica.metrics(), "zerodet_model_loads_total")
    assert loads == MODELS
    fleet_rss = sum(metric(r.metrics(), "zerodet_process_resident_memory_bytes") for r in replicas)

    # A replica dies: nginx retries the next one on the ring; its models load there.
    victim = replicas[0]
    victim_models = victim.ready_models()
    victim.stop(signal.SIGKILL)
    results = stream(proxy, chosen, images, requests=60)
    failed = [r for r in results if r[0] != 200]
    assert not failed, failed
    assert all(upstream and f":{victim.port}" not in upstream.split(", ")[-1]
               for _, upstream in results)
    survivors = replicas[1:]
    moved_loads = sum(metric(r.metrics(), "zerodet_model_loads_total") for r in survivors)
    assert moved_loads > loads - BUDGET  # the victim's models were loaded by the survivors
    served_after = set()
    for _, upstream in results:
        served_after.add(upstream.split(", ")[-1])
    assert served_after <= {f"127.0.0.1:{r.port}" for r in survivors}
    for name in victim_models:
        status, headers, _ = http("POST", f"{proxy}/v1/detect?model={name}", images[0])
        assert status == 200 and headers.get("X-Zerodet-Upstream").split(", ")[-1] in by_port

    # The same six models on replicas that each hold them all.
    everything = Replica(repo, MODELS)
    try:
        for name in chosen:
            assert http("POST", f"{everything.url}/v1/detect?model={name}", images[0])[0] == 200
        all_rss = metric(everything.metrics(), "zerodet_process_resident_memory_bytes")
    finally:
        everything.stop()
    report = {"fleet_rss_mib_affine": round(fleet_rss / 2**20, 1),
              "fleet_rss_mib_all_models_everywhere": round(REPLICAS * all_rss / 2**20, 1),
              "loads_affine": loads, "loads_all_everywhere": REPLICAS * MODELS}
    print("zerodet-affinity:", json.dumps(report))
    assert fleet_rss < REPLICAS * all_rss
