/* Filtered HNSW walk over a FAISS IndexHNSWFlat graph, with hnswlib's stopping rule.
 *
 * Why this exists: FAISS's filtered walk (an IDSelector inside HNSW::search) keeps a beam of
 * the ef nearest nodes *of any kind* and returns the allowed ones among them. When the filter
 * is correlated with the neighbourhood (the allowed rows sit away from the query), that beam
 * stays among disallowed nodes and recall collapses unless ef grows a lot. hnswlib's rule
 * keeps the ef nearest *allowed* nodes and walks on until it has them, so the walk leaves a
 * disallowed neighbourhood by itself - but hnswlib's Python binding checks the filter through
 * a Python callback per visited node. This walk runs hnswlib's rule on FAISS's own graph and
 * vectors (read in place, no copy) with the allow-set as a C bitmap.
 *
 * Under a selective filter most neighbours are disallowed, and hnswlib's rule still computes
 * their distances to walk through them. With two_hop set, a disallowed neighbour is never
 * scored: its own allowed neighbours are taken instead, until the node's list is full (the
 * neighbour expansion of ACORN-1, Patel et al. 2024, on an ordinary HNSW graph). Every scored
 * node is then allowed. Measured on the 50k sentences: 1.2-1.8x faster at 10 % selectivity,
 * 3.5x at 1 %, and 2x slower at 50 % (where the one-hop list is already half allowed); the
 * planner chooses between the two by cost.
 *
 * With codes set (set_codes: FAISS's 8-bit scalar codes of the rows, made by ann.walk_codes), the
 * walk scores rows on their codes, d bytes a row instead of 4d, and scores its final ef rows exactly
 * on the float rows before keeping the k best. The walk is bound by reading rows at random from
 * memory, so this measured 1.6-1.8x the queries/s at 10^6 rows (1.5 GB of floats against 384 MB of
 * codes) and 1.3-1.6x on the 50k sentences, at the same recall: the codes' rounding (half a step
 * of a dimension's range / 255) moves which rows enter the final ef, rarely which are the best k.
 *
 * Graph layout (faiss/impl/HNSW.h): the neighbours of node i at level l are
 * neighbors[offsets[i] + cum[l] .. offsets[i] + cum[l + 1]), -1 padded; levels[i] is the number
 * of levels node i is on. Distances are "smaller is better": -<q, x> (inner product) or the
 * squared L2 distance; the answers are given back in FAISS's convention (inner products, or
 * squared distances), labels -1 where fewer than k allowed rows were reached.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>
#include <unistd.h>

#include "../_topheap.h"

typedef struct {
    float d;
    int32_t id;
} Item;

/* Per-thread scratch: visit tags (one generation per query, cleared every 255 queries: one byte per
   row keeps them in cache, as FAISS's VisitedTable) and the two heaps. */
typedef struct Work {
    uint8_t *tags;
    uint8_t gen;
    Item *cand;
    size_t cand_cap;
    Item *top;
    size_t top_cap;
    float *wq; /* the query times the codes' scales (a walk over 8-bit codes) */
    float *row; /* one float row read from the file (read_rows_from) */
    struct Work *next;
} Work;

typedef struct {
    PyObject_HEAD
    Py_buffer bufs[5]; /* vectors, neighbors, offsets, levels, cum */
    int nbufs;
    const float *x;
    const int32_t *nbr;
    const uint64_t *offsets;
    const int32_t *levels;
    const int32_t *cum;
    uint64_t nnbr; /* length of nbr */
    int64_t n;
    int d;
    int32_t entry;
    int max_level;
    int ip;
    /* optional 8-bit codes of the vectors: row v ~ offset + scale * codes[v] per dimension; the walk
       then reads d bytes a row instead of 4d and scores its final ef rows exactly in float */
    Py_buffer cbufs[4]; /* codes, scale, offset, squared norms (L2) */
    int ncbufs;
    const uint8_t *codes;
    const float *cscale, *coff, *cnorm;
    /* read_rows_from(fd, offset): the final ef rows are read from this file (row v at offset + v * 4d)
       by pread instead of through the vectors' map, so the float rows never enter this process's RSS:
       only the page cache holds them (at 10^6 x 384 the map made the whole 1.5 GB resident after a few
       hundred queries, since one fault maps up to 2 MB of a large page-cache folio) */
    int rowfd; /* a dup of the caller's descriptor, owned; meaningful when has_rowfd */
    int has_rowfd;
    int64_t rowoff;
    Work *pool; /* free scratch, taken and given back while holding the GIL */
} Graph;

/* ------------------------------------------------------------------ distances */
/* "Smaller is better": -<q, r> (inner product) or |q - r|^2. Portable C here; the AVX2 build of
   the walk below swaps in intrinsics (chosen once per process by the CPU, see walk_one). */
static float dist_c(const float *q, const float *r, int d, int ip) {
    float acc[8] = {0};
    int i = 0;
    if (ip) {
        for (; i + 8 <= d; i += 8)
            for (int j = 0; j < 8; j++) acc[j] += q[i + j] * r[i + j];
    } else {
        for (; i + 8 <= d; i += 8)
            for (int j = 0; j < 8; j++) {
                float t = q[i + j] - r[i + j];
                acc[j] += t * t;
            }
    }
    float s = 0.f;
    for (int j = 0; j < 8; j++) s += acc[j];
    for (; i < d; i++) s += ip ? q[i] * r[i] : (q[i] - r[i]) * (q[i] - r[i]);
    return ip ? -s : s;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VB_AVX2 1
__attribute__((target("avx2,fma"))) static inline float hsum256(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

__attribute__((target("avx2,fma"))) static float dist_avx2(const float *q, const float *r, int d, int ip) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    if (ip) {
        for (; i + 16 <= d; i += 16) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(r + i), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(r + i + 8), a1);
        }
    } else {
        for (; i + 16 <= d; i += 16) {
            __m256 t0 = _mm256_sub_ps(_mm256_loadu_ps(q + i), _mm256_loadu_ps(r + i));
            __m256 t1 = _mm256_sub_ps(_mm256_loadu_ps(q + i + 8), _mm256_loadu_ps(r + i + 8));
            a0 = _mm256_fmadd_ps(t0, t0, a0);
            a1 = _mm256_fmadd_ps(t1, t1, a1);
        }
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < d; i++) s += ip ? q[i] * r[i] : (q[i] - r[i]) * (q[i] - r[i]);
    return ip ? -s : s;
}
#endif

typedef float (*DistFn)(const float *, const float *, int, int);
static DistFn dist = dist_c; /* dist_avx2 where the CPU has it (set when the module loads) */

/* sum_i w[i] * c[i] over a row of 8-bit codes */
static float dot8_c(const float *w, const uint8_t *c, int d) {
    float acc[8] = {0};
    int i = 0;
    for (; i + 8 <= d; i += 8)
        for (int j = 0; j < 8; j++) acc[j] += w[i + j] * (float)c[i + j];
    float s = 0.f;
    for (int j = 0; j < 8; j++) s += acc[j];
    for (; i < d; i++) s += w[i] * (float)c[i];
    return s;
}

#ifdef VB_AVX2
__attribute__((target("avx2,fma"))) static float dot8_avx2(const float *w, const uint8_t *c, int d) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= d; i += 16) {
        __m128i b = _mm_loadu_si128((const __m128i *)(c + i));
        __m256 lo = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
        __m256 hi = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(b, 8)));
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), lo, a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), hi, a1);
    }
    float s = hsum256(_mm256_add_ps(a0, a1));
    for (; i < d; i++) s += w[i] * (float)c[i];
    return s;
}
#endif

typedef float (*Dot8Fn)(const float *, const uint8_t *, int);
static Dot8Fn dot8 = dot8_c;

static int item_cmp(const void *a, const void *b) {
    float x = ((const Item *)a)->d, y = ((const Item *)b)->d;
    return (x > y) - (x < y);
}

/* ---------------------------------------------------------------------- heaps */
static inline void min_push(Item *h, size_t *n, Item it) { /* smallest d on top */
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) >> 1;
        if (h[p].d <= it.d) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static inline void min_pop(Item *h, size_t *n) {
    Item last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1].d < h[c].d) c++;
        if (last.d <= h[c].d) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
}

static inline void max_push(Item *h, size_t *n, Item it) { /* largest d on top */
    size_t i = (*n)++;
    while (i) {
        size_t p = (i - 1) >> 1;
        if (h[p].d >= it.d) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = it;
}

static inline void max_pop(Item *h, size_t *n) {
    Item last = h[--(*n)];
    size_t i = 0, m = *n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= m) break;
        if (c + 1 < m && h[c + 1].d > h[c].d) c++;
        if (last.d >= h[c].d) break;
        h[i] = h[c];
        i = c;
    }
    if (m) h[i] = last;
}

/* ----------------------------------------------------------------------- walk */
static Work *work_new(int64_t n, int d) {
    Work *w = calloc(1, sizeof(Work));
    if (!w) return NULL;
    w->tags = calloc((size_t)(n > 0 ? n : 1), 1);
    w->wq = malloc((size_t)d * sizeof(float));
    w->row = malloc((size_t)d * sizeof(float));
    w->cand_cap = 1024;
    w->cand = malloc(w->cand_cap * sizeof(Item));
    w->top_cap = 256;
    w->top = malloc(w->top_cap * sizeof(Item));
    if (!w->tags || !w->cand || !w->top || !w->wq || !w->row) {
        free(w->wq);
        free(w->row);
        free(w->tags);
        free(w->cand);
        free(w->top);
        free(w);
        return NULL;
    }
    return w;
}

static void work_free(Work *w) {
    if (!w) return;
    free(w->tags);
    free(w->cand);
    free(w->top);
    free(w->wq);
    free(w->row);
    free(w);
}

/* Node v's neighbours at a level, or NULL when its offset points outside the neighbour array. The
   graph is read in place from the file, without FAISS's pass over every list when it reads an index:
   a damaged file (which the file's background checksum check reports) makes the walk skip a node or
   end a list early, never read outside the arrays. */
static inline const int32_t *list_of(const Graph *g, int32_t v, int level) {
    uint64_t o = g->offsets[v];
    if (o > g->nnbr || g->nnbr - o < (uint64_t)g->cum[level + 1]) return NULL;
    return g->nbr + o + g->cum[level];
}

/* Every cache line of a neighbour list. A list read in place from index.faiss is not aligned to its
   lines (FAISS's header is 37 bytes), so 64 ids span five lines, not four: counting 16 ids a line
   from the list's start left the fifth to a demand miss. */
static inline void prefetch_list(const int32_t *p, size_t width) {
    const char *a = (const char *)((uintptr_t)p & ~(uintptr_t)63), *e = (const char *)(p + width);
    for (; a < e; a += 64) __builtin_prefetch(a);
}

/* One query. Returns 0, -1 when memory ran out (the caller raises MemoryError), or -2 when a row could
   not be read from the rows' file (the caller raises OSError; errno says why). */
static int walk_one(const Graph *g, Work *w, const float *q, int k, int ef, const uint8_t *allow, int two_hop,
                    float *od, int64_t *ol) {
    const int d = g->d;
    const float *x = g->x;
    const int ip = g->ip;
    const uint8_t *codes = g->codes;
    float *wq = w->wq, qoff = 0.f, qq = 0.f;
    if (codes) {
        for (int i = 0; i < d; i++) {
            wq[i] = q[i] * g->cscale[i];
            qoff += q[i] * g->coff[i];
            qq += q[i] * q[i];
        }
    }
    /* a code row scores qoff + <wq, c> ~ <q, x>; L2 adds the row's exact squared norm */
#define DIST8(v) (ip ? -(qoff + dot8(wq, codes + (size_t)(v) * d, d)) \
                     : g->cnorm[v] + qq - 2.f * (qoff + dot8(wq, codes + (size_t)(v) * d, d)))
#define DIST(v) (codes ? DIST8(v) : dist(q, x + (size_t)(v) * d, d, ip))
    const size_t row_bytes = codes ? (size_t)d : (size_t)d * 4;
    const char *rows = codes ? (const char *)codes : (const char *)x;
    /* rows read ahead in full when they are short (codes: 2x faster at 10^6 rows; whole float rows
       of every fresh neighbour at once measured slower: too many lines in flight) */
    const size_t ahead_bytes = row_bytes <= 512 ? row_bytes : 64;
#define ROW(v) (rows + (size_t)(v) * row_bytes)
#define ALLOWED(v) (!allow || (allow[(v) >> 3] >> ((v) & 7)) & 1)
/* a neighbour id (a list ends at -1); an id out of range - a damaged file - ends the list too */
#define NODE(v) ((uint32_t)(v) < (uint32_t)g->n)
    for (int j = 0; j < k; j++) {
        od[j] = ip ? -INFINITY : INFINITY;
        ol[j] = -1;
    }
    if (g->n == 0 || g->entry < 0) return 0;
    if (++w->gen == 0) { /* wrapped: start the tags over */
        memset(w->tags, 0, (size_t)g->n);
        w->gen = 1;
    }
    const uint8_t gen = w->gen;
    uint8_t *tags = w->tags;

    /* upper levels: greedy descent, as FAISS's greedy_update_nearest */
    int32_t cur = g->entry;
    float dcur = DIST(cur);
    for (int level = g->max_level; level >= 1; level--) {
        int changed = 1;
        while (changed) {
            changed = 0;
            const int32_t *nb = list_of(g, cur, level);
            if (!nb) break;
            const int32_t *end = nb + (g->cum[level + 1] - g->cum[level]);
            for (; nb < end && NODE(*nb); nb++) {
                float dv = DIST(*nb);
                if (dv < dcur) {
                    dcur = dv;
                    cur = *nb;
                    changed = 1;
                }
            }
        }
    }

    /* level 0: keep the ef nearest allowed nodes; walk until the nearest unexpanded candidate
       is farther than the worst of them and there are ef of them (hnswlib's searchBaseLayerST) */
    if ((size_t)ef + 1 > w->top_cap) {
        Item *t = realloc(w->top, ((size_t)ef + 1) * sizeof(Item));
        if (!t) return -1;
        w->top = t;
        w->top_cap = (size_t)ef + 1;
    }
    Item *top = w->top;
    size_t ntop = 0, ncand = 0;
    float lower = INFINITY;
    tags[cur] = gen;
    if (ALLOWED(cur)) {
        max_push(top, &ntop, (Item){dcur, cur});
        lower = dcur;
    }
    min_push(w->cand, &ncand, (Item){dcur, cur});
    const size_t width = (size_t)(g->cum[1] - g->cum[0]);
    int32_t fresh[width > 0 ? width : 1];
    while (ncand) {
        Item c = w->cand[0];
        if (c.d > lower && ntop == (size_t)ef) break;
        min_pop(w->cand, &ncand);
        const int32_t *nb = list_of(g, c.id, 0);
        if (!nb) continue;
        if (ncand) { /* the next candidate's list: a random read, issued while this one is scored */
            const int32_t *next = list_of(g, w->cand[0].id, 0);
            if (next)
                prefetch_list(next, width);
        }
        size_t nf = 0;
        for (size_t j = 0; j < width && NODE(nb[j]); j++) {
            int32_t v = nb[j];
            if (tags[v] != gen && (!two_hop || ALLOWED(v))) {
                tags[v] = gen;
                fresh[nf++] = v;
                for (size_t o = 0; o < ahead_bytes; o += 64) __builtin_prefetch(ROW(v) + o);
            }
        }
        if (two_hop) /* the lists read below are random reads: issue them together (1.5x faster at 10^6 rows) */
            for (size_t j = 0; j < width && NODE(nb[j]); j++)
                if (!ALLOWED(nb[j])) {
                    const int32_t *nb2 = list_of(g, nb[j], 0);
                    if (nb2)
                        prefetch_list(nb2, width);
                }
        if (two_hop) /* fill the list up with the allowed neighbours of disallowed neighbours */
            for (size_t j = 0; j < width && NODE(nb[j]) && nf < width; j++) {
                if (ALLOWED(nb[j])) continue;
                const int32_t *nb2 = list_of(g, nb[j], 0);
                if (!nb2) continue;
                for (size_t i2 = 0; i2 < width && NODE(nb2[i2]) && nf < width; i2++) {
                    int32_t u = nb2[i2];
                    if (tags[u] != gen && ALLOWED(u)) {
                        tags[u] = gen;
                        fresh[nf++] = u;
                        for (size_t o = 0; o < ahead_bytes; o += 64) __builtin_prefetch(ROW(u) + o);
                    }
                }
            }
        if (ncand + nf > w->cand_cap) {
            size_t cap = w->cand_cap * 2 + nf;
            Item *t = realloc(w->cand, cap * sizeof(Item));
            if (!t) return -1;
            w->cand = t;
            w->cand_cap = cap;
        }
        for (size_t j = 0; j < nf; j++) {
            int32_t v = fresh[j];
            if (j + 1 < nf) /* the whole next row: ~5 % faster than its first line alone (measured) */
                for (size_t o = 0; o < row_bytes; o += 64) __builtin_prefetch(ROW(fresh[j + 1]) + o);
            float dv = DIST(v);
            if (ntop < (size_t)ef || dv < lower) {
                min_push(w->cand, &ncand, (Item){dv, v});
                if (ALLOWED(v)) {
                    max_push(top, &ntop, (Item){dv, v});
                    if (ntop > (size_t)ef) max_pop(top, &ntop);
                }
                if (ntop) lower = top[0].d;
            }
        }
    }
    if (codes) {
        /* The ef best by their codes, scored exactly in the order of their codes' distances; a row's code
           distance is within `slack` of its exact one (half a step of each dimension's range, weighted by
           |q|), so once a row's code distance less the slack is above the k-th best exact distance so far,
           neither it nor any after it can be among the k best: stop there. The same answers as rescoring
           all ef rows, from fewer rows read (measured: ~14 of 64 on the 384-d mixture at ef 64). */
        qsort(top, ntop, sizeof(Item), item_cmp);
        float slack = 0.f;
        for (int i = 0; i < d; i++) slack += fabsf(q[i]) * g->cscale[i];
        slack *= ip ? 0.505f : 1.01f; /* L2: -2 <q, x>; the 1 % covers the sums' float rounding */
        if ((size_t)k + 1 > w->cand_cap) {
            Item *t = realloc(w->cand, ((size_t)k + 1) * sizeof(Item));
            if (!t) return -1;
            w->cand = t;
            w->cand_cap = (size_t)k + 1;
        }
        Item *best = w->cand; /* max-heap of the k best exact distances */
        size_t nbest = 0;
        const size_t nb = (size_t)d * 4;
        for (size_t j = 0; j < ntop; j++) {
            if (nbest == (size_t)k && top[j].d - slack - 1e-4f * (1.f + fabsf(top[j].d)) > best[0].d) break;
            const float *r;
            if (g->has_rowfd) {
                ssize_t got = pread(g->rowfd, w->row, nb, (off_t)(g->rowoff + (int64_t)top[j].id * (int64_t)nb));
                if (got != (ssize_t)nb) {
                    if (got >= 0) errno = EIO; /* a short read: the file is shorter than the index says */
                    return -2;
                }
                r = w->row;
            } else {
                r = x + (size_t)top[j].id * d;
                if (j + 1 < ntop) __builtin_prefetch(x + (size_t)top[j + 1].id * d);
            }
            max_push(best, &nbest, (Item){dist(q, r, d, ip), top[j].id});
            if (nbest > (size_t)k) max_pop(best, &nbest);
        }
        for (size_t j = nbest; j-- > 0;) {
            od[j] = ip ? -best[0].d : best[0].d;
            ol[j] = best[0].id;
            max_pop(best, &nbest);
        }
        return 0;
    }
    /* the ef best, worst first off the heap: keep the k best in ascending order */
    while (ntop > (size_t)k) max_pop(top, &ntop);
    for (size_t j = ntop; j-- > 0;) {
        od[j] = ip ? -top[0].d : top[0].d;
        ol[j] = top[0].id;
        max_pop(top, &ntop);
    }
#undef DIST
#undef DIST8
#undef ROW
#undef ALLOWED
#undef NODE
    return 0;
}

/* ------------------------------------------------------------------ threading */
typedef struct {
    const Graph *g;
    Work *w;
    const float *q;
    Py_ssize_t nq, first, step;
    int k, ef, two_hop;
    const uint8_t *allow;
    float *od;
    int64_t *ol;
    int failed; /* walk_one's non-zero return */
    int err;    /* errno after a failed read (errno is per thread) */
} Job;

static void *run_job(void *arg) {
    Job *j = arg;
    for (Py_ssize_t i = j->first; i < j->nq; i += j->step)
        if ((j->failed = walk_one(j->g, j->w, j->q + i * j->g->d, j->k, j->ef, j->allow, j->two_hop,
                                  j->od + i * j->k, j->ol + i * j->k)) != 0) {
            j->err = errno;
            break;
        }
    return NULL;
}

/* ------------------------------------------------------------- Python object */
static void walk_error(int rc) {
    if (rc == -2)
        PyErr_SetFromErrnoWithFilename(PyExc_OSError, "the index's rows file (read_rows_from)");
    else
        PyErr_NoMemory();
}

static int get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) return -1;
    if (itemsize != 1 && view->itemsize != itemsize) { /* 1: any bytes (the bitmap) */
        PyErr_Format(PyExc_ValueError, "%s: expected items of %zd bytes, got %zd", what, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

static void Graph_dealloc(Graph *self) {
    for (int i = 0; i < self->nbufs; i++) PyBuffer_Release(&self->bufs[i]);
    for (int i = 0; i < self->ncbufs; i++) PyBuffer_Release(&self->cbufs[i]);
    if (self->has_rowfd) close(self->rowfd);
    while (self->pool) {
        Work *w = self->pool;
        self->pool = w->next;
        work_free(w);
    }
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int Graph_init(Graph *self, PyObject *args, PyObject *kwds) {
    static char *kwlist[] = {"vectors", "neighbors", "offsets", "levels", "cum", "dim", "entry", "max_level",
                             "inner_product", NULL};
    PyObject *objs[5];
    int d, entry, max_level, ip;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOOOOiiip", kwlist, &objs[0], &objs[1], &objs[2], &objs[3],
                                     &objs[4], &d, &entry, &max_level, &ip))
        return -1;
    static const Py_ssize_t sizes[5] = {4, 4, 8, 4, 4};
    static const char *names[5] = {"vectors", "neighbors", "offsets", "levels", "cum"};
    for (int i = 0; i < 5; i++) {
        if (get_buffer(objs[i], &self->bufs[i], sizes[i], 0, names[i]) != 0) return -1;
        self->nbufs = i + 1;
    }
    self->x = self->bufs[0].buf;
    self->nbr = self->bufs[1].buf;
    self->offsets = self->bufs[2].buf;
    self->levels = self->bufs[3].buf;
    self->cum = self->bufs[4].buf;
    self->nnbr = (uint64_t)(self->bufs[1].len / 4);
    self->n = self->bufs[3].len / 4;
    self->d = d;
    self->entry = entry;
    self->max_level = max_level;
    self->ip = ip;
    Py_ssize_t ncum = self->bufs[4].len / 4;
    /* cum bounds every list's span (and the level-0 width sizes a buffer on the stack) */
    int bad_cum = ncum < 2 || self->cum[0] != 0 || self->cum[1] > 4096;
    for (Py_ssize_t i = 0; i + 1 < ncum && !bad_cum; i++) bad_cum = self->cum[i + 1] < self->cum[i];
    if (bad_cum || self->n >= INT32_MAX || d <= 0 || self->bufs[0].len / 4 != self->n * (Py_ssize_t)d || self->bufs[2].len / 8 != self->n + 1 ||
        max_level + 2 > ncum || (self->n > 0 && (entry < 0 || entry >= self->n)) ||
        (self->n > 0 && (Py_ssize_t)self->offsets[self->n] > self->bufs[1].len / 4)) {
        PyErr_SetString(PyExc_ValueError, "inconsistent HNSW graph arrays");
        return -1;
    }
    return 0;
}

/* search(queries, k, ef, allow, out_distances, out_labels, threads, two_hop) */
static PyObject *Graph_search(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "search(queries, k, ef, allow, out_distances, out_labels, threads, two_hop)");
        return NULL;
    }
    int k = (int)PyLong_AsLong(args[1]);
    int ef = (int)PyLong_AsLong(args[2]);
    int threads = (int)PyLong_AsLong(args[6]);
    int two_hop = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred()) return NULL;
    if (k < 1 || ef < 1 || threads < 1) {
        PyErr_SetString(PyExc_ValueError, "k, ef and threads must be positive");
        return NULL;
    }
    if (ef < k) ef = k;
    Py_buffer q, od, ol, al;
    int have_allow = args[3] != Py_None;
    if (get_buffer(args[0], &q, 4, 0, "queries") != 0) return NULL;
    if (get_buffer(args[4], &od, 4, 1, "out_distances") != 0) {
        PyBuffer_Release(&q);
        return NULL;
    }
    if (get_buffer(args[5], &ol, 8, 1, "out_labels") != 0) {
        PyBuffer_Release(&q);
        PyBuffer_Release(&od);
        return NULL;
    }
    if (have_allow && get_buffer(args[3], &al, 1, 0, "allow") != 0) {
        PyBuffer_Release(&q);
        PyBuffer_Release(&od);
        PyBuffer_Release(&ol);
        return NULL;
    }
    PyObject *result = NULL;
    Py_ssize_t nq = q.len / 4 / self->d;
    Work *ws[64];
    int nw = 0;
    if (q.len != nq * self->d * 4 || od.len != nq * k * 4 || ol.len != nq * k * 8 ||
        (have_allow && al.len * 8 < self->n)) {
        PyErr_SetString(PyExc_ValueError, "search: buffer sizes do not match the graph, k and the queries");
        goto done;
    }
    if (threads > 64) threads = 64;
    if (threads > nq) threads = (int)(nq > 0 ? nq : 1);
    for (; nw < threads; nw++) {
        Work *w = self->pool;
        if (w)
            self->pool = w->next;
        else if (!(w = work_new(self->n, self->d))) {
            PyErr_NoMemory();
            goto done;
        }
        ws[nw] = w;
    }
    Job jobs[64];
    int failed = 0;
    for (int t = 0; t < threads; t++)
        jobs[t] = (Job){self, ws[t], q.buf, nq, t, threads, k, ef, two_hop && have_allow,
                        have_allow ? al.buf : NULL, od.buf, ol.buf, 0, 0};
    Py_BEGIN_ALLOW_THREADS
    if (threads == 1) {
        run_job(&jobs[0]);
    } else {
        pthread_t tid[64];
        int started[64] = {0};
        for (int t = 1; t < threads; t++) started[t] = pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
        run_job(&jobs[0]);
        for (int t = 1; t < threads; t++) {
            if (started[t])
                pthread_join(tid[t], NULL);
            else
                run_job(&jobs[t]); /* no thread to be had: do its share here */
        }
    }
    Py_END_ALLOW_THREADS
    for (int t = 0; t < threads; t++)
        if (jobs[t].failed) {
            failed = jobs[t].failed;
            errno = jobs[t].err;
        }
    if (failed) {
        walk_error(failed);
        goto done;
    }
    result = Py_NewRef(Py_None);
done:
    for (int t = 0; t < nw; t++) {
        ws[t]->next = self->pool;
        self->pool = ws[t];
    }
    PyBuffer_Release(&q);
    PyBuffer_Release(&od);
    PyBuffer_Release(&ol);
    if (have_allow) PyBuffer_Release(&al);
    return result;
}

/* k answers of one query as a list of hit_type(id, score, None, None) tuples, made as tuple.__new__
   makes them (a NamedTuple's own __new__ is Python). Scores from FAISS distances: mode 0 inner
   product (times scale: 1 / |query| for cosine), 2 L2 (the square root of the squared distance). */
static PyObject *hit_list(const float *od, const int64_t *ol, int k, PyObject *ids, int mode, double scale,
                          PyTypeObject *hit_type) {
    PyObject *list = PyList_New(k);
    if (!list) return NULL;
    for (int j = 0; j < k; j++) {
        double score = mode == 2 ? sqrt(od[j] > 0.f ? (double)od[j] : 0.0) : (double)od[j] * scale;
        PyObject *sc = PyFloat_FromDouble(score);
        PyObject *hit = sc ? hit_type->tp_alloc(hit_type, 4) : NULL;
        if (!hit) {
            Py_XDECREF(sc);
            Py_DECREF(list);
            return NULL;
        }
        PyObject *id = PyList_GET_ITEM(ids, ol[j]);
        PyTuple_SET_ITEM(hit, 0, Py_NewRef(id));
        PyTuple_SET_ITEM(hit, 1, sc);
        PyTuple_SET_ITEM(hit, 2, Py_NewRef(Py_None));
        PyTuple_SET_ITEM(hit, 3, Py_NewRef(Py_None));
        /* a hit of str/int, float and None cannot be part of a cycle: keep it out of the garbage
           collector's lists, as the collector itself does for such tuples (collections during a
           batch's 10,000 hits took 2/3 of the time to make them) */
        if (PyUnicode_CheckExact(id) || PyLong_CheckExact(id)) PyObject_GC_UnTrack(hit);
        PyList_SET_ITEM(list, j, hit);
    }
    return list;
}

static int hit_args_ok(PyObject *ids, Py_ssize_t n_ids, PyObject *hit_type, int mode) {
    if (mode < 0 || mode > 2 || !PyList_Check(ids) || PyList_GET_SIZE(ids) < n_ids || !PyType_Check(hit_type) ||
        !PyType_IsSubtype((PyTypeObject *)hit_type, &PyTuple_Type)) {
        PyErr_SetString(PyExc_ValueError, "bad mode, ids list or hit type");
        return 0;
    }
    return 1;
}

/* search_hits(query, k, ef, allow, ids, mode, hit_type, two_hop): one query answered as a list of k
   hit_type(id, score, None, None) tuples, or None when the caller's general path must answer
   (a query that is not finite or is all zeros, or fewer than k allowed rows reached).
   mode: 0 inner product, 1 cosine (scores divided by |query|: the walk ranks an unnormalised
   query the same), 2 L2 (the square root of the squared distance). Every Python object a
   search returns is made here: between two ~50 us walks, each Python step costs 2-3x its
   micro-benchmark time (cold caches), and these steps were ~15 us of a ~70 us search. */
static PyObject *Graph_search_hits(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "search_hits(query, k, ef, allow, ids, mode, hit_type, two_hop)");
        return NULL;
    }
    int k = (int)PyLong_AsLong(args[1]);
    int ef = (int)PyLong_AsLong(args[2]);
    int mode = (int)PyLong_AsLong(args[5]);
    int two_hop = PyObject_IsTrue(args[7]);
    if (PyErr_Occurred()) return NULL;
    PyObject *ids = args[4];
    PyTypeObject *hit_type = (PyTypeObject *)args[6];
    if (k < 1 || ef < 1) {
        PyErr_SetString(PyExc_ValueError, "search_hits: k and ef must be positive");
        return NULL;
    }
    if (!hit_args_ok(ids, self->n, args[6], mode)) return NULL;
    if (ef < k) ef = k;
    Py_buffer q, al;
    int have_allow = args[3] != Py_None;
    if (get_buffer(args[0], &q, 4, 0, "query") != 0) return NULL;
    if (have_allow && get_buffer(args[3], &al, 1, 0, "allow") != 0) {
        PyBuffer_Release(&q);
        return NULL;
    }
    PyObject *result = NULL;
    float *od = NULL;
    int64_t *ol = NULL;
    Work *w = NULL;
    if (q.len != (Py_ssize_t)self->d * 4 || (have_allow && al.len * 8 < self->n)) {
        PyErr_SetString(PyExc_ValueError, "search_hits: one query of the graph's dimension, and a full bitmap");
        goto done;
    }
    const float *qv = q.buf;
    float qq = 0.f;
    for (int i = 0; i < self->d; i++) qq += qv[i] * qv[i];
    if (!(qq > 0.f && qq < INFINITY)) { /* NaN/inf or all zeros: the general path explains or copes */
        result = Py_NewRef(Py_None);
        goto done;
    }
    od = malloc((size_t)k * sizeof(float));
    ol = malloc((size_t)k * sizeof(int64_t));
    w = self->pool;
    if (w)
        self->pool = w->next;
    else
        w = work_new(self->n, self->d);
    if (!od || !ol || !w) {
        PyErr_NoMemory();
        goto done;
    }
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = walk_one(self, w, qv, k, ef, have_allow ? al.buf : NULL, two_hop && have_allow, od, ol);
    Py_END_ALLOW_THREADS
    if (rc != 0) {
        walk_error(rc);
        goto done;
    }
    if (ol[k - 1] < 0) { /* fewer than k: the general path falls back to an exact scan */
        result = Py_NewRef(Py_None);
        goto done;
    }
    result = hit_list(od, ol, k, ids, mode, mode == 1 ? 1.0 / sqrt((double)qq) : 1.0, hit_type);
done:
    if (w) {
        w->next = self->pool;
        self->pool = w;
    }
    free(od);
    free(ol);
    PyBuffer_Release(&q);
    if (have_allow) PyBuffer_Release(&al);
    return result;
}

/* set_codes(codes, scale, offset, sq_norms) or set_codes(None): walk over 8-bit codes (uint8, n x d;
   row v ~ offset + scale * codes[v]; sq_norms: the rows' exact squared norms, for L2; None for inner
   product) and rescore exactly, or go back to the float rows. Call it before the graph is searched
   from other threads: a walk in flight reads these buffers without the GIL. A refused call leaves
   the walk on the float rows. */
static PyObject *Graph_set_codes(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 4 && !(nargs == 1 && args[0] == Py_None)) {
        PyErr_SetString(PyExc_TypeError, "set_codes(codes, scale, offset, sq_norms) or set_codes(None)");
        return NULL;
    }
    for (int i = 0; i < self->ncbufs; i++) PyBuffer_Release(&self->cbufs[i]);
    self->ncbufs = 0;
    self->codes = NULL;
    self->cscale = self->coff = self->cnorm = NULL;
    if (nargs == 1) Py_RETURN_NONE;
    static const Py_ssize_t sizes[4] = {1, 4, 4, 4};
    static const char *names[4] = {"codes", "scale", "offset", "sq_norms"};
    int want = self->ip ? 3 : 4;
    if (self->ip && args[3] != Py_None) want = 4;
    for (int i = 0; i < want; i++) {
        if (get_buffer(args[i], &self->cbufs[i], sizes[i], 0, names[i]) != 0) goto fail;
        self->ncbufs = i + 1;
    }
    Py_ssize_t d = self->d;
    if (self->cbufs[0].len != self->n * d || self->cbufs[1].len != d * 4 || self->cbufs[2].len != d * 4 ||
        (want == 4 && self->cbufs[3].len != self->n * 4)) {
        PyErr_SetString(PyExc_ValueError, "set_codes: codes n x d bytes, scale and offset d floats, sq_norms n floats");
        goto fail;
    }
    self->codes = self->cbufs[0].buf;
    self->cscale = self->cbufs[1].buf;
    self->coff = self->cbufs[2].buf;
    self->cnorm = want == 4 ? self->cbufs[3].buf : NULL;
    Py_RETURN_NONE;
fail:
    for (int i = 0; i < self->ncbufs; i++) PyBuffer_Release(&self->cbufs[i]);
    self->ncbufs = 0;
    return NULL;
}

/* read_rows_from(fd, offset) or read_rows_from(None): read the final ef rows of a walk over codes from
   the file open as fd (row v at offset + v * 4d; the descriptor is duplicated, the caller may close
   its own), or through the vectors' buffer again. Call it before the graph is searched from other
   threads, as set_codes. */
static PyObject *Graph_read_rows_from(Graph *self, PyObject *const *args, Py_ssize_t nargs) {
    if (!(nargs == 2 || (nargs == 1 && args[0] == Py_None))) {
        PyErr_SetString(PyExc_TypeError, "read_rows_from(fd, offset) or read_rows_from(None)");
        return NULL;
    }
    int fd = -1;
    long long off = 0;
    if (nargs == 2) {
        fd = (int)PyLong_AsLong(args[0]);
        off = PyLong_AsLongLong(args[1]);
        if (PyErr_Occurred()) return NULL;
        if (fd < 0 || off < 0) {
            PyErr_SetString(PyExc_ValueError, "read_rows_from: a descriptor and an offset, both >= 0");
            return NULL;
        }
        fd = dup(fd);
        if (fd < 0) return PyErr_SetFromErrno(PyExc_OSError);
    }
    if (self->has_rowfd) close(self->rowfd);
    self->has_rowfd = fd >= 0;
    self->rowfd = fd;
    self->rowoff = (int64_t)off;
    Py_RETURN_NONE;
}

static PyMethodDef Graph_methods[] = {
    {"read_rows_from", (PyCFunction)(void (*)(void))Graph_read_rows_from, METH_FASTCALL,
     "read_rows_from(fd, offset) or read_rows_from(None): a walk over codes reads the float rows it rescores "
     "from this file (row v at offset + v * 4 * dim) by pread, not through the vectors' map."},
    {"set_codes", (PyCFunction)(void (*)(void))Graph_set_codes, METH_FASTCALL,
     "set_codes(codes, scale, offset, sq_norms) or set_codes(None): walk over 8-bit codes of the rows and "
     "rescore the final ef exactly (sq_norms: L2 only), or over the float rows."},
    {"search", (PyCFunction)(void (*)(void))Graph_search, METH_FASTCALL,
     "search(queries, k, ef, allow, out_distances, out_labels, threads, two_hop): filtered walk of each query "
     "(float32 rows), answers written into the two output buffers (float32 / int64, n_queries * k)."},
    {"search_hits", (PyCFunction)(void (*)(void))Graph_search_hits, METH_FASTCALL,
     "search_hits(query, k, ef, allow, ids, mode, hit_type, two_hop): one query's hits as hit_type(id, score, None, None), "
     "or None (not finite, all zeros, or fewer than k allowed rows reached)."},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject GraphType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "vecbox.index._walk.Graph",
    .tp_doc = "A FAISS IndexHNSWFlat's graph and vectors (read in place), searched with hnswlib's filtered rule.",
    .tp_basicsize = sizeof(Graph),
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_new = PyType_GenericNew,
    .tp_init = (initproc)Graph_init,
    .tp_dealloc = (destructor)Graph_dealloc,
    .tp_methods = Graph_methods,
};

/* hits(distances, labels, ids, mode, hit_type): n_queries x k answers (FAISS's float32 distances and
   int64 labels, C order) as one list of hit lists (as search_hits makes them; mode 1 is not taken:
   a batch's cosine queries are normalised first, so mode 0 gives their scores), or None when a
   query has fewer than k answers (a -1 label): the caller's general path then answers. */
static PyObject *walk_hits(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 5) {
        PyErr_SetString(PyExc_TypeError, "hits(distances, labels, ids, mode, hit_type)");
        return NULL;
    }
    int mode = (int)PyLong_AsLong(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (mode == 1) mode = -1;
    if (!hit_args_ok(args[2], 0, args[4], mode)) return NULL;
    Py_buffer db, lb;
    if (get_buffer(args[0], &db, 4, 0, "distances") != 0) return NULL;
    if (get_buffer(args[1], &lb, 8, 0, "labels") != 0) {
        PyBuffer_Release(&db);
        return NULL;
    }
    PyObject *result = NULL;
    const float *od = db.buf;
    const int64_t *ol = lb.buf;
    Py_ssize_t total = lb.len / 8, n_ids = PyList_GET_SIZE(args[2]);
    int k = lb.ndim == 2 ? (int)lb.shape[1] : (int)total;
    if (db.len != lb.len / 2 || k < 1 || total % k) {
        PyErr_SetString(PyExc_ValueError, "hits: distances and labels of the same shape (n_queries, k)");
        goto done;
    }
    for (Py_ssize_t i = 0; i < total; i++) {
        if (ol[i] == -1) { /* fewer than k answers */
            result = Py_NewRef(Py_None);
            goto done;
        }
        if (ol[i] < 0 || ol[i] >= n_ids) {
            PyErr_SetString(PyExc_ValueError, "hits: a label outside the ids list");
            goto done;
        }
    }
    Py_ssize_t nq = total / k;
    PyObject *out = PyList_New(nq);
    if (!out) goto done;
    for (Py_ssize_t i = 0; i < nq; i++) {
        PyObject *one = hit_list(od + i * k, ol + i * k, k, args[2], mode, 1.0, (PyTypeObject *)args[4]);
        if (!one) {
            Py_DECREF(out);
            goto done;
        }
        PyList_SET_ITEM(out, i, one);
    }
    result = out;
done:
    PyBuffer_Release(&db);
    PyBuffer_Release(&lb);
    return result;
}

/* rescore(queries, candidates, starts, pieces, k, l2, out_scores, out_positions): the exact top k of each
   query's candidate rows, the rows read in place from the pieces of a matrix (row r of the whole lies in
   pieces[i] at r - starts[i], starts[i] <= r < starts[i + 1]: a live view's memory-mapped segments and RAM
   buffer). Scores are higher-is-better: <q, x>, or with l2 |q|^2 - |q - x|^2 (= 2<q, x> - |x|^2, FAISS's
   ranking of squared distances). Candidates of -1 are skipped; a query with fewer than k candidates gets
   -inf / -1 in its last places. Best first, ties to the lower position.

   Why: the IVF-PQ search rescored its ~160 candidates a query through numpy (unique, a gather from each
   segment's map, a matrix-vector product, argpartition, argsort): ~1 ms of Python and copies around
   ~60 us of arithmetic, longer than FAISS's code scan itself. */
#define RESCORE_AHEAD 4 /* rows prefetched ahead of the one being scored */

static PyObject *walk_rescore(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 8) {
        PyErr_SetString(PyExc_TypeError, "rescore(queries, candidates, starts, pieces, k, l2, out_scores, out_positions)");
        return NULL;
    }
    if (!PyTuple_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError, "rescore: pieces must be a tuple of float32 arrays");
        return NULL;
    }
    long k = PyLong_AsLong(args[4]);
    int l2 = PyObject_IsTrue(args[5]);
    if (PyErr_Occurred() || l2 < 0) return NULL;
    Py_ssize_t np_ = PyTuple_GET_SIZE(args[3]);
    Py_buffer qb, cb, sb, ob, pb, *bufs = NULL;
    int got = 0, npieces = 0;
    PyObject *result = NULL;
    TopItem *heap = NULL;
    const float **rows = NULL, **at = NULL;
    int64_t *who = NULL;
    if (top_get_buffer(args[0], &qb, 4, 0, "queries") != 0) return NULL;
    got = 1;
    if (top_get_buffer(args[1], &cb, 8, 0, "candidates") != 0) goto done;
    got = 2;
    if (top_get_buffer(args[2], &sb, 8, 0, "starts") != 0) goto done;
    got = 3;
    if (top_get_buffer(args[6], &ob, 4, 1, "out_scores") != 0) goto done;
    got = 4;
    if (top_get_buffer(args[7], &pb, 8, 1, "out_positions") != 0) goto done;
    got = 5;
    if (qb.ndim != 2 || cb.ndim != 2 || cb.shape[0] != qb.shape[0] || k < 1 || ob.len / 4 != qb.shape[0] * k
        || pb.len / 8 != qb.shape[0] * k || sb.len / 8 != np_ + 1) {
        PyErr_SetString(PyExc_ValueError, "rescore: queries (m, d), candidates (m, c), starts (pieces + 1,), "
                                          "k >= 1 and outputs of m * k items");
        goto done;
    }
    Py_ssize_t m = qb.shape[0], d = qb.shape[1], c = cb.shape[1];
    const int64_t *starts = sb.buf;
    bufs = calloc((size_t)np_ + 1, sizeof(Py_buffer));
    rows = calloc((size_t)np_ + 1, sizeof(float *));
    heap = malloc(sizeof(TopItem) * (size_t)k);
    at = malloc(sizeof(float *) * (size_t)(c + 1));
    who = malloc(sizeof(int64_t) * (size_t)(c + 1));
    if (!bufs || !rows || !heap || !at || !who) {
        PyErr_NoMemory();
        goto done;
    }
    if (starts[0] != 0) {
        PyErr_SetString(PyExc_ValueError, "rescore: starts must begin at 0");
        goto done;
    }
    for (Py_ssize_t i = 0; i < np_; i++) {
        if (top_get_buffer(PyTuple_GET_ITEM(args[3], i), &bufs[i], 4, 0, "a piece") != 0) goto done;
        npieces++;
        if (starts[i + 1] < starts[i] || bufs[i].len != (starts[i + 1] - starts[i]) * d * 4) {
            PyErr_SetString(PyExc_ValueError, "rescore: each piece holds starts[i + 1] - starts[i] rows of the queries' width");
            goto done;
        }
        rows[i] = bufs[i].buf;
    }
    const int64_t *cand = cb.buf, n = starts[np_];
    for (Py_ssize_t i = 0; i < m * c; i++)
        if (cand[i] < -1 || cand[i] >= n) {
            PyErr_Format(PyExc_IndexError, "rescore: candidate row %lld outside the %lld rows", (long long)cand[i], (long long)n);
            goto done;
        }
    const float *q = qb.buf;
    float *os = ob.buf;
    int64_t *op = pb.buf;
    Py_BEGIN_ALLOW_THREADS; /* the rows may be mapped pages that fault in: others run meanwhile */
    for (Py_ssize_t i = 0; i < m; i++) {
        const float *qi = q + i * d;
        float qq = l2 ? -dist(qi, qi, (int)d, 1) : 0.f;
        Py_ssize_t size = 0, nc = 0;
        for (Py_ssize_t j = 0; j < c; j++) { /* where each candidate's row lies */
            int64_t r = cand[i * c + j];
            if (r < 0) continue;
            Py_ssize_t lo = 0, hi = np_; /* the piece holding row r: starts[lo] <= r < starts[lo + 1] */
            while (hi - lo > 1) {
                Py_ssize_t mid = (lo + hi) / 2;
                if (starts[mid] <= r) lo = mid; else hi = mid;
            }
            at[nc] = rows[lo] + (r - starts[lo]) * d;
            who[nc++] = r;
        }
        for (Py_ssize_t j = 0; j < nc; j++) {
            /* rows lie at random in memory: ask for a later row's lines while this one is scored (the
               loop was bound by memory latency, ~0.35 us a 384-d row without) */
            if (j + RESCORE_AHEAD < nc)
                for (Py_ssize_t b = 0; b < d * 4; b += 64) __builtin_prefetch((const char *)at[j + RESCORE_AHEAD] + b, 0, 0);
            float s = l2 ? qq - dist(qi, at[j], (int)d, 0) : -dist(qi, at[j], (int)d, 1);
            top_offer(heap, k, &size, (TopItem){s, who[j]});
        }
        top_sort(heap, size);
        for (Py_ssize_t j = 0; j < k; j++) {
            os[i * k + j] = j < size ? (float)heap[j].s : -INFINITY;
            op[i * k + j] = j < size ? heap[j].p : -1;
        }
    }
    Py_END_ALLOW_THREADS;
    result = Py_NewRef(Py_None);
done:
    for (int i = 0; i < npieces; i++) PyBuffer_Release(&bufs[i]);
    free(bufs);
    free(rows);
    free(heap);
    free(at);
    free(who);
    Py_buffer *held[] = {&qb, &cb, &sb, &ob, &pb};
    for (int i = 0; i < got; i++) PyBuffer_Release(held[i]);
    return result;
}

static PyMethodDef module_methods[] = {
    {"rescore", (PyCFunction)(void (*)(void))walk_rescore, METH_FASTCALL,
     "rescore(queries, candidates, starts, pieces, k, l2, out_scores, out_positions): exact top k of each query's "
     "candidate rows, read in place from a matrix's pieces (best first; -inf / -1 where fewer than k)."},
    {"hits", (PyCFunction)(void (*)(void))walk_hits, METH_FASTCALL,
     "hits(distances, labels, ids, mode, hit_type): a batch's answers as lists of hit_type(id, score, None, None), "
     "or None when a query has fewer than k (a -1 label)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef walk_module = {
    PyModuleDef_HEAD_INIT, "_walk", "Filtered HNSW walk (hnswlib's rule) over a FAISS graph.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__walk(void) {
#ifdef VB_AVX2
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        dist = dist_avx2;
        dot8 = dot8_avx2;
    }
#endif
    if (PyType_Ready(&GraphType) < 0) return NULL;
    PyObject *m = PyModule_Create(&walk_module);
    if (!m) return NULL;
    if (PyModule_AddObjectRef(m, "Graph", (PyObject *)&GraphType) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
