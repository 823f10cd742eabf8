#!/usr/bin/env bash
# One-command check of the real backend on an NVIDIA GPU (under 5 minutes on an H100):
# NVML readings, the energy counter against integrated power, the real serving engine on CUDA
# under FCFS and Andes, and the sim-vs-real error table. It only reads GPU settings: it never
# changes the power limit or clocks (and reports whether they are unchanged at the end).
set -euo pipefail
cd "$(dirname "$0")/.."
exec python -m realbackend.gpu_check "$@"
