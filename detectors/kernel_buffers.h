/* Borrowing numpy arrays' memory in the detectors' C kernels, checked.
 *
 * A kernel indexes per-binding state with binding numbers taken from a batch, so one wrong
 * dtype or length passed from Python would read or write outside an array. Every array is
 * therefore borrowed through the buffer protocol with its element type, length and
 * writability checked, and a kernel starts only when all its arrays passed (numpy's own C API
 * is not needed, so building needs no numpy headers).
 *
 * Usage, in a METH_FASTCALL function:
 *
 *     Borrowed arrays = {0};
 *     double *value = borrow(&arrays, args[0], "value", 'f', 8, n, READ);
 *     int64_t *last_ts = borrow(&arrays, args[1], "last_ts", 'i', 8, -1, WRITE);
 *     if (arrays.failed) return give_back(&arrays), NULL;
 *     ... the loop ...
 *     give_back(&arrays);
 */
#ifndef LIFELINE_KERNEL_BUFFERS_H
#define LIFELINE_KERNEL_BUFFERS_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>
#include <stddef.h>
#include <string.h>

#define MAX_BORROWED 48
#define READ 0
#define WRITE 1

typedef struct {
    Py_buffer views[MAX_BORROWED];
    int count;
    int failed;  /* a Python exception is set */
} Borrowed;

/* The kind of a buffer's element: 'f' float, 'i' signed integer, 'u' unsigned integer,
 * 'b' bool, 'r' record (a numpy structured array), or 0 for anything else (struct-module
 * format characters, as numpy exports them). */
static inline char element_kind(const char *format) {
    if (format == NULL) return 'u';  /* plain bytes */
    if (format[0] == 'T' && format[1] == '{') return 'r';
    char code = format[strlen(format) - 1];
    switch (code) {
        case 'd': case 'f': case 'e': return 'f';
        case 'b': case 'h': case 'i': case 'l': case 'q': case 'n': return 'i';
        case 'B': case 'H': case 'I': case 'L': case 'Q': case 'N': return 'u';
        case '?': return 'b';
        default: return 0;
    }
}

/* The data of `array` as a C-contiguous vector of `length` elements (any length when
 * `length` < 0) of kind `kind` and size `itemsize`, or NULL with a ValueError naming the
 * array; on failure `arrays->failed` is set and later calls return NULL at once. */
static inline void *borrow(Borrowed *arrays, PyObject *array, const char *name, char kind,
                           Py_ssize_t itemsize, Py_ssize_t length, int writable) {
    if (arrays->failed) return NULL;
    if (arrays->count == MAX_BORROWED) {
        PyErr_SetString(PyExc_RuntimeError, "kernel borrows too many arrays");
        arrays->failed = 1;
        return NULL;
    }
    Py_buffer *view = &arrays->views[arrays->count];
    int flags = PyBUF_C_CONTIGUOUS | PyBUF_FORMAT | (writable ? PyBUF_WRITABLE : 0);
    if (PyObject_GetBuffer(array, view, flags) < 0) {
        PyErr_Format(PyExc_ValueError, "%s: not a contiguous%s array", name, writable ? " writable" : "");
        arrays->failed = 1;
        return NULL;
    }
    arrays->count++;
    Py_ssize_t n = view->itemsize ? view->len / view->itemsize : 0;
    if (element_kind(view->format) != kind || view->itemsize != itemsize || view->ndim > 1) {
        PyErr_Format(PyExc_ValueError, "%s: expected a 1-d array of %zd-byte %s elements, got format '%s'",
                     name, itemsize,
                     kind == 'f' ? "float" : kind == 'b' ? "bool" : kind == 'r' ? "record" : "integer",
                     view->format ? view->format : "B");
        arrays->failed = 1;
        return NULL;
    }
    if (length >= 0 && n != length) {
        PyErr_Format(PyExc_ValueError, "%s: expected %zd elements, got %zd", name, length, n);
        arrays->failed = 1;
        return NULL;
    }
    return view->buf;
}

/* Number of elements of the most recently borrowed array (for sizing later checks). */
static inline Py_ssize_t borrowed_length(const Borrowed *arrays) {
    const Py_buffer *view = &arrays->views[arrays->count - 1];
    return view->itemsize ? view->len / view->itemsize : 0;
}

static inline void give_back(Borrowed *arrays) {
    for (int i = 0; i < arrays->count; i++) PyBuffer_Release(&arrays->views[i]);
    arrays->count = 0;
}

/* Records: a kernel that keeps each binding's state in one C struct (so that a binding's
 * reading touches a cache line or two instead of one line per state array) exports the
 * struct's layout with `add_layout`, and Python builds the numpy structured dtype from it
 * (`detectors.records.record_dtype`), so the two cannot disagree; the array is then borrowed
 * with kind 'r' and itemsize sizeof(struct), which checks its size and length.
 *
 *     typedef struct { int64_t last_ts; double prev; } State;
 *     static const RecordField STATE_FIELDS[] = {
 *         RECORD_FIELD(State, last_ts, "<i8"), RECORD_FIELD(State, prev, "<f8"),
 *     };
 *     ... in PyInit: add_layout(module, "STATE", STATE_FIELDS, 2, sizeof(State))
 *     ... in a kernel: State *state = borrow(&arrays, args[k], "state", 'r', sizeof(State), n, WRITE);
 */
typedef struct {
    const char *name, *format;  /* numpy dtype string of the member, e.g. "<f8", "i1", "?" */
    Py_ssize_t offset;
} RecordField;

#define RECORD_FIELD(type, member, format) {#member, format, (Py_ssize_t)offsetof(type, member)}

/* Sets module.<attribute> = (itemsize, ((name, format, offset), ...)); -1 with an exception set. */
static inline int add_layout(PyObject *module, const char *attribute, const RecordField *fields, int n,
                             Py_ssize_t itemsize) {
    PyObject *members = PyTuple_New(n);
    if (members == NULL) return -1;
    for (int i = 0; i < n; i++) {
        PyObject *member = Py_BuildValue("(ssn)", fields[i].name, fields[i].format, fields[i].offset);
        if (member == NULL) return Py_DECREF(members), -1;
        PyTuple_SET_ITEM(members, i, member);
    }
    PyObject *layout = Py_BuildValue("(nN)", itemsize, members);
    if (layout == NULL) return -1;
    if (PyModule_AddObject(module, attribute, layout) < 0) return Py_DECREF(layout), -1;
    return 0;
}

#endif
