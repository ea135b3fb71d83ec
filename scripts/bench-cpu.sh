#!/usr/bin/env bash
# CPU benchmarks of the `cpu` (Cranelift) backend, each a comparison made in
# one run: compiled code against the interpreter on resnet50, two-pass
# against three-pass softmax on rows beyond and within the cache (and which
# one the cost model picks), GEMM 1024³ in GFLOP/s, flat GEMM/GEMV against
# the memory bandwidth of a triad in the same run, and resnet50's planned
# peak memory against the sum of all its buffers.
#
#   scripts/bench-cpu.sh [THREADS]      (default 1)
#
# Needs the ONNX test data at ../shared/onnx-tests (or $SATURN_ONNX_TESTS)
# and a C compiler for the triad. Writes its .tir inputs to a temporary
# folder; prints one line per measurement and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
data=${SATURN_ONNX_TESTS:-../shared/onnx-tests}
cargo build --release -q
saturn=target/release/saturn
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

json() { "$saturn" bench "$@" --threads "$threads" --json; }
field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
ratio() { python3 -c "import sys; print(f'{float(sys.argv[1]) / float(sys.argv[2]):.2f}')" "$1" "$2"; }

echo "== threads: $threads"

# Memory bandwidth: a STREAM-style triad a[i] = b[i] + s*c[i] over 3×64 MiB.
cat > "$work/triad.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
int main(void) {
    size_t n = (size_t)1 << 24;
    float *a = malloc(n * 4), *b = malloc(n * 4), *c = malloc(n * 4);
    for (size_t i = 0; i < n; i++) { a[i] = 0; b[i] = (float)i; c[i] = 1; }
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        double t = now();
        for (size_t i = 0; i < n; i++) a[i] = b[i] + 3.0f * c[i];
        t = now() - t;
        if (t < best) best = t;
    }
    printf("%.3f\n", 3.0 * n * 4 / best / 1e9 + a[7] * 0);
    return 0;
}
C
${CC:-cc} -O2 "$work/triad.c" -o "$work/triad"
bw=$("$work/triad")
echo "triad bandwidth: $bw GB/s (1 thread)"

# Compiled code against the interpreter on resnet50.
resnet="$data/models/test_resnet50/model.onnx"
cpu=$(json "$resnet" --backend cpu --runs 10)
interp=$(json "$resnet" --backend interp --runs 3 --warmup 1)
echo "resnet50: cpu $(field "$cpu" median_ms) ms, interp $(field "$interp" median_ms) ms;" \
    "compiled/interp speedup $(ratio "$(field "$interp" median_ms)" "$(field "$cpu" median_ms)")x;" \
    "compile $(field "$cpu" compile_s) s"

# Softmax: two-pass against three-pass (and online), rows beyond the
# last-level cache ([4, 8388608], 32 MiB rows) and within it ([64, 32768]).
for shape in "4,8388608" "64,32768"; do
    declare -A ms=()
    for alg in three_pass two_pass online; do
        f="$work/softmax_${alg}_${shape/,/x}.tir"
        printf 'graph @softmax(%%x: f32[%s]) {\n  %%y: f32[%s] = softmax(%%x) {algorithm = %s}\n  return %%y\n}\n' \
            "$shape" "$shape" "$alg" > "$f"
        r=$(json "$f" --backend cpu --no-opt --runs 10)
        ms[$alg]=$(field "$r" median_ms)
    done
    plain="$work/softmax_${shape/,/x}.tir"
    printf 'graph @softmax(%%x: f32[%s]) {\n  %%y: f32[%s] = softmax(%%x)\n  return %%y\n}\n' "$shape" "$shape" > "$plain"
    pick=$("$saturn" opt "$plain" 2>/dev/null | grep -o 'algorithm = [a-z_]*' | head -1 || true)
    pick=${pick#algorithm = }
    fastest=$(for a in three_pass two_pass online; do echo "${ms[$a]} $a"; done | sort -g | head -1 | cut -d' ' -f2)
    echo "softmax [$shape]: three_pass ${ms[three_pass]} ms, two_pass ${ms[two_pass]} ms, online ${ms[online]} ms;" \
        "three/two $(ratio "${ms[three_pass]}" "${ms[two_pass]}")x; cost model picks ${pick:-three_pass}, fastest measured $fastest"
    unset ms
done

# GEMM 1024³.
printf 'graph @gemm(%%a: f32[1024,1024], %%b: f32[1024,1024]) {\n  %%c: f32[1024,1024] = matmul(%%a, %%b)\n  return %%c\n}\n' > "$work/gemm.tir"
r=$(json "$work/gemm.tir" --backend cpu --runs 5)
g=$(python3 -c "print(f'{2 * 1024**3 / (float(\"$(field "$r" median_ms)\") * 1e-3) / 1e9:.1f}')")
echo "gemm 1024^3: $(field "$r" median_ms) ms, $g GFLOP/s"

# Flat GEMM and GEMV against a 4096×4096 weight: bytes of B per second
# against the triad.
for m in 1 8; do
    printf 'graph @flat(%%a: f32[%d,4096], %%b: f32[4096,4096]) {\n  %%c: f32[%d,4096] = matmul(%%a, %%b)\n  return %%c\n}\n' "$m" "$m" > "$work/flat$m.tir"
    r=$(json "$work/flat$m.tir" --backend cpu --runs 10)
    gbs=$(python3 -c "print(f'{4096 * 4096 * 4 / (float(\"$(field "$r" median_ms)\") * 1e-3) / 1e9:.2f}')")
    echo "matmul [$m,4096]x[4096,4096]: $(field "$r" median_ms) ms, $gbs GB/s of B, $(ratio "$gbs" "$bw") of the triad"
done

# Planned memory of resnet50.
"$saturn" compile "$resnet" -o "$work/resnet50" --report | grep '^memory'
