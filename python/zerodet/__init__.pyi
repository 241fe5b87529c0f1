"""Type stubs of the zerodet package (help(zerodet) for the overview)."""

from typing import Any, Optional, Tuple, Union

import numpy

from . import errors as errors
from ._zerodet import (Detector as Detector, Frame as Frame, ObjectId as ObjectId,
                       RingReader as RingReader, RingWriter as RingWriter, Sample as Sample,
                       Store as Store, StoreBuffer as StoreBuffer, StoreObject as StoreObject,
                       list_rings as list_rings)
from .errors import (AlreadyExistsError as AlreadyExistsError, ClosedError as ClosedError,
                     CorruptDataError as CorruptDataError,
                     DeadlineExceededError as DeadlineExceededError, Error as Error,
                     FailedPreconditionError as FailedPreconditionError,
                     FileNotFoundError_ as FileNotFoundError_, ForkError as ForkError,
                     InternalError as InternalError, InvalidArgumentError as InvalidArgumentError,
                     IoError as IoError, NotFoundError as NotFoundError,
                     PermissionDeniedError as PermissionDeniedError,
                     ResourceExhaustedError as ResourceExhaustedError,
                     StoreFullError as StoreFullError, UnavailableError as UnavailableError,
                     UnimplementedError as UnimplementedError)

class Dataset:
    """A preloaded dataset as a map-style (PyTorch) dataset; ds[i] -> (image, target)."""
    socket: str
    name: str
    readonly: Optional[bool]
    annotations: bool
    def __init__(self, socket: str, name: str, *, readonly: Optional[bool] = None,
                 annotations: bool = True) -> None: ...
    def __len__(self) -> int: ...
    def __getitem__(self, key: Union[int, str]) -> Tuple[numpy.ndarray, dict[str, Any]]: ...
    def sample(self, key: Union[int, str]) -> Sample: ...
    def index(self, name: str) -> int: ...
    def info(self, index: int) -> dict[str, Any]: ...
    @property
    def layout(self) -> str: ...
    @property
    def letterbox_size(self) -> int: ...
    @property
    def source(self) -> str: ...
    @property
    def has_annotations(self) -> bool: ...
