#!/usr/bin/env bash
# Configures and builds ks-tools into build/ (Release). CUDA is built when nvcc is found;
# pass -DKS_ENABLE_CUDA=OFF (or any other CMake option) as arguments to change that.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc 2>/dev/null || echo 2)
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build build -j"$jobs"
