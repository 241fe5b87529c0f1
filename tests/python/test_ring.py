"""Frame rings from Python: a Python writer and readers, and reading the rings of a running C++
pipeline (its image-folder ingest and its results ring)."""

import gc
import hashlib
import json
import os
import signal
import subprocess
import threading
import uuid

import numpy
import pytest

import zerodet
from conftest import BINARY, SHARED, wait_for


def ring_name(tag):
    return f"zdpy-{tag}-{uuid.uuid4().hex[:8]}"


def test_python_writer_to_python_readers():
    name = ring_name("basic")
    frames = [numpy.full((48, 64, 3), i, numpy.uint8) for i in range(5)]
    with zerodet.RingWriter(name, width=64, height=48, slots=8) as writer:
        with zerodet.RingReader(name, group="g") as reader:
            for i, frame in enumerate(frames):
                frame[0, 0] = (i, 255 - i, 7)
                assert writer.write(frame, timestamp_ns=1000 + i) == i + 1
            for i in range(5):
                with reader.read(timeout=5) as got:
                    array = got.array()
                    assert (got.sequence, got.timestamp_ns, got.pixel_format) == (i + 1, 1000 + i,
                                                                                  "rgb")
                    assert array.shape == (48, 64, 3) and not array.flags.writeable
                    assert numpy.array_equal(array, frames[i])
                    del array
            with pytest.raises(TimeoutError):
                reader.read(timeout=0.05)
    # The writer closed the ring: reads end.
    assert name not in zerodet.list_rings()


def test_a_held_frame_keeps_its_slot_and_release_gives_it_back():
    name = ring_name("lease")
    with zerodet.RingWriter(name, width=8, height=8, slots=2, policy="drop_newest") as writer:
        reader = zerodet.RingReader(name, mode="broadcast")
        image = numpy.zeros((8, 8, 3), numpy.uint8)
        assert writer.write(image) == 1 and writer.write(image) == 2
        first, second = reader.read(timeout=5), reader.read(timeout=5)
        array = first.array()
        assert writer.write(image) is None  # both slots held: dropped
        with pytest.raises(BufferError):
            first.release()  # an array still points into the slot
        del array
        first.release()
        assert writer.write(image) == 3
        del second
        gc.collect()
        assert writer.write(image) is not None
        assert writer.stats()["frames_dropped"] == 1
        # Frames outlive reader.close(): the reader detaches after the last one.
        third = reader.read(timeout=5)
        reader.close()
        assert third.array().shape == (8, 8, 3)
        with pytest.raises(zerodet.ClosedError):
            reader.read(timeout=0)
        del third


def test_read_waits_without_holding_the_gil_and_iteration_ends_with_the_ring():
    name = ring_name("wait")
    writer = zerodet.RingWriter(name, width=4, height=4, pixel_format="gray")
    reader = zerodet.RingReader(name)
    seen = []

    def consume():
        for frame in reader:
            seen.append(int(frame.array()[0, 0]))

    thread = threading.Thread(target=consume)
    thread.start()
    # The reader thread waits inside the C++ read; were the GIL held there, these writes (and
    # this thread) would not run until the read gave up.
    for value in range(10):
        writer.write(numpy.full((4, 4), value, numpy.uint8))
        assert wait_for(lambda: len(seen) > value)
    writer.close()
    thread.join()
    assert seen == list(range(10))


def test_writer_errors_and_hostile_frames():
    name = ring_name("errors")
    with zerodet.RingWriter(name, width=16, height=16, max_readers=1) as writer:
        with pytest.raises(zerodet.AlreadyExistsError):
            zerodet.RingWriter(name, width=16, height=16)
        with pytest.raises(ValueError):
            writer.write(numpy.zeros((16, 16, 3), numpy.float32))
        with pytest.raises(ValueError):
            writer.write(numpy.zeros((16, 16, 4), numpy.uint8))
        with pytest.raises(ValueError):
            writer.write(numpy.zeros((16, 48, 3), numpy.uint8)[:, ::3])  # strided pixels
        with pytest.raises(zerodet.InvalidArgumentError):
            writer.write(numpy.zeros((32, 32, 3), numpy.uint8))  # larger than a slot
        assert writer.write(numpy.zeros((32, 48, 3), numpy.uint8)[:16, :16]) == 1  # a crop
        reader = zerodet.RingReader(name)
        with pytest.raises(zerodet.ResourceExhaustedError):
            zerodet.RingReader(name)
        reader.close()
    with pytest.raises(KeyError):
        zerodet.RingReader(ring_name("missing"))
    with pytest.raises(ValueError):
        zerodet.RingReader("bad/name")
    with pytest.raises(ValueError):
        zerodet.RingWriter(ring_name("x"), width=4, height=4, policy="sometimes")


def test_a_forked_child_does_not_close_the_parents_ring():
    name = ring_name("fork")
    with zerodet.RingWriter(name, width=4, height=4, pixel_format="gray") as writer:
        reader = zerodet.RingReader(name, mode="broadcast")
        writer.write(numpy.zeros((4, 4), numpy.uint8))
        held = reader.read(timeout=5)
        pid = os.fork()
        if pid == 0:
            # Destroying the inherited writer, reader and frame here must not close the ring,
            # detach the reader or release the parent's slot.
            code = 0
            try:
                writer.write(numpy.zeros((4, 4), numpy.uint8))
                code = 3
            except zerodet.ForkError:
                pass
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        assert writer.write(numpy.ones((4, 4), numpy.uint8)) == 2
        assert reader.read(timeout=5).array()[0, 0] == 1
        assert reader.stats()["readers_attached"] == 1 and not held.released


def _decoded_shared_images():
    cv2 = pytest.importorskip("cv2")
    digests = {}
    for path in sorted((SHARED / "images").glob("*.jpg")):
        rgb = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        digests[hashlib.sha256(rgb.tobytes()).hexdigest()] = path.name
    return digests


def test_reading_a_cpp_pipelines_rings(tmp_path):
    results_ring = ring_name("results")
    config = tmp_path / "pipeline.yaml"
    config.write_text(f"""
sources:
  - name: photos
    type: images
    path: {SHARED / 'images'}
    fps: 20
    loop: true
    ring_slots: 8
models:
  - name: yolo11n
    path: {SHARED / 'models' / 'yolo11n-320.onnx'}
    workers: 1
    threads: 1
output:
  results: {tmp_path / 'results.jsonl'}
  results_ring: {results_ring}
""")
    pipeline = subprocess.Popen([str(BINARY), "pipeline", str(config)],
                                stdout=subprocess.DEVNULL, stderr=open(tmp_path / "log", "wb"))
    try:
        prefix = f"zp-{pipeline.pid}-"
        frame_ring = wait_for(lambda: next((n for n in zerodet.list_rings()
                                            if n.startswith(prefix) and n.endswith("photos")),
                                           None))
        assert frame_ring, (tmp_path / "log").read_text()
        expected = _decoded_shared_images()
        # The C++ ingest decodes each photo into the ring; Python sees exactly OpenCV's pixels.
        seen = set()
        with zerodet.RingReader(frame_ring, mode="broadcast") as frames:
            while len(seen) < 12:
                with frames.read(timeout=30) as frame:
                    array = frame.array()
                    assert frame.pixel_format == "rgb"
                    assert array.shape == (frame.height, frame.width, 3)
                    digest = hashlib.sha256(numpy.ascontiguousarray(array).tobytes()).hexdigest()
                    assert digest in expected, f"frame {frame.sequence} is no shared image"
                    del array
                    seen.add(frame.sequence)
        # Its results ring carries the JSON lines the pipeline writes.
        assert wait_for(lambda: results_ring in zerodet.list_rings())
        with zerodet.RingReader(results_ring, group="python-test") as results:
            line = json.loads(results.read(timeout=60).bytes())
            assert line["source"] == "photos" and line["model"] == "yolo11n"
            for detection in line["detections"]:
                assert list(detection) == ["class_id", "class", "score", "box"]
    finally:
        pipeline.send_signal(signal.SIGTERM)
        pipeline.wait(timeout=60)


def test_closing_a_reader_while_another_thread_reads_it():
    name = ring_name("close")
    writer = zerodet.RingWriter(name, width=2, height=2, pixel_format="gray")
    reader = zerodet.RingReader(name)
    seen = []

    def consume():
        try:
            for frame in reader:
                seen.append(int(frame.array()[0, 0]))
        except zerodet.ClosedError:
            seen.append("closed")

    thread = threading.Thread(target=consume)
    thread.start()
    writer.write(numpy.full((2, 2), 1, numpy.uint8))
    assert wait_for(lambda: seen == [1])
    reader.close()
    # The read in progress keeps the reader attached and still delivers; the next one finds
    # the reader closed.
    writer.write(numpy.full((2, 2), 2, numpy.uint8))
    thread.join()
    writer.close()
    assert seen == [1, 2, "closed"] and reader.closed
