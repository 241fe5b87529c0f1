#!/usr/bin/env python3
"""Per-sample load of coco-val-tiny as a 3x640x640 float32 model input, in a Python loop, side
by side in one run:

  zerodet_dataset      zerodet.Dataset[i]: (read-only view into the store, target dict)
  zerodet_store_get    zerodet.Store.get(id).array() as float32 3x640x640: the bare get of the
                       same object (store objects of samples carry no dtype: view + reshape)
  opencv_jpeg          cv2.imread + letterbox (Ultralytics' LetterBox) + HWC->CHW + /255 in Python
  npy_tmpfs            numpy.load of a preprocessed .npy on tmpfs (/dev/shm): a copy
  npy_tmpfs_mmap       numpy.load(mmap_mode='r') of the same: a view
  lmdb                 LMDB get on tmpfs, numpy.frombuffer over the returned buffer (buffers=True:
                       a view into LMDB's map, the classic way training jobs store such data)

Each is measured as `get` (the call alone; views are lazy) and `get+touch` (plus reading one
float per 4 KiB page, so every page of the sample is really mapped and read). Prints one JSON
object: microseconds per sample (p50, mean) and each method's ratio to zerodet_dataset.

  PYTHONPATH=build/python python3 bench/python/dataset_bench.py [--passes 20]

Starts its own `zerodet store` (build/zerodet) on a temporary socket and preloads the dataset;
needs python3-opencv, python3-lmdb and python3-numpy.
"""

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "build" / "python"))

import zerodet  # noqa: E402

SIZE = 640
PAGE_FLOATS = 4096 // 4


def letterbox_opencv(cv2, path):
    """What Ultralytics' LetterBox + the usual preprocessing do, in Python with OpenCV."""
    image = cv2.imread(str(path))
    h, w = image.shape[:2]
    r = min(SIZE / h, SIZE / w)
    new_w, new_h = int(round(w * r)), int(round(h * r))
    dw, dh = (SIZE - new_w) / 2, (SIZE - new_h) / 2
    if (w, h) != (new_w, new_h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT,
                               value=(114, 114, 114))
    chw = image[:, :, ::-1].transpose(2, 0, 1)
    return numpy.ascontiguousarray(chw, dtype=numpy.float32) / numpy.float32(255.0)


def touch(array):
    """Reads one float per 4 KiB page (every page of the sample gets mapped and read)."""
    return float(array.reshape(-1)[::PAGE_FLOATS].sum())


def measure(load, count, passes, touch_pages):
    """Per-call microseconds of load(i) over `passes` passes of every index."""
    times = []
    for _ in range(passes):
        for i in range(count):
            start = time.perf_counter_ns()
            value = load(i)
            if touch_pages:
                touch(value)
            times.append(time.perf_counter_ns() - start)
            del value
    return {"p50": round(statistics.median(times) / 1000, 3),
            "mean": round(statistics.fmean(times) / 1000, 3), "calls": len(times)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--binary", default=str(ROOT / "build" / "zerodet"))
    parser.add_argument("--coco", default=str(ROOT.parent / "shared" / "coco-val-tiny" /
                                              "instances_val2017.json"))
    parser.add_argument("--passes", type=int, default=20, help="passes of the fast methods")
    parser.add_argument("--jpeg-passes", type=int, default=1, help="passes of the JPEG path")
    args = parser.parse_args()

    import cv2
    import lmdb

    cv2.setNumThreads(1)  # a data-loader worker decodes on one core
    work = pathlib.Path(tempfile.mkdtemp(prefix="zerodet-pybench-", dir="/dev/shm"))
    socket = str(work / "store.sock")
    store_process = subprocess.Popen([args.binary, "store", "--socket", socket, "--capacity",
                                      "1G"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                zerodet.Store(socket).close()
                break
            except ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
        subprocess.run([args.binary, "preload", "--socket", socket, "--name", "bench", "--as",
                        f"letterbox:{SIZE}", args.coco], check=True, capture_output=True)
        ds = zerodet.Dataset(socket, "bench", annotations=False)
        ds_annotated = zerodet.Dataset(socket, "bench")
        count = len(ds)
        paths = [ds.info(i)["path"] for i in range(count)]
        names = [ds.info(i)["name"] for i in range(count)]
        store = zerodet.Store(socket, readonly=True)
        ids = [zerodet.ObjectId.from_name(f"zerodet-dataset:bench:letterbox{SIZE}:{n}")
               for n in names]

        # The same samples as .npy files and in LMDB, on tmpfs (written from the store's bytes,
        # so every method returns identical arrays).
        npy_paths = []
        env = lmdb.open(str(work / "lmdb"), map_size=2 << 30, readahead=False, lock=False)
        with env.begin(write=True) as txn:
            for i in range(count):
                array = ds[i][0]
                npy_paths.append(work / f"{i}.npy")
                numpy.save(npy_paths[-1], array)
                txn.put(str(i).encode(), array.tobytes())
        txn = env.begin(buffers=True)

        def lmdb_get(i):
            return numpy.frombuffer(txn.get(str(i).encode()), numpy.float32).reshape(3, SIZE, SIZE)

        methods = {
            "zerodet_dataset": lambda i: ds[i][0],
            "zerodet_dataset_with_annotations": lambda i: ds_annotated[i][0],
            "zerodet_store_get": lambda i: store.get(ids[i]).array().view(numpy.float32)
                                              .reshape(3, SIZE, SIZE),
            "npy_tmpfs": lambda i: numpy.load(npy_paths[i]),
            "npy_tmpfs_mmap": lambda i: numpy.load(npy_paths[i], mmap_mode="r"),
            "lmdb": lmdb_get,
            "opencv_jpeg": lambda i: letterbox_opencv(cv2, paths[i]),
        }
        # Same values everywhere (OpenCV's resize differs from zerodet's by rounding only).
        check = {name: float(numpy.abs(load(3) - ds[3][0]).max()) for name, load in methods.items()}

        results = {"get": {}, "get+touch": {}}
        for name, load in methods.items():
            passes = args.jpeg_passes if name == "opencv_jpeg" else args.passes
            for mode, touch_pages in (("get", False), ("get+touch", True)):
                results[mode][name] = measure(load, count, passes, touch_pages)
        ratios = {mode: {name: round(r["p50"] / values["zerodet_dataset"]["p50"], 2)
                         for name, r in values.items()}
                  for mode, values in results.items()}
        print(json.dumps({
            "samples": count, "sample": f"3x{SIZE}x{SIZE} float32 "
                                        f"({3 * SIZE * SIZE * 4 / 1e6:.1f} MB)",
            "python": sys.version.split()[0], "numpy": numpy.__version__,
            "opencv": cv2.__version__, "lmdb": lmdb.version(),
            "per_sample_us": results,
            "ratio_to_zerodet_dataset_p50": ratios,
            "max_abs_difference_to_zerodet_sample": check,
        }, indent=1))
        txn.abort()
        env.close()
        store.close()
    finally:
        store_process.terminate()
        store_process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
