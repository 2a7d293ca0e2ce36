"""Routes for the model registry: streaming upload, list, get, patch schema, delete."""

from __future__ import annotations

from tornado import web

from stratalab.errors import BadRequest, PayloadTooLarge, StrataLabError
from stratalab.jupyter_ext.base import ApiHandler
from stratalab.jupyter_ext.multipart import MAX_FIELD_BYTES, FormStream, boundary_of, decode_form
from stratalab.scheduler.model_schemas import ModelSchemaPatch, ModelUploadFields

#: form fields holding JSON (the seed's "json" type).
_JSON_FIELDS = ("input_shape", "output_shape", "input_schema", "output_schema", "labels")
#: room for the text fields and multipart framing on top of the file limit.
_FORM_OVERHEAD = 16 * MAX_FIELD_BYTES


def upload_fields(raw: dict[str, str]) -> ModelUploadFields:
    """The form's text fields, JSON ones decoded, checked like a JSON body."""
    return decode_form(raw, _JSON_FIELDS, ModelUploadFields)


@web.stream_request_body
class ModelsHandler(ApiHandler):
    """``/models``: the upload streams to disk as it arrives."""

    _form: FormStream | None = None
    #: an error met while streaming, answered once the body has been read.
    _error: StrataLabError | None = None

    def _body_limit(self) -> int:
        if self.request.method == "POST":
            return (self.coordinator.config.max_upload_mb << 20) + _FORM_OVERHEAD
        return super()._body_limit()

    def _check_body_size(self) -> None:
        """Too large: read (and drop) the body, then answer 413, so clients see the answer.

        A client that does not wait for ``100 Continue`` is still sending when an
        early answer closes the connection, and gets a reset instead of the 413.
        Absurd sizes are refused at once.
        """
        try:
            super()._check_body_size()
        except PayloadTooLarge as exc:
            declared = int(self.request.headers.get("Content-Length", "0") or 0)
            if declared > 2 * self._body_limit() + _FORM_OVERHEAD:
                raise
            self._error = exc

    async def prepare(self) -> None:  # type: ignore[override]
        """Authenticate, then get ready to stream the form into a temp file."""
        await super().prepare()
        if self.request.method != "POST" or self._finished:
            return
        ceiling = 2 * self._body_limit() + _FORM_OVERHEAD
        self.request.connection.set_max_body_size(ceiling)  # type: ignore[attr-defined]
        if self._error is None:
            boundary = boundary_of(self.request.headers.get("Content-Type", ""))
            self._form = FormStream(boundary, self.coordinator.serving.begin_upload, "model")

    def data_received(self, chunk: bytes) -> None:
        """One chunk of the body (dropped once the upload is refused)."""
        if self._form is None or self._error is not None:
            return
        try:
            self._form.feed(chunk)
        except StrataLabError as exc:
            self._form.discard()
            self._error = exc

    def on_connection_close(self) -> None:
        """A client that hangs up mid-body leaves no file behind."""
        if self._form is not None:
            self._form.discard()
        super().on_connection_close()

    def on_finish(self) -> None:
        """Whatever happened, no temp file outlives the request."""
        if self._form is not None:
            self._form.discard()

    async def get(self) -> None:
        """List the caller's models (``name`` filters)."""
        offset, size = self.page()
        items, total = await self.coordinator.serving.list_models(
            self.principal(),
            name=self.get_query_argument("name", None),
            offset=offset,
            limit=size,
        )
        self.reply_page(items, total, offset, size)

    async def post(self) -> None:
        """Register an ONNX or TorchScript file (multipart field ``model``)."""
        if self._error is not None:
            raise self._error
        form = self._form
        if form is None:
            raise BadRequest("send the model as multipart/form-data")
        form.finish()
        fields = upload_fields(form.fields)
        assert form.file is not None
        model = await self.coordinator.serving.upload_model(
            self.principal(), form.file, fields, form.filename
        )
        self.reply(model, 201, location=f"{self.request.path}/{model['id']}")


class ModelHandler(ApiHandler):
    """``/models/{id}``."""

    async def get(self, model_id: str) -> None:
        """One model."""
        self.reply(await self.coordinator.serving.get_model(self.principal(), model_id))

    async def delete(self, model_id: str) -> None:
        """Delete a model (409 while a running job uses it)."""
        await self.coordinator.serving.delete_model(self.principal(), model_id)
        self.set_status(204)
        self.finish()


class ModelSchemaHandler(ApiHandler):
    """``/models/{id}/schema``."""

    async def patch(self, model_id: str) -> None:
        """Change schemas, labels or adapters without re-uploading."""
        patch = self.body(ModelSchemaPatch)
        self.reply(await self.coordinator.serving.patch_model(self.principal(), model_id, patch))


def routes(prefix: str) -> list[tuple[str, type[web.RequestHandler]]]:
    """URL patterns of this module."""
    mid = r"(?P<model_id>[A-Za-z0-9_-]{1,64})"
    return [
        (f"{prefix}/models", ModelsHandler),
        (f"{prefix}/models/{mid}", ModelHandler),
        (f"{prefix}/models/{mid}/schema", ModelSchemaHandler),
    ]
