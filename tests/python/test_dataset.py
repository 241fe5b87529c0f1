"""zerodet.Dataset over coco-val-tiny preloaded by `zerodet preload`, in this process and in
DataLoader-like worker pools (fork and spawn)."""

import gc
import hashlib
import json
import multiprocessing
import pickle

import numpy
import pytest

import zerodet
from conftest import SHARED, wait_for

COCO = SHARED / "coco-val-tiny" / "instances_val2017.json"


def checksum(array):
    return hashlib.sha256(memoryview(array).cast("B")).hexdigest()


def test_map_style_protocol(coco_store):
    ds = zerodet.Dataset(coco_store.socket, "val")
    assert len(ds) == 80 and ds.layout == "letterbox" and ds.letterbox_size == 640
    image, target = ds[0]
    assert image.shape == (3, 640, 640) and image.dtype == numpy.float32
    assert not image.flags.writeable and not image.flags.owndata
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    # By name, and negative indices, as Python sequences.
    same, same_target = ds[target["name"]]
    assert same.ctypes.data == image.ctypes.data and same_target["index"] == 0
    last, last_target = ds[-1]
    assert last_target["index"] == 79 and ds.index(last_target["name"]) == 79
    with pytest.raises(IndexError):
        ds[80]
    with pytest.raises(KeyError):
        ds["no-such-image.jpg"]
    with pytest.raises(TypeError):
        ds[1.5]
    assert ds[numpy.int64(3)][1]["index"] == 3


def test_letterbox_geometry_and_annotations_match_the_coco_file(coco_store):
    ds = zerodet.Dataset(coco_store.socket, "val")
    coco = json.loads(COCO.read_text())
    categories = sorted(c["id"] for c in coco["categories"])
    image = next(i for i in coco["images"] if i["file_name"] == ds[5][1]["name"])
    annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
    _, target = ds[5]
    w, h = image["width"], image["height"]
    assert target["source_size"] == (w, h)
    scale = min(640 / w, 640 / h)
    assert target["scale"] == pytest.approx(scale, rel=1e-6)
    assert target["pad"] == (pytest.approx((640 - round(w * scale)) / 2, abs=0.5),
                             pytest.approx((640 - round(h * scale)) / 2, abs=0.5))
    assert len(target["labels"]) == len(annotations) > 0
    for box, label, crowd, a in zip(target["source_boxes"], target["labels"],
                                    target["iscrowd"], annotations):
        x, y, bw, bh = a["bbox"]
        assert box == pytest.approx([x, y, x + bw, y + bh], abs=1e-3)
        assert categories[label] == a["category_id"] and crowd == bool(a["iscrowd"])
    px, py = target["pad"]
    numpy.testing.assert_allclose(target["boxes"][:, 0], target["source_boxes"][:, 0] * scale + px,
                                  rtol=1e-5)
    numpy.testing.assert_allclose(target["boxes"][:, 3], target["source_boxes"][:, 3] * scale + py,
                                  rtol=1e-5)


def test_rgb_layout_is_the_decoded_image(coco_store):
    cv2 = pytest.importorskip("cv2")
    ds = zerodet.Dataset(coco_store.socket, "val-rgb")
    image, target = ds[2]
    expected = cv2.cvtColor(cv2.imread(ds.info(2)["path"]), cv2.COLOR_BGR2RGB)
    assert image.dtype == numpy.uint8 and image.shape == expected.shape
    assert numpy.array_equal(image, expected)  # zerodet's decoder is pixel-exact to OpenCV's
    assert target["scale"] == 1.0 and target["pad"] == (0.0, 0.0)


def test_evicted_sample_is_decoded_again_from_its_file(coco_store):
    ds = zerodet.Dataset(coco_store.socket, "val")
    expected = numpy.array(ds[7][0])  # a copy
    gc.collect()
    sample_id = None
    with zerodet.Store(coco_store.socket) as store:
        name = ds[7][1]["name"]
        gc.collect()
        sample_id = zerodet.ObjectId.from_name(f"zerodet-dataset:val:letterbox640:{name}")
        store.delete(sample_id)
        assert wait_for(lambda: sample_id not in store)
        again, _ = ds[7]  # a miss: decoded from the JPEG and stored again (read-write client)
        assert numpy.array_equal(again, expected)
        assert sample_id in store
    with zerodet.Store(coco_store.socket) as store:
        del again
        gc.collect()
        store.delete(sample_id)
        assert wait_for(lambda: sample_id not in store)
    readonly = zerodet.Dataset(coco_store.socket, "val", readonly=True)
    sample = readonly.sample(7)  # a read-only reader decodes into memory of its own
    assert not sample.from_store and numpy.array_equal(sample.array(), expected)
    ds[7]  # restore it for the other tests


def test_missing_and_corrupt_datasets(coco_store):
    with pytest.raises(KeyError, match="preload it"):
        zerodet.Dataset(coco_store.socket, "no-such-dataset")
    with zerodet.Store(coco_store.socket) as store:
        store.put("zerodet-dataset:garbage", b"{not json")
    with pytest.raises(zerodet.CorruptDataError):
        zerodet.Dataset(coco_store.socket, "garbage")
    with pytest.raises(ConnectionError):
        zerodet.Dataset(coco_store.socket + ".none", "val")


def test_pickles_as_its_address(coco_store):
    ds = zerodet.Dataset(coco_store.socket, "val")
    ds[0]
    copy = pickle.loads(pickle.dumps(ds))
    assert len(pickle.dumps(ds)) < 300  # no connection, no samples travel
    assert checksum(copy[11][0]) == checksum(ds[11][0])


# -- DataLoader-like worker pools ------------------------------------------------------------
# torch.utils.data.DataLoader hands the dataset to each worker (inherited with fork, pickled
# with spawn) and calls dataset[i] there; these pools do the same without torch.

_worker_dataset = None


def _init_worker(dataset):
    global _worker_dataset
    _worker_dataset = dataset


def _load(index):
    image, target = _worker_dataset[index]
    return index, target["name"], checksum(image), len(target.get("labels", ()))


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_worker_processes_read_the_same_samples(coco_store, method):
    ds = zerodet.Dataset(coco_store.socket, "val")
    expected = {}
    held = []  # the parent holds arrays (store references) across the fork
    for i in range(len(ds)):
        image, target = ds[i]
        expected[i] = (target["name"], checksum(image), len(target["labels"]))
        if i % 10 == 0:
            held.append(image)
    context = multiprocessing.get_context(method)
    indices = list(range(len(ds))) * 2  # every sample twice, spread over the workers
    with context.Pool(4, initializer=_init_worker, initargs=(ds,)) as pool:
        results = pool.map(_load, indices, chunksize=5)
    assert len(results) == len(indices)
    for index, name, digest, labels in results:
        assert (name, digest, labels) == expected[index]
    # The workers' exits dropped none of the parent's references: its views are intact.
    for array in held:
        assert checksum(array) in {value[1] for value in expected.values()}
    with zerodet.Store(coco_store.socket) as store:
        assert wait_for(lambda: store.stats()["clients"] == 2)  # this one and the dataset's
