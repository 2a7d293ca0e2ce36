"""A streaming ``multipart/form-data`` reader for uploads, on python-multipart.

Tornado would buffer a whole body before a handler sees it; a 500 MB model
would sit in memory twice. With ``@web.stream_request_body`` each chunk comes
to :meth:`FormStream.feed`, the file part goes straight into a
:class:`~stratalab.scheduler.artifacts.PendingArtifact` (hashed as it is
written) and the small text fields are kept in memory, bounded.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from email.message import Message
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from python_multipart.multipart import MultipartParser, parse_options_header

from stratalab.errors import BadRequest, PayloadTooLarge, ValidationFailed, validation_details
from stratalab.scheduler.artifacts import PendingArtifact

M = TypeVar("M", bound=BaseModel)

#: largest text field (a JSON Schema, a label list) in bytes.
MAX_FIELD_BYTES = 4 << 20
#: most text fields in one form.
MAX_FIELDS = 64


def decode_form(raw: dict[str, str], json_fields: Collection[str], model: type[M]) -> M:
    """A form's text fields, the JSON ones decoded, checked like a JSON body would be.

    Empty and ``null`` fields count as not given, so the model's defaults apply.
    """
    values: dict[str, Any] = {}
    for name, text in raw.items():
        if text.strip() in ("", "null"):
            continue
        if name in json_fields:
            try:
                values[name] = json.loads(text)
            except json.JSONDecodeError:
                raise ValidationFailed(
                    f"form field '{name}' must be JSON",
                    details={"errors": [{"field": name, "message": "not valid JSON"}]},
                ) from None
        else:
            values[name] = text
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise ValidationFailed(
            "the upload form is not valid", details=validation_details(exc)
        ) from None


def boundary_of(content_type: str) -> bytes:
    """The multipart boundary; :class:`BadRequest` for any other content type."""
    ctype, params = parse_options_header(content_type)
    if ctype != b"multipart/form-data" or not params.get(b"boundary"):
        raise BadRequest(
            "send the model as multipart/form-data with a file field named 'model'",
            details={"content_type": content_type[:100]},
        )
    return params[b"boundary"]


class FormStream:
    """Feeds body chunks through the parser; one file field, bounded text fields."""

    def __init__(
        self, boundary: bytes, begin_file: Callable[[], PendingArtifact], file_field: str
    ) -> None:
        self.file_field = file_field
        self._begin_file = begin_file
        #: the file, once its part started.
        self.file: PendingArtifact | None = None
        #: the file's client-side name.
        self.filename: str | None = None
        #: text fields by name.
        self.fields: dict[str, str] = {}
        self.complete = False
        self._headers: list[tuple[bytes, bytes]] = []
        self._field = b""
        self._value = b""
        self._part: str | None = None
        self._is_file = False
        self._buffer = bytearray()
        callbacks: Any = {
            "on_part_begin": self._part_begin,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_header_field": self._header_field,
            "on_header_value": self._header_value,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_end": self._end,
        }
        self._parser = MultipartParser(boundary, callbacks)

    def feed(self, chunk: bytes) -> None:
        """Parse one chunk of the body."""
        try:
            self._parser.write(chunk)
        except (PayloadTooLarge, BadRequest):
            raise
        except Exception as exc:  # noqa: BLE001 - the parser's own errors are the client's
            raise BadRequest(f"the multipart body is malformed: {exc}") from None

    def finish(self) -> None:
        """Check the body ended properly and held the file."""
        self._parser.finalize()
        if not self.complete:
            raise BadRequest("the multipart body ended before its closing boundary")
        if self.file is None:
            raise BadRequest(f"the form has no file field named '{self.file_field}'")

    def discard(self) -> None:
        """Delete the partial file (a refused or cut-off upload leaves nothing)."""
        if self.file is not None:
            self.file.discard()

    # ------------------------------------------------------------- callbacks
    def _part_begin(self) -> None:
        self._headers = []
        self._part = None
        self._is_file = False
        self._buffer = bytearray()

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._field += data[start:end]

    def _header_value(self, data: bytes, start: int, end: int) -> None:
        self._value += data[start:end]

    def _header_end(self) -> None:
        self._headers.append((self._field.lower(), self._value))
        self._field, self._value = b"", b""

    def _headers_finished(self) -> None:
        disposition = dict(self._headers).get(b"content-disposition", b"")
        msg = Message()
        msg["content-disposition"] = disposition.decode("latin-1")
        name = msg.get_param("name", header="content-disposition")
        filename = msg.get_filename()
        if not isinstance(name, str):
            raise BadRequest("a form part has no name")
        self._part = name
        if name == self.file_field:
            if self.file is not None:
                raise BadRequest(f"the form has more than one '{self.file_field}' file")
            self._is_file = True
            self.filename = filename
            self.file = self._begin_file()
        elif len(self.fields) >= MAX_FIELDS:
            raise BadRequest(f"the form has more than {MAX_FIELDS} fields")

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_file:
            assert self.file is not None
            self.file.write(memoryview(data)[start:end])
            return
        self._buffer += data[start:end]
        if len(self._buffer) > MAX_FIELD_BYTES:
            raise PayloadTooLarge(
                f"form field '{self._part}' is larger than {MAX_FIELD_BYTES} bytes",
                details={"field": self._part},
            )

    def _part_end(self) -> None:
        if not self._is_file and self._part is not None:
            try:
                self.fields[self._part] = self._buffer.decode("utf-8")
            except UnicodeDecodeError:
                raise BadRequest(f"form field '{self._part}' is not UTF-8 text") from None

    def _end(self) -> None:
        self.complete = True
