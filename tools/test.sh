#!/usr/bin/env bash
# The whole test suite: setup (packages, hugepages, build), then every meson test suite.
#   tools/test.sh                 everything
#   tools/test.sh --suite unit    one suite: unit, dataplane, bpf, e2e, chaos
# Ends with one line "N passed, N failed, N skipped" and exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${UNDERSTUDY_BUILD:-build}

tools/setup.sh
rm -f "$build/meson-logs/testlog.json"
set +e
meson test -C "$build" --print-errorlogs --num-processes 1 "$@"
rc=$?
set -e

summary=$(/usr/bin/python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
counts = {"passed": 0, "failed": 0, "skipped": 0}
try:
    for line in open(sys.argv[1]):
        result = json.loads(line)["result"]
        if result in ("OK", "EXPECTEDFAIL"):
            counts["passed"] += 1
        elif result == "SKIP":
            counts["skipped"] += 1
        else:
            counts["failed"] += 1
except FileNotFoundError:
    counts["failed"] += 1
print(f"{counts['passed']} passed, {counts['failed']} failed, {counts['skipped']} skipped")
PY
)
echo
echo "$summary"
case "$summary" in
    "0 passed, "*) exit 1 ;;
esac
[ "$rc" -eq 0 ] && [[ "$summary" == *", 0 failed,"* ]]
