"""Errors raised by the model kernels.

They subclass the platform hierarchy in :mod:`stratalab.errors`, so the web
layer maps them to the error envelope without knowing about the kernels. All of
them pickle with their ``details`` intact (``BaseException.__reduce__`` carries
the instance ``__dict__``), which matters because they cross process
boundaries inside Dask task results.
"""

from __future__ import annotations

from stratalab.errors import StrataLabError, ValidationFailed


class InvalidModelFile(ValidationFailed):
    """The uploaded bytes are not a loadable ONNX or TorchScript model."""


class InvalidInput(ValidationFailed):
    """An inference input does not match the model's signature or input schema."""


class UnknownAdapter(ValidationFailed):
    """A pre- or postprocessing adapter name is not registered."""


class ArtifactCorrupted(StrataLabError):
    """A content-addressed file does not hash to its name.

    This is a server-side integrity failure (disk corruption, a partial copy),
    not a client mistake, hence the 500 inherited from the base class.
    """
