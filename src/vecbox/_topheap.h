/* Shared by vecbox's C extensions (lexical/_bm25.c, query/_fusion.c, index/_walk.c): the best k (score, position)
 * pairs in a bounded min-heap, best first at the end, ties to the lower position; and a checked
 * buffer read. Header-only (static functions): each extension compiles its own copy. */
#ifndef VECBOX_TOPHEAP_H
#define VECBOX_TOPHEAP_H

#include <Python.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct {
    double s;
    int64_t p;
} TopItem;

/* a is worse than b: a lower score, or the same score at a higher position */
static inline int top_worse(const TopItem *a, const TopItem *b) { return a->s < b->s || (a->s == b->s && a->p > b->p); }

static void top_sift_down(TopItem *h, Py_ssize_t n, Py_ssize_t i) {
    for (;;) {
        Py_ssize_t l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && top_worse(&h[l], &h[w])) w = l;
        if (r < n && top_worse(&h[r], &h[w])) w = r;
        if (w == i) return;
        TopItem t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

static void top_sift_up(TopItem *h, Py_ssize_t i) {
    while (i > 0) {
        Py_ssize_t parent = (i - 1) / 2;
        if (!top_worse(&h[i], &h[parent])) return;
        TopItem t = h[i];
        h[i] = h[parent];
        h[parent] = t;
        i = parent;
    }
}

/* offer one item to a heap of capacity k holding *size items (the worst at the root) */
static inline void top_offer(TopItem *h, Py_ssize_t k, Py_ssize_t *size, TopItem it) {
    if (*size < k) {
        h[(*size)++] = it;
        top_sift_up(h, *size - 1);
    } else if (k > 0 && top_worse(&h[0], &it)) {
        h[0] = it;
        top_sift_down(h, k, 0);
    }
}

static int top_better_first(const void *x, const void *y) {
    const TopItem *a = x, *b = y;
    return top_worse(b, a) ? -1 : top_worse(a, b) ? 1 : 0;
}

/* the heap's items, best first */
static inline void top_sort(TopItem *h, Py_ssize_t size) { qsort(h, (size_t)size, sizeof(TopItem), top_better_first); }

/* a C-contiguous buffer of items of `itemsize` bytes (writable if asked), or -1 with a ValueError naming `what` */
static int top_get_buffer(PyObject *obj, Py_buffer *view, Py_ssize_t itemsize, int writable, const char *what) {
    if (PyObject_GetBuffer(obj, view, PyBUF_C_CONTIGUOUS | (writable ? PyBUF_WRITABLE : 0)) != 0) return -1;
    if (view->itemsize != itemsize) {
        PyErr_Format(PyExc_ValueError, "%s: expected items of %zd bytes, got %zd", what, itemsize, view->itemsize);
        PyBuffer_Release(view);
        return -1;
    }
    return 0;
}

#endif
