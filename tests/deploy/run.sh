#!/usr/bin/env bash
# run.sh -- the deploy tests: Kubernetes manifests and the container image,
# validated offline (no cluster, no Docker engine), in four parts:
#
#   lint       yamllint on every file under deploy/k8s (one verdict per file)
#   schema     every object (the files and every rendered overlay/component)
#              against the Kubernetes schemas with npm kubernetes-models, plus
#              unknown fields (tests/deploy/validate.js)
#   static     pytest test_manifests.py test_image.py test_docs.py: references,
#              network policy reachability, probes/ports/TETHER_* against the
#              built daemons, Dockerfile against the binaries and Debian
#   rehearsal  pytest test_rehearsal.py inside netns.sh: the manifests'
#              topology run for real with their exact environment
#
# Prints a line per part and finally "N passed, N failed" (", N skipped"
# when some were). Exits 1 if anything failed. Needs: yamllint, node (+ npm
# once, to install tests/deploy/node_modules from package-lock.json),
# python3 with pytest and yaml, and kubectl or kustomize to render overlays
# (without one, only the base files are checked and that is said).
# Logs and JUnit XML in $TETHER_BUILD/test-results/deploy-* (default build/).
set -uo pipefail

cd "$(dirname "$0")/../.." || exit 2
PY=/usr/bin/python3
BUILD=${TETHER_BUILD:-build}
export TETHER_BUILD=$BUILD
RES=$BUILD/test-results
mkdir -p "$RES" "$BUILD/deploy"
PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()

record() {   # record <part> <passed> <failed> <skipped> [note]
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3)); SKIPPED=$((SKIPPED + $4))
  local line
  line=$(printf '%-12s %d passed, %d failed, %d skipped' "$1:" "$2" "$3" "$4")
  [ -n "${5:-}" ] && line+="  ($5)"
  SUMMARY+=("$line")
  echo "== $line"
}

# ---- lint ----------------------------------------------------------------------------
run_lint() {
  echo "== yamllint deploy/k8s"
  local files n bad log=$RES/deploy-lint.log
  mapfile -t files < <(find deploy/k8s -name '*.yaml' | sort)
  n=${#files[@]}
  if ! command -v yamllint >/dev/null; then
    echo "   yamllint not installed (make bootstrap installs it)"
    record lint 0 1 0 "yamllint missing"
    return
  fi
  yamllint -f parsable -c tests/deploy/yamllint.yaml "${files[@]}" >"$log" 2>&1
  bad=$(cut -d: -f1 "$log" | sort -u | grep -c . || true)
  [ "$bad" -gt 0 ] && sed 's/^/   /' "$log"
  record lint $((n - bad)) "$bad" 0 "$n files"
}

# ---- schema --------------------------------------------------------------------------
run_schema() {
  echo "== Kubernetes schema validation (kubernetes-models)"
  local log=$RES/deploy-schema.log p f note=""
  if ! command -v node >/dev/null; then
    record schema 0 1 0 "node not installed"
    return
  fi
  if [ ! -d tests/deploy/node_modules/kubernetes-models ]; then
    echo "   installing tests/deploy/node_modules from package-lock.json (npm ci)"
    if ! (cd tests/deploy && npm ci --no-audit --no-fund >"../../$RES/deploy-npm.log" 2>&1); then
      tail -5 "$RES/deploy-npm.log" | sed 's/^/   /'
      record schema 0 1 0 "npm ci failed (needs npm and the registry once)"
      return
    fi
  fi
  if ! "$PY" tests/deploy/k8s.py dump "$BUILD/deploy/objects.json" >"$log" 2>&1; then
    sed 's/^/   /' "$log"
    record schema 0 1 0 "cannot load or render the manifests"
    return
  fi
  grep -q 'overlays not rendered' "$log" && note="no kubectl/kustomize: base files only"
  node tests/deploy/validate.js "$BUILD/deploy/objects.json" >>"$log" 2>&1
  read -r p f < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed$/\1 \2/p' "$log" | tail -1)
  grep -A3 '^   FAIL' "$log" | head -60
  record schema "${p:-0}" "${f:-1}" 0 "${note:-$(head -1 "$log")}"
}

# ---- pytest parts ------------------------------------------------------------------------
junit_counts() {
  "$PY" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET
p = f = s = 0
for case in ET.parse(sys.argv[1]).getroot().iter("testcase"):
    tags = {c.tag for c in case}
    if tags & {"failure", "error"}:
        f += 1
    elif "skipped" in tags:
        s += 1
    else:
        p += 1
print(p, f, s)
EOF
}

# run_pytest <part> <wrapper...> -- <pytest args...>
run_pytest() {
  local part=$1; shift
  local wrap=()
  while [ "$1" != "--" ]; do wrap+=("$1"); shift; done
  shift
  local xml=$RES/deploy-$part.xml log=$RES/deploy-$part.log rc p f s
  rm -f "$xml"
  (cd tests/deploy && timeout 1200 "${wrap[@]}" "$PY" -m pytest -q -rfEs -p no:cacheprovider \
      --junitxml="../../$xml" "$@") 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 77 ]; then
    record "$part" 0 0 1 "no network namespaces here"
  elif [ -s "$xml" ] && read -r p f s < <(junit_counts "$xml"); then
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then f=1; fi
    record "$part" "$p" "$f" "$s"
  else
    record "$part" 0 1 0 "pytest exit $rc, no results"
  fi
}

if ! "$PY" -c 'import pytest, yaml' 2>/dev/null; then
  echo "$PY lacks pytest or yaml (Debian: python3-pytest python3-yaml)"
  echo "0 passed, 1 failed"
  exit 1
fi

start=$(date +%s)
run_lint
run_schema
run_pytest static -- test_manifests.py test_image.py test_docs.py
names=$(cd tests/deploy && "$PY" test_rehearsal.py)
run_pytest rehearsal ./netns.sh "$names" -- test_rehearsal.py

echo
echo "== deploy results ($(( $(date +%s) - start )) s; logs in $RES/deploy-*)"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
final="$PASSED passed, $FAILED failed"
[ "$SKIPPED" -gt 0 ] && final+=", $SKIPPED skipped"
echo "$final"
[ "$FAILED" -eq 0 ]
