#!/usr/bin/env bash
# The GPU check on the lent machine as it is (no network, its own torch): the carried wheels installed into a
# folder of their own that is put first on the path, then one run of `mllm_safety.tools.gpu_check`.
# Usage: bash benchmarks/gpu_check.sh OUT_FOLDER [--scale 7b|tiny] [--only NAME ...]
# WHEELS (default .gpu/wheels) and REPLICAS (default .gpu/replicas) come from `make gpu-wheels` on this side;
# PYTHON defaults to python3 (on the lent machine the one that holds torch).
set -euo pipefail
out=${1:?usage: bash benchmarks/gpu_check.sh OUT_FOLDER [--scale 7b|tiny] [--only NAME ...]}
shift
python=${PYTHON:-python3}
wheels=${WHEELS:-.gpu/wheels}
replicas=${REPLICAS:-.gpu/replicas}
test -d "$replicas" || { echo "$replicas: no replica folders. Fix: run make gpu-wheels before the call" >&2; exit 2; }
path="$PWD/src"
if compgen -G "$wheels/*.whl" > /dev/null; then
    site=$(mktemp -d /tmp/gpu-check-site.XXXX)
    start=$(date +%s)
    "$python" -m pip install --quiet --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$wheels"/*.whl
    echo "installed $(ls "$wheels"/*.whl | wc -l) carried wheels into $site in $(( $(date +%s) - start )) s"
    path="$site:$path"
fi
mkdir -p "$out"
PYTHONPATH="$path${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 \
    "$python" -m mllm_safety.tools.gpu_check run --replicas "$replicas" --out "$out" "$@"
