/* Saturn's C runtime for ahead-of-time compiled models.
 *
 * `saturn compile` writes one C file per model: this runtime followed by
 * the model's tables (buffers, arena offsets, the kernel call sequence,
 * input/output metadata) and the exported C ABI (see the generated
 * header). Kernels are in the object file Cranelift emitted; their
 * parallel loops call saturn_parallel_for below, which runs chunks on a
 * small pthread pool whose idle workers spin a while, then sleep.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef void (*saturn_body_fn)(const uint8_t *ctx, int64_t lo, int64_t hi);
typedef void (*saturn_kernel_fn)(uint8_t *const *bufs, const int64_t *dims, void *rt);

static __thread char saturn_error[512];

static void saturn_set_error(const char *msg) {
    snprintf(saturn_error, sizeof saturn_error, "%s", msg);
}

/* The pool: the calling thread and threads - 1 workers claim chunks of a
 * loop from a shared counter. A model's kernels come one after another, so
 * an idle worker first spins for SATURN_SPIN_NS watching for the next loop
 * and only then sleeps on a condition variable (waking a sleeping thread
 * costs more than a small kernel runs). The loop's fields are published
 * before its epoch; a chunk is claimed by moving `claim` (epoch in the high
 * 32 bits, the loop's chunk count in the next 16, the next chunk in the low
 * 16) on from a value of its own epoch and below that count, so a late
 * worker never runs a chunk of a loop it did not read. */
#define SATURN_SPIN_NS 2000000L
#define SATURN_CHUNKS_PER_THREAD 4

typedef struct saturn_pool {
    int threads;
    pthread_t *workers;
    _Atomic uint64_t claim;
    _Atomic int64_t done;
    _Atomic(saturn_body_fn) body;
    _Atomic(const uint8_t *) ctx;
    _Atomic int64_t start, end, step;
    _Atomic int sleepers;
    _Atomic int stop;
    pthread_mutex_t mu; /* with `wake`, for sleeping workers */
    pthread_cond_t wake;
    pthread_mutex_t busy; /* held by the caller whose loop runs */
} saturn_pool;

static __thread int saturn_in_loop;

static inline void saturn_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

static int64_t saturn_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000L + t.tv_nsec;
}

/* Claims and runs chunks of the loop of `epoch` until none are left. */
static void saturn_work(saturn_pool *p, uint64_t epoch) {
    for (;;) {
        uint64_t c = atomic_load_explicit(&p->claim, memory_order_acquire);
        if (c >> 32 != epoch) return;
        int64_t i = (int64_t)(c & 0xffffu);
        int64_t chunks = (int64_t)((c >> 16) & 0xffffu);
        if (i >= chunks) return;
        /* Read before the claim: they cannot change until every chunk of
         * this epoch, this one included, is done. */
        saturn_body_fn body = atomic_load_explicit(&p->body, memory_order_relaxed);
        const uint8_t *ctx = atomic_load_explicit(&p->ctx, memory_order_relaxed);
        int64_t start = atomic_load_explicit(&p->start, memory_order_relaxed);
        int64_t end = atomic_load_explicit(&p->end, memory_order_relaxed);
        int64_t step = atomic_load_explicit(&p->step, memory_order_relaxed);
        if (!atomic_compare_exchange_weak_explicit(&p->claim, &c, c + 1, memory_order_acq_rel,
                                                   memory_order_relaxed))
            continue;
        int64_t count = (end - start + step - 1) / step;
        int64_t lo = start + (i * count / chunks) * step;
        int64_t hi = start + ((i + 1) * count / chunks) * step;
        if (hi > end) hi = end;
        saturn_in_loop = 1;
        body(ctx, lo, hi);
        saturn_in_loop = 0;
        atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
    }
}

static void *saturn_worker(void *arg) {
    saturn_pool *p = arg;
    uint64_t seen = atomic_load(&p->claim) >> 32;
    while (!atomic_load(&p->stop)) {
        int64_t t0 = saturn_now_ns();
        int found = 0;
        for (unsigned spins = 1;; spins++) {
            if (atomic_load_explicit(&p->claim, memory_order_acquire) >> 32 != seen ||
                atomic_load_explicit(&p->stop, memory_order_relaxed)) {
                found = 1;
                break;
            }
            saturn_relax();
            if (spins % 256 == 0 && saturn_now_ns() - t0 > SATURN_SPIN_NS) break;
        }
        if (!found) {
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->claim) >> 32 == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->wake, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            continue;
        }
        seen = atomic_load_explicit(&p->claim, memory_order_acquire) >> 32;
        saturn_work(p, seen);
    }
    return NULL;
}

static saturn_pool *saturn_pool_new(int threads) {
    saturn_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->threads = threads < 1 ? 1 : threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_mutex_init(&p->busy, NULL);
    if (p->threads > 1) {
        p->workers = calloc((size_t)p->threads - 1, sizeof(pthread_t));
        if (!p->workers) {
            p->threads = 1;
            return p;
        }
        for (int i = 0; i < p->threads - 1; i++) {
            if (pthread_create(&p->workers[i], NULL, saturn_worker, p) != 0) {
                p->threads = i + 1; /* the ones that started */
                break;
            }
        }
    }
    return p;
}

static void saturn_pool_free(saturn_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->threads - 1; i++) pthread_join(p->workers[i], NULL);
    free(p->workers);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->busy);
    free(p);
}

/* Called by generated code for every parallel loop. A nested loop, or one
 * started while another caller's loop runs, runs inline. */
__attribute__((visibility("hidden"))) void saturn_parallel_for(void *rt, saturn_body_fn body,
                                                               const uint8_t *ctx, int64_t start,
                                                               int64_t end, int64_t step) {
    saturn_pool *p = rt;
    if (end <= start || step <= 0) return;
    int64_t count = (end - start + step - 1) / step;
    if (!p || p->threads == 1 || count == 1 || saturn_in_loop || pthread_mutex_trylock(&p->busy)) {
        body(ctx, start, end);
        return;
    }
    int64_t most = (int64_t)p->threads * SATURN_CHUNKS_PER_THREAD;
    int64_t chunks = count < most ? count : most;
    if (chunks > 0xffff) chunks = 0xffff;
    atomic_store_explicit(&p->body, body, memory_order_relaxed);
    atomic_store_explicit(&p->ctx, ctx, memory_order_relaxed);
    atomic_store_explicit(&p->start, start, memory_order_relaxed);
    atomic_store_explicit(&p->end, end, memory_order_relaxed);
    atomic_store_explicit(&p->step, step, memory_order_relaxed);
    atomic_store_explicit(&p->done, 0, memory_order_relaxed);
    uint64_t epoch = (atomic_load_explicit(&p->claim, memory_order_relaxed) >> 32) + 1;
    atomic_store(&p->claim, epoch << 32 | (uint64_t)chunks << 16); /* publishes the fields above */
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->wake);
        pthread_mutex_unlock(&p->mu);
    }
    saturn_work(p, epoch & 0xffffffffu);
    while (atomic_load_explicit(&p->done, memory_order_acquire) < chunks) saturn_relax();
    pthread_mutex_unlock(&p->busy);
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
