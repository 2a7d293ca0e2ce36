"""Bad datasets and bad requests get a clear error, and nothing is stored.

Each case checks the status, the exact error code, that the message names
the problem (the CSV line, the missing column or array, the source), that
nothing internal leaks, and that the store and the artifact folder hold
what they held before.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from stratalab.ids import new_id, utcnow
from stratalab.scheduler.db import Job
from stratalab.testing import assert_error
from tests.conftest import multipart
from tests.jupyter_ext.datafiles import write_csv, write_npz, write_parquet

ROUTES = ("datasets", "data/validate")


def _count_datasets(store: Any) -> int:
    with store.engine.connect() as conn:
        return int(conn.execute(sa.text("SELECT count(*) FROM datasets")).scalar_one())


async def stored(api: Any) -> tuple[int, list[Path]]:
    """Dataset rows (deleted ones too) and every file under the artifact root."""
    rows = await api.coordinator.db(_count_datasets, api.coordinator.store)
    root = api.coordinator.serving.artifacts.root
    return rows, sorted(p for p in root.rglob("*") if p.is_file())


async def upload(api: Any, path: str, data: bytes, fields: dict, filename: str, **kw: Any):
    body, content_type = multipart(fields, data, filename=filename, field="file")
    return await api("POST", path, body=body, headers={"Content-Type": content_type}, **kw)


async def test_bad_sources_are_422_naming_the_problem(api, tmp_path):
    ragged = write_csv(tmp_path / "ragged.csv", n=20, ragged_line=5)
    not_parquet = tmp_path / "table.parquet"
    not_parquet.write_bytes(write_csv(tmp_path / "plain.csv").read_bytes())
    good_csv = write_csv(tmp_path / "good.csv")
    good_parquet = write_parquet(tmp_path / "good.parquet")
    npz = write_npz(tmp_path / "arrays.npz")
    cases = [
        (
            "ragged csv row",
            {"format": "csv", "source": str(ragged)},
            ["ragged.csv", "line 5", "expected 5 fields", "found 4"],
        ),
        (
            "parquet that is not parquet",
            {"format": "parquet", "source": str(not_parquet)},
            ["table.parquet", "is not a Parquet file"],
        ),
        (
            "csv label column that does not exist",
            {"format": "csv", "source": str(good_csv), "options": {"label_column": "species"}},
            ["label column 'species' not found", "f0, f1, f2, f3, label"],
        ),
        (
            "parquet label column that does not exist",
            {"format": "parquet", "source": str(good_parquet), "options": {"label_column": "y"}},
            ["label column 'y' not found"],
        ),
        (
            "npz without the named arrays",
            {"format": "npz", "source": str(npz), "options": {"x_key": "pixels"}},
            ["no array 'pixels'", "x_key", "it holds: x, y"],
        ),
        (
            "url that does not exist",
            {"format": "csv", "source": f"file://{tmp_path}/missing/nothing.csv"},
            ["nothing.csv", "does not exist"],
        ),
        (
            "url of an unknown protocol",
            {"format": "csv", "source": "nosuchproto://bucket/train.csv"},
            ["nosuchproto://bucket/train.csv", "not a supported URL"],
        ),
    ]
    before = await stored(api)

    for case, body, fragments in cases:
        for route in ROUTES:
            # Execute
            resp = await api("POST", route, json_body=body)

            # Assert
            err = assert_error(resp, 422, "VALIDATION_ERROR")
            for fragment in fragments:
                assert fragment in err["message"], (case, route, err["message"])
    assert await stored(api) == before


async def test_bad_upload_is_422_naming_the_file_and_leaves_nothing(api, tmp_path):
    before = await stored(api)
    data = write_csv(tmp_path / "x.csv", n=20, ragged_line=7).read_bytes()

    for route in ROUTES:
        resp = await upload(api, route, data, {"format": "csv"}, "ragged.csv")

        err = assert_error(resp, 422, "VALIDATION_ERROR")
        assert err["message"].startswith("ragged.csv, line 7: expected 5 fields"), err
        assert "upload-" not in resp.text and ".tmp" not in resp.text  # no server paths
    not_npz = await upload(api, "datasets", data, {"format": "npz"}, "arrays.npz")
    assert "arrays.npz is not an NPZ archive" in assert_error(not_npz, 422, None)["message"]
    assert await stored(api) == before


async def test_request_mistakes_are_refused_with_the_field_named(api, tmp_path):
    csv = str(write_csv(tmp_path / "small.csv", n=12))
    cases = [
        ({"source": csv}, "VALIDATION_ERROR", "format"),
        ({"format": "xlsx", "source": csv}, "VALIDATION_ERROR", "format"),
        ({"format": "csv"}, "VALIDATION_ERROR", "give 'source'"),
        (
            {"format": "csv", "source": csv, "num_shards": 12},
            "VALIDATION_ERROR",
            "11 training rows into 12",
        ),
        ({"format": "csv", "source": csv, "num_shards": 0}, "VALIDATION_ERROR", "num_shards"),
        (
            {"format": "csv", "source": csv, "validation_fraction": 1.0},
            "VALIDATION_ERROR",
            "validation_fraction",
        ),
        (
            {"format": "stream", "options": {"num_rows": "100"}},
            "VALIDATION_ERROR",
            "num_rows: Input should be a valid integer",
        ),
        (
            {"format": "csv", "source": csv, "options": {"sep": ";"}},
            "VALIDATION_ERROR",
            "sep: not an option of this format",
        ),
        ({"format": "builtin", "source": "mnist"}, "VALIDATION_ERROR", "mnist"),
        ({"format": "csv", "source": csv, "colour": "red"}, "VALIDATION_ERROR", "colour"),
    ]
    before = await stored(api)

    for body, code, fragment in cases:
        resp = await api("POST", "datasets", json_body=body)

        err = assert_error(resp, 422, code)
        assert fragment in (err["message"] + str(err.get("details"))), (body, err)
    both = await upload(
        api, "datasets", b"a,label\n1,0\n", {"format": "csv", "source": csv}, "x.csv"
    )
    assert "not both" in assert_error(both, 422, "VALIDATION_ERROR")["message"]
    no_file = multipart({"format": "csv"}, None)
    resp = await api("POST", "datasets", body=no_file[0], headers={"Content-Type": no_file[1]})
    assert "no file field named 'file'" in assert_error(resp, 400, "BAD_REQUEST")["message"]
    assert await stored(api) == before


async def test_unknown_dataset_ids_are_404(api):
    await api("POST", "datasets", json_body={"format": "builtin", "source": "iris"})
    for method, path in (
        ("GET", "datasets/ds_0000000000000000"),
        ("DELETE", "datasets/ds_0000000000000000"),
        ("GET", "datasets/ds_0000000000000000/shards"),
        ("GET", "datasets/..%2F..%2Fetc"),
    ):
        resp = await api(method, path)
        assert_error(resp, 404, "NOT_FOUND")
    cache = await api("GET", "data/cache", params={"node_id": "wrk_000000000000"})
    assert "wrk_000000000000" in assert_error(cache, 404, "NOT_FOUND")["message"]
    assert (await api("GET", "datasets")).json["total"] == 1


async def test_another_users_dataset_is_404(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    ds = (
        await api("POST", "datasets", json_body={"format": "builtin", "source": "iris"}, key=alice)
    ).json
    for method, path in (
        ("GET", f"datasets/{ds['id']}"),
        ("GET", f"datasets/{ds['id']}/shards"),
        ("DELETE", f"datasets/{ds['id']}"),
    ):
        resp = await api(method, path, key=bob)
        assert_error(resp, 404, "NOT_FOUND")
    assert (await api("GET", "datasets", key=bob)).json["total"] == 0
    assert (await api("GET", f"datasets/{ds['id']}", key=alice)).status == 200
    assert (await api("GET", f"datasets/{ds['id']}")).status == 200  # the admin sees it


async def test_missing_auth_is_401_and_stores_nothing(api, tmp_path):
    csv = str(write_csv(tmp_path / "a.csv"))
    before = await stored(api)
    for method, path, body in (
        ("GET", "datasets", None),
        ("POST", "datasets", {"format": "csv", "source": csv}),
        ("GET", "datasets/ds_0000000000000000", None),
        ("DELETE", "datasets/ds_0000000000000000", None),
        ("GET", "datasets/ds_0000000000000000/shards", None),
        ("POST", "data/validate", {"format": "csv", "source": csv}),
        ("GET", "data/cache", None),
    ):
        resp = await api(method, path, json_body=body, token=False)
        assert_error(resp, 401, "AUTH_REQUIRED")
    bad_key = await api("POST", "datasets", json_body={"format": "csv", "source": csv}, key="x")
    assert_error(bad_key, 401, "AUTH_INVALID")
    assert await stored(api) == before


@pytest.mark.parametrize("stratalab_config", [{"max_upload_mb": 1, "max_json_kb": 1}])
async def test_oversized_uploads_and_bodies_are_413_and_leave_nothing(api, tmp_path):
    before = await stored(api)
    big = b"f0,label\n" + b"1.0,0\n" * 400_000  # 2.4 MB of valid CSV

    for route in ROUTES:
        resp = await upload(api, route, big, {"format": "csv"}, "big.csv")
        err = assert_error(resp, 413, "PAYLOAD_TOO_LARGE")
        assert err["details"]["limit_bytes"] == 1 << 20
    body = {"format": "builtin", "source": "iris", "description": "x" * 2000}
    json_resp = await api("POST", "datasets", json_body=body)
    assert_error(json_resp, 413, "PAYLOAD_TOO_LARGE")
    assert await stored(api) == before
    small = await upload(api, "datasets", big[:50_000], {"format": "csv"}, "small.csv")
    assert small.status == 201, small.text  # under the limit is fine


async def test_delete_answers_409_while_an_unfinished_job_uses_the_dataset(api):
    ds = (await api("POST", "datasets", json_body={"format": "builtin", "source": "iris"})).json
    now = utcnow()
    job = Job(
        id=new_id("job"),
        user_id="admin",
        name="uses-iris",
        type="training",
        state="PAUSED",  # paused work resumes on its dataset
        priority=5,
        created_at=now,
        queued_at=now,
        updated_at=now,
        spec={"dataset_id": ds["id"]},
        resources={"cpu": 1},
        metadata_={},
        max_retries=0,
        retry_count=0,
        attempt=0,
    )
    await api.coordinator.db(api.coordinator.store.insert_jobs, [job], [])

    resp = await api("DELETE", f"datasets/{ds['id']}")

    err = assert_error(resp, 409, "CONFLICT")
    assert job.id in err["message"] and err["details"]["jobs"] == [job.id]
    assert (await api("GET", f"datasets/{ds['id']}")).status == 200
