/* Whether a batch needs sorting before the detectors' kernels run over it.
 *
 * The kernels evaluate readings one after another and need each channel's readings in time
 * order. Gateways send them that way, so the usual batch is evaluated as it is; only a batch
 * in which some channel goes back in time is sorted first (detectors/batching.py). Telling
 * the two apart is one pass with the newest ts seen per channel. */
#include "kernel_buffers.h"

#include <stdlib.h>

/* in_time_order(channel int32[n], ts int64[n], n_channels) -> bool: every channel's rows have
 * non-decreasing ts in row order. Rows whose channel is outside 0..n_channels-1 are ignored. */
static PyObject *in_time_order(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 3) {
        PyErr_SetString(PyExc_TypeError, "in_time_order(channel, ts, n_channels)");
        return NULL;
    }
    Py_ssize_t n_channels = PyLong_AsSsize_t(args[2]);
    if (n_channels < 0) {
        if (!PyErr_Occurred()) PyErr_SetString(PyExc_ValueError, "n_channels must be >= 0");
        return NULL;
    }
    Borrowed arrays = {0};
    const int32_t *channel = borrow(&arrays, args[0], "channel", 'i', 4, -1, READ);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, n, READ);
    if (arrays.failed) return give_back(&arrays), NULL;
    int64_t *newest = malloc((size_t)(n_channels ? n_channels : 1) * sizeof(int64_t));
    if (newest == NULL) return give_back(&arrays), PyErr_NoMemory();
    for (Py_ssize_t c = 0; c < n_channels; c++) newest[c] = INT64_MIN;
    int ordered = 1;
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        int32_t c = channel[i];
        if (c < 0 || c >= n_channels) continue;
        if (ts[i] < newest[c]) {
            ordered = 0;
            break;
        }
        newest[c] = ts[i];
    }
    Py_END_ALLOW_THREADS
    free(newest);
    give_back(&arrays);
    return PyBool_FromLong(ordered);
}

static PyMethodDef methods[] = {
    {"in_time_order", (PyCFunction)(void (*)(void))in_time_order, METH_FASTCALL,
     "in_time_order(channel, ts, n_channels): whether every channel's rows have non-decreasing ts"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_order_kernel", NULL, -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__order_kernel(void) { return PyModule_Create(&module); }
