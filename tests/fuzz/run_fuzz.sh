#!/usr/bin/env bash
# The fuzz-parse test: runs the parser fuzzer for a bounded time over a scratch copy of the seed corpus
# (libFuzzer adds what it finds to the corpus it is given; the committed one stays tiny). A crash fails the
# test and is kept for tests/fuzz/crashes/.
#   run_fuzz.sh FUZZER CORPUS ARTIFACT_DIR
#   run_fuzz.sh --missing WHY        (the fuzzer could not be built: fail and say how to fix it)
set -euo pipefail

if [ "${1:-}" = "--missing" ]; then
    echo "fuzz-parse: the fuzzer was not built: $2" >&2
    echo "fuzz-parse: run tools/setup.sh (it installs clang and libclang-rt-14-dev)," \
        "then 'meson setup --reconfigure BUILDDIR'" >&2
    exit 1
fi

fuzzer=$1 corpus=$2 artifacts=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$corpus" "$work/corpus"
mkdir -p "$artifacts"

rc=0
"$fuzzer" -max_total_time=30 -rss_limit_mb=1024 -print_final_stats=1 \
    -artifact_prefix="$artifacts/" "$work/corpus" || rc=$?
if [ "$rc" -ne 0 ]; then
    echo "fuzz-parse: the fuzzer failed (exit $rc); inputs it saved:" >&2
    ls -l "$artifacts" >&2
    echo "fuzz-parse: replay one with '$fuzzer FILE'; keep it as tests/fuzz/crashes/NAME so the parser" \
        "unit test replays it" >&2
fi
exit "$rc"
