#!/usr/bin/env bash
# One-command check of the real backend on an NVIDIA GPU at a realistic model size (about 4-6
# minutes on one H100/H200; the engine, calibration and four sim-vs-real cases): NVML readings,
# the energy counter against integrated power, Llama-3.1-8B's shapes with random weights in bf16,
# calibration, sim-vs-real errors for FCFS and Andes at a light and an overload rate, and the
# catalog model's uncalibrated prediction. Writes results/gpu_check/gpu_check.{json,md}
# (--out DIR to change). Read-only: never changes the power limit, clocks or MIG mode, and
# reports whether they are unchanged at the end. `--cpu-smoke`: the same code on the CPU with a
# shrunk copy of the architecture (about a minute). See docs/validation.md.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
missing="$("$PY" -c 'import importlib.util as u; print(" ".join(m for m in ("torch", "numpy", "scipy", "pandas", "simpy", "pydantic") if u.find_spec(m) is None))')"
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python packages: $missing (pip install -e '.[real]')" >&2; exit 2
fi
"$PY" -c 'import pynvml' 2>/dev/null || echo "gpu_check: nvidia-ml-py (pynvml) is not installed: no NVML readings or GPU energy" >&2
if ! "$PY" -c "import orrery.realbackend.gpu_check" 2>/dev/null; then
  # not installed: expose the repository's folders as the `orrery` namespace (no install, no network)
  shim="$(mktemp -d)"
  mkdir -p "$shim/orrery"
  for d in sim hwmodels workloads traces policies realbackend experiments; do ln -s "$PWD/$d" "$shim/orrery/$d"; done
  export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
  "$PY" -c "import orrery.realbackend.gpu_check" || {
    echo "gpu_check: cannot import orrery (missing dependencies?); pip install -e '.[real]' first" >&2; exit 2; }
fi
exec "$PY" -m orrery.realbackend.gpu_check "$@"
