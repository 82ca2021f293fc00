#!/usr/bin/env bash
# Re-measure every figure the README quotes from the test bed, after its checkpoint changes (for instance
# after tools/train_testbed_on_device.sh): the evaluation (into the model card), the AsymRnR schedule
# calibrated on the new weights, the core and ComfyUI benchmarks at 30 and 50 steps with their plots (the
# evaluation and the ComfyUI one at 30 also under uni_pc, the Wan templates' sampler), the drop-in per
# sampler, the demo, and the screenshots and template thumbnails.
#
#   bash tools/remeasure_testbed.sh            # the README's sizes: about two hours on this project's 2 cores
#   SMOKE=1 bash tools/remeasure_testbed.sh    # tiny sizes, minutes: checks that every step still runs
#
# Why a script: the list is long and a missed item leaves the README quoting another checkpoint. Two lanes
# run side by side, each pinned to one core with one thread (a benchmark interleaves its own rows, so its
# ratios stay fair; its s/video is per core). The AsymRnR calibration runs first, because both lanes
# benchmark the schedule it writes. Logs land in out/remeasure/; plots are copied into docs/benchmark/.
# The README's tables are pasted from the logs by hand: they are read before they are quoted.
# Needs ComfyUI at COMFYUI_PATH (default /opt/comfyui, tests/comfyui/README.md) for lane 2; without it
# lane 2 is skipped and says so.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
comfy=${COMFYUI_PATH:-/opt/comfyui}
cpy="$comfy/.venv/bin/python"
logs=out/remeasure
mkdir -p "$logs"
smoke=${SMOKE:-0}
schedule=rhymeflow_core/asymrnr/schedules/testbed_wan.json
if [ "$smoke" = 1 ]; then  # every command, at sizes that only prove it runs; nothing shipped is overwritten
  schedule=$logs/testbed_wan_schedule.json
  evaluate=(--per-scene 1 --frames 5 --no-write)
  calibrate=(--steps 12 --frames 6)
  bench30=(--steps 20 --frames 6 --videos 1 --reps 1 --budget 2 --targets 1.5 --asymrnr "$schedule" --out "$logs/benchmark")
  bench50=(--steps 24 --frames 7 --videos 1 --reps 1 --budget 2 --targets 1.5 --out "$logs/benchmark")
  comfy30=(--steps 20 --frames 6 --videos 1 --reps 1 --budget 2 --targets 1.5 --easycache 0.2 --out "$logs/comfyui_benchmark")
  comfy30u=(--sampler uni_pc "${comfy30[@]}")
  comfy50=(--steps 24 --frames 7 --videos 1 --reps 1 --budget 2 --targets 1.5 --easycache 0.2 --out "$logs/comfyui_benchmark")
  dropin=(--steps 20 --frames 6 --videos 1 --budget 2 --samplers euler --out "$logs/dropin_benchmark")
  demo=(--frames 6 --steps 20 --budget 2 --classes cat --out "$logs/demo")
  shots=(--help)  # screenshots write into docs/ and example_workflows/: only their start-up is checked
else
  evaluate=()
  calibrate=()
  bench30=(--steps 30 --frames 16 --videos 4 --reps 3)
  bench50=(--steps 50 --frames 21 --videos 4 --reps 1 --targets 1.5 2 2.5 3)
  comfy30=(--steps 30 --frames 16 --videos 4 --reps 2)
  comfy30u=(--sampler uni_pc --steps 30 --frames 16 --videos 4 --reps 2 --out out/comfyui_benchmark_uni_pc)
  comfy50=(--steps 50 --frames 16 --videos 4 --reps 1)
  dropin=()
  demo=()
  shots=()
fi

step() {  # step LOG CMD...: run, log, report the outcome on one line; a failure is remembered, the lane goes on
  local log=$1; shift
  local t0=$SECONDS
  "$@" >"$logs/$log.log" 2>&1
  local rc=$?
  echo "$(date +%H:%M) $log: exit $rc, $((SECONDS - t0)) s (log: $logs/$log.log)"
  [ $rc -eq 0 ] || echo "$log" >>"$logs/failed"
  return $rc
}
keep() {  # keep FILE NAME: copy a plot into docs/benchmark/ under NAME (full runs only)
  [ "$smoke" = 1 ] || cp "$1" "docs/benchmark/$2"
}
plot() {  # plot JSON NAME: a ComfyUI benchmark's plot, drawn by this python (ComfyUI's venv may lack matplotlib)
  [ "$smoke" = 1 ] || python3 benchmarks/pareto_plot.py "$1" "docs/benchmark/$2"
}
rm -f "$logs/failed"

step calibrate_asymrnr taskset -c 0 python3 -m rhymeflow_core.testbed.calibrate_asymrnr --out "$schedule" "${calibrate[@]}" || exit 1

lane1() {
  step evaluate taskset -c 0 python3 -m rhymeflow_core.testbed.evaluate "${evaluate[@]}"
  step evaluate_uni_pc taskset -c 0 python3 -m rhymeflow_core.testbed.evaluate --sampler uni_pc "${evaluate[@]}"
  step benchmark_30 taskset -c 0 python3 benchmarks/benchmark.py "${bench30[@]}"
  keep out/benchmark/pareto_30.png pareto_30.png
  step benchmark_50 taskset -c 0 python3 benchmarks/benchmark.py "${bench50[@]}"
  keep out/benchmark/pareto_50.png pareto_50.png
  step demo taskset -c 0 python3 benchmarks/demo.py "${demo[@]}"
}

lane2() {
  if [ ! -x "$cpy" ]; then
    echo "lane 2 skipped: no ComfyUI python at $cpy (ComfyUI benchmarks, drop-in table, screenshots not re-measured)"
    return 0
  fi
  step comfyui_benchmark_30 taskset -c 1 "$cpy" benchmarks/comfyui_benchmark.py "${comfy30[@]}"
  plot out/comfyui_benchmark/comfyui_benchmark.json comfyui_pareto_30.png
  step comfyui_benchmark_50 taskset -c 1 "$cpy" benchmarks/comfyui_benchmark.py "${comfy50[@]}"
  plot out/comfyui_benchmark/comfyui_benchmark.json comfyui_pareto_50.png
  step comfyui_benchmark_30_uni_pc taskset -c 1 "$cpy" benchmarks/comfyui_benchmark.py "${comfy30u[@]}"
  plot out/comfyui_benchmark_uni_pc/comfyui_benchmark.json comfyui_pareto_30_uni_pc.png
  step dropin_benchmark taskset -c 1 "$cpy" benchmarks/dropin_benchmark.py "${dropin[@]}"
  step screenshots taskset -c 1 "$cpy" tools/screenshots.py "${shots[@]}"
}

lane1 &
lane2 &
wait
if [ -s "$logs/failed" ]; then
  echo "FAILED: $(tr '\n' ' ' <"$logs/failed")(see their logs in $logs/)"
  exit 1
fi
echo "all done: paste the tables from $logs/*.log into README.md, and look at out/demo/ and docs/ before quoting them"
