"""``benchmarks/pareto_plot.py JSON PNG`` draws a ComfyUI benchmark's plot where ComfyUI's interpreter has no matplotlib."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ROWS = [{"method": "dense uni_pc-30", "steps": 30, "wall_ratio": 1.0, "flop_ratio": 1.0},
        {"method": "rhymeflow target 2x (Accelerate + uni_pc)", "steps": 30, "wall_ratio": 2.1, "flop_ratio": 2.03, "psnr_mean": 29.8},
        {"method": "easycache 0.2 (node default)", "steps": 30, "wall_ratio": 1.8, "flop_ratio": 1.74, "psnr_mean": 9.6},
        {"method": "asymrnr (testbed schedule)", "steps": 30, "wall_ratio": 1.1, "flop_ratio": None, "psnr_mean": 25.2},
        {"method": "dense uni_pc-15", "steps": 15, "wall_ratio": 2.1, "flop_ratio": 2.0, "psnr_mean": 21.7}]


def _plot(tmp_path: Path, report: dict) -> subprocess.CompletedProcess:
    src = tmp_path / "bench.json"
    src.write_text(json.dumps(report))
    return subprocess.run([sys.executable, str(ROOT / "benchmarks" / "pareto_plot.py"), str(src), str(tmp_path / "p.png")],
                          capture_output=True, text=True)


def test_draws_the_plot_from_the_json(tmp_path):
    done = _plot(tmp_path, {"rows": ROWS, "plot_title": "test bed, uni_pc"})
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_json_without_a_title_is_refused(tmp_path):
    done = _plot(tmp_path, {"rows": ROWS})
    assert done.returncode != 0 and "no 'plot_title'" in done.stderr and not (tmp_path / "p.png").exists()
