"""Fixtures of the zerodet Python tests: the built zerodet executable, the shared test data, and
real `zerodet store` processes on temporary sockets.

Run through CTest (python.pytest, which sets PYTHONPATH, ZERODET_BINARY and ZERODET_SHARED_DIR),
or by hand: PYTHONPATH=build/python /usr/bin/python3 -m pytest tests/python
"""

import os
import pathlib
import signal
import subprocess
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BINARY = pathlib.Path(os.environ.get("ZERODET_BINARY", ROOT / "build" / "zerodet"))
SHARED = pathlib.Path(os.environ.get("ZERODET_SHARED_DIR", ROOT.parent / "shared")).resolve()
if "zerodet" not in sys.modules and not os.environ.get("PYTHONPATH"):
    sys.path.insert(0, str(ROOT / "build" / "python"))

import zerodet  # noqa: E402


def wait_for(condition, timeout=30.0, interval=0.01):
    """Polls `condition` until it returns something true (returned) or `timeout` passes (the
    last value, false). For conditions another process makes true; never a fixed sleep."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


class StoreProcess:
    """A `zerodet store` child on `socket`; stop() ends it (SIGTERM, then SIGKILL)."""

    def __init__(self, socket, capacity="256M", extra=()):
        self.socket = str(socket)
        self.log = open(str(socket) + ".log", "wb")
        self.process = subprocess.Popen(
            [str(BINARY), "store", "--socket", self.socket, "--capacity", capacity, *extra],
            stdout=self.log, stderr=subprocess.STDOUT)
        if not wait_for(self._ready):
            self.stop()
            raise RuntimeError(f"zerodet store did not start: {open(self.log.name).read()}")

    def _ready(self):
        if self.process.poll() is not None:
            raise RuntimeError(f"zerodet store exited: {open(self.log.name).read()}")
        try:
            zerodet.Store(self.socket, readonly=True).close()
            return True
        except ConnectionError:
            return False

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


@pytest.fixture
def store_process(tmp_path):
    """A fresh 256 MiB store for one test."""
    process = StoreProcess(tmp_path / "store.sock")
    yield process
    process.stop()


@pytest.fixture
def store(store_process):
    with zerodet.Store(store_process.socket) as client:
        yield client


@pytest.fixture(scope="session")
def coco_store(tmp_path_factory):
    """One store for the session with coco-val-tiny preloaded as dataset 'val' (letterbox:640,
    80 samples, 375 MiB) and 'val-rgb' (rgb)."""
    directory = tmp_path_factory.mktemp("coco")
    process = StoreProcess(directory / "store.sock", capacity="1G")
    coco = SHARED / "coco-val-tiny" / "instances_val2017.json"
    for name, layout in (("val", "letterbox:640"), ("val-rgb", "rgb")):
        subprocess.run([str(BINARY), "preload", "--socket", process.socket, "--name", name,
                        "--as", layout, str(coco)], check=True, capture_output=True)
    yield process
    process.stop()


def zerodet_binary():
    return str(BINARY)


def shared_dir():
    return SHARED
