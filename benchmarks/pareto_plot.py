"""Write a benchmark table as CSV and as a fidelity-vs-speed-up plot (one curve per method family).

Why a plot: a speed-up is only worth having if it sits above "dense with fewer steps" on the
speed/fidelity curve; a table makes that comparison row by row, a plot shows it at a glance. Each
point is one method at one operating point; the left panel puts it at its FLOP ratio, the right at its
measured wall-clock ratio, both against mean pixel PSNR to dense of the same seed.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path



def family(name: str) -> str:
    """Which curve a row belongs to: combinations with AsymRnR count as RhymeFlow + AsymRnR; the target knob's rows
    (paper strides on thinned steps) are their own curve, as are its adaptive-keyframe rows."""
    if name.startswith("dense"):
        return "dense-k"
    if name.startswith("easycache"):
        return "EasyCache (core)"
    if name.startswith("rhymeflow") and "asymrnr" in name:
        return "RhymeFlow + AsymRnR"
    if name.startswith("rhymeflow target"):
        return "RhymeFlow target, adaptive" if "adaptive" in name else "RhymeFlow target (step caching)"
    return "RhymeFlow presets" if name.startswith("rhymeflow") else "AsymRnR"


CURVES = ("dense-k", "EasyCache (core)", "RhymeFlow target (step caching)")  # drawn as lines: a sweep of one knob


def short_label(name: str, fam: str) -> str:
    """``rhymeflow paper (Tw5 2-3 M4) kv quadratic`` -> ``paper quadratic``; combinations end in ``+A``."""
    head = name.replace("rhymeflow ", "").split(" (")[0]
    tail = name.split(")")[-1].replace(" kv", "").replace(" + asymrnr", "").replace("adaptive", "").strip() if ")" in name else ""
    return (head + (" " + tail if tail else "") + (" +A" if "asymrnr" in name and fam != "AsymRnR" else "")).strip()


def write_csv(rows: list[dict], path: Path) -> None:
    keys = [k for k in rows[0] if not isinstance(rows[0][k], (list, dict))]
    for r in rows[1:]:
        keys += [k for k in r if k not in keys and not isinstance(r[k], (list, dict))]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in r.items() if k in keys})


def write_plot(rows: list[dict], title: str, path: Path) -> bool:
    """PNG with two panels; ``rows[0]`` is the reference and is not drawn. False (nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    colours = {"dense-k": "#7f8790", "EasyCache (core)": "#c0392b", "RhymeFlow presets": "#2e9d5b",
               "RhymeFlow target (step caching)": "#1f6fb2", "RhymeFlow target, adaptive": "#17a2b8", "AsymRnR": "#d9822b",
               "RhymeFlow + AsymRnR": "#7b52c9"}
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), sharey=True)
    points = [r for r in rows[1:] if "psnr_mean" in r]  # rows[0] is the dense reference itself (PSNR vs itself: capped at 100)
    for ax, key, label in ((axes[0], "flop_ratio", "FLOP speed-up vs dense (x)"), (axes[1], "wall_ratio", "wall-clock speed-up vs dense (x, measured)")):
        for fam, colour in colours.items():
            pts = sorted((r[key], r["psnr_mean"], r["method"]) for r in points if family(r["method"]) == fam)
            if not pts:
                continue
            xs, ys = [p[0] for p in pts], [p[1] for p in pts]
            ax.plot(xs, ys, "-o" if fam in CURVES else "o", color=colour, label=fam, markersize=6, linewidth=1.5)
            if fam not in CURVES:
                for x, y, name in pts:
                    ax.annotate(short_label(name, fam),
                                (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("PSNR vs dense (dB, mean over frames and videos)")
    axes[0].legend(loc="upper right", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main(argv: list[str]) -> None:
    """``python3 benchmarks/pareto_plot.py BENCHMARK.json PLOT.png``: the plot from a benchmark's JSON, for runs made
    under an interpreter without matplotlib (ComfyUI's venv often has none); the JSON carries the rows and the title."""
    if len(argv) != 2:
        sys.exit("usage: python3 benchmarks/pareto_plot.py BENCHMARK.json PLOT.png")
    report = json.loads(Path(argv[0]).read_text())
    if "plot_title" not in report:
        sys.exit(f"{argv[0]}: no 'plot_title' (written by benchmarks/comfyui_benchmark.py since it records one)")
    rows = [r for r in report["rows"] if r.get("flop_ratio") is not None]
    if not write_plot(rows, report["plot_title"], Path(argv[1])):
        sys.exit("matplotlib is not installed in this interpreter")
    print(f"wrote {argv[1]}")


if __name__ == "__main__":
    main(sys.argv[1:])
