# Sourced by the GPU scripts (benchmarks/gpu_*.sh) from the repository root: `gpu_setup NAME` sets
# OUT (default seqbench-results/NAME, made absolute), PYTHONPATH to the checkout, PY and a log
# $OUT/NAME.log; `part NAME SECONDS COMMAND...` runs one part with a time limit and notes a failure
# without stopping; `finish MESSAGE` prints MESSAGE when every part passed, else the failures
# (exit 1). A part's limit keeps one hung step from spending the whole GPU window.
gpu_setup() {
  OUT=${OUT:-seqbench-results/$1}
  mkdir -p "$OUT"
  OUT=$(cd "$OUT" && pwd)
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
  PY=${PYTHON:-python3}
  exec > >(tee -a "$OUT/$1.log") 2>&1
  failed=()
}

part() {  # part NAME SECONDS COMMAND...: run with a time limit, note a failure, go on
  local name=$1 limit=$2
  shift 2
  echo
  echo "== $(date +%T) $name (limit ${limit}s)"
  local t0=$SECONDS
  timeout "$limit" "$@"
  local rc=$?
  echo "== $name: exit $rc after $((SECONDS - t0)) s"
  [ "$rc" -eq 0 ] || failed+=("$name (exit $rc)")
}

finish() {
  echo
  if [ ${#failed[@]} -eq 0 ]; then
    echo "== all parts passed; $1"
  else
    printf '== FAILED: %s\n' "${failed[@]}"
    exit 1
  fi
}
