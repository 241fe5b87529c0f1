"""zerodet from Python: the shared-memory store, preloaded datasets, frame rings and the YOLO
detector, with store objects and ring frames as read-only numpy arrays that point into shared
memory (no copy).

    import zerodet
    store = zerodet.Store("/tmp/zd.sock")                  # zerodet store --socket /tmp/zd.sock
    ds = zerodet.Dataset("/tmp/zd.sock", "val")            # zerodet preload --name val ...
    image, target = ds[0]                                  # float32 3x640x640 view, annotations
    det = zerodet.Detector("yolov8n.onnx")
    det.detect("dog.jpg")                                  # zerodet detect's detections

Classes: Store, StoreObject, StoreBuffer, ObjectId, Dataset, Sample, RingReader, RingWriter,
Frame, Detector. Errors: zerodet.errors (each also a built-in exception: KeyError,
TimeoutError, ConnectionError, ValueError, ...). help(zerodet.Store) and friends explain each.
"""

from . import errors
from ._zerodet import (Detector, Frame, ObjectId, RingReader, RingWriter, Sample, Store,
                       StoreBuffer, StoreObject, list_rings)
from .dataset import Dataset
from .errors import (AlreadyExistsError, ClosedError, CorruptDataError, DeadlineExceededError,
                     Error, FailedPreconditionError, FileNotFoundError_, ForkError, InternalError,
                     InvalidArgumentError, IoError, NotFoundError, PermissionDeniedError,
                     ResourceExhaustedError, StoreFullError, UnavailableError,
                     UnimplementedError)

__all__ = [
    "Dataset", "Detector", "Frame", "ObjectId", "RingReader", "RingWriter", "Sample", "Store",
    "StoreBuffer", "StoreObject", "list_rings", "errors",
] + errors.__all__
