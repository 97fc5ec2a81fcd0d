# Shared set-up for the Bats tests: tool paths, bats-assert, small input makers.
bats_require_minimum_version 1.5.0

common_setup() {
  bats_load_library bats-support
  bats_load_library bats-assert
  : "${KS_BIN_DIR:?set KS_BIN_DIR to the bin folder of the build}"
  PY=${KS_PYTHON:-/usr/bin/python3}
  cd "$BATS_TEST_TMPDIR"
}

# make_recording FILE N_CHAN N_SAMPLES [DTYPE]: deterministic random samples (numpy).
make_recording() {
  "$PY" - "$@" <<'PY'
import sys, numpy as np
path, nch, ns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
dt = sys.argv[4] if len(sys.argv) > 4 else "int16"
rng = np.random.default_rng(0)
(rng.normal(0, 20, (ns, nch))).astype(dt).tofile(path)
PY
}

# make_probe FILE N_CHAN: a one-column Kilosort4 JSON probe with 20 µm pitch.
make_probe() {
  "$PY" - "$@" <<'PY'
import sys, json
path, n = sys.argv[1], int(sys.argv[2])
json.dump({"chanMap": list(range(n)), "xc": [0.0]*n, "yc": [20.0*i for i in range(n)],
           "kcoords": [0]*n, "n_chan": n}, open(path, "w"))
PY
}

# json_get FILE EXPR: evaluate a Python expression on the parsed JSON `j`.
json_get() {
  "$PY" -c "import json,sys; j=json.load(open(sys.argv[1])); print($2)" "$1"
}

mtime() { stat -c %Y.%y "$1"; }
