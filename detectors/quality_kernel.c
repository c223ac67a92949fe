/* Sensor-fault checks, one reading at a time: the kernel of detectors.quality.
 *
 * `evaluate` runs the checks of `detectors/quality_reference.py` (range, spike, rate, stuck)
 * on a sequence of readings, in the order given, updating the detector's per-binding state
 * arrays in place, and writes the positions of the readings after which the binding's faulty
 * flag changed. Its arguments are, in order (n = bindings, m = readings):
 *
 *   binding (m,) intp, ts (m,) int64 epoch ms, value (m,) float64,
 *   moved (>= m,) intp, written: positions whose reading changed the faulty flag;
 *   parameters, (n,) each: range_min f8, range_max f8, stuck_n i4 (0 = no stuck check),
 *     stuck_ms i8, stuck_tolerance f8, spike_threshold f8, max_rate f8 (inf = no rate check),
 *     clear_after i4, spike_window i4 (0 = no spike check), spike_start i8 (first element of
 *     the binding's ring in `windows`);
 *   state, (n,) each, written: last_ts i8, prev f8 (NaN = none), run_min f8, run_max f8,
 *     run_count i4, run_start i8, faulty bool, good i4, fault i1, fault_value f8,
 *     fault_aux f8, fault_ref f8, held i4 (readings in the spike window, up to its length),
 *     next i4 (the ring slot the next reading takes, 0 <= next < spike_window);
 *   windows (any length,) f8 and slots (as long,) i4, written: each binding's spike window,
 *     `spike_window` elements from `spike_start`: the `held` readings in ascending order
 *     (Python's sorted() order, equal ones oldest first), each with the ring slot it was
 *     written to, so the reading a new one replaces is the one whose slot is `next`;
 *
 * and it returns the number of positions written to `moved`. Every binding number, window
 * bound and count is checked against the arrays before the first reading is evaluated, so a
 * bad input raises ValueError and changes nothing; slots are only compared, never used as
 * indexes.
 *
 * Arithmetic is the reference's, operation for operation in double precision (built with
 * -ffp-contract=off: no fused multiply-add), so every comparison is decided alike. Keeping
 * each window sorted costs one shift per reading (the replaced reading out, the new one in
 * after its equals: the order a stable sort of the window in time order gives). Sorting a copy
 * of each window instead took about twice as long on noisy readings (the whole kernel on 100,000 readings, 9-reading windows: 18 ms sorting a copy by insertion
 * sort, 13 ms by counting ranks, 7.5 ms keeping it sorted). The median is then read off, and
 * the MAD is an order statistic of two ascending lists (the deviations below the median, read
 * outwards, and those above it) taken without sorting the deviations: the same multiset of
 * values (fabs(med - v) == fabs(v - med) exactly), so the same median.
 */
#include "kernel_buffers.h"

#include <math.h>

/* Scale that makes the MAD estimate a normal standard deviation (quality.MAD_SCALE). */
#define MAD_SCALE 1.4826
/* Fault codes (quality.FAULTS); the first that fires is reported. */
enum { NO_FAULT = 0, OUT_OF_RANGE = 1, SPIKE = 2, RATE = 3, STUCK = 4 };
#define N_ARGS 30

/* a - b for epoch ms, wrapping like numpy's int64 instead of overflowing (undefined in C). */
static inline int64_t elapsed(int64_t a, int64_t b) {
    return (int64_t)((uint64_t)a - (uint64_t)b);
}

/* The k-th smallest deviation |v - med| (1-based, k <= w) of w ascending readings, the first
 * `n_low` of them at most `med` and the others above it. The deviations of the readings up to
 * the median, read from it outwards, ascend, and so do those of the readings above it: the
 * k-th smallest of both lists is the least, over the ways to take i from the first and k - i
 * from the second, of the larger of the last ones taken. */
static inline double kth_deviation(const double *sorted, Py_ssize_t w, Py_ssize_t n_low, double med, Py_ssize_t k) {
    double best = INFINITY;
    Py_ssize_t first = k - (w - n_low) > 0 ? k - (w - n_low) : 0, last = k < n_low ? k : n_low;
    for (Py_ssize_t i = first; i <= last; i++) {
        double low = i > 0 ? fabs(med - sorted[n_low - i]) : -INFINITY;
        double high = i < k ? fabs(sorted[n_low + k - i - 1] - med) : -INFINITY;
        double taken = low > high ? low : high;
        best = taken < best ? taken : best;
    }
    return best;
}

/* Median and median absolute deviation of w > 0 ascending readings. */
static inline void median_and_mad(const double *sorted, Py_ssize_t w, double *median, double *mad) {
    Py_ssize_t h = w / 2;
    double med = w % 2 ? sorted[h] : (sorted[h - 1] + sorted[h]) / 2;
    Py_ssize_t n_low = w % 2 ? h + 1 : h;
    *median = med;
    *mad = w % 2 ? kth_deviation(sorted, w, n_low, med, h + 1)
                 : (kth_deviation(sorted, w, n_low, med, h) + kth_deviation(sorted, w, n_low, med, h + 1)) / 2;
}

/* Put reading x, written to ring slot `slot`, into a sorted window of w elements holding
 * `held`: in place of the reading with that slot when the window is full, else after the
 * others; after the readings less than or equal to it. */
static inline void enter(double *sorted, int32_t *slots, Py_ssize_t w, Py_ssize_t held, double x, int32_t slot) {
    /* The element that leaves (none, the free end, while filling), and x's place among the others. */
    Py_ssize_t out = held, place = 0;
    if (held == w) {
        out = 0;
        for (Py_ssize_t k = 0; k < w; k++) {
            out = slots[k] == slot ? k : out;
            place += sorted[k] <= x;
        }
        place -= sorted[out] <= x;
    } else {
        for (Py_ssize_t k = 0; k < held; k++) place += sorted[k] <= x;
    }
    /* The elements between `out` and x's place move one step toward `out`. */
    Py_ssize_t step = place >= out ? 1 : -1;
    for (Py_ssize_t k = out; k != place; k += step) {
        sorted[k] = sorted[k + step];
        slots[k] = slots[k + step];
    }
    sorted[place] = x;
    slots[place] = slot;
}

static PyObject *evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "evaluate() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    Borrowed arrays = {0};
    const int64_t *binding = borrow(&arrays, args[0], "binding", 'i', 8, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[2], "value", 'f', 8, m, READ);
    int64_t *moved = borrow(&arrays, args[3], "moved", 'i', 8, -1, WRITE);
    if (!arrays.failed && borrowed_length(&arrays) < m) {
        PyErr_Format(PyExc_ValueError, "moved: expected at least %zd elements, got %zd", m,
                     borrowed_length(&arrays));
        give_back(&arrays);
        return NULL;
    }
    const double *range_min = borrow(&arrays, args[4], "range_min", 'f', 8, -1, READ);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    const double *range_max = borrow(&arrays, args[5], "range_max", 'f', 8, n, READ);
    const int32_t *stuck_n = borrow(&arrays, args[6], "stuck_n", 'i', 4, n, READ);
    const int64_t *stuck_ms = borrow(&arrays, args[7], "stuck_ms", 'i', 8, n, READ);
    const double *stuck_tol = borrow(&arrays, args[8], "stuck_tolerance", 'f', 8, n, READ);
    const double *spike_threshold = borrow(&arrays, args[9], "spike_threshold", 'f', 8, n, READ);
    const double *max_rate = borrow(&arrays, args[10], "max_rate", 'f', 8, n, READ);
    const int32_t *clear_after = borrow(&arrays, args[11], "clear_after", 'i', 4, n, READ);
    const int32_t *spike_window = borrow(&arrays, args[12], "spike_window", 'i', 4, n, READ);
    const int64_t *spike_start = borrow(&arrays, args[13], "spike_start", 'i', 8, n, READ);
    int64_t *last_ts = borrow(&arrays, args[14], "last_ts", 'i', 8, n, WRITE);
    double *prev = borrow(&arrays, args[15], "prev", 'f', 8, n, WRITE);
    double *run_min = borrow(&arrays, args[16], "run_min", 'f', 8, n, WRITE);
    double *run_max = borrow(&arrays, args[17], "run_max", 'f', 8, n, WRITE);
    int32_t *run_count = borrow(&arrays, args[18], "run_count", 'i', 4, n, WRITE);
    int64_t *run_start = borrow(&arrays, args[19], "run_start", 'i', 8, n, WRITE);
    uint8_t *faulty = borrow(&arrays, args[20], "faulty", 'b', 1, n, WRITE);
    int32_t *good = borrow(&arrays, args[21], "good", 'i', 4, n, WRITE);
    int8_t *fault = borrow(&arrays, args[22], "fault", 'i', 1, n, WRITE);
    double *fault_value = borrow(&arrays, args[23], "fault_value", 'f', 8, n, WRITE);
    double *fault_aux = borrow(&arrays, args[24], "fault_aux", 'f', 8, n, WRITE);
    double *fault_ref = borrow(&arrays, args[25], "fault_ref", 'f', 8, n, WRITE);
    int32_t *held = borrow(&arrays, args[26], "held", 'i', 4, n, WRITE);
    int32_t *next = borrow(&arrays, args[27], "next", 'i', 4, n, WRITE);
    double *windows = borrow(&arrays, args[28], "windows", 'f', 8, -1, WRITE);
    Py_ssize_t n_windows = arrays.failed ? 0 : borrowed_length(&arrays);
    int32_t *slots = borrow(&arrays, args[29], "slots", 'i', 4, n_windows, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;

    /* Check every index the loop will use before changing anything. */
    for (Py_ssize_t r = 0; r < m; r++) {
        int64_t b = binding[r];
        if (b < 0 || b >= n) {
            PyErr_Format(PyExc_ValueError, "binding %lld at position %zd is not in 0..%zd",
                         (long long)b, r, n - 1);
            return give_back(&arrays), NULL;
        }
        int32_t w = spike_window[b];
        if (w == 0) continue;
        if (w < 0 || spike_start[b] < 0 || spike_start[b] > n_windows - w || held[b] < 0 || held[b] > w
            || next[b] < 0 || next[b] >= w) {
            PyErr_Format(PyExc_ValueError, "binding %lld: spike window of %d readings at %lld (held %d, next %d) "
                         "is not within the %zd-element windows array", (long long)b, (int)w,
                         (long long)spike_start[b], (int)held[b], (int)next[b], n_windows);
            return give_back(&arrays), NULL;
        }
    }

    Py_ssize_t n_moved = 0;
    for (Py_ssize_t r = 0; r < m; r++) {
        int64_t b = binding[r], t = ts[r];
        double x = value[r], before = prev[b];
        int has_prev = !isnan(before);

        /* stuck: extend the current run, or start a new one at x */
        double lo = x < run_min[b] ? x : run_min[b];
        double hi = x > run_max[b] ? x : run_max[b];
        if (has_prev && hi - lo <= stuck_tol[b]) {
            run_min[b] = lo;
            run_max[b] = hi;
            if (run_count[b] < INT32_MAX) run_count[b]++;
        } else {
            run_min[b] = run_max[b] = x;
            run_count[b] = 1;
            run_start[b] = t;
        }
        int32_t count = run_count[b];
        int64_t start = run_start[b];
        int stuck = stuck_n[b] > 0 && count >= stuck_n[b] && elapsed(t, start) >= stuck_ms[b];

        /* rate of change against the previous reading; none without elapsed time */
        int64_t dt = has_prev ? elapsed(t, last_ts[b]) : 0;
        double rate = dt > 0 ? fabs(x - before) * 1000.0 / (double)dt : NAN;
        int fast = dt > 0 && rate > max_rate[b];

        /* spike against the previous window, then x joins the window */
        int spike = 0;
        double z = NAN, median = NAN;
        Py_ssize_t w = spike_window[b];
        if (w > 0) {
            double *sorted = windows + spike_start[b];
            int32_t *slot = slots + spike_start[b];
            if (held[b] == w) {
                double mad;
                median_and_mad(sorted, w, &median, &mad);
                z = fabs(x - median) / (MAD_SCALE * mad);
                spike = mad > 0 && z > spike_threshold[b];
            }
            enter(sorted, slot, w, held[b], x, next[b]);
            if (held[b] < w) held[b]++;
            next[b] = next[b] + 1 == w ? 0 : next[b] + 1;
        }

        /* physical range */
        int below = x < range_min[b];
        int out = below || x > range_max[b];

        int code = out ? OUT_OF_RANGE : spike ? SPIKE : fast ? RATE : stuck ? STUCK : NO_FAULT;
        int was_faulty = faulty[b] != 0, is_faulty;
        if (code != NO_FAULT) {
            fault[b] = (int8_t)code;
            fault_value[b] = x;
            fault_aux[b] = code == SPIKE ? z : code == RATE ? rate : code == STUCK ? (double)count : 0.0;
            fault_ref[b] = code == OUT_OF_RANGE ? (below ? range_min[b] : range_max[b])
                           : code == SPIKE ? median
                           : code == RATE ? before
                           : (double)elapsed(t, start) / 1000.0;
            good[b] = 0;
            is_faulty = 1;
        } else if (was_faulty) {
            if (good[b] < INT32_MAX) good[b]++;
            is_faulty = good[b] < clear_after[b];
        } else {
            good[b] = 0;
            is_faulty = 0;
        }
        faulty[b] = (uint8_t)is_faulty;
        if (is_faulty != was_faulty) moved[n_moved++] = r;
        prev[b] = x;
        last_ts[b] = t;
    }

    give_back(&arrays);
    return PyLong_FromSsize_t(n_moved);
}

static PyMethodDef methods[] = {
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL,
     "evaluate(binding, ts, value, moved, *parameters, *state, held, next, windows, slots) -> int\n\n"
     "Check each reading in order, update the state arrays in place, write the positions of\n"
     "the readings that changed their binding's faulty flag to `moved`; their count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_quality_kernel",
    "Per-reading sensor-fault checks for detectors.quality (see quality_kernel.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__quality_kernel(void) {
    return PyModule_Create(&module);
}
