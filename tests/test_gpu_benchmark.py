"""The GPU benchmark (``benchmarks/gpu_benchmark.py``) on the CPU: its smoke mode, dry run and time budget.

Why: no GPU is at hand when the benchmark is written or changed, and GPU time is too short to spend on a
crash. The smoke mode runs every code path (passes through the projection patch, the context cache on
both placements, whole sampling runs, AsymRnR's override and matching, torch.compile with the eager
backend) at toy sizes. No timing is asserted: CPU figures at 84 tokens say nothing about a GPU.
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_benchmark.py"
SECTIONS = {"pass", "run", "asymrnr", "compile"}
ROW_KEYS = {"section", "model", "layers", "tokens", "task", "status", "estimate_s", "n", "time_s", "time_s_full_depth",
            "wall_x", "flop_x", "wall_over_flop", "peak_gib", "peak_gib_full_depth"}


def _run(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)


def test_smoke_runs_every_section_and_reports_it(tmp_path):
    result = _run("--smoke", "--reps", "2", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert set(report) == {"meta", "plan", "rows", "skipped"}
    assert report["skipped"] == [], report["skipped"]
    rows = report["rows"]
    assert {r["section"] for r in rows} == SECTIONS
    for row in rows:
        assert row["status"] == "measured"
        assert ROW_KEYS <= set(row), ROW_KEYS - set(row)
        assert row["time_s"] > 0
    runs = [r for r in rows if r["section"] == "run"]
    assert [r["task"].split()[2] for r in runs] == ["dense", "paper", "fast"]
    assert all(r["full_passes"] + r["keyframe_passes"] == 50 for r in runs[1:])
    keyframe = [r for r in rows if r["task"].startswith("keyframe pass")]
    assert {("kv" in r["task"], "cpu" in r["task"]) for r in keyframe} == {(True, True), (True, False), (False, True), (False, False)}
    assert all(r["cache_bytes"] > 0 and r["flop_x"] > 1 for r in keyframe)
    assert "reduced attention" in " ".join(r["task"] for r in rows)
    # the table: a header and one line per row, in run order
    lines = result.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("model") and "wall/FLOP" in line)
    assert [line.split("  ")[0] for line in lines[header + 1:header + 1 + len(rows)]] == ["smoke"] * len(rows)
    assert (tmp_path / "gpu_benchmark.txt").read_text().count("\n") == len(rows) + 2


def test_dry_run_plans_the_real_sizes_within_the_default_budget(tmp_path):
    result = _run("--dry-run", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    for name in ("wan2.1-1.3b-480p", "wan2.1-1.3b-720p", "wan2.1-14b-480p", "wan2.1-14b-720p"):
        assert name in out
    assert "50-step run paper" in out and "torch.compile" in out and "AsymRnR" in out
    estimate, budget = map(float, re.search(r"estimated GPU time: (\d+) s .*\(budget (\d+) s", out).groups())
    assert estimate <= budget  # the planned work fits the default budget by its own estimate
    assert not (tmp_path / "gpu_benchmark.json").exists()


def test_budget_skips_what_does_not_fit_and_says_why(tmp_path):
    result = _run("--smoke", "--budget-s", "0", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_benchmark.json").read_text())
    assert report["rows"] and all(r["status"] == "skipped" for r in report["rows"])
    assert len(report["skipped"]) == len(report["plan"])
    assert all("time budget" in s["why"] for s in report["skipped"])
    assert "SKIPPED: time budget" in result.stdout
