"""Energy counters: RAPL files read as the kernel writes them, wrap-around, and absence."""

from __future__ import annotations

from pathlib import Path

from stratalab.kernels.metering import Meter
from stratalab.kernels.power import Counters, EnergyMeter, joules_between, probe, read_counters


def _package(root: Path, name: str, energy_uj: int, wrap_uj: int = 262_143_328_850) -> Path:
    domain = root / name
    domain.mkdir(parents=True, exist_ok=True)
    (domain / "energy_uj").write_text(f"{energy_uj}\n")
    (domain / "max_energy_range_uj").write_text(f"{wrap_uj}\n")
    return domain


def test_rapl_packages_are_read_and_subdomains_skipped(tmp_path):
    _package(tmp_path, "intel-rapl:0", 5_000_000)
    _package(tmp_path, "intel-rapl:0:0", 1_000_000)  # core: part of package 0
    _package(tmp_path, "intel-rapl:1", 7_000_000)

    counters, _ = read_counters(tmp_path)

    assert sorted(counters.rapl) == ["intel-rapl:0", "intel-rapl:1"]
    assert probe(tmp_path)["source"].startswith("rapl")


def test_energy_meter_reports_the_difference_in_joules(tmp_path):
    pkg = _package(tmp_path, "intel-rapl:0", 1_000_000)
    meter = EnergyMeter(tmp_path)

    meter.start()
    (pkg / "energy_uj").write_text("3500000\n")
    joules = meter.stop()

    assert joules == 2.5


def test_a_wrapped_counter_counts_across_the_wrap():
    before = Counters(rapl={"intel-rapl:0": (999_000_000, 1_000_000_000)})
    after = Counters(rapl={"intel-rapl:0": (1_000_000, 1_000_000_000)})

    assert joules_between(before, after) == 2.0


def test_no_counters_means_none_and_a_reason(tmp_path):
    missing = tmp_path / "no-powercap"

    info = probe(missing)
    meter = EnergyMeter(missing)
    meter.start()

    assert meter.stop() is None
    if info["source"] == "unavailable":  # a GPU machine with NVML still measures the GPU
        assert "does not exist" in info["reason"]


def test_meter_measures_cpu_time_of_the_work():
    with Meter("cpu", energy=False) as meter:
        sum(i * i for i in range(300_000))

    usage = meter.usage()
    assert usage["cpu_ms"] > 0
    assert usage["gpu_ms"] == 0.0
    assert usage["energy_j"] is None
