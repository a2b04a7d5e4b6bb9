#!/usr/bin/env bash
# run_all.sh -- every Tether test behind one command and one summary line.
#
#   tests/run_all.sh [unit|fuzz|integration|chaos|browser|deploy|san|all]
#                                                             (default: all)
#
#   unit         every build/tests/test_* binary (cmocka)
#   fuzz         each tests/fuzz/fuzz_<name>.c built with clang libFuzzer
#                (make build-fuzz/fuzz_<name>) and run FUZZ_SECONDS on
#                build-fuzz/corpus/<name>, seeded from tests/fuzz/corpus/<name>/;
#                FUZZ_SECONDS defaults to FUZZ_BUDGET (180) seconds shared by
#                all targets, at least 5 each
#   integration  /usr/bin/python3 -m pytest tests/integration (not the chaos ones)
#   chaos        pytest -m chaos tests/integration, plus tests/chaos/: the
#                chaos.py rounds, full when this part is asked for alone
#                (`make test-chaos`), short inside a whole run (`make test`);
#                TETHER_CHAOS_LEVEL=short|full overrides
#   san          unit and integration against an ASan+UBSan build
#                (TETHER_BUILD=build-san, as `make test-san` runs it): any
#                sanitizer report fails the test that caused it (not in all)
#
# Prints a result line per part and finally exactly "N passed, N failed"
# (", N skipped" when some were). Exits 1 if anything failed.
# Logs and JUnit XML: $TETHER_BUILD/test-results/ (default build/).
set -uo pipefail

cd "$(dirname "$0")/.." || exit 2
PART=${1:-all}
PY=/usr/bin/python3
BUILD=${TETHER_BUILD:-build}
export TETHER_BUILD=$BUILD
RES=$BUILD/test-results
FUZZ_BUDGET=${FUZZ_BUDGET:-180}
UNIT_TIMEOUT=${UNIT_TIMEOUT:-120}          # per unit binary; they take seconds
INTEGRATION_TIMEOUT=${INTEGRATION_TIMEOUT:-600}
CHAOS_TIMEOUT=${CHAOS_TIMEOUT:-480}
mkdir -p "$RES"

PASSED=0 FAILED=0 SKIPPED=0
SUMMARY=()

case $PART in
  unit|fuzz|integration|chaos|browser|deploy|san|all) ;;
  *) echo "usage: $0 [unit|fuzz|integration|chaos|browser|deploy|san|all]" >&2; exit 2 ;;
esac

# ---- sanitizer options (part san) --------------------------------------------------
# Every report stops the process that made it (halt_on_error: UBSan would
# otherwise print and go on) and fails its test. Reports go to files,
# log_path=$SAN_DIR/<who>.<pid>, so that one made by a process a test
# started (a daemon a unit test spawns, the CLI an integration test runs)
# is found whatever that process's stderr was connected to. Leaks are
# reported at exit (detect_leaks=1); tests/lsan.supp lists the libraries'
# own. The integration harness gives the daemons it starts their options
# (tests/integration/tether_harness.py: reports on their stderr, which the
# harness reads after every test).
SAN_DIR=$RES/san
case $SAN_DIR in /*) ;; *) SAN_DIR=$PWD/$SAN_DIR ;; esac
SAN_MARK='ERROR: (Address|Leak)Sanitizer|runtime error:|SUMMARY: (Address|UndefinedBehavior|Leak)Sanitizer'
san_options() { # <log_path>
  export ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:log_path=$1"
  export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:log_path=$1"
  export LSAN_OPTIONS="suppressions=$PWD/tests/lsan.supp:print_suppressions=0"
}
if [ "$PART" = san ]; then
  rm -rf "$SAN_DIR"
  mkdir -p "$SAN_DIR"
  export TETHER_SAN_DIR=$SAN_DIR
  # Instrumented daemons start and answer several times slower.
  export TETHER_TEST_START_TIMEOUT=${TETHER_TEST_START_TIMEOUT:-60}
  export TETHER_TEST_STOP_TIMEOUT=${TETHER_TEST_STOP_TIMEOUT:-10}
  UNIT_TIMEOUT=${SAN_UNIT_TIMEOUT:-600}
  INTEGRATION_TIMEOUT=${SAN_INTEGRATION_TIMEOUT:-2400}
fi

# san_reports <prefix> -- prints the reports written to <prefix>.* (and
# returns 0) if there are any.
san_reports() {
  local f found=1
  for f in "$1".*; do
    [ -f "$f" ] || continue
    found=0
    echo "---- sanitizer report $f:"
    head -n 40 "$f" | sed 's/^/    /'
  done
  return $found
}

# record <part> <passed> <failed> <skipped> [note]
record() {
  PASSED=$((PASSED + $2)); FAILED=$((FAILED + $3)); SKIPPED=$((SKIPPED + $4))
  local line
  line=$(printf '%-12s %d passed, %d failed, %d skipped' "$1:" "$2" "$3" "$4")
  [ -n "${5:-}" ] && line+="  ($5)"
  SUMMARY+=("$line")
  echo "== $line"
}

# show_tail <file> -- the end of a failing test's output
show_tail() {
  echo "---- last lines of $1:"
  tail -n "${2:-30}" "$1" | sed 's/^/    /'
}

# ---- unit ------------------------------------------------------------------------
# A cmocka binary reports "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s)";
# our own harnesses print "N passed, N failed". A binary that exits non-zero
# counts at least one failure even if it printed nothing (a crash).
run_unit() {
  echo "== unit tests"
  local p=0 f=0 s=0 n=0 t name log rc cp cf cs t0 secs
  for t in "$BUILD"/tests/test_*; do
    if [ ! -f "$t" ] || [ ! -x "$t" ]; then continue; fi
    n=$((n + 1))
    name=$(basename "$t")
    log=$RES/unit-$name.log
    t0=$SECONDS
    [ "$PART" = san ] && san_options "$SAN_DIR/unit-$name"
    timeout "$UNIT_TIMEOUT" "$t" >"$log" 2>&1
    rc=$?
    if [ "$PART" = san ] && { san_reports "$SAN_DIR/unit-$name" >>"$log" || grep -Eq "$SAN_MARK" "$log"; }; then
      [ "$rc" -eq 0 ] && rc=1
      echo "   (sanitizer report: $log)"
    fi
    secs=$((SECONDS - t0))
    cp=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    cf=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    cs=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
    if [ -z "$cp$cf" ]; then
      read -r cp cf < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$log" | tail -1)
    fi
    cp=${cp:-0} cf=${cf:-0} cs=${cs:-0}
    if [ "$rc" -ne 0 ] && [ "$cf" -eq 0 ]; then cf=1; fi
    if [ "$rc" -eq 0 ] && [ "$cp" -eq 0 ] && [ "$cf" -eq 0 ]; then cp=1; fi
    if [ "$rc" -eq 0 ] && [ "$cf" -eq 0 ]; then
      echo "   ok    $name ($cp passed, ${secs}s)"
    else
      [ "$rc" -eq 124 ] && echo "   (killed: still running after UNIT_TIMEOUT=${UNIT_TIMEOUT}s)"
      echo "   FAIL  $name (exit $rc, $cf failed, ${secs}s)"
      show_tail "$log"
    fi
    p=$((p + cp)); f=$((f + cf)); s=$((s + cs))
  done
  record unit "$p" "$f" "$s" "$n binaries"
}

# ---- fuzz smoke ------------------------------------------------------------------
run_fuzz() {
  local p=0 f=0 s=0 src name corpus log rc runs cov secs
  local srcs=(tests/fuzz/fuzz_*.c)
  if [ ! -e "${srcs[0]}" ]; then
    record fuzz 0 0 0 "no targets in tests/fuzz"
    return
  fi
  if ! command -v clang >/dev/null 2>&1; then
    record fuzz 0 0 "${#srcs[@]}" "clang not installed"
    return
  fi
  secs=${FUZZ_SECONDS:-$((FUZZ_BUDGET / ${#srcs[@]}))}
  [ "$secs" -lt 5 ] && secs=5
  echo "== fuzz smoke (${#srcs[@]} targets, ${secs}s each)"
  # One make for every target: the shared objects are compiled once, two at a time.
  make -s -k -j2 fuzz-build >"$RES/fuzz-build.log" 2>&1
  mkdir -p build-fuzz/artifacts
  for src in "${srcs[@]}"; do
    name=$(basename "$src" .c)
    log=$RES/fuzz-$name.log
    if ! make -s "build-fuzz/$name" >"$RES/fuzz-$name.build.log" 2>&1; then
      echo "   FAIL  $name (build)"
      show_tail "$RES/fuzz-$name.build.log"
      f=$((f + 1)); continue
    fi
    corpus=build-fuzz/corpus/$name
    mkdir -p "$corpus"
    if [ -d "tests/fuzz/corpus/$name" ]; then
      cp -n "tests/fuzz/corpus/$name"/* "$corpus"/ 2>/dev/null || true
    fi
    local extra=()
    [ -f "tests/fuzz/$name.dict" ] && extra+=("-dict=tests/fuzz/$name.dict")
    timeout $((secs + 60)) "build-fuzz/$name" "${extra[@]}" \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="build-fuzz/artifacts/$name-" -print_final_stats=1 \
      "$corpus" >"$log" 2>&1
    rc=$?
    runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$')
    if [ "$rc" -eq 0 ]; then
      echo "   ok    $name (${runs:-?} runs in ${secs}s, cov ${cov:-?}, corpus $(find "$corpus" -type f | wc -l))"
      p=$((p + 1))
    else
      echo "   FAIL  $name (exit $rc after ${runs:-?} runs; crashing inputs: build-fuzz/artifacts/$name-*)"
      show_tail "$log" 40
      f=$((f + 1))
    fi
  done
  record fuzz "$p" "$f" "$s" "${#srcs[@]} targets"
}

# ---- pytest ------------------------------------------------------------------------
# junit_counts <xml> -> "passed failed skipped", one verdict per test case
# (a case that failed in its call and errored in teardown counts once).
junit_counts() {
  "$PY" - "$1" <<'EOF'
import sys
import xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
p = f = s = 0
for case in root.iter("testcase"):
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

# run_pytest <part> <timeout> <pytest args...>
run_pytest() {
  local part=$1 limit=$2; shift 2
  local xml=$RES/$part.xml log=$RES/$part.log rc counts p f s
  if ! "$PY" -c 'import pytest, websockets' 2>/dev/null; then
    echo "   $PY lacks pytest or websockets (Debian: python3-pytest python3-websockets)"
    record "$part" 0 1 0 "python packages missing"
    return
  fi
  rm -f "$xml"
  timeout "$limit" "$PY" -m pytest -q -rfEs -p no:cacheprovider --junitxml="$xml" "$@" 2>&1 | tee "$log"
  rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ]; then
    echo "   $part: pytest killed after ${limit}s"
  fi
  if [ -s "$xml" ] && counts=$(junit_counts "$xml"); then
    read -r p f s <<<"$counts"
    # Killed or crashed pytest: whatever did not finish is a failure.
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 1 ] && [ "$rc" -ne 5 ] && [ "$f" -eq 0 ]; then f=1; fi
    record "$part" "$p" "$f" "$s"
  elif [ "$rc" -eq 5 ]; then
    record "$part" 0 0 0 "no tests collected"
  else
    record "$part" 0 1 0 "pytest exit $rc, no results"
  fi
}

run_integration() {
  echo "== integration tests (tests/integration, not chaos)"
  run_pytest integration "$INTEGRATION_TIMEOUT" -m "not chaos" tests/integration
}

run_chaos() {
  echo "== chaos tests"
  run_pytest chaos "$CHAOS_TIMEOUT" -m chaos tests/integration
  # tests/chaos/: pytest files, and executables (one verdict each). The
  # rounds run full when chaos is run alone, short inside a whole run.
  local pys=(tests/chaos/test_*.py) p=0 f=0 t log level=short
  [ "$PART" = chaos ] && level=full
  if [ -e "${pys[0]}" ]; then
    echo "   tests/chaos rounds: ${TETHER_CHAOS_LEVEL:-$level}"
    TETHER_CHAOS_LEVEL=${TETHER_CHAOS_LEVEL:-$level} run_pytest chaos-extra "$CHAOS_TIMEOUT" tests/chaos
  fi
  local found=0
  for t in tests/chaos/*; do
    if [ ! -f "$t" ] || [ ! -x "$t" ]; then continue; fi
    case $t in *.py) continue ;; esac
    found=1
    log=$RES/chaos-$(basename "$t").log
    if timeout "$CHAOS_TIMEOUT" "$t" >"$log" 2>&1; then
      echo "   ok    $t"; p=$((p + 1))
    else
      echo "   FAIL  $t"; show_tail "$log"; f=$((f + 1))
    fi
  done
  [ "$found" -eq 1 ] && record chaos-scripts "$p" "$f" 0
}

# ---- browser ----------------------------------------------------------------------
# Headless Chromium (Debian's) driven by playwright-core: the web console and
# push-to-talk audio. Its runner prints "N passed, N failed" last.
BROWSER_TIMEOUT=${BROWSER_TIMEOUT:-900}
run_browser() {
  echo "== browser tests (tests/browser, headless Chromium)"
  local log=$RES/browser.log
  if ! command -v node >/dev/null || [ ! -x /usr/bin/chromium ]; then
    record browser 0 1 0 "node or /usr/bin/chromium missing: scripts/bootstrap.sh installs them"
    return
  fi
  ( cd tests/browser && npm ci --no-audit --no-fund --loglevel=error && timeout "$BROWSER_TIMEOUT" node run.mjs ) \
    >"$log" 2>&1
  local rc=$? line p f
  line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
  p=$(echo "$line" | sed -nE 's/^([0-9]+) passed.*/\1/p'); p=${p:-0}
  f=$(echo "$line" | sed -nE 's/^[0-9]+ passed, ([0-9]+) failed.*/\1/p'); f=${f:-0}
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  [ "$f" -gt 0 ] && show_tail "$log" 40
  record browser "$p" "$f" 0
}

# ---- deploy ------------------------------------------------------------------------
# Manifests: lint, Kubernetes schemas, consistency with the daemons, and a
# rehearsal of the topology in a network namespace.
run_deploy() {
  echo "== deploy tests (tests/deploy/run.sh)"
  local log=$RES/deploy.log rc p f s
  timeout 1800 bash tests/deploy/run.sh >"$log" 2>&1
  rc=$?
  read -r p f s < <(sed -n 's/^\([0-9]*\) passed, \([0-9]*\) failed\(, \([0-9]*\) skipped\)\{0,1\}$/\1 \2 \4/p' "$log" | tail -1)
  if [ -z "${p:-}" ]; then show_tail "$log" 40; record deploy 0 1 0 "run.sh exit $rc, no summary"; return; fi
  [ "$rc" -ne 0 ] && [ "$f" -eq 0 ] && f=1
  [ "$f" -gt 0 ] && show_tail "$log" 40
  record deploy "$p" "$f" "${s:-0}"
}

# Unit and integration tests against $BUILD, which is an instrumented tree.
run_san() {
  if [ ! -x "$BUILD/bin/gateway" ] || ! nm "$BUILD/bin/gateway" 2>/dev/null | grep __asan_init >/dev/null; then
    record san 0 1 0 "$BUILD is not an ASan build: make test-san"
    return
  fi
  run_unit
  # Processes the tests start themselves report into $SAN_DIR/proc.*;
  # tests/integration/conftest.py fails the test during which one appeared.
  san_options "$SAN_DIR/proc"
  run_integration
}

start=$(date +%s)
case $PART in
  unit) run_unit ;;
  fuzz) run_fuzz ;;
  integration) run_integration ;;
  chaos) run_chaos ;;
  browser) run_browser ;;
  deploy) run_deploy ;;
  san) run_san ;;
  all) run_unit; run_fuzz; run_integration; run_chaos; run_browser; run_deploy ;;
esac

echo
echo "== results ($(( $(date +%s) - start )) s; logs in $RES/)"
for line in "${SUMMARY[@]}"; do echo "   $line"; done
final="$PASSED passed, $FAILED failed"
[ "$SKIPPED" -gt 0 ] && final+=", $SKIPPED skipped"
echo "$final"
[ "$FAILED" -eq 0 ]
