/* Saturn's C runtime for ahead-of-time compiled models.
 *
 * `saturn compile` writes one C file per model: this runtime followed by
 * the model's tables (buffers, arena offsets, the kernel call sequence,
 * input/output metadata) and the exported C ABI (see the generated
 * header). Kernels are in the object file Cranelift emitted; their
 * parallel loops call saturn_parallel_for below, which runs chunks on a
 * small pthread pool whose idle workers sleep on a condition variable.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void (*saturn_body_fn)(const uint8_t *ctx, int64_t lo, int64_t hi);
typedef void (*saturn_kernel_fn)(uint8_t *const *bufs, const int64_t *dims, void *rt);

static __thread char saturn_error[512];

static void saturn_set_error(const char *msg) {
    snprintf(saturn_error, sizeof saturn_error, "%s", msg);
}

typedef struct saturn_pool {
    int threads;
    pthread_t *workers;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    pthread_cond_t done;
    /* The job being run. */
    uint64_t generation;
    saturn_body_fn body;
    const uint8_t *ctx;
    int64_t start, end, step, count, chunks;
    int64_t next_chunk, finished;
    int stop;
} saturn_pool;

static void saturn_run_chunks(saturn_pool *p) {
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int64_t c = p->next_chunk < p->chunks ? p->next_chunk++ : -1;
        saturn_body_fn body = p->body;
        const uint8_t *ctx = p->ctx;
        int64_t start = p->start, end = p->end, step = p->step;
        int64_t count = p->count, chunks = p->chunks;
        pthread_mutex_unlock(&p->mu);
        if (c < 0) return;
        int64_t lo = start + (c * count / chunks) * step;
        int64_t hi = start + ((c + 1) * count / chunks) * step;
        if (hi > end) hi = end;
        body(ctx, lo, hi);
        pthread_mutex_lock(&p->mu);
        if (++p->finished == p->chunks) pthread_cond_broadcast(&p->done);
        pthread_mutex_unlock(&p->mu);
    }
}

static void *saturn_worker(void *arg) {
    saturn_pool *p = arg;
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (!p->stop && p->generation == seen) pthread_cond_wait(&p->wake, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        pthread_mutex_unlock(&p->mu);
        saturn_run_chunks(p);
    }
}

static saturn_pool *saturn_pool_new(int threads) {
    saturn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    if (p->threads > 1) {
        p->workers = calloc((size_t)p->threads - 1, sizeof(pthread_t));
        for (int i = 0; i < p->threads - 1; i++) pthread_create(&p->workers[i], NULL, saturn_worker, p);
    }
    return p;
}

static void saturn_pool_free(saturn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p);
}

/* Called by generated code for every parallel loop. */
__attribute__((visibility("hidden"))) void saturn_parallel_for(void *rt, saturn_body_fn body,
                                                               const uint8_t *ctx, int64_t start,
                                                               int64_t end, int64_t step) {
    saturn_pool *p = rt;
    if (end <= start || step <= 0) return;
    int64_t count = (end - start + step - 1) / step;
    if (!p || p->threads == 1 || count == 1) {
        body(ctx, start, end);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->body = body;
    p->ctx = ctx;
    p->start = start;
    p->end = end;
    p->step = step;
    p->count = count;
    p->chunks = count < (int64_t)p->threads * 4 ? count : (int64_t)p->threads * 4;
    p->next_chunk = 0;
    p->finished = 0;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    saturn_run_chunks(p);
    pthread_mutex_lock(&p->mu);
    while (p->finished < p->chunks) pthread_cond_wait(&p->done, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

/* ---- tables every model defines (generated below this runtime) ---- */
typedef struct {
    int kind; /* 0 input, 1 const, 2 arena */
    uint64_t offset; /* arena offset, or weights offset for constants */
    uint64_t bytes;
} saturn_slot;

typedef struct {
    int kernel;
    int nargs;
    const int *args;
} saturn_step;

typedef struct {
    const char *name;
    int dtype; /* ONNX TensorProto data type code */
    int rank;
    const int64_t *shape;
    uint64_t bytes;
    int slot;
} saturn_io;

typedef struct saturn_session {
    saturn_pool *pool;
    uint8_t *weights;
    uint8_t *arena;
    pthread_mutex_t mu;
} saturn_session;

static uint8_t *saturn_alloc(uint64_t bytes) {
    void *p = NULL;
    if (posix_memalign(&p, 64, bytes ? bytes : 64) != 0) return NULL;
    return p;
}

/* Reads the weights file: `path`, or `<library dir>/<default_name>`. */
static uint8_t *saturn_load_weights(const char *path, const char *default_name, uint64_t expect,
                                    const void *self) {
    char buf[4096];
    if (expect == 0) return saturn_alloc(64);
    if (!path) {
        Dl_info info;
        if (!dladdr(self, &info) || !info.dli_fname) {
            saturn_set_error("cannot locate the library to find its weights file");
            return NULL;
        }
        const char *slash = strrchr(info.dli_fname, '/');
        int dir = slash ? (int)(slash - info.dli_fname) : 0;
        snprintf(buf, sizeof buf, "%.*s%s%s", dir, info.dli_fname, slash ? "/" : "", default_name);
        path = buf;
    }
    FILE *f = fopen(path, "rb");
    if (!f) {
        char msg[512];
        snprintf(msg, sizeof msg, "cannot open weights file `%.400s`", path);
        saturn_set_error(msg);
        return NULL;
    }
    uint8_t *w = saturn_alloc(expect);
    size_t got = w ? fread(w, 1, expect, f) : 0;
    int extra = fgetc(f) != EOF;
    fclose(f);
    if (!w || got != expect || extra) {
        char msg[512];
        snprintf(msg, sizeof msg, "weights file `%.300s` has the wrong size (expected %llu bytes)",
                 path, (unsigned long long)expect);
        saturn_set_error(msg);
        free(w);
        return NULL;
    }
    return w;
}
