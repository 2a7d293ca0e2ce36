"""Byte-bounded LRU of verified models: tests for stratalab/kernels/serving/cache.py."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from stratalab.errors import NoModel
from stratalab.kernels.models import samples
from stratalab.kernels.models.errors import ArtifactCorrupted, InvalidInput
from stratalab.kernels.models.samples import SampleStore
from stratalab.kernels.serving.cache import CachedModel, ModelCache, content_path


def _models_of_sizes(root: Path, tmp: Path, hidden_sizes: list[int]) -> list[str]:
    """Store MLPs whose file sizes grow with ``hidden``; return their digests."""
    return [
        samples.write_artifact(
            root, samples.make_mlp_onnx(tmp / f"m{h}.onnx", hidden=h).read_bytes()
        )
        for h in hidden_sizes
    ]


def test_hit_returns_the_same_loaded_model(store: SampleStore) -> None:
    # Prepare
    cache = ModelCache(store.root, max_bytes=10_000_000)
    # Execute
    first, first_hit = cache.get(store.mlp)
    second, second_hit = cache.get(store.mlp, "onnx")
    # Assert
    assert (first_hit, second_hit) == (False, True)
    assert second is first
    assert second.hits == 1
    assert first.format == "onnx"  # detected from content when not given
    out = first.model.run({"x": np.ones((1, 4), dtype=np.float32)})
    assert out["y"].shape == (1, 3)


def test_evicts_least_recently_used_until_under_the_byte_bound(
    store: SampleStore, tmp_path: Path
) -> None:
    # Prepare: three models; the bound fits two of them
    root = tmp_path / "store"
    a, b, c = _models_of_sizes(root, tmp_path, [64, 65, 66])
    sizes = [content_path(root, s).stat().st_size for s in (a, b, c)]
    evicted: list[CachedModel] = []
    cache = ModelCache(root, max_bytes=sizes[0] + sizes[2] + 10, on_evict=evicted.append)
    cache.get(a)
    cache.get(b)
    cache.get(a)  # a is now more recently used than b
    # Execute
    cache.get(c)
    # Assert: b (LRU) went, a and c stay, total under the bound
    assert [e.sha256 for e in evicted] == [b]
    assert [e.sha256 for e in cache.entries()] == [a, c]
    assert cache.nbytes == sizes[0] + sizes[2] <= cache.max_bytes


def test_a_model_bigger_than_the_bound_is_loaded_then_evicted_first(tmp_path: Path) -> None:
    # Prepare
    root = tmp_path / "store"
    small, big, other = _models_of_sizes(root, tmp_path, [4, 512, 5])
    small_size = content_path(root, small).stat().st_size
    cache = ModelCache(root, max_bytes=small_size * 3)
    cache.get(small)
    # Execute: the big model does not fit even alone
    entry, _ = cache.get(big)
    # Assert: it is served anyway, everything else made room
    assert entry.nbytes > cache.max_bytes
    assert [e.sha256 for e in cache.entries()] == [big]
    # Execute: the next load evicts the oversized model first, even though it was used last
    cache.get(big)
    cache.get(other)
    assert [e.sha256 for e in cache.entries()] == [other]


def test_corrupted_file_fails_verification(store: SampleStore, tmp_path: Path) -> None:
    # Prepare: copy an artifact and flip one byte in the copy
    root = tmp_path / "store"
    target = content_path(root, store.mlp)
    target.parent.mkdir(parents=True)
    shutil.copy(store.path(store.mlp), target)
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0x01
    target.write_bytes(bytes(data))
    cache = ModelCache(root, max_bytes=10_000_000)
    # Execute / Assert
    with pytest.raises(ArtifactCorrupted) as info:
        cache.get(store.mlp)
    assert info.value.code == "INTERNAL_ERROR"
    assert str(root) not in info.value.message  # no server paths in client messages
    assert len(cache) == 0


def test_missing_artifact_is_no_model(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, max_bytes=1000)
    with pytest.raises(NoModel):
        cache.get("ab" * 32)


def test_digest_must_be_hex_so_it_cannot_escape_the_store(tmp_path: Path) -> None:
    cache = ModelCache(tmp_path, max_bytes=1000)
    with pytest.raises(InvalidInput, match="64 hexadecimal"):
        cache.get("../../etc/passwd")


def test_explicit_path_is_verified_too(store: SampleStore) -> None:
    cache = ModelCache(None, max_bytes=10_000_000)
    entry, _ = cache.get(store.mlp, path=store.path(store.mlp))
    assert entry.sha256 == store.mlp
    with pytest.raises(ArtifactCorrupted):
        cache.get(store.tokens, path=store.path(store.mlp))


def test_concurrent_misses_load_once(store: SampleStore) -> None:
    # Prepare
    cache = ModelCache(store.root, max_bytes=10_000_000)
    results: list[CachedModel] = []
    barrier = threading.Barrier(4)

    def load() -> None:
        barrier.wait()
        results.append(cache.get(store.torchscript)[0])

    threads = [threading.Thread(target=load) for _ in range(4)]
    # Execute
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # Assert
    assert len(results) == 4
    assert all(r is results[0] for r in results)
    assert results[0].format == "torchscript"


def test_evict_and_clear(store: SampleStore) -> None:
    cache = ModelCache(store.root, max_bytes=10_000_000)
    cache.get(store.mlp)
    cache.get(store.tokens)
    assert [e.sha256 for e in cache.evict(store.mlp)] == [store.mlp]
    assert store.mlp not in cache
    cache.clear()
    assert len(cache) == 0
    assert cache.nbytes == 0
