"""zerodet.Dataset: a preloaded dataset as a map-style dataset (PyTorch's protocol).

The samples live in the store (``zerodet preload``); each process maps them and reads them
without a copy. A Dataset holds only its socket path and name when pickled, so DataLoader
workers (fork or spawn) each connect on first use; after a fork the child never touches the
parent's connection or references (see zerodet.ForkError).
"""

import json
import operator
import os

import numpy

from ._zerodet import Store, _DatasetReader
from .errors import NotFoundError, PermissionDeniedError

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class Dataset:
    """A dataset preloaded into a zerodet store, as ``torch.utils.data.Dataset`` expects.

        ds = zerodet.Dataset("/tmp/zd.sock", "val")
        image, target = ds[0]          # or ds["000000000139.jpg"]
        loader = torch.utils.data.DataLoader(ds, batch_size=16, num_workers=4,
                                             collate_fn=lambda batch: batch)

    ``image`` is a read-only numpy array pointing into the store: float32 3 x S x S for
    datasets preloaded ``--as letterbox:S`` (exactly the model input), uint8 H x W x 3 RGB for
    ``--as rgb``. It keeps the store object referenced while it lives (copy it, e.g.
    ``torch.from_numpy(image.copy())``, to write or to keep it long).

    ``target`` is a dict: ``index``, ``name`` (the COCO file_name or the path relative to the
    folder), ``source_size`` (width, height of the original image), ``scale`` and ``pad`` (the
    letterbox: model pixel = source pixel * scale + pad; 1 and (0, 0) for rgb). When the preload
    came with annotations (a COCO annotation file, or YOLO txt labels beside a folder of images
    in the ``images/`` -> ``labels/`` layout), also ``boxes`` (float32 N x 4, [x1, y1, x2, y2] in
    the sample's pixels, i.e. letterboxed), ``source_boxes`` (the same in source pixels),
    ``labels`` (int64 N, COCO-80 indices for COCO files) and ``iscrowd`` (bool N).

    Evicted samples are decoded again from their source file (and put back into the store by a
    read-write connection), as the C++ DatasetReader does. ``readonly``: None tries a
    read-write connection and falls back to read-only when the store refuses it.
    Thread-safe for reads (each call is independent); Dataset objects are picklable.
    """

    def __init__(self, socket, name, *, readonly=None, annotations=True):
        self.socket = os.fspath(socket)
        self.name = name
        self.readonly = readonly
        self.annotations = annotations
        self._state = None
        self._annotation_cache = None
        # Connect now in the constructing process, so a missing store or dataset fails here.
        self._reader()

    # -- pickling: only the address travels; each process connects on first use -------------
    def __getstate__(self):
        return {"socket": self.socket, "name": self.name, "readonly": self.readonly,
                "annotations": self.annotations}

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._state = None
        self._annotation_cache = None

    def _reader(self):
        state = self._state
        if state is None or state[0] != os.getpid():
            # First use in this process (a spawned worker, or a forked child, whose inherited
            # objects are left alone: see ForkError).
            if self.readonly is None:
                try:
                    store = Store(self.socket)
                except PermissionDeniedError:
                    store = Store(self.socket, readonly=True)
            else:
                store = Store(self.socket, readonly=self.readonly)
            state = (os.getpid(), store, _DatasetReader(store, self.name))
            self._state = state
            self._annotation_cache = None
        return state[2]

    # -- the map-style protocol -----------------------------------------------------------
    def __len__(self):
        return len(self._reader())

    def __getitem__(self, key):
        """(image, target) of sample `key`: an index (negative counts from the end) or a name."""
        sample = self.sample(key)
        return sample.array(), self._target(sample)

    def sample(self, key):
        """Sample `key` as a zerodet.Sample (for Detector.detect, which runs on it in place)."""
        reader = self._reader()
        if isinstance(key, str):
            index = reader.find(key)
            if index < 0:
                raise NotFoundError(f"dataset '{self.name}' has no sample named '{key}'")
            key = index
        elif not isinstance(key, int):
            try:
                key = operator.index(key)  # numpy integers, torch's sampler indices
            except TypeError:
                raise TypeError(f"dataset index must be an int or a sample name, not "
                                f"{type(key).__name__}") from None
        return reader.get(key)

    def index(self, name):
        """The index of the sample named `name`; raises NotFoundError (a KeyError)."""
        index = self._reader().find(name)
        if index < 0:
            raise NotFoundError(f"dataset '{self.name}' has no sample named '{name}'")
        return index

    def info(self, index):
        """What the manifest says of sample `index`, without reading it (name, path, shape,
        source_size, scale, pad, resized)."""
        return self._reader().info(index)

    @property
    def layout(self):
        """'letterbox' or 'rgb'."""
        return self._reader().layout

    @property
    def letterbox_size(self):
        return self._reader().letterbox_size

    @property
    def source(self):
        """What the dataset was preloaded from (a COCO annotation file or a folder)."""
        return self._reader().source

    @property
    def has_annotations(self):
        return self.annotations and bool(self._annotations()[0])

    def __repr__(self):
        return f"<zerodet.Dataset '{self.name}' in {self.socket}>"

    # -- targets --------------------------------------------------------------------------
    def _target(self, sample):
        scale = sample.scale
        pad_x, pad_y = sample.pad
        target = {"index": sample.index, "name": sample.name, "source_size": sample.source_size,
                  "scale": scale, "pad": (pad_x, pad_y)}
        if self.annotations:
            source_boxes, labels, iscrowd = self._annotations_of(sample)
            if source_boxes is not None:
                boxes = source_boxes * numpy.float32(scale)
                boxes[:, 0::2] += numpy.float32(pad_x)
                boxes[:, 1::2] += numpy.float32(pad_y)
                target.update(boxes=boxes, source_boxes=source_boxes, labels=labels,
                              iscrowd=iscrowd)
        return target

    def _annotations(self):
        """(by_name, kind): the COCO annotations by file_name (kind 'coco'), or {} and 'yolo'
        for a folder (labels read per sample), or {} and None."""
        if self._annotation_cache is None:
            source = self.source
            if source.endswith(".json") and os.path.isfile(source):
                self._annotation_cache = (_load_coco(source), "coco")
            elif os.path.isdir(source):
                self._annotation_cache = ({}, "yolo")
            else:
                self._annotation_cache = ({}, None)
        return self._annotation_cache

    def _annotations_of(self, sample):
        by_name, kind = self._annotations()
        if kind == "coco":
            return by_name.get(sample.name, _EMPTY)
        if kind == "yolo":
            if sample.name not in by_name:
                by_name[sample.name] = _load_yolo_labels(sample.path, sample.source_size)
            return by_name[sample.name]
        return None, None, None


_EMPTY = (numpy.zeros((0, 4), numpy.float32), numpy.zeros(0, numpy.int64), numpy.zeros(0, bool))


def _load_coco(path):
    """file_name -> (boxes x1y1x2y2 float32, labels int64, iscrowd bool) of a COCO file; labels
    are the index of the category among the sorted category ids (COCO-80 order for COCO)."""
    with open(path, "rb") as f:
        coco = json.load(f)
    label_of = {c["id"]: i for i, c in enumerate(sorted(coco.get("categories", []),
                                                       key=lambda c: c["id"]))}
    name_of = {image["id"]: image["file_name"] for image in coco.get("images", [])}
    grouped = {}
    for a in coco.get("annotations", []):
        name = name_of.get(a.get("image_id"))
        if name is None or a.get("category_id") not in label_of:
            continue
        x, y, w, h = a["bbox"]
        grouped.setdefault(name, []).append(
            (x, y, x + w, y + h, label_of[a["category_id"]], bool(a.get("iscrowd", 0))))
    out = {}
    for name, rows in grouped.items():
        out[name] = (numpy.array([r[:4] for r in rows], numpy.float32).reshape(-1, 4),
                     numpy.array([r[4] for r in rows], numpy.int64),
                     numpy.array([r[5] for r in rows], bool))
    for name in name_of.values():
        out.setdefault(name, _EMPTY)
    return out


def _load_yolo_labels(image_path, source_size):
    """The YOLO txt labels of an image (Ultralytics layout: .../images/x.jpg ->
    .../labels/x.txt; rows 'class cx cy w h', normalized) in source pixels, or empty."""
    head, sep, tail = image_path.rpartition(os.sep + "images" + os.sep)
    if not sep:
        return _EMPTY
    label_path = os.path.splitext(head + os.sep + "labels" + os.sep + tail)[0] + ".txt"
    try:
        rows = numpy.loadtxt(label_path, dtype=numpy.float64, ndmin=2)
    except OSError:
        return _EMPTY
    if rows.size == 0:
        return _EMPTY
    width, height = source_size
    cx, cy, w, h = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = numpy.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return (boxes.astype(numpy.float32), rows[:, 0].astype(numpy.int64),
            numpy.zeros(len(rows), bool))
