#!/usr/bin/env bash
# Benchmarks of the `llvm` backend, each a comparison made in one run on
# this machine:
#
# - the machine: its single-core f32 FMA peak (an FMA-bound C loop with the
#   widest vectors it has) and its memory bandwidth (a STREAM-style triad,
#   counted as 2 reads + 1 write) on 1 and 2 threads;
# - GEMM f32 1024³ and 2048³ on 1 thread, as a fraction of that peak;
# - flat GEMM [1,4096]×[4096,4096] and [8,4096]×[4096,4096] with constant
#   weights (the decode case) on 2 threads, as a fraction of the 2-thread
#   bandwidth (bytes: the weights, once), measured again just before and
#   after (this host's bandwidth drifts by tens of percent over minutes);
# - softmax over [4, 8388608] by each algorithm on 1 and 2 threads (bytes:
#   two-pass and online 2 reads + 1 write, three-pass 3 reads + 1 write),
#   two-pass against three-pass (bandwidth: a triad run right after
#   them), and on [64, 32768] with the cost model's pick;
# - resnet50, bert_tiny and squeezenet against ONNX Runtime on 1 and 2
#   threads (`saturn bench --compare-ort`, outputs compared).
#
#   scripts/bench-llvm.sh
#
# Needs LLVM (scripts/setup-llvm.sh), ONNX Runtime and the onnx package
# (scripts/setup-ort.sh), a C compiler, and the ONNX test data at
# ../shared/onnx-tests (or $SATURN_ONNX_TESTS).
set -euo pipefail
cd "$(dirname "$0")/.."
data=${SATURN_ONNX_TESTS:-../shared/onnx-tests}
cargo build --release -q --features llvm
saturn=target/release/saturn
python=${SATURN_ORT_PYTHON:-target/ort-venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

field() { python3 -c "import json,sys; print(json.loads(sys.argv[1])['$2'])" "$1"; }
calc() { python3 -c "print(f'{$1:.${2:-2}f}')"; }
bench() { "$saturn" bench "$@" --backend llvm --json; }

# ---- the machine -----------------------------------------------------------
cat > "$work/peak.c" <<'C'
#include <stdio.h>
#include <time.h>
#include <immintrin.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#ifdef __AVX512F__
typedef __m512 V; enum { L = 16 };
#define FMA _mm512_fmadd_ps
#define SET _mm512_set1_ps
static float first(V v) { return _mm512_cvtss_f32(v); }
#else
typedef __m256 V; enum { L = 8 };
#define FMA _mm256_fmadd_ps
#define SET _mm256_set1_ps
static float first(V v) { return _mm256_cvtss_f32(v); }
#endif
int main(void) {
    V a[12], b = SET(0.999999f), c = SET(1e-7f);
    for (int i = 0; i < 12; i++) a[i] = SET((float)i);
    long n = 50000000;
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t = now();
        for (long k = 0; k < n; k++) {
            /* Twelve independent chains, kept in registers. */
            a[0] = FMA(a[0], b, c); a[1] = FMA(a[1], b, c); a[2] = FMA(a[2], b, c);
            a[3] = FMA(a[3], b, c); a[4] = FMA(a[4], b, c); a[5] = FMA(a[5], b, c);
            a[6] = FMA(a[6], b, c); a[7] = FMA(a[7], b, c); a[8] = FMA(a[8], b, c);
            a[9] = FMA(a[9], b, c); a[10] = FMA(a[10], b, c); a[11] = FMA(a[11], b, c);
        }
        t = now() - t;
        if (t < best) best = t;
    }
    float s = 0;
    for (int i = 0; i < 12; i++) s += first(a[i]);
    printf("%.2f %d\n", n * 12.0 * L * 2 / best / 1e9 + s * 0, L * 32);
    return 0;
}
C
cat > "$work/triad.c" <<'C'
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
#define NE ((size_t)1 << 25)
static float *a, *b, *c;
static int T;
static pthread_barrier_t bar;
static void *run(void *p) {
    long id = (long)p;
    size_t lo = NE * id / T, hi = NE * (id + 1) / T;
    for (size_t i = lo; i < hi; i++) { a[i] = 0; b[i] = (float)i; c[i] = 1; }
    pthread_barrier_wait(&bar);
    for (int r = 0; r < 10; r++) {
        pthread_barrier_wait(&bar);
        for (size_t i = lo; i < hi; i++) a[i] = b[i] + 3.0f * c[i];
        pthread_barrier_wait(&bar);
    }
    return 0;
}
int main(int argc, char **argv) {
    T = argc > 1 ? atoi(argv[1]) : 1;
    a = malloc(NE * 4); b = malloc(NE * 4); c = malloc(NE * 4);
    pthread_barrier_init(&bar, 0, T + 1);
    pthread_t t[64];
    for (long i = 0; i < T; i++) pthread_create(&t[i], 0, run, (void *)i);
    pthread_barrier_wait(&bar);
    double best = 1e9;
    for (int r = 0; r < 10; r++) {
        pthread_barrier_wait(&bar);
        double t0 = now();
        pthread_barrier_wait(&bar);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    for (int i = 0; i < T; i++) pthread_join(t[i], 0);
    printf("%.2f\n", 3.0 * NE * 4 / best / 1e9 + a[7] * 0);
    return 0;
}
C
${CC:-cc} -O2 -march=native "$work/peak.c" -o "$work/peak"
${CC:-cc} -O2 -march=native -pthread "$work/triad.c" -o "$work/triad"
read -r peak vbits < <("$work/peak")
bw1=$("$work/triad" 1)
bw2=$("$work/triad" 2)
echo "machine: f32 FMA peak $peak GFLOP/s on one core ($vbits-bit vectors); triad $bw1 GB/s (1 thread), $bw2 GB/s (2 threads)"

# ---- GEMM ------------------------------------------------------------------
for n in 1024 2048; do
    printf 'graph @gemm(%%a: f32[%d,%d], %%b: f32[%d,%d]) {\n  %%c: f32[%d,%d] = matmul(%%a, %%b)\n  return %%c\n}\n' \
        "$n" "$n" "$n" "$n" "$n" "$n" > "$work/gemm$n.tir"
    r=$(bench "$work/gemm$n.tir" --threads 1 --runs $((n == 1024 ? 10 : 3)))
    g=$(calc "2 * $n**3 / ($(field "$r" median_ms) * 1e-3) / 1e9" 1)
    echo "gemm ${n}³, 1 thread: $(field "$r" median_ms) ms, $g GFLOP/s = $(calc "$g / $peak * 100" 1)% of peak"
done

# ---- flat GEMM with constant weights ---------------------------------------
"$python" - "$work" <<'PY'
import sys
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
for m in (1, 8):
    w = numpy_helper.from_array((np.random.default_rng(0).standard_normal((4096, 4096)) * 0.02).astype(np.float32), "w")
    g = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], f"flat{m}",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [m, 4096])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [m, 4096])], [w])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, f"{sys.argv[1]}/flat{m}.onnx")
PY
for m in 1 8; do
    # The memory bandwidth of this host drifts from minute to minute: the
    # triad is measured again just before and after, and the GEMM compared
    # with their mean as well as with the triad at the start.
    before=$("$work/triad" 2)
    r=$(bench "$work/flat$m.onnx" --threads 2 --runs 20 --compare-ort)
    after=$("$work/triad" 2)
    near=$(calc "($before + $after) / 2")
    gbs=$(calc "4096 * 4096 * 4 / ($(field "$r" median_ms) * 1e-3) / 1e9")
    echo "matmul [$m,4096]x[4096,4096] (constant weights), 2 threads: $(field "$r" median_ms) ms, $gbs GB/s = $(calc "$gbs / $near * 100" 1)% of the triad around it ($before, $after GB/s), $(calc "$gbs / $bw2 * 100" 1)% of the first; onnxruntime $(field "$r" ort_median_ms) ms"
done

# ---- softmax ---------------------------------------------------------------
for shape in "4,8388608" "64,32768"; do
    n=$(calc "${shape/,/*}" 0)
    # Short runs need many of them for a steady median.
    runs=$([ "$shape" = "64,32768" ] && echo 100 || echo 10)
    for t in 1 2; do
        declare -A ms=()
        for alg in three_pass two_pass online; do
            f="$work/softmax_${alg}_${shape/,/x}.tir"
            printf 'graph @softmax(%%x: f32[%s]) {\n  %%y: f32[%s] = softmax(%%x) {algorithm = %s}\n  return %%y\n}\n' \
                "$shape" "$shape" "$alg" > "$f"
            r=$(bench "$f" --no-opt --threads "$t" --runs "$runs")
            ms[$alg]=$(field "$r" median_ms)
        done
        # The triad on this thread count, measured again next to these runs.
        bw=$("$work/triad" "$t")
        line="softmax [$shape], $t thread(s):"
        for alg in three_pass two_pass online; do
            passes=$([ "$alg" = three_pass ] && echo 4 || echo 3)
            gbs=$(calc "$passes * $n * 4 / (${ms[$alg]} * 1e-3) / 1e9")
            line+=" $alg ${ms[$alg]} ms ($gbs GB/s, $(calc "$gbs / $bw * 100" 0)%)"
        done
        echo "$line; three/two $(calc "${ms[three_pass]} / ${ms[two_pass]}")x"
        unset ms
    done
    plain="$work/softmax_${shape/,/x}.tir"
    printf 'graph @softmax(%%x: f32[%s]) {\n  %%y: f32[%s] = softmax(%%x)\n  return %%y\n}\n' "$shape" "$shape" > "$plain"
    pick=$("$saturn" opt "$plain" 2>/dev/null | grep -o 'algorithm = [a-z_]*' | head -1 || true)
    echo "softmax [$shape]: the cost model picks ${pick#algorithm = }"
done

# ---- models against ONNX Runtime -------------------------------------------
for case in models/test_resnet50 transformers/test_bert_tiny models/test_squeezenet; do
    for t in 1 2; do
        r=$(bench "$data/$case/model.onnx" --threads "$t" --runs 20 --inputs "$data/$case/test_data_set_0" --compare-ort)
        echo "$(basename "$case"), $t thread(s): saturn $(field "$r" median_ms) ms, onnxruntime $(field "$r" ort_median_ms) ms, ratio $(field "$r" ratio) (below 1: saturn faster), outputs match: $(field "$r" ort_outputs_match)"
    done
done
