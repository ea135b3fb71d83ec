/* Runs a model compiled by `saturn compile` on raw input files.
 *
 *   saturn compile examples/mlp/model.onnx -o /tmp/mlp
 *   cc -O2 -I/tmp/mlp -DSATURN_HEADER='"mlp.h"' examples/c/run_model.c \
 *      -L/tmp/mlp -lmlp -Wl,-rpath,/tmp/mlp -o /tmp/run_mlp
 *   /tmp/run_mlp [--threads N] IN_0.bin … OUT_0.bin …
 *
 * Each IN_i.bin holds input i as dense little-endian bytes (its size must be
 * input_bytes(i)); OUT_i.bin receives output i the same way. The program
 * works with any compiled model: SATURN(f) names the model's functions.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include SATURN_HEADER

static void *read_all(const char *path, uint64_t want) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "error: cannot open %s\n", path);
        return NULL;
    }
    void *buf = malloc(want ? want : 1);
    size_t got = fread(buf, 1, want, f);
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (got != want || extra) {
        fprintf(stderr, "error: %s must hold exactly %llu bytes\n", path, (unsigned long long)want);
        free(buf);
        return NULL;
    }
    return buf;
}

int main(int argc, char **argv) {
    int threads = 0, first = 1;
    if (argc > 2 && strcmp(argv[1], "--threads") == 0) {
        threads = atoi(argv[2]);
        first = 3;
    }
    int ni = SATURN(num_inputs)(), no = SATURN(num_outputs)();
    if (argc - first != ni + no) {
        fprintf(stderr, "usage: %s [--threads N] IN_0.bin … OUT_0.bin … (%d inputs, %d outputs)\n",
                argv[0], ni, no);
        for (int i = 0; i < ni; i++)
            fprintf(stderr, "  input %d: %s, %llu bytes\n", i, SATURN(input_name)(i),
                    (unsigned long long)SATURN(input_bytes)(i));
        return 2;
    }
    const void **inputs = calloc((size_t)ni + 1, sizeof *inputs);
    void **outputs = calloc((size_t)no + 1, sizeof *outputs);
    for (int i = 0; i < ni; i++)
        if (!(inputs[i] = read_all(argv[first + i], SATURN(input_bytes)(i)))) return 1;
    for (int i = 0; i < no; i++) outputs[i] = malloc(SATURN(output_bytes)(i) + 1);

    SATURN(session) *s = SATURN(create)(NULL, threads);
    if (!s) {
        fprintf(stderr, "error: %s\n", SATURN(last_error)());
        return 1;
    }
    if (SATURN(run)(s, inputs, outputs) != 0) {
        fprintf(stderr, "error: %s\n", SATURN(last_error)());
        return 1;
    }
    for (int i = 0; i < no; i++) {
        const char *path = argv[first + ni + i];
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(outputs[i], 1, SATURN(output_bytes)(i), f) != SATURN(output_bytes)(i)) {
            fprintf(stderr, "error: cannot write %s\n", path);
            return 1;
        }
        fclose(f);
        printf("%s: dtype %d, shape [", SATURN(output_name)(i), SATURN(output_dtype)(i));
        for (int d = 0; d < SATURN(output_rank)(i); d++)
            printf("%s%lld", d ? ", " : "", (long long)SATURN(output_shape)(i)[d]);
        printf("] -> %s\n", path);
    }
    SATURN(destroy)(s);
    return 0;
}
