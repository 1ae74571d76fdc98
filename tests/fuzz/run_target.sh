#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time over a scratch copy of its seed corpora (libFuzzer adds what it
# finds to the first corpus it is given; the committed seeds stay as they are). A crash or a broken invariant
# fails and leaves the input in ARTIFACT_DIR, to be kept under tests/fuzz/crashes/. The fuzz-* tests and
# tools/fuzz.sh run it.
#   run_target.sh NAME FUZZER SECONDS ARTIFACT_DIR [--keep-corpus DIR] CORPUS...
#   run_target.sh --missing NAME WHY        (the fuzzer could not be built: fail and say how to fix it)
set -euo pipefail

if [ "${1:-}" = "--missing" ]; then
    echo "$2: the fuzzer was not built: $3" >&2
    echo "$2: run tools/setup.sh (it installs clang and libclang-rt-14-dev), then 'meson setup --reconfigure BUILDDIR'" >&2
    exit 1
fi

name=$1 fuzzer=$2 seconds=$3 artifacts=$4
shift 4
keep=""
if [ "${1:-}" = "--keep-corpus" ]; then
    keep=$2
    shift 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$artifacts"
for c in "$@"; do
    cp -r "$c"/. "$work/corpus/"
done

rc=0
"$fuzzer" -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1 -timeout=10 \
    -artifact_prefix="$artifacts/" "$work/corpus" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "$name: the fuzzer failed (exit $rc); inputs it saved:" >&2
    ls -l "$artifacts" >&2
    echo "$name: replay one with '$fuzzer FILE'; keep it as tests/fuzz/crashes/$name-WHAT" >&2
fi
if [ -n "$keep" ]; then
    rm -rf "$keep"
    cp -r "$work/corpus" "$keep"
fi
exit "$rc"
