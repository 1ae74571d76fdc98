#!/usr/bin/env bash
# Runs one fuzz target for as long as asked, from its committed seeds, in the build directory BUILD
# (default build-fuzz; configured and built here if needed). What it finds stays in
# BUILD/tests/fuzz/<target>-corpus (grown corpus) and BUILD/tests/fuzz/fuzz-artifacts (crashes).
#   tools/fuzz.sh TARGET SECONDS [BUILD]
#     TARGET: parse | tunnel | pipeline | capture   (libFuzzer targets, tests/fuzz/fuzz_TARGET.cpp)
#             bpf-diff                      (root: the XDP program against the C parser, over the tunnel seeds
#                                            and what earlier 'tunnel' runs found, with as many mutants per
#                                            input as SECONDS allows)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
target=${1:?usage: tools/fuzz.sh parse|tunnel|pipeline|capture|bpf-diff SECONDS [BUILD]}
seconds=${2:?usage: tools/fuzz.sh TARGET SECONDS [BUILD]}
build=${3:-$root/build-fuzz}
fz=$root/tests/fuzz

[ -d "$build" ] || meson setup "$build" -Dwerror=true "$root"
case $target in
    parse) binary=fuzz_parse; seeds=("$fz/corpus") ;;
    tunnel) binary=fuzz_tunnel; seeds=("$fz/tunnel_corpus" "$fz/corpus") ;;
    pipeline) binary=fuzz_pipeline; seeds=("$fz/pipeline_corpus") ;;
    capture) binary=fuzz_capture; seeds=("$fz/capture_corpus") ;;
    bpf-diff) binary=bpf_parse_diff ;;
    *) echo "tools/fuzz.sh: unknown target '$target' (parse, tunnel, pipeline, capture, bpf-diff)" >&2; exit 2 ;;
esac
ninja -C "$build" "tests/fuzz/$binary" >/dev/null
out=$build/tests/fuzz

if [ "$target" = bpf-diff ]; then
    dirs=("$fz/tunnel_corpus" "$fz/corpus")
    [ -d "$out/tunnel-corpus" ] && dirs+=("$out/tunnel-corpus")
    [ -d "$out/tunnel-corpus-grown" ] && dirs+=("$out/tunnel-corpus-grown")
    # About 2,000 runs a second: size the mutants to the time asked.
    inputs=$(find "${dirs[@]}" -type f | wc -l)
    mutants=$(( seconds * 2000 / (inputs > 0 ? inputs : 1) ))
    exec timeout "$((seconds * 3 + 60))" "$out/$binary" --mutants "$mutants" "${dirs[@]}"
fi

# The grown corpus is kept between runs: a longer run goes on from where the last stopped.
corpus=$out/$target-corpus
mkdir -p "$corpus"
rc=0
bash "$fz/run_target.sh" "fuzz-$target" "$out/$binary" "$seconds" "$out/fuzz-artifacts" \
    --keep-corpus "$corpus.new" "$corpus" "${seeds[@]}" || rc=$?
rm -rf "$corpus"
mv "$corpus.new" "$corpus"
echo "tools/fuzz.sh: corpus in $corpus ($(find "$corpus" -type f | wc -l) inputs)"
exit "$rc"
