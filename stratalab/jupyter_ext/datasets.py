"""Routes for datasets: register, list, get, shards, delete, validate, worker caches.

``POST /datasets`` and ``POST /data/validate`` take a JSON body or a
multipart form whose file field is ``file``, streamed to disk as it arrives.
"""

from __future__ import annotations

from python_multipart.multipart import parse_options_header
from tornado import web

from stratalab.errors import BadRequest, PayloadTooLarge, StrataLabError
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.multipart import MAX_FIELD_BYTES, FormStream, decode_form
from stratalab.scheduler.artifacts import PendingArtifact
from stratalab.scheduler.dataset_schemas import DatasetCreate

#: form fields holding JSON (numbers and the options object).
_JSON_FIELDS = ("options", "num_shards", "validation_fraction")
#: room for the text fields and multipart framing on top of the file limit.
_FORM_OVERHEAD = 16 * MAX_FIELD_BYTES
#: how far past the JSON limit a body is still drained to answer 413.
_JSON_SLACK = 1 << 20
#: the form's file field.
FILE_FIELD = "file"


def form_request(raw: dict[str, str]) -> DatasetCreate:
    """The form's text fields, JSON ones decoded, checked like a JSON body."""
    return decode_form(raw, _JSON_FIELDS, DatasetCreate)


@web.stream_request_body
class _DatasetBodyHandler(ApiHandler):
    """A POST whose body is JSON, or a multipart form streamed into a temp file.

    The file part goes to disk as it arrives (hashed on the way), never into
    memory; a JSON body is collected up to the JSON limit.
    """

    _form: FormStream | None = None
    _json: bytearray | None = None
    #: an error met while streaming, answered once the body has been read.
    _error: StrataLabError | None = None

    def _is_form(self) -> bool:
        ctype = self.request.headers.get("Content-Type", "")
        return ctype.lower().startswith("multipart/form-data")

    def _body_limit(self) -> int:
        if self.request.method == "POST" and self._is_form():
            return (self.coordinator.config.max_upload_mb << 20) + _FORM_OVERHEAD
        return super()._body_limit()

    def _check_body_size(self) -> None:
        """An upload that is too large is read (and dropped), then answered 413.

        A client that does not wait for ``100 Continue`` is still sending when an
        early answer closes the connection, and gets a reset instead of the 413.
        Absurd sizes are refused at once.
        """
        try:
            super()._check_body_size()
        except PayloadTooLarge as exc:
            declared = int(self.request.headers.get("Content-Length", "0") or 0)
            if self.request.method != "POST" or declared > self._ceiling():
                raise
            self._error = exc

    def _ceiling(self) -> int:
        """The most bytes read before the connection is cut (an oversized body is drained)."""
        slack = _FORM_OVERHEAD if self._is_form() else _JSON_SLACK
        return 2 * self._body_limit() + slack

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate, then get ready to take the body."""
        await super().prepare()
        if self.request.method != "POST" or self._finished:
            return
        self.request.connection.set_max_body_size(self._ceiling())  # type: ignore[union-attr]
        if not self._is_form():
            self._json = bytearray()
            return
        if self._error is None:
            _, params = parse_options_header(self.request.headers.get("Content-Type", ""))
            boundary = params.get(b"boundary")
            if not boundary:
                self._error = BadRequest("the multipart/form-data body has no boundary")
                return
            self._form = FormStream(boundary, self.coordinator.datasets.begin_upload, FILE_FIELD)

    def data_received(self, chunk: bytes) -> None:
        """One chunk of the body (dropped once the request is refused)."""
        if self._error is not None:
            return
        if self._form is not None:
            try:
                self._form.feed(chunk)
            except StrataLabError as exc:
                self._form.discard()
                self._error = exc
        elif self._json is not None:
            self._json += chunk
            limit = self._body_limit()
            if len(self._json) > limit:
                self._json = None
                self._error = PayloadTooLarge(
                    f"the body is larger than the limit of {limit} bytes",
                    details={"limit_bytes": limit},
                )

    def on_connection_close(self) -> None:
        """A client that hangs up mid-body leaves no file behind."""
        if self._form is not None:
            self._form.discard()
        super().on_connection_close()

    def on_finish(self) -> None:
        """Whatever happened, no temp file outlives the request."""
        if self._form is not None:
            self._form.discard()

    def dataset_request(self) -> tuple[DatasetCreate, PendingArtifact | None, str | None]:
        """The request, and the uploaded file with its name when it came as a form."""
        if self._error is not None:
            raise self._error
        if self._form is not None:
            self._form.finish()
            return form_request(self._form.fields), self._form.file, self._form.filename
        self.request.body = bytes(self._json or b"")
        return self.body(DatasetCreate), None, None


class DatasetsHandler(_DatasetBodyHandler):
    """``/datasets``."""

    async def get(self) -> None:
        """List the caller's datasets (``name`` and ``format`` filter)."""
        offset, size = self.page()
        items, total = await self.coordinator.datasets.page(
            self.principal(),
            name=self.get_query_argument("name", None),
            format=self.get_query_argument("format", None),
            offset=offset,
            limit=size,
        )
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """Register a dataset from a source (JSON) or an uploaded file (form field ``file``)."""
        req, upload, filename = self.dataset_request()
        view = await self.coordinator.datasets.register(
            self.principal(), req, upload, filename=filename
        )
        self.reply(view, 201, location=f"{self.request.path}/{view['id']}")


class DataValidateHandler(_DatasetBodyHandler):
    """``/data/validate``."""

    async def post(self) -> None:
        """Run the registration checks without storing anything."""
        req, upload, filename = self.dataset_request()
        self.reply(await self.coordinator.datasets.validate(req, upload, filename=filename))


class DatasetHandler(ApiHandler):
    """``/datasets/{id}``."""

    async def get(self, dataset_id: str) -> None:
        """One dataset."""
        self.reply(await self.coordinator.datasets.describe(self.principal(), dataset_id))

    async def delete(self, dataset_id: str) -> None:
        """Delete a dataset and drop its cached shards."""
        await self.coordinator.datasets.delete(self.principal(), dataset_id)
        self.set_status(204)
        self.finish()


class DatasetShardsHandler(ApiHandler):
    """``/datasets/{id}/shards``."""

    async def get(self, dataset_id: str) -> None:
        """A page of shards with their rows and workers."""
        offset, size = self.page()
        items, total = await self.coordinator.datasets.shards(
            self.principal(), dataset_id, offset=offset, limit=size
        )
        self.reply_page(items, total, offset, size)


class DataCacheHandler(ApiHandler):
    """``/data/cache``."""

    async def get(self) -> None:
        """Shards held in the workers' caches (``node_id``: one worker's id or address)."""
        node_id = self.get_query_argument("node_id", None) or None
        self.reply(await self.coordinator.datasets.cache(self.principal(), node_id))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    did = r"(?P<dataset_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/datasets", DatasetsHandler),
        (f"{prefix}/datasets/{did}", DatasetHandler),
        (f"{prefix}/datasets/{did}/shards", DatasetShardsHandler),
        (f"{prefix}/data/validate", DataValidateHandler),
        (f"{prefix}/data/cache", DataCacheHandler),
    ]
