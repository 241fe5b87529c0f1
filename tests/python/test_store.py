"""zerodet.Store from Python against a real `zerodet store` process."""

import gc
import os
import signal
import subprocess
import sys
import textwrap

import numpy
import pytest

import zerodet
from conftest import StoreProcess, wait_for

DTYPES = [numpy.bool_, numpy.int8, numpy.int16, numpy.int32, numpy.int64, numpy.uint8,
          numpy.uint16, numpy.uint32, numpy.uint64, numpy.float16, numpy.float32, numpy.float64,
          numpy.complex64, numpy.complex128]


def sample_array(dtype, shape, seed):
    rng = numpy.random.default_rng(seed)
    values = rng.normal(scale=1000, size=shape)
    if numpy.dtype(dtype).kind == "c":
        return (values + 1j * rng.normal(size=shape)).astype(dtype)
    if numpy.dtype(dtype).kind == "b":
        return values > 0
    if numpy.dtype(dtype).kind in "iu":
        info = numpy.iinfo(dtype)
        return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: numpy.dtype(d).name)
def test_every_dtype_round_trips_through_another_connection(store_process, dtype):
    shapes = [(), (0,), (7,), (3, 5), (2, 3, 4, 5)]
    with zerodet.Store(store_process.socket) as writer:
        for i, shape in enumerate(shapes):
            writer.put(f"{numpy.dtype(dtype).name}-{i}", sample_array(dtype, shape, i))
    with zerodet.Store(store_process.socket, readonly=True) as reader:
        for i, shape in enumerate(shapes):
            expected = sample_array(dtype, shape, i)
            obj = reader.get(f"{numpy.dtype(dtype).name}-{i}")
            array = obj.array()
            assert array.dtype == expected.dtype
            assert array.shape == expected.shape
            assert obj.shape == expected.shape and obj.dtype == expected.dtype.str
            assert numpy.array_equal(array, expected)
            assert not array.flags.writeable
            with pytest.raises(ValueError):
                array.setflags(write=True)
            # The buffer protocol gives the same view.
            assert memoryview(obj).shape == expected.shape
            assert numpy.array_equal(numpy.asarray(obj), expected)


def test_bytes_and_metadata_round_trip(store):
    store.put("raw", b"\x00\x01hello", metadata=b"meta")
    obj = store.get("raw")
    assert obj.dtype == "|u1" and obj.shape == (7,)
    assert bytes(memoryview(obj)) == b"\x00\x01hello"
    assert obj.metadata == b"meta"
    store.put("array-with-meta", numpy.arange(4, dtype=numpy.int32), metadata=b"user")
    obj = store.get("array-with-meta")
    assert obj.metadata == b"user" and obj.dtype == "<i4"
    # Ids: a name, 20 raw bytes and an ObjectId name the same object.
    oid = zerodet.ObjectId.from_name("raw")
    assert store.get(oid.binary()).id == oid
    assert zerodet.ObjectId.from_hex(oid.hex()) == oid and "raw" in store


def test_the_view_is_the_shared_memory_itself(store):
    store.put("x", numpy.ones(1 << 20, numpy.uint8))
    first, second = store.get("x").array(), store.get("x").array()
    # Both point at the object in the mapped arena; a copy would live at a new address.
    assert first.ctypes.data == second.ctypes.data
    assert not first.flags.owndata and not first.flags.writeable


def test_arrays_outlive_their_store_object_and_connection(store_process):
    expected = numpy.arange(1000, dtype=numpy.float64)
    with zerodet.Store(store_process.socket) as writer:
        writer.put("outlive", expected)
    store = zerodet.Store(store_process.socket)
    array = store.get("outlive").array()  # the StoreObject itself is dropped at once
    store.close()
    del store
    gc.collect()
    assert numpy.array_equal(array, expected)
    with pytest.raises(zerodet.ClosedError):
        writer.get("outlive")
    # Even the store process going away leaves the mapping readable.
    store_process.kill()
    assert numpy.array_equal(array, expected)


def test_reference_is_held_until_the_last_array_is_gone(store):
    store.put("held", numpy.zeros(4096, numpy.uint8))
    obj = store.get("held")
    arrays = [obj.array(), numpy.asarray(obj), memoryview(obj)]
    with pytest.raises(BufferError):
        obj.release()
    del obj
    store.delete("held")  # deferred: the object is still referenced
    assert "held" not in store
    assert store.stats()["pending_deletes"] == 1
    for _ in range(len(arrays) - 1):
        arrays.pop()
        gc.collect()
        assert store.stats()["pending_deletes"] == 1
    arrays.pop()
    gc.collect()
    assert wait_for(lambda: store.stats()["pending_deletes"] == 0)
    assert store.stats()["objects"] == 0


def test_release_and_context_manager_drop_the_reference(store):
    store.put("ctx", b"abc")
    with store.get("ctx") as obj:
        assert bytes(obj.array()) == b"abc"  # the temporary array is gone again
    assert obj.released
    with pytest.raises(zerodet.ClosedError):
        obj.array()
    with pytest.raises(BufferError):
        memoryview(obj)
    store.delete("ctx")
    assert wait_for(lambda: store.stats()["objects"] == 0)


def test_sigkilled_python_reader_holding_arrays_is_reclaimed(store_process, tmp_path):
    with zerodet.Store(store_process.socket) as store:
        store.put("victim", numpy.arange(1 << 16, dtype=numpy.int32))
        reader = subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(f"""
                import sys, time, zerodet
                store = zerodet.Store({store_process.socket!r}, readonly=True)
                arrays = [store.get("victim").array() for _ in range(5)]
                assert int(arrays[0][-1]) == (1 << 16) - 1
                print("ready", flush=True)
                time.sleep(600)
            """)], stdout=subprocess.PIPE, env=dict(os.environ))
        assert reader.stdout.readline().strip() == b"ready"
        store.delete("victim")
        stats = store.stats()
        assert stats["pending_deletes"] == 1 and stats["clients"] == 2
        reader.send_signal(signal.SIGKILL)
        assert reader.wait() == -signal.SIGKILL
        stats = wait_for(lambda: (lambda s: s if s["pending_deletes"] == 0 else None)(
            store.stats()))
        assert stats and stats["objects"] == 0 and stats["clients"] == 1


def test_create_fill_seal(store):
    buf = store.create("made", 16, metadata=b"m")
    view = numpy.frombuffer(buf, dtype=numpy.uint8)
    view[:] = numpy.arange(16)
    with pytest.raises(BufferError):
        buf.seal()  # the writable pages go away on seal: no array may point there
    del view
    buf.write(b"\xff\xfe", offset=14)
    assert buf.seal() == zerodet.ObjectId.from_name("made")
    assert list(store.get("made").array()) == list(range(14)) + [255, 254]
    with pytest.raises(zerodet.ClosedError):
        buf.seal()
    # A with block seals on success and aborts on an exception.
    with store.create("ctx-sealed", 4) as b:
        b.write(b"abcd")
    assert bytes(store.get("ctx-sealed").array()) == b"abcd"
    with pytest.raises(RuntimeError):
        with store.create("ctx-aborted", 4):
            raise RuntimeError("boom")
    assert "ctx-aborted" not in store
    with pytest.raises(ValueError):
        store.create("small", 2).write(b"too long")


def test_get_waits_for_a_seal_without_holding_the_gil(store_process, store):
    import threading
    got = {}

    def wait():
        got["value"] = bytes(store.get("later", timeout=30).array())

    thread = threading.Thread(target=wait)
    thread.start()
    # If get() held the GIL while waiting, this thread could not run until it timed out. (A
    # second connection: the waiting get occupies the first one's socket.)
    with zerodet.Store(store_process.socket) as other:
        assert wait_for(lambda: other.stats()["waiting_gets"] == 1)
        other.put("later", b"sealed")
    thread.join()
    assert got["value"] == b"sealed"


def test_list_stats_delete(store):
    store.put("a", b"1")
    store.put("b", b"2", pinned=True)
    listed = {entry["id"]: entry for entry in store.list()}
    assert listed[zerodet.ObjectId.from_name("b")]["pinned"]
    assert store.stats()["pinned_objects"] == 1
    store.delete(["a", "b"])
    assert wait_for(lambda: store.stats()["objects"] == 0)


def test_hostile_inputs_raise_clear_exceptions(store):
    with pytest.raises(ValueError, match="C-contiguous"):
        store.put("strided", numpy.arange(10)[::2])
    with pytest.raises(ValueError, match="C-contiguous|dtype"):
        store.put("objects", numpy.array([object()]))
    with pytest.raises(ValueError, match="dtype"):
        store.put("big-endian", numpy.arange(3, dtype=">i4"))
    with pytest.raises(ValueError, match="dtype"):
        store.put("strings", numpy.array(["a", "b"]))
    with pytest.raises(TypeError):
        store.put(12, b"id of the wrong type")
    with pytest.raises(ValueError, match="20 bytes"):
        store.get(b"short")
    with pytest.raises(TypeError):
        store.create("negative", -1)
    with pytest.raises(zerodet.StoreFullError):
        store.create("huge", 1 << 62)
    with pytest.raises(ValueError):
        store.get("x", timeout=float("nan"))
    with pytest.raises(ValueError):
        store.get("x", timeout=-1)


def test_each_store_error_is_its_exception(store_process, store):
    store.put("exists", b"x")
    with pytest.raises(zerodet.AlreadyExistsError) as error:
        store.put("exists", b"y")
    assert isinstance(error.value, FileExistsError) and error.value.code == "already exists"
    with pytest.raises(KeyError) as error:
        store.get("missing")
    assert isinstance(error.value, zerodet.NotFoundError) and "missing" not in str(error.value)
    with pytest.raises(zerodet.NotFoundError):
        store.delete("missing")
    with pytest.raises(TimeoutError) as error:
        store.get("missing", timeout=0.05)
    assert isinstance(error.value, zerodet.DeadlineExceededError)
    with pytest.raises(zerodet.InvalidArgumentError):
        store.put("meta", b"x", metadata=b"m" * 40000)
    unsealed = store.create("unsealed", 8)
    with pytest.raises(zerodet.FailedPreconditionError):
        store.delete("unsealed")
    unsealed.abort()
    with pytest.raises(zerodet.StoreFullError):
        store.put("too-big", numpy.zeros(300 << 20, numpy.uint8))
    with zerodet.Store(store_process.socket, readonly=True) as readonly:
        with pytest.raises(PermissionError) as error:
            readonly.put("nope", b"x")
        assert isinstance(error.value, zerodet.PermissionDeniedError)
    closed = zerodet.Store(store_process.socket)
    closed.close()
    with pytest.raises(zerodet.ClosedError):
        closed.get("exists")
    with pytest.raises(ConnectionError) as error:
        zerodet.Store(store_process.socket + ".nothing-here")
    assert isinstance(error.value, zerodet.UnavailableError)
    # A store that dies under a connection: every call says so.
    store_process.kill()
    with pytest.raises(zerodet.UnavailableError):
        store.put("after-death", b"x")


def test_a_forked_child_leaves_the_parents_references_alone(store):
    store.put("forked", numpy.arange(100, dtype=numpy.int16))
    array = store.get("forked").array()
    pid = os.fork()
    if pid == 0:
        # The child drops its copies of the parent's array and connection, and may not use the
        # parent's connection (its socket is the parent's).
        code = 0
        try:
            store.get("forked")
            code = 3
        except zerodet.ForkError:
            pass
        try:
            del array
            gc.collect()
            with zerodet.Store(store.socket) as own:
                code = code or (0 if own.get("forked").array()[99] == 99 else 4)
        except Exception:  # noqa: BLE001 (reported through the exit code)
            code = 5
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's reference survived the child's garbage collection: the delete stays pending.
    store.delete("forked")
    assert store.stats()["pending_deletes"] == 1
    assert array[99] == 99
    del array
    gc.collect()
    assert wait_for(lambda: store.stats()["pending_deletes"] == 0)


def test_store_help_explains():
    assert "shared-memory object store" in zerodet.Store.__doc__
    assert "timeout" in zerodet.Store.get.__doc__


def test_closing_a_store_while_another_thread_waits_on_it(store_process):
    import threading
    store = zerodet.Store(store_process.socket)
    got = {}
    thread = threading.Thread(target=lambda: got.update(
        value=bytes(store.get("late", timeout=30).array())))
    thread.start()
    with zerodet.Store(store_process.socket) as other:
        assert wait_for(lambda: other.stats()["waiting_gets"] == 1)
        store.close()  # the waiting get keeps its connection until it returns
        other.put("late", b"still served")
    thread.join()
    assert got["value"] == b"still served" and store.closed
