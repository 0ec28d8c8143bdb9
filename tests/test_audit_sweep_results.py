"""What a user gets back from sweeps, regret reports and result files: faults found by the
sweep/results audit, each pinned by an independent check (hand-computed values, files on disk)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from simulator.sweep import Sweep, execute, executor
from simulator.sweep.points import run_point

SCENARIOS = Path(__file__).parent.parent / "scenarios"
PROFILES = Path(__file__).parent.parent / "calibration" / "profiles"


def _in_process(tasks, sweep, workers):
    """The local backend's points, computed in this process (no spawned workers: fast)."""
    for p in tasks:
        yield p, run_point(sweep.kind, sweep.base, sweep.base_dir, p, sweep.skip_bad)


def _predict(blocks: list[int]) -> Sweep:
    return Sweep.from_dict({"sweep": {"name": "t", "kind": "predict", "seed": 7},
                            "grid": {"blocks": blocks},
                            "base": {"model": "deepseek-v3.2", "topology": "dgx_h100:nodes=2"}})


def test_a_resumed_point_takes_its_index_in_the_grown_sweep(tmp_path, monkeypatch):
    monkeypatch.setattr(executor, "_iter_local", _in_process)
    execute(_predict([8, 64]), tmp_path, "local", workers=1, progress=False)
    res = execute(_predict([1, 8, 64]), tmp_path, "local", workers=1, progress=False)
    assert (res.computed, res.resumed) == (1, 2)
    # docs/records.md: `point` is the point's index in the sweep's order
    by_blocks = res.results.groupby("blocks")["point"].unique().map(list).to_dict()
    assert by_blocks == {1: [0], 8: [1], 64: [2]}
    fresh = execute(_predict([1, 8, 64]), tmp_path / "fresh", "local", workers=1,
                    progress=False)
    pd.testing.assert_frame_equal(res.results, fresh.results)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), fresh.results)


def _run_sweep(folder: Path) -> Sweep:
    return Sweep.from_dict({"sweep": {"name": "r", "kind": "run", "base": "s.toml"},
                            "grid": {"stack": ["ibgda"]}}, source="r.toml", base_dir=folder)


def test_a_changed_kernel_profile_file_changes_the_point_key(tmp_path):
    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    profile = (PROFILES / "h200.toml").read_text()
    (tmp_path / "p.toml").write_text(profile)
    (tmp_path / "s.toml").write_text(text + '\n[calibration]\nprofile = "p.toml"\n')
    first = [p.key for p in _run_sweep(tmp_path).points()]
    assert [p.key for p in _run_sweep(tmp_path).points()] == first
    (tmp_path / "p.toml").write_text(profile + "\n# edited\n")
    assert [p.key for p in _run_sweep(tmp_path).points()] != first


def test_a_kernel_profile_named_in_the_included_calibration_keys_the_point(tmp_path):
    text = (SCENARIOS / "mooncake_conversation.toml").read_text()
    (tmp_path / "p.toml").write_text((PROFILES / "h200.toml").read_text())
    (tmp_path / "cal.toml").write_text('profile = "p.toml"\n')
    (tmp_path / "s.toml").write_text('include = "cal.toml"\n' + text)
    sweep = _run_sweep(tmp_path)
    (point,) = sweep.points()
    assert str((tmp_path / "p.toml").resolve()) in sweep._input_files(point.as_dict)
    (tmp_path / "p.toml").write_text((PROFILES / "h200.toml").read_text() + "\n# edited\n")
    assert _run_sweep(tmp_path).points()[0].key != point.key


class _Future:
    def __init__(self, answer):
        self.answer = answer

    def result(self):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


class _Client:
    """A Dask client whose point 1's workers all died (``KilledWorker``); the others answer."""

    def submit(self, fn, kind, base, base_dir, point, skip_bad, pure, key):
        from types import SimpleNamespace

        from distributed import KilledWorker

        if point.index == 1:
            worker = SimpleNamespace(address="tcp://127.0.0.1:1")
            return _Future(KilledWorker(key, worker, 3))
        return _Future(fn(kind, base, base_dir, point, skip_bad))

    def cancel(self, futures):
        pass

    def close(self):
        pass


def test_a_dask_point_whose_workers_died_is_a_failed_point_and_the_sweep_goes_on(
        tmp_path, monkeypatch):
    import dask.distributed

    monkeypatch.setattr(executor, "_connect", lambda address: _Client())
    monkeypatch.setattr(dask.distributed, "as_completed", lambda futures: list(futures))
    res = execute(_predict([1, 8, 64]), tmp_path, "dask", scheduler="tcp://x:1",
                  progress=False)
    assert (res.computed, [f["point"] for f in res.failures]) == (2, [1])
    assert res.failures[0]["error"].startswith("WorkerDied: ")
    assert "KilledWorker" in res.failures[0]["error"]
    assert sorted(pd.read_parquet(tmp_path / "results.parquet")["blocks"].unique()) == [1, 64]
    assert (tmp_path / "failures.json").is_file()


def _predict_on(nodes: int) -> Sweep:
    return Sweep.from_dict({"sweep": {"name": "t", "kind": "predict", "seed": 7},
                            "grid": {"blocks": [8, 64]},
                            "base": {"model": "deepseek-v3.2",
                                     "topology": f"dgx_h100:nodes={nodes}"}})


def test_an_interrupted_rerun_leaves_no_results_file_of_the_earlier_inputs(tmp_path, monkeypatch):
    import pytest

    monkeypatch.setattr(executor, "_iter_local", _in_process)
    execute(_predict_on(2), tmp_path, "local", workers=1, progress=False)
    assert (tmp_path / "results.parquet").is_file()

    def stop(point, outcome):
        raise KeyboardInterrupt

    # the base changed (3 nodes): both points are stale; Ctrl-C after the first is recomputed
    with pytest.raises(executor.Interrupted):
        execute(_predict_on(3), tmp_path, "local", workers=1, progress=False, on_point=stop)
    # results.parquet held the 2-node sweep's numbers, read as this sweep's
    assert not (tmp_path / "results.parquet").exists()
    assert not (tmp_path / "failures.json").exists()
    res = execute(_predict_on(3), tmp_path, "local", workers=1, progress=False)
    assert (res.computed, res.resumed) == (1, 1)
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "results.parquet"), res.results)
