"""Who may call what: credentials, API keys, tenancy, cookies + XSRF, rate limits."""

from __future__ import annotations

import hashlib
import secrets
from types import SimpleNamespace
from typing import Any

import pytest
import sqlalchemy as sa
from jupyter_server.auth.identity import User
from tornado.web import create_signed_value

from stratalab.testing import assert_error

GPU_JOB = {"name": "needs-gpu", "script": "pass", "gpu": 1}  # stays QUEUED: no GPU here


def header(resp: Any, name: str) -> str | None:
    """A response header, case-insensitively."""
    return {k.lower(): v for k, v in resp.headers.items()}.get(name.lower())


def _counts(store: Any) -> tuple[int, int]:
    with store.engine.connect() as conn:
        jobs = conn.execute(sa.text("SELECT count(*) FROM jobs")).scalar_one()
        keys = conn.execute(sa.text("SELECT count(*) FROM api_keys")).scalar_one()
    return jobs, keys


async def counts(api: Any) -> tuple[int, int]:
    """(jobs, api keys) in the store."""
    return await api.coordinator.db(_counts, api.coordinator.store)


@pytest.fixture
def serverapp_overrides() -> dict[str, Any]:
    """Extra ``ServerApp`` settings for one test."""
    return {}


@pytest.fixture
def jp_server_config(jp_server_config: dict[str, Any], serverapp_overrides: dict[str, Any]):
    """The shared server config plus this module's ``ServerApp`` overrides."""
    return {
        **jp_server_config,
        "ServerApp": {**jp_server_config["ServerApp"], **serverapp_overrides},
    }


# ---------------------------------------------------------- credentials
async def test_no_credentials_is_401_auth_required(api):
    before = await counts(api)

    get = await api("GET", "jobs", token=False)
    post = await api("POST", "jobs", json_body={"name": "x", "script": "pass"}, token=False)
    keys = await api("POST", "keys", json_body={"user_id": "eve"}, token=False)

    for resp in (get, post, keys):
        assert_error(resp, 401, "AUTH_REQUIRED")
    assert await counts(api) == before


async def test_unknown_api_key_is_401_auth_invalid(api):
    before = await counts(api)
    forged = "slk_" + secrets.token_urlsafe(32)

    get = await api("GET", "jobs", key=forged)
    post = await api("POST", "jobs", json_body={"name": "x", "script": "pass"}, key=forged)
    empty = await api("GET", "jobs", key="")

    for resp in (get, post, empty):
        assert_error(resp, 401, "AUTH_INVALID")
    assert await counts(api) == before


async def test_revoked_key_is_401_auth_invalid(api):
    created = await api("POST", "keys", json_body={"user_id": "carol", "name": "laptop"})
    assert created.status == 201, created.text
    key, key_id = created.json["key"], created.json["id"]
    assert created.headers["Location"].endswith(f"/keys/{key_id}")
    assert (await api("GET", "jobs", key=key)).status == 200

    revoke = await api("DELETE", f"keys/{key_id}")

    assert revoke.status == 204, revoke.text
    before = await counts(api)
    assert_error(await api("GET", "jobs", key=key), 401, "AUTH_INVALID")
    post = await api("POST", "jobs", json_body={"name": "x", "script": "pass"}, key=key)
    assert_error(post, 401, "AUTH_INVALID")
    assert await counts(api) == before
    listed = {k["id"]: k for k in (await api("GET", "keys")).json["items"]}
    assert listed[key_id]["revoked_at"] is not None


async def test_user_revokes_own_key_but_not_anothers(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    alice_keys = (await api("GET", "keys", key=alice)).json["items"]
    assert [k["user_id"] for k in alice_keys] == ["alice"]
    bob_id = next(
        k["id"] for k in (await api("GET", "keys")).json["items"] if k["user_id"] == "bob"
    )

    other = await api("DELETE", f"keys/{bob_id}", key=alice)
    own = await api("DELETE", f"keys/{alice_keys[0]['id']}", key=alice)

    assert_error(other, 404, "NOT_FOUND")
    assert (await api("GET", "jobs", key=bob)).status == 200
    assert own.status == 204
    assert_error(await api("GET", "jobs", key=alice), 401, "AUTH_INVALID")


# --------------------------------------------------------------- tenancy
async def test_another_users_job_is_not_found_but_admin_sees_it(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    admin = await api.create_key("ops", scope="admin")
    submitted = await api("POST", "jobs", json_body=GPU_JOB, key=alice)
    assert submitted.status == 201, submitted.text
    job_id = submitted.json["job_id"]
    assert submitted.json["job"]["user_id"] == "alice"

    attempts = [
        await api("GET", f"jobs/{job_id}", key=bob),
        await api("POST", f"jobs/{job_id}/cancel", key=bob),
        await api("POST", f"jobs/{job_id}/retry", key=bob),
        await api("PATCH", f"jobs/{job_id}/priority", json_body={"priority": 9}, key=bob),
        await api("GET", f"jobs/{job_id}/logs", key=bob, timeout=10),
        await api("GET", f"jobs/{job_id}/events", key=bob, timeout=10),
    ]

    for resp in attempts:
        err = assert_error(resp, 404, "NOT_FOUND")
        assert "alice" not in resp.text
        assert err["message"] == f"no job {job_id}"
    bob_list = (await api("GET", "jobs", key=bob)).json
    assert bob_list["total"] == 0 and bob_list["items"] == []
    spying = (await api("GET", "jobs", key=bob, params={"user_id": "alice"})).json
    assert spying["total"] == 0 and spying["items"] == []
    assert (await api("GET", "jobs", key=alice)).json["total"] == 1
    seen = await api("GET", f"jobs/{job_id}", key=admin)
    assert seen.status == 200
    assert seen.json["status"] == "QUEUED" and seen.json["priority"] == 5  # bob changed nothing
    by_admin = (await api("GET", "jobs", key=admin, params={"user_id": "alice"})).json
    assert [j["id"] for j in by_admin["items"]] == [job_id]
    bob_queue = (await api("GET", "queue", key=bob)).json
    assert bob_queue["depth"] == 0 and bob_queue["jobs"] == []


async def test_queue_stats_of_a_user_count_only_their_jobs(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")
    assert (await api("POST", "jobs", json_body=GPU_JOB, key=alice)).status == 201

    queue = (await api("GET", "queue", key=bob)).json

    assert queue["depth"] == 0
    assert sum(queue["by_priority"].values()) == queue["depth"]
    assert queue["oldest_wait_seconds"] is None


# ------------------------------------------------------------ key scopes
async def test_user_cannot_mint_keys_for_others_or_admin_keys(api):
    alice = await api.create_key("alice")
    before = await counts(api)

    for body in ({"user_id": "bob"}, {"scope": "admin"}, {"user_id": "alice", "scope": "admin"}):
        resp = await api("POST", "keys", json_body=body, key=alice)
        assert_error(resp, 403, "FORBIDDEN")

    assert await counts(api) == before
    own = await api("POST", "keys", json_body={"name": "second"}, key=alice)
    assert own.status == 201, own.text
    assert own.json["user_id"] == "alice" and own.json["scope"] == "user"


async def test_user_cannot_change_config_or_drain_workers(api):
    alice = await api.create_key("alice")
    worker_id = (await api("GET", "workers", key=alice)).json["items"][0]["id"]
    limit = api.coordinator.config.rate_limit_per_minute

    put = await api("PUT", "config", json_body={"rate_limit_per_minute": 1}, key=alice)
    drain = await api("POST", f"workers/{worker_id}/drain", json_body={"force": True}, key=alice)
    enable = await api("POST", f"workers/{worker_id}/enable", key=alice)

    for resp in (put, drain, enable):
        assert_error(resp, 403, "FORBIDDEN")
    assert api.coordinator.config.rate_limit_per_minute == limit
    assert await api.coordinator.db(api.coordinator.store.settings) == {}
    assert api.coordinator.runner.drained == set()
    assert await api.coordinator.db(api.coordinator.store.worker_flags) == {}
    worker = (await api("GET", f"workers/{worker_id}", key=alice)).json
    assert worker["status"] == "active"


def _key_rows(store: Any) -> list[dict[str, Any]]:
    with store.engine.connect() as conn:
        return [dict(r._mapping) for r in conn.execute(sa.text("SELECT * FROM api_keys"))]


async def test_keys_are_stored_hashed(api):
    created = await api("POST", "keys", json_body={"user_id": "dave", "name": "ci"})
    secret = created.json["key"]
    assert secret.startswith("slk_") and len(secret) > 40

    rows = await api.coordinator.db(_key_rows, api.coordinator.store)
    listed = await api("GET", "keys")

    (row,) = [r for r in rows if r["id"] == created.json["id"]]
    assert row["key_hash"] == hashlib.sha256(secret.encode()).hexdigest()
    for r in rows:
        for value in r.values():
            assert secret not in str(value)
    assert len(row["prefix"]) < len(secret) // 4  # only enough to tell keys apart
    assert secret not in listed.text and "key_hash" not in listed.text


# ----------------------------------------------------- cookies and XSRF
def login_cookie(serverapp: Any, port: int, username: str = "browser-user") -> str:
    """The login cookie Jupyter's identity provider would set for ``username``."""
    provider = serverapp.identity_provider
    fake_handler = SimpleNamespace(request=SimpleNamespace(host=f"127.0.0.1:{port}"))
    name = provider.get_cookie_name(fake_handler)
    value = create_signed_value(
        serverapp.web_app.settings["cookie_secret"], name, provider.user_to_cookie(User(username))
    )
    return f'{name}="{value.decode()}"'


async def test_cookie_auth_needs_xsrf_for_writes(api, jp_serverapp, jp_http_port):
    cookie = login_cookie(jp_serverapp, jp_http_port)
    before = await counts(api)
    body = {"name": "from-browser", "script": "pass"}
    xsrf = secrets.token_hex(16)

    read = await api("GET", "jobs", token=False, headers={"Cookie": cookie})
    no_xsrf = await api("POST", "jobs", json_body=body, token=False, headers={"Cookie": cookie})
    wrong = await api(
        "POST",
        "jobs",
        json_body=body,
        token=False,
        headers={"Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": secrets.token_hex(16)},
    )

    assert read.status == 200, read.text  # the cookie itself is a valid login
    err = assert_error(no_xsrf, 403, "FORBIDDEN")
    assert "XSRF" in err["message"]
    assert_error(wrong, 403, "FORBIDDEN")
    assert await counts(api) == before

    ok = await api(
        "POST",
        "jobs",
        json_body=body,
        token=False,
        headers={"Cookie": f"{cookie}; _xsrf={xsrf}", "X-XSRFToken": xsrf},
    )

    assert ok.status == 201, ok.text
    assert ok.json["job"]["user_id"] == api.coordinator.config.owner
    assert (await counts(api))[0] == before[0] + 1


@pytest.mark.parametrize("serverapp_overrides", [{"allow_unauthenticated_access": False}])
async def test_api_keys_and_health_work_when_jupyter_forbids_anonymous_access(api):
    key = await api.create_key("alice")

    health = await api("GET", "health", token=False)
    listed = await api("GET", "jobs", key=key)
    posted = await api("POST", "jobs", json_body={"name": "k", "script": "pass"}, key=key)

    assert health.status == 200 and health.json["status"] == "ok", health.text[:200]
    assert listed.status == 200 and listed.json["total"] == 0, listed.text[:200]
    assert posted.status == 201, posted.text[:200]


# ------------------------------------------------------------ rate limit
@pytest.mark.parametrize("stratalab_config", [{"rate_limit_per_minute": 3}])
async def test_rate_limit_per_key(api):
    alice = await api.create_key("alice")
    bob = await api.create_key("bob")

    allowed = [await api("GET", "jobs", key=alice) for _ in range(3)]
    limited = await api("GET", "jobs", key=alice)
    limited_post = await api("POST", "jobs", json_body={"name": "x", "script": "pass"}, key=alice)
    other = await api("GET", "jobs", key=bob)

    for i, resp in enumerate(allowed):
        assert resp.status == 200, resp.text
        assert header(resp, "X-RateLimit-Limit") == "3"
        assert header(resp, "X-RateLimit-Remaining") == str(2 - i)
        assert int(header(resp, "X-RateLimit-Reset") or -1) >= 0
    err = assert_error(limited, 429, "RATE_LIMITED")
    assert err["details"] == {"limit_per_minute": 3}
    assert 1 <= int(header(limited, "Retry-After") or 0) <= 60
    assert_error(limited_post, 429, "RATE_LIMITED")
    assert (await counts(api))[0] == 0
    assert other.status == 200
    assert header(other, "X-RateLimit-Remaining") == "2"


@pytest.mark.parametrize("stratalab_config", [{"rate_limit_per_minute": 1}])
async def test_rate_limited_answer_carries_rate_limit_headers(api):
    alice = await api.create_key("alice")
    assert (await api("GET", "jobs", key=alice)).status == 200

    limited = await api("GET", "jobs", key=alice)

    assert limited.status == 429
    assert header(limited, "Retry-After")
    assert header(limited, "X-RateLimit-Limit") == "1"
    assert header(limited, "X-RateLimit-Remaining") == "0"
    assert header(limited, "X-RateLimit-Reset") is not None
