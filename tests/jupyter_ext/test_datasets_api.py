"""Datasets over HTTP: every format from real files, uploads, shards on real workers, caches."""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np

from stratalab.kernels.data.cache import load_shard, load_validation
from stratalab.scheduler.keys import Principal
from tests.conftest import multipart
from tests.jupyter_ext.datafiles import (
    write_csv,
    write_npz,
    write_parquet,
    write_webdataset,
)

ADMIN = Principal(user_id="admin", scope="admin")


def artifact_files(api) -> list[Path]:
    root = api.coordinator.serving.artifacts.root
    return [p for p in root.rglob("*") if p.is_file()]


async def upload(
    api, data: bytes, fields: dict, *, filename: str, path: str = "datasets", key=None
):
    body, content_type = multipart(fields, data, filename=filename, field="file")
    return await api("POST", path, body=body, key=key, headers={"Content-Type": content_type})


async def test_every_format_registers_from_real_data_and_is_sharded(api, tmp_path):
    # Prepare: one real source per format
    cases = [
        ({"format": "csv", "source": str(write_csv(tmp_path / "t.csv"))}, 60, [4], 3),
        (
            {"format": "parquet", "source": f"file://{write_parquet(tmp_path / 't.parquet')}"},
            60,
            [4],
            3,
        ),
        (
            {
                "format": "npz",
                "source": str(write_npz(tmp_path / "t.npz", x_key="X", y_key="Y")),
                "options": {"x_key": "X", "y_key": "Y"},
            },
            60,
            [4],
            3,
        ),
        ({"format": "webdataset", "source": str(write_webdataset(tmp_path / "t.tar"))}, 30, [4], 3),
        (
            {"format": "builtin", "source": "digits", "options": {"shuffle_seed": 0}},
            1797,
            [64],
            10,
        ),
        (
            {
                "format": "stream",
                "name": "blobs",
                "options": {"num_rows": 500, "n_features": 8, "n_classes": 4},
            },
            500,
            [8],
            4,
        ),
    ]
    workers = {w.address: w.id for w in api.coordinator.runner.workers.values()}

    for body, rows, shape, classes in cases:
        # Execute
        resp = await api("POST", "datasets", json_body={**body, "num_shards": 5})

        # Assert
        assert resp.status == 201, (body["format"], resp.text)
        ds = resp.json
        assert ds["id"].startswith("ds_")
        assert resp.headers["Location"].endswith(f"/datasets/{ds['id']}")
        assert ds["format"] == body["format"]
        assert ds["num_rows"] == rows
        assert ds["validation_rows"] == rows // 10  # default validation_fraction 0.1
        assert ds["train_rows"] == rows - rows // 10
        assert ds["num_shards"] == 5
        assert ds["feature_shape"] == shape
        assert ds["num_classes"] == classes
        assert ds["uploaded"] is False
        assert sum(w["shards"] for w in ds["shards_per_worker"]) == 5
        assert {w["address"] for w in ds["shards_per_worker"]} <= set(workers)
        assert {w["worker_id"] for w in ds["shards_per_worker"]} <= set(workers.values())
    names = {d["name"] for d in (await api("GET", "datasets")).json["items"]}
    assert names == {"t", "digits", "blobs"}


async def test_upload_is_checked_stored_by_sha256_and_removed_with_its_last_dataset(api, tmp_path):
    data = write_csv(tmp_path / "iris-like.csv").read_bytes()
    fields = {
        "format": "csv",
        "options": {"label_column": "label"},
        "num_shards": 3,
        "validation_fraction": 0.2,
    }

    first = await upload(api, data, fields, filename="iris-like.csv")
    second = await upload(api, data, {**fields, "name": "again"}, filename="iris-like.csv")

    assert first.status == 201, first.text
    ds = first.json
    assert ds["name"] == "iris-like"  # defaults to the file name
    assert ds["uploaded"] is True and ds["source"] is None
    assert ds["checksum"] == f"sha256:{hashlib.sha256(data).hexdigest()}"
    assert ds["size"] == len(data)
    assert (ds["num_rows"], ds["validation_rows"], ds["num_shards"]) == (60, 12, 3)
    assert second.status == 201, second.text
    assert [p.name for p in artifact_files(api)] == [hashlib.sha256(data).hexdigest()]
    # the stored file is what the workers read
    row = await api.coordinator.datasets.get(ADMIN, ds["id"])
    assert Path(row.source).read_bytes() == data

    assert (await api("DELETE", f"datasets/{ds['id']}")).status == 204
    assert len(artifact_files(api)) == 1  # the second dataset still uses it
    assert (await api("DELETE", f"datasets/{second.json['id']}")).status == 204
    assert artifact_files(api) == []


async def test_list_get_shards_and_delete(api, tmp_path):
    source = str(write_csv(tmp_path / "a.csv", n=103))
    created = []
    for name in ("a", "b", "c"):
        resp = await api(
            "POST",
            "datasets",
            json_body={"name": name, "format": "csv", "source": source, "num_shards": 16},
        )
        assert resp.status == 201, resp.text
        created.append(resp.json)
    await api("POST", "datasets", json_body={"format": "builtin", "source": "iris"})

    page = await api("GET", "datasets", params={"page_size": 2})
    assert page.json["total"] == 4 and len(page.json["items"]) == 2
    rest = await api(
        "GET", "datasets", params={"page_size": 2, "page_token": page.json["next_page_token"]}
    )
    assert rest.json["next_page_token"] is None
    assert (await api("GET", "datasets", params={"format": "csv"})).json["total"] == 3
    assert (await api("GET", "datasets", params={"name": "b"})).json["items"][0]["id"] == created[
        1
    ]["id"]

    ds = created[0]
    one = await api("GET", f"datasets/{ds['id']}")
    assert one.status == 200 and one.json == ds

    shards = await api("GET", f"datasets/{ds['id']}/shards", params={"page_size": 1000})
    assert shards.status == 200, shards.text
    assert shards.json["total"] == 16
    items = shards.json["items"]
    assert [s["index"] for s in items] == list(range(16))
    # contiguous training rows; the last 10 rows are the validation split
    assert items[0]["start"] == 0 and items[-1]["stop"] == 103 - 10
    assert all(a["stop"] == b["start"] for a, b in itertools.pairwise(items))
    assert sum(s["rows"] for s in items) == 93
    workers = {w.address: w.id for w in api.coordinator.runner.workers.values()}
    assert all(workers[s["worker_address"]] == s["worker_id"] for s in items)
    # the shards page agrees with the service's placement, which the training loop uses
    row = await api.coordinator.datasets.get(ADMIN, ds["id"])
    placement = api.coordinator.datasets.placement(row)
    assert {s["index"]: s["worker_address"] for s in items} == placement
    assert {int(k): v for k, v in row.placement.items()} == placement

    assert (await api("DELETE", f"datasets/{ds['id']}")).status == 204
    assert (await api("GET", f"datasets/{ds['id']}")).status == 404
    assert (await api("GET", f"datasets/{ds['id']}/shards")).status == 404
    assert (await api("DELETE", f"datasets/{ds['id']}")).status == 404
    assert (await api("GET", "datasets")).json["total"] == 3


async def test_validate_answers_the_checks_and_stores_nothing(api, tmp_path):
    path = write_npz(tmp_path / "v.npz", n=50)

    by_source = await api(
        "POST",
        "data/validate",
        json_body={"format": "npz", "source": str(path), "validation_fraction": 0.2},
    )
    by_upload = await upload(
        api,
        path.read_bytes(),
        {"format": "npz", "num_shards": 4},
        filename="v.npz",
        path="data/validate",
    )

    assert by_source.status == 200, by_source.text
    out = by_source.json
    assert out["valid"] is True
    assert (out["num_rows"], out["validation_rows"], out["train_rows"]) == (50, 10, 40)
    assert out["info"]["features"] == ["x"] and out["info"]["num_classes"] == 3
    assert by_upload.status == 200, by_upload.text
    assert by_upload.json["num_shards"] == 4
    assert (await api("GET", "datasets")).json["total"] == 0
    assert artifact_files(api) == []


async def test_cache_reports_shards_loaded_on_their_workers(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    resp = await api(
        "POST",
        "datasets",
        json_body={"format": "builtin", "source": "digits", "num_shards": 4},
        key=alice,
    )
    assert resp.status == 201, resp.text
    ds_id = resp.json["id"]
    svc = api.coordinator.datasets
    row = await svc.get(ADMIN, ds_id)
    descriptor = svc.descriptor(row)
    client = api.coordinator.cluster.client

    # Execute: each worker loads the shards placed on it, as a training round would
    for index, address in svc.placement(row).items():
        loaded = await client.run(load_shard, descriptor, index, workers=[address])
        x, y = loaded[address]
        expected_x, expected_y = arrays_of_digits(descriptor, index)
        np.testing.assert_array_equal(x, expected_x)
        np.testing.assert_array_equal(y, expected_y)
    first = next(iter(svc.placement(row).values()))
    await client.run(load_validation, descriptor, workers=[first])

    # Assert
    report = await api("GET", "data/cache", key=alice)
    assert report.status == 200, report.text
    cached = {
        (w["address"], s["shard"])
        for w in report.json["workers"]
        for s in w["shards"]
        if s["dataset_id"] == ds_id
    }
    expected = {(a, i) for i, a in svc.placement(row).items()} | {(first, "validation")}
    assert cached == expected
    worker_id = api.coordinator.runner.workers[first].id
    one = await api("GET", "data/cache", params={"node_id": worker_id}, key=alice)
    assert [w["address"] for w in one.json["workers"]] == [first]
    assert any(s["shard"] == "validation" for s in one.json["workers"][0]["shards"])
    # another user sees no trace of alice's shards
    theirs = await api("GET", "data/cache", key=bob)
    assert all(w["shards"] == [] and w["bytes"] == 0 for w in theirs.json["workers"])

    # deleting the dataset empties the workers' caches of it
    assert (await api("DELETE", f"datasets/{ds_id}", key=alice)).status == 204
    after = await api("GET", "data/cache")
    assert not any(s["dataset_id"] == ds_id for w in after.json["workers"] for s in w["shards"])


def arrays_of_digits(descriptor: dict, index: int) -> tuple[np.ndarray, np.ndarray]:
    """The rows of a digits shard, straight from scikit-learn."""
    from sklearn.datasets import load_digits

    from stratalab.kernels.data.cache import row_range

    bunch = load_digits()
    start, stop = row_range(descriptor, index)
    return bunch.data[start:stop].astype(np.float32), bunch.target[start:stop]
