#!/usr/bin/env bash
# The README's demo command: install what is missing, build, simulate a small recording with
# known spikes, run the pipeline stages that exist on it, and say where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
scripts/build.sh
make -f Makefile.pipeline KS_BIN="$PWD/build/bin"
echo
echo "demo.sh: done in $(( $(date +%s) - start )) s"
echo "  simulated recording and ground truth: $PWD/ks-demo/"
echo "  sorting work folder:                  $PWD/ks-demo.ks/ (run.json, config/, filter/, whiten/, drift/, detect/, ks-tools.log)"
echo "  drift map:                            $PWD/ks-demo.ks/drift/drift_map.png"
