#!/usr/bin/env bash
# End-to-end test of the plugin template (cookiecutter-plugin/), as a plugin author meets it:
# for every meaningful combination of answers (kind x destination style x auth; a source
# has no style or auth, a database/file destination no auth) render it with
# `conn new plugin`, install it against the local core in a fresh uv venv, run its own tests,
# `ruff check` and `mypy`, then run a real `conn sync` through it (a rendered source feeding a
# rendered destination; HTTP destinations talk to a local fake API).
# Combinations run in parallel; a run takes well under three minutes with a warm uv cache.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
UV=$ROOT/.venv/bin/uv
PY=$ROOT/.venv/bin/python
WORK=${TEMPLATE_WORK:-$ROOT/.venvs/template}
export UV_LINK_MODE=${UV_LINK_MODE:-copy}

# id kind style auth
COMBOS=(
  "source source database_or_file none"
  "files destination database_or_file none"
  "http_none destination http none"
  "http_bearer destination http bearer"
  "http_basic destination http basic"
  "http_oauth2 destination http oauth2"
)

if ! "$PY" -c "import cookiecutter" 2>/dev/null; then
  "$UV" pip install --quiet --python "$PY" "cookiecutter>=2.5" || exit 1
fi
rm -rf "$WORK/render" "$WORK/logs"
mkdir -p "$WORK/render" "$WORK/logs"

echo "--- render"
for combo in "${COMBOS[@]}"; do
  read -r id kind style auth <<<"$combo"
  "$ROOT/.venv/bin/conn" new plugin --no-input --output-dir "$WORK/render" \
    --name "tpl $id" --kind "$kind" --author "conn CI" \
    $([ "$kind" = destination ] && echo "--destination-style $style --auth $auth") \
    >/dev/null || { echo "FAILED: render $id"; exit 1; }
done
pkg() { echo "$WORK/render/conn-$1-tpl-${2//_/-}"; }
SOURCE_PKG=$(pkg source source)
FILES_PKG=$(pkg destination files)

echo "--- names and where conn comes from"
# The author's capitals stay in the class name; conn comes from this checkout unless
# --conn-source says otherwise (conn is not on PyPI).
fail() { echo "FAILED: $*"; exit 1; }
grep -q "\"conn @ file://$ROOT\"," "$SOURCE_PKG/pyproject.toml" || fail "default conn source"
"$ROOT/.venv/bin/conn" new plugin --no-input --output-dir "$WORK/render" --name "Acme CRM" \
  --kind destination --destination-style http --auth bearer --conn-source ">=0.1" \
  >/dev/null || fail "render Acme CRM"
ACME="$WORK/render/conn-destination-acme-crm"
grep -q "^class AcmeCRMDestination(" "$ACME/conn_destination_acme_crm/destination.py" \
  || fail "class name keeps the capitals of 'Acme CRM'"
grep -q '"conn>=0.1",' "$ACME/pyproject.toml" || fail "--conn-source >=0.1"
grep -q "allow-direct-references" "$ACME/pyproject.toml" && fail "a version needs no direct reference"
"$ROOT/.venv/bin/conn" new plugin --no-input --output-dir "$WORK/render" --name "Rel" \
  --kind source --conn-source ./no/such/conn >/dev/null 2>&1 && fail "a missing --conn-source path"
echo "ok"

# The fake vendor API for `conn sync` through HTTP destinations (any credentials accepted;
# an OAuth token endpoint; GET /_count answers how many records it stores).
SERVER_PY='
import sys, time
from conn.testing.http import FaultServer, Reply
srv = FaultServer()
srv.route("POST", "/oauth/token", lambda r, s: Reply(200, json={"access_token": "tpl-access-token", "expires_in": 3600}), faults=False)
srv.route("GET", "/_count", lambda r, s: Reply(200, json={"count": len(s.store)}), faults=False)
srv.start()
open(sys.argv[1], "w").write(srv.url)
while True:
    time.sleep(1)
'

one() {  # id kind style auth
  local id=$1 kind=$2 style=$3 auth=$4 dir venv proj src_type dst_type partner server_pid=""
  dir=$(pkg "$kind" "$id"); venv="$WORK/venv-$id"; proj="$WORK/project-$id"
  if [ "$kind" = source ]; then partner=$FILES_PKG; else partner=$SOURCE_PKG; fi
  rm -rf "$venv" "$proj"
  "$UV" venv --quiet --python "$PY" "$venv" || return 1
  "$UV" pip install --quiet --python "$venv/bin/python" -e "$ROOT[test]" -e "$dir[test]" \
    -e "$partner" || { echo "install failed"; return 1; }
  echo "+ pytest"; (cd "$dir" && "$venv/bin/python" -m pytest -q -p no:randomly) || return 1
  echo "+ ruff"; (cd "$dir" && "$venv/bin/ruff" check .) || return 1
  echo "+ mypy"; (cd "$dir" && "$venv/bin/mypy") || return 1

  echo "+ conn sync"
  src_type=tpl_source; dst_type=tpl_files
  [ "$kind" = destination ] && dst_type=tpl_$id
  mkdir -p "$proj"; cp "$SOURCE_PKG/tests/data/people.jsonl" "$proj/"
  local config="{path: out}"
  if [ "$style" = http ]; then
    "$venv/bin/python" -c "$SERVER_PY" "$proj/url" & server_pid=$!
    for _ in $(seq 50); do [ -s "$proj/url" ] && break; sleep 0.1; done
    local url; url=$(cat "$proj/url")
    case $auth in
      none) config="{base_url: '$url'}" ;;
      bearer) config="{base_url: '$url', token: '\${TPL_SECRET}'}" ;;
      basic) config="{base_url: '$url', username: ci, password: '\${TPL_SECRET}'}" ;;
      oauth2) config="{base_url: '$url', token_url: '$url/oauth/token', client_id: ci, client_secret: '\${TPL_SECRET}', refresh_token: '\${TPL_SECRET}'}" ;;
    esac
  fi
  cat >"$proj/conn.yml" <<EOF
version: 1
sources:
  people_file:
    type: $src_type
    config: {path: people.jsonl, cursor: updated_at}
destinations:
  target:
    type: $dst_type
    config: $config
syncs:
  people_to_target:
    source: people_file
    stream: people
    destination: target
    object: contacts
    primary_key: id
    match_key: id
    mode: upsert
    mapping: {id: id, email: email, first_name: name, plan: plan}
EOF
  local rc=0 out
  out=$(cd "$proj" && TPL_SECRET=tpl-secret-value-123 "$venv/bin/conn" sync people_file target --json 2>&1) || rc=$?
  echo "$out" | tail -n 20
  if [ $rc -ne 0 ]; then echo "conn sync exited $rc"; rc=1
  elif echo "$out" | grep -q "tpl-secret-value-123"; then echo "secret leaked"; rc=1
  elif [ "$style" = http ]; then
    local count; count=$("$venv/bin/python" -c "import httpx,sys; print(httpx.get(sys.argv[1] + '/_count').json()['count'])" "$url")
    [ "$count" = 12 ] || { echo "fake API holds $count records, expected 12"; rc=1; }
  else
    local lines; lines=$(wc -l <"$proj/out/contacts.jsonl")
    [ "$lines" -eq 12 ] || { echo "out/contacts.jsonl has $lines lines, expected 12"; rc=1; }
  fi
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null
  return $rc
}

echo "--- install, test, lint and sync each rendering (in parallel)"
pids=(); ids=()
for combo in "${COMBOS[@]}"; do
  read -r id kind style auth <<<"$combo"
  one "$id" "$kind" "$style" "$auth" >"$WORK/logs/$id.log" 2>&1 &
  pids+=($!); ids+=("$id")
done
failed=()
for i in "${!pids[@]}"; do
  if wait "${pids[$i]}"; then
    echo "ok      ${ids[$i]}  ($(grep -Eo '[0-9]+ passed' "$WORK/logs/${ids[$i]}.log" | head -1))"
  else
    echo "FAILED  ${ids[$i]}"; sed 's/^/    /' "$WORK/logs/${ids[$i]}.log" | tail -n 40
    failed+=("${ids[$i]}")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "template FAILED: ${failed[*]} (logs in $WORK/logs)"
  exit 1
fi
echo "template: ${#COMBOS[@]} renderings passed"
