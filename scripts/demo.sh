#!/usr/bin/env bash
# The README's demo command: install what is missing, build, simulate a small recording with
# known spikes, sort it with the pipeline, score the sorting and say where the results are.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
scripts/install-deps.sh
scripts/build.sh
make -f Makefile.pipeline KS_BIN="$PWD/build/bin"
echo
echo "How well the demo sorting found the simulated units (ks-score):"
build/bin/ks-score --gt ks-demo --sorting ks-demo.ks/final | sed -n '/^summary/,$p'
echo
echo "demo.sh: done in $(( $(date +%s) - start )) s"
echo "  simulated recording and ground truth: $PWD/ks-demo/"
echo "  sorting work folder:                  $PWD/ks-demo.ks/ (config/, filter/, whiten/, drift/, detect/, cluster/, match/, final/, ks-tools.log)"
echo "  units (good/mua, contamination):      $PWD/ks-demo.ks/final/"
echo "  Phy folder:                           $PWD/ks-demo.ks/phy/   (phy template-gui ks-demo.ks/phy/params.py)"
echo "  drift map:                            $PWD/ks-demo.ks/drift/drift_map.png"
