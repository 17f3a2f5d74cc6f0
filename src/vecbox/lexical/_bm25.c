/* BM25 top-n over in-memory postings, in one C pass (vecbox.lexical.bm25.BM25Index.top_n).
 *
 * Why this exists: the numpy version (BM25Index.scores) is a dozen array operations over the query
 * terms' postings plus an O(rows) accumulator and scan, ~200 us a query on SciFact's 5k documents,
 * about as much as the dense scan it is fused with - most of it per-call overhead, not arithmetic.
 * Here the same sums run in one loop over the postings, touching only the rows that match, and the
 * best n are kept in a bounded heap. The arithmetic is the numpy version's, operation for operation
 * (float64 weights, the float32 sum tf + norm, the postings summed in the same order); only idf's
 * logarithm comes from the C library rather than numpy's own, which may differ in the last bit.
 * Ties are broken by the lower row position.
 *
 * top(pos_list, tf_list, tix, qtf, n_docs, norm, live, allowed, n_rows, out_scores, out_pos)
 *   pos_list[i] int64, tf_list[i] float32: one block's postings of query term tix[i] (row positions
 *   ascending); qtf float64: each query term's count in the query; norm float32 (>= n_rows): each
 *   row's length norm; live / allowed: bool arrays (>= n_rows) or None (every row); the best
 *   len(out_scores) rows are written best first. Returns (written, matched rows).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../_topheap.h"

static PyObject *bm25_top(PyObject *mod, PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "top(pos_list, tf_list, tix, qtf, n_docs, norm, live, allowed, n_rows, out_scores, out_pos)");
        return NULL;
    }
    PyObject *pos_list = args[0], *tf_list = args[1], *tix_list = args[2];
    if (!PyList_Check(pos_list) || !PyList_Check(tf_list) || !PyList_Check(tix_list) ||
        PyList_GET_SIZE(pos_list) != PyList_GET_SIZE(tf_list) || PyList_GET_SIZE(pos_list) != PyList_GET_SIZE(tix_list)) {
        PyErr_SetString(PyExc_TypeError, "top: pos_list, tf_list and tix are lists of the same length");
        return NULL;
    }
    long long n_docs = PyLong_AsLongLong(args[4]);
    Py_ssize_t n_rows = PyLong_AsSsize_t(args[8]);
    if (PyErr_Occurred()) return NULL;
    Py_ssize_t L = PyList_GET_SIZE(pos_list);
    Py_buffer *pb = calloc((size_t)(2 * L + 5), sizeof(Py_buffer));
    int *tix = malloc((size_t)(L ? L : 1) * sizeof(int));
    Py_ssize_t got = 0; /* buffers held, released at the end */
    PyObject *result = NULL;
    double *acc = NULL, *df = NULL, *idf = NULL;
    int64_t *touched = NULL;
    TopItem *heap = NULL;
    if (!pb || !tix) {
        PyErr_NoMemory();
        goto done;
    }
    Py_buffer *qb = &pb[2 * L], *nb = &pb[2 * L + 1], *lb = &pb[2 * L + 2], *ab = &pb[2 * L + 3];
    Py_buffer *os_b = &pb[2 * L + 4];
    Py_buffer op_b;
    int have_live = args[6] != Py_None, have_allowed = args[7] != Py_None, have_op = 0;
    for (Py_ssize_t i = 0; i < L; i++) {
        if (top_get_buffer(PyList_GET_ITEM(pos_list, i), &pb[got], 8, 0, "positions") != 0) goto done;
        got++;
        if (top_get_buffer(PyList_GET_ITEM(tf_list, i), &pb[got], 4, 0, "term frequencies") != 0) goto done;
        got++;
        if (pb[got - 1].len / 4 != pb[got - 2].len / 8) {
            PyErr_SetString(PyExc_ValueError, "top: a block's positions and term frequencies differ in length");
            goto done;
        }
        tix[i] = (int)PyLong_AsLong(PyList_GET_ITEM(tix_list, i));
        if (PyErr_Occurred()) goto done;
    }
    /* the fixed buffers: get each, counting it in `got` only through the flags below */
    if (top_get_buffer(args[3], qb, 8, 0, "qtf") != 0) goto done;
    Py_ssize_t T = qb->len / 8;
    if (top_get_buffer(args[5], nb, 4, 0, "norm") != 0) {
        PyBuffer_Release(qb);
        goto done;
    }
    if (have_live && top_get_buffer(args[6], lb, 1, 0, "live") != 0) have_live = -1;
    if (have_live >= 0 && have_allowed && top_get_buffer(args[7], ab, 1, 0, "allowed") != 0) have_allowed = -1;
    if (have_live >= 0 && have_allowed >= 0 && top_get_buffer(args[9], os_b, 8, 1, "out_scores") == 0) {
        if (top_get_buffer(args[10], &op_b, 8, 1, "out_pos") == 0)
            have_op = 1;
        else
            PyBuffer_Release(os_b);
    }
    if (!have_op) {
        PyBuffer_Release(qb);
        PyBuffer_Release(nb);
        if (have_live == 1) PyBuffer_Release(lb);
        if (have_allowed == 1) PyBuffer_Release(ab);
        goto done;
    }
    Py_ssize_t n = os_b->len / 8;
    int bad = op_b.len / 8 != n || nb->len / 4 < n_rows || (have_live && lb->len < n_rows) ||
              (have_allowed && ab->len < n_rows) || n_rows < 0;
    for (Py_ssize_t i = 0; i < L && !bad; i++) bad = tix[i] < 0 || tix[i] >= T;
    Py_ssize_t total = 0;
    for (Py_ssize_t i = 0; i < L; i++) total += pb[2 * i].len / 8;
    if (!bad) {
        acc = calloc((size_t)(n_rows ? n_rows : 1), sizeof(double));
        df = calloc((size_t)(T ? T : 1), sizeof(double));
        idf = calloc((size_t)(T ? T : 1), sizeof(double));
        touched = malloc((size_t)(total ? total : 1) * sizeof(int64_t));
        heap = malloc((size_t)(n ? n : 1) * sizeof(TopItem));
    }
    Py_ssize_t written = 0, matched = 0;
    int oom = !bad && (!acc || !df || !idf || !touched || !heap);
    if (!bad && !oom) {
        const double *qtf = qb->buf;
        const float *norm = nb->buf;
        const uint8_t *live = have_live ? lb->buf : NULL, *allowed = have_allowed ? ab->buf : NULL;
        double *out_s = os_b->buf;
        int64_t *out_p = op_b.buf;
        Py_BEGIN_ALLOW_THREADS
        /* document frequencies among the live rows, then idf(t) x the term's count in the query */
        for (Py_ssize_t i = 0; i < L && !bad; i++) {
            const int64_t *pos = pb[2 * i].buf;
            Py_ssize_t m = pb[2 * i].len / 8, c = 0;
            if (!live && m > 0 && pos[0] >= 0 && pos[m - 1] < n_rows) {
                c = m; /* every row alive and positions ascending within a block: all of them count
                          (a negative position is still refused by the accumulation below) */
            } else {
                for (Py_ssize_t j = 0; j < m; j++) {
                    int64_t p = pos[j];
                    if (p < 0) bad = 1;
                    if (p >= 0 && p < n_rows && (!live || live[p])) c++;
                }
            }
            df[tix[i]] += (double)c;
        }
        for (Py_ssize_t t = 0; t < T; t++)
            idf[t] = log1p(((double)n_docs - df[t] + 0.5) / (df[t] + 0.5)) * qtf[t];
        Py_ssize_t nt = 0;
        for (Py_ssize_t i = 0; i < L && !bad; i++) {
            const int64_t *pos = pb[2 * i].buf;
            const float *tf = pb[2 * i + 1].buf;
            double w_t = idf[tix[i]];
            Py_ssize_t m = pb[2 * i].len / 8;
            for (Py_ssize_t j = 0; j < m; j++) {
                int64_t p = pos[j];
                if (p < 0) { /* never from BM25Index; checked here so no input can write outside acc */
                    bad = 1;
                    break;
                }
                if (p >= n_rows || (live && !live[p])) continue;
                float denom = tf[j] + norm[p]; /* float32, as numpy adds the two float32 arrays */
                if (acc[p] == 0.0) touched[nt++] = p; /* every weight is > 0: 0 means not seen yet */
                acc[p] += w_t * (double)tf[j] / (double)denom;
            }
        }
        for (Py_ssize_t i = 0; i < nt && !bad; i++) {
            int64_t p = touched[i];
            if ((allowed && !allowed[p]) || !(acc[p] > 0.0)) continue;
            matched++;
            top_offer(heap, n, &written, (TopItem){acc[p], p});
        }
        if (!bad) {
            top_sort(heap, written);
            for (Py_ssize_t i = 0; i < written; i++) {
                out_s[i] = heap[i].s;
                out_p[i] = heap[i].p;
            }
        }
        Py_END_ALLOW_THREADS
    }
    PyBuffer_Release(qb);
    PyBuffer_Release(nb);
    if (have_live) PyBuffer_Release(lb);
    if (have_allowed) PyBuffer_Release(ab);
    PyBuffer_Release(os_b);
    PyBuffer_Release(&op_b);
    if (oom)
        PyErr_NoMemory();
    else if (bad)
        PyErr_SetString(PyExc_ValueError, "top: inconsistent arguments (lengths, term indices or a negative position)");
    else
        result = Py_BuildValue("nn", written, matched);
done:
    for (Py_ssize_t i = 0; i < got; i++) PyBuffer_Release(&pb[i]);
    free(pb);
    free(tix);
    free(acc);
    free(df);
    free(idf);
    free(touched);
    free(heap);
    return result;
}

static PyMethodDef module_methods[] = {
    {"top", (PyCFunction)(void (*)(void))bm25_top, METH_FASTCALL,
     "top(pos_list, tf_list, tix, qtf, n_docs, norm, live, allowed, n_rows, out_scores, out_pos) -> "
     "(written, matched): BM25 of the matching rows, the best len(out_scores) written best first."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef bm25_module = {
    PyModuleDef_HEAD_INIT, "_bm25", "BM25 top-n over in-memory postings in one C pass.", -1, module_methods,
};

PyMODINIT_FUNC PyInit__bm25(void) { return PyModule_Create(&bm25_module); }
