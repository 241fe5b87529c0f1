"""Exceptions of the zerodet package.

Every zerodet error is a ``zerodet.Error`` and also the built-in exception a Python caller
would catch for that situation, so code that knows nothing of zerodet still handles it::

    try:
        view = store.get("frame-17")
    except KeyError:          # zerodet.NotFoundError
        ...
    except TimeoutError:      # zerodet.DeadlineExceededError
        ...

``code`` names the C++ status code (``zerodet/core/status.h``) the error came from.
"""


class Error(Exception):
    """Base class of every zerodet error."""

    code = "unknown"

    def __str__(self):
        # KeyError would show its message quoted; zerodet messages are sentences.
        return str(self.args[0]) if len(self.args) == 1 else super().__str__()


class InvalidArgumentError(Error, ValueError):
    """A malformed argument: bad shape, dtype, name or size."""

    code = "invalid argument"


class NotFoundError(Error, KeyError):
    """A store object, dataset, sample or ring that does not exist."""

    code = "not found"


class FileNotFoundError_(Error, FileNotFoundError):  # noqa: N801 (keeps the built-in name free)
    """A file (model, image) that does not exist."""

    code = "not found"


class AlreadyExistsError(Error, FileExistsError):
    """An object id that is already in the store, a ring that already has a writer."""

    code = "already exists"


class CorruptDataError(Error, ValueError):
    """Bytes that cannot be parsed: a truncated JPEG, a manifest that is not one."""

    code = "corrupt data"


class ResourceExhaustedError(Error, RuntimeError):
    """A limit was hit: the store's object table, a ring's readers, a pixel limit."""

    code = "resource exhausted"


class StoreFullError(ResourceExhaustedError):
    """The store has no room for the object, even after evicting what it may evict."""


class FailedPreconditionError(Error, RuntimeError):
    """The system is not in a state for the call (an object still being created, ...)."""

    code = "failed precondition"


class UnimplementedError(Error, NotImplementedError):
    """A valid request this build cannot serve (an execution provider it lacks)."""

    code = "unimplemented"


class UnavailableError(Error, ConnectionError):
    """The peer is gone: no store serves the socket, the store stopped, a ring's writer died."""

    code = "unavailable"


class DeadlineExceededError(Error, TimeoutError):
    """A timeout expired before the object was sealed or a frame arrived."""

    code = "deadline exceeded"


class PermissionDeniedError(Error, PermissionError):
    """The store refused this user or read-write access; a read-only store was asked to write."""

    code = "permission denied"


class IoError(Error, OSError):
    """The operating system reported an error."""

    code = "io error"


class InternalError(Error, RuntimeError):
    """A bug, or an error from a dependency (ONNX Runtime) that fits nothing above."""

    code = "internal"


class ClosedError(Error, ValueError):
    """The object was closed (like I/O on a closed file, a ValueError)."""

    code = "closed"


class ForkError(Error, RuntimeError):
    """An object used in a process forked after it was made: open a new one in this process."""

    code = "fork"


__all__ = [name for name, value in globals().items()
           if isinstance(value, type) and issubclass(value, Error)]
