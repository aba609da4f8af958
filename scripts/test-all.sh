#!/usr/bin/env bash
# Runs every test of the core and of every first-party plugin.
# The core (with all plugins, for integration tests) runs in .venv; each plugin also runs
# in its own fresh environment holding only the core and that plugin, as a user who
# pip-installs it would have: a missing dependency in a plugin's pyproject fails here.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UV=$ROOT/.venv/bin/uv
PYTEST_ARGS=${PYTEST_ARGS:-}
# The whole suite by default (slow tests included: crash tests, real connectors);
# CONN_TEST_FAST=1 skips the tests marked slow.
# Hypothesis properties draw their full example counts here (tests/conftest.py: a bare
# pytest runs the fast profile, a few examples each).
MARK="slow or not slow"
export CONN_TEST_PROFILE=${CONN_TEST_PROFILE:-thorough}
[ -n "${CONN_TEST_FAST:-}" ] && MARK="not slow" && export CONN_TEST_PROFILE=fast
failed=()
total_pass=0; total_fail=0; total_skip=0

count() {  # parse pytest's summary line from a log file
  local log=$1 p f s e
  p=$(grep -Eo '[0-9]+ passed' "$log" | tail -1 | grep -Eo '[0-9]+'); f=$(grep -Eo '[0-9]+ failed' "$log" | tail -1 | grep -Eo '[0-9]+')
  s=$(grep -Eo '[0-9]+ skipped' "$log" | tail -1 | grep -Eo '[0-9]+'); e=$(grep -Eo '[0-9]+ errors?' "$log" | tail -1 | grep -Eo '[0-9]+')
  total_pass=$((total_pass + ${p:-0})); total_fail=$((total_fail + ${f:-0} + ${e:-0})); total_skip=$((total_skip + ${s:-0}))
}

run() {  # name, python, dir, args... (RUN_MARK narrows MARK for one call)
  local name=$1 py=$2 dir=$3; shift 3
  local log; log=$(mktemp)
  local started=$SECONDS
  echo "=== $name"
  (cd "$dir" && "$py" -m pytest -q -m "${RUN_MARK:-$MARK}" $PYTEST_ARGS "$@") 2>&1 \
    | tee "$log" | tail -n 25
  local rc=${PIPESTATUS[0]}
  echo "($name: $((SECONDS - started)) s)"
  count "$log"; rm -f "$log"
  if [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ]; then failed+=("$name"); fi
}

echo "--- lint"
if ! "$ROOT/.venv/bin/ruff" check "$ROOT"; then failed+=("ruff"); fi
# The type check of the core and the first-party plugins ([tool.mypy] in pyproject.toml).
echo "--- types"
if ! (cd "$ROOT" && "$ROOT/.venv/bin/mypy"); then failed+=("mypy"); fi

# The core over two workers, then the tests that assert wall-clock bounds (marked serial)
# in one process, where no other worker slows them down.
RUN_MARK="($MARK) and not serial" run core "$ROOT/.venv/bin/python" "$ROOT" tests -n 2
RUN_MARK="($MARK) and serial" run "core (serial)" "$ROOT/.venv/bin/python" "$ROOT" tests -n 0

for pj in plugins/sources/*/pyproject.toml plugins/destinations/*/pyproject.toml \
          plugins/databases/*/pyproject.toml plugins/matchers/*/pyproject.toml; do
  [ -f "$pj" ] || continue
  dir=$(dirname "$pj"); kind=$(basename "$(dirname "$dir")"); name=$(basename "$dir")
  venv="$ROOT/.venvs/${kind}-${name}"
  if [ ! -x "$venv/bin/python" ]; then "$UV" venv --quiet --python "$ROOT/.venv/bin/python" "$venv"; fi
  "$UV" pip install --quiet --python "$venv/bin/python" -e "$ROOT[test]" -e "$ROOT/$dir[test]" \
    || { failed+=("install $kind/$name"); continue; }
  run "$kind/$name" "$venv/bin/python" "$ROOT/$dir" tests
done

# The planner's compiled kernels: their own environment, checked against DuckDB.
venv="$ROOT/.venvs/speedups"
if [ ! -x "$venv/bin/python" ]; then "$UV" venv --quiet --python "$ROOT/.venv/bin/python" "$venv"; fi
if "$UV" pip install --quiet --python "$venv/bin/python" -e "$ROOT/speedups[test]"; then
  run speedups "$venv/bin/python" "$ROOT/speedups" tests
else
  failed+=("install speedups")
fi

echo
echo "summary: $total_pass passed, $total_fail failed, $total_skip skipped"
if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED: ${failed[*]}"
  exit 1
fi
