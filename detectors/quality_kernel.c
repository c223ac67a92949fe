/* Sensor-fault checks, one reading at a time: the kernel of detectors.quality.
 *
 * `evaluate` runs the checks of `detectors/quality_reference.py` (range, spike, rate, stuck)
 * on a batch of readings, each binding's in the order given, updating the detector's per-binding state
 * records in place, and writes the positions of the readings after which the binding's faulty
 * flag changed. Its arguments are, in order (n = bindings, m = readings):
 *
 *   binding (m,) int32 (-1 = none: skipped), ts (m,) int64 epoch ms, value (m,) float64, each
 *     binding's readings in (ts, row) order (`detectors.batching.bound_readings`); a reading
 *     older than its binding's last_ts (late) is skipped, an equal ts is evaluated;
 *   moved (>= m,) intp, written: positions whose reading changed the faulty flag, binding by
 *     binding (the order of evaluation); flag (>= m,) f8, written: the flag after each (0/1);
 *   state (n,) records `State` (exported as STATE, see below), written: each binding's
 *     parameters and state, one struct per binding;
 *   windows (any length,) f8 and slots (as long,) i4, written: each binding's spike window,
 *     `spike_window` elements from `spike_start`: the `held` readings in ascending order
 *     (Python's sorted() order, equal ones oldest first), each with the ring slot it was
 *     written to, so the reading a new one replaces is the one whose slot is `next`;
 *
 * and it returns the number of positions written to `moved`. Every binding number is checked
 * before the first reading is evaluated, so a bad batch raises ValueError and changes nothing;
 * a binding's window bounds and counts are checked before its readings are, so a corrupted
 * record raises ValueError before anything is read or written out of bounds; slots are only
 * compared, never used as indexes.
 *
 * A binding's parameters and state are one record, not one array each: real batches are a few
 * thousand readings spread over all the channels, so each reading's binding is a cache miss,
 * one per array it touches (about 25 with separate arrays, 2-3 with the record: the fields a
 * reading reads come first, in its first 128 bytes, and the fault details it writes only on a
 * faulty reading last). The spike windows stay a separate buffer (their lengths differ).
 * Batches of 5,000 random channels out of 100,000: the detector's update took 495-523 ns per
 * reading with separate arrays, 424-443 with the record (min-median); of the kernel's ~305 ns
 * the spike windows are most (without spike checks: 107 ns, against 38 in channel order), and
 * prefetching the record and window 2-32 readings ahead changed nothing measurable.
 *
 * Arithmetic is the reference's, operation for operation in double precision (built with
 * -ffp-contract=off: no fused multiply-add), so every comparison is decided alike. Keeping
 * each window sorted costs one shift per reading (the replaced reading out, the new one in
 * after its equals: the order a stable sort of the window in time order gives). Sorting a copy
 * of each window instead took about twice as long on noisy readings (the whole kernel on
 * 100,000 readings, 9-reading windows: 18 ms sorting a copy by insertion sort, 13 ms by
 * counting ranks, 7.5 ms keeping it sorted). The median is then read off, and the MAD is an
 * order statistic of two ascending lists (the deviations below the median, read outwards, and
 * those above it) taken without sorting the deviations: the same multiset of values
 * (fabs(med - v) == fabs(v - med) exactly), so the same median.
 *
 * Replacing the oldest reading without branches (its place found by counting, the elements
 * moved by selects) took more instructions than the mispredicted shift costs, as gcc does not
 * vectorise the selects (8.4 ms against 7.9 ms; 597 against 503 instructions per reading).
 * What did help: the common window lengths as constants (`check`), so the window loops
 * unroll; each binding's window bounds checked once per run; the odd-length MAD as one
 * forward loop. That took 503 -> 432 instructions per reading at one reading per channel and
 * 374 -> 281 at ten (callgrind), kernel CPU 7.9 -> 7.2 ms per 100,000 readings and 52-56 ->
 * 50-51 ms per 1,000,000 (min-median; shared machine).
 */
#include "kernel_buffers.h"

#include <math.h>

/* Scale that makes the MAD estimate a normal standard deviation (quality.MAD_SCALE). */
#define MAD_SCALE 1.4826
/* Fault codes (quality.FAULTS); the first that fires is reported. */
enum { NO_FAULT = 0, OUT_OF_RANGE = 1, SPIKE = 2, RATE = 3, STUCK = 4 };
#define N_ARGS 8
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
    /* i = 0 takes none from the first list, i = k none from the second: the ends are taken
     * apart so the loop in between has no conditions (the order of i, and so of the
     * comparisons, is the same). */
    Py_ssize_t i = first;
    if (i == 0) {
        double taken = fabs(sorted[n_low + k - 1] - med);
        best = taken < best ? taken : best;
        i = 1;
    }
    Py_ssize_t middle_last = last == k ? k - 1 : last;
    for (; i <= middle_last; i++) {
        double low = fabs(med - sorted[n_low - i]);
        double high = fabs(sorted[n_low + k - i - 1] - med);
        double taken = low > high ? low : high;
        best = taken < best ? taken : best;
    }
    if (last == k) {
        double taken = fabs(med - sorted[n_low - k]);
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
    if (w % 2) {
        /* kth_deviation for odd w (k = n_low = h + 1): i readings from the median down and
         * h + 1 - i from it up, for i = 1 .. h + 1, pair sorted[j] with sorted[h + j] for
         * j = h + 1 - i; ascending j reads both in order, and the least is the same in any order
         * (the deviations are never NaN: readings are finite). */
        double best = fabs(med - sorted[0]);
        for (Py_ssize_t j = 1; j <= h; j++) {
            double low = fabs(med - sorted[j]), high = fabs(sorted[h + j] - med);
            double taken = low > high ? low : high;
            best = taken < best ? taken : best;
        }
        *mad = best;
        return;
    }
    *mad = (kth_deviation(sorted, w, n_low, med, h) + kth_deviation(sorted, w, n_low, med, h + 1)) / 2;
}

/* Put reading x, written to ring slot `slot`, into a sorted window of w elements holding
 * `held`: in place of the reading with that slot when the window is full, else after the
 * others; after the readings less than or equal to it. Moving x from there past its
 * neighbours, as insertion sort does, writes only the elements that move (a loop copying the
 * elements between the two places became two memmove calls per reading: 6% slower). */
static inline void enter(double *sorted, int32_t *slots, Py_ssize_t w, Py_ssize_t held, double x, int32_t slot) {
    /* x takes the place of the element that leaves (the free end while filling), then moves
     * past the greater ones before it or the ones after it that are less or equal. */
    Py_ssize_t k = held;
    if (held == w) {
        k = 0;
        for (Py_ssize_t j = 0; j < w; j++) k = slots[j] == slot ? j : k;
    }
    while (k > 0 && sorted[k - 1] > x) {
        sorted[k] = sorted[k - 1];
        slots[k] = slots[k - 1];
        k--;
    }
    while (k + 1 < held && sorted[k + 1] <= x) {
        sorted[k] = sorted[k + 1];
        slots[k] = slots[k + 1];
        k++;
    }
    sorted[k] = x;
    slots[k] = slot;
}

/* One binding's parameters and state (the meaning of each field: detectors.quality). Every
 * reading reads the first 128 bytes: the state it carries, then the parameters of its checks;
 * the fault details after them are written only by a faulty reading. */
typedef struct {
    int64_t last_ts;          /* newest ts evaluated, epoch ms */
    int64_t run_start;        /* ts of the stuck run's first reading */
    double prev;              /* previous evaluated reading, NaN = none */
    double run_min, run_max;  /* of the stuck run */
    int32_t run_count;        /* readings in the stuck run */
    int32_t good;             /* good readings in a row while faulty */
    int32_t held;             /* readings in the spike window, up to its length */
    int32_t next;             /* ring slot of the next reading, 0 <= next < spike_window */
    int32_t spike_window;     /* 0 = no spike check */
    int32_t stuck_n;          /* 0 = no stuck check */
    int64_t spike_start;      /* first element of the binding's window in `windows` */
    int64_t stuck_ms;
    double stuck_tolerance, max_rate, spike_threshold, range_min, range_max;  /* max_rate inf = no rate check */
    int32_t clear_after;
    uint8_t faulty;           /* 0/1 (numpy bool) */
    int8_t fault;             /* code of the latest fault, NO_FAULT before any */
    double fault_value, fault_aux, fault_ref;  /* the latest faulty reading and what its check measured */
} State;

static const RecordField STATE_FIELDS[] = {
    RECORD_FIELD(State, last_ts, "<i8"), RECORD_FIELD(State, run_start, "<i8"), RECORD_FIELD(State, prev, "<f8"),
    RECORD_FIELD(State, run_min, "<f8"), RECORD_FIELD(State, run_max, "<f8"), RECORD_FIELD(State, run_count, "<i4"),
    RECORD_FIELD(State, good, "<i4"), RECORD_FIELD(State, held, "<i4"), RECORD_FIELD(State, next, "<i4"),
    RECORD_FIELD(State, spike_window, "<i4"), RECORD_FIELD(State, stuck_n, "<i4"),
    RECORD_FIELD(State, spike_start, "<i8"), RECORD_FIELD(State, stuck_ms, "<i8"),
    RECORD_FIELD(State, stuck_tolerance, "<f8"), RECORD_FIELD(State, max_rate, "<f8"),
    RECORD_FIELD(State, spike_threshold, "<f8"), RECORD_FIELD(State, range_min, "<f8"),
    RECORD_FIELD(State, range_max, "<f8"), RECORD_FIELD(State, clear_after, "<i4"), RECORD_FIELD(State, faulty, "?"),
    RECORD_FIELD(State, fault, "i1"), RECORD_FIELD(State, fault_value, "<f8"), RECORD_FIELD(State, fault_aux, "<f8"),
    RECORD_FIELD(State, fault_ref, "<f8"),
};
_Static_assert(offsetof(State, fault_value) == 128, "a reading's fields fill the record's first 128 bytes");

/* The detector's arrays (see the argument list above). */
typedef struct {
    State *state;
    double *windows;
    int32_t *slots;
} Detector;

/* A reading as the loop takes it: with its position in the batch, to report a flag change. */
typedef struct {
    int64_t ts;
    double value;
    int32_t row, binding;
} Reading;

/* Where the flag changes are written: positions and the new flag. */
typedef struct {
    int64_t *position;
    double *flag;
    Py_ssize_t count;
} Moves;

/* Evaluate binding b's `count` readings, in (ts, row) order, skipping late ones. The binding's
 * state is held in locals over its readings. */
static inline __attribute__((always_inline)) void check_with(const Detector *d, Py_ssize_t b,
                                                             const Reading *readings, Py_ssize_t count,
                                                             Moves *moves, Py_ssize_t w) {
    State *s = &d->state[b];
    int64_t newest = s->last_ts, run_t0 = s->run_start;
    double before = s->prev, lowest = s->run_min, highest = s->run_max;
    int32_t run = s->run_count, good = s->good;
    int is_faulty = s->faulty != 0;
    double *sorted = d->windows + (w > 0 ? s->spike_start : 0);
    int32_t *slot = d->slots + (w > 0 ? s->spike_start : 0);
    int32_t in_window = s->held, next_slot = s->next;
    for (Py_ssize_t j = 0; j < count; j++) {
        int64_t t = readings[j].ts;
        if (t < newest) continue;  /* late: older than a reading already evaluated */
        double x = readings[j].value;
        int has_prev = !isnan(before);

        /* stuck: extend the current run, or start a new one at x */
        double lo = x < lowest ? x : lowest;
        double hi = x > highest ? x : highest;
        if (has_prev && hi - lo <= s->stuck_tolerance) {
            lowest = lo;
            highest = hi;
            if (run < INT32_MAX) run++;
        } else {
            lowest = highest = x;
            run = 1;
            run_t0 = t;
        }
        int stuck = s->stuck_n > 0 && run >= s->stuck_n && elapsed(t, run_t0) >= s->stuck_ms;

        /* rate of change against the previous reading; none without elapsed time */
        int64_t dt = has_prev ? elapsed(t, newest) : 0;
        double rate = dt > 0 ? fabs(x - before) * 1000.0 / (double)dt : NAN;
        int fast = dt > 0 && rate > s->max_rate;

        /* spike against the previous window, then x joins the window */
        int spike = 0;
        double z = NAN, median = NAN;
        if (w > 0) {
            if (in_window == w) {
                double mad;
                median_and_mad(sorted, w, &median, &mad);
                z = fabs(x - median) / (MAD_SCALE * mad);
                spike = mad > 0 && z > s->spike_threshold;
            }
            enter(sorted, slot, w, in_window, x, next_slot);
            if (in_window < w) in_window++;
            next_slot = next_slot + 1 == w ? 0 : next_slot + 1;
        }

        /* physical range */
        int below = x < s->range_min;
        int out = below || x > s->range_max;

        int code = out ? OUT_OF_RANGE : spike ? SPIKE : fast ? RATE : stuck ? STUCK : NO_FAULT;
        int was_faulty = is_faulty;
        if (code != NO_FAULT) {
            s->fault = (int8_t)code;
            s->fault_value = x;
            s->fault_aux = code == SPIKE ? z : code == RATE ? rate : code == STUCK ? (double)run : 0.0;
            s->fault_ref = code == OUT_OF_RANGE ? (below ? s->range_min : s->range_max)
                              : code == SPIKE ? median
                              : code == RATE ? before
                              : (double)elapsed(t, run_t0) / 1000.0;
            good = 0;
            is_faulty = 1;
        } else if (was_faulty) {
            if (good < INT32_MAX) good++;
            is_faulty = good < s->clear_after;
        } else {
            good = 0;
            is_faulty = 0;
        }
        if (is_faulty != was_faulty) {
            moves->position[moves->count] = readings[j].row;
            moves->flag[moves->count++] = is_faulty;
        }
        before = x;
        newest = t;
    }
    s->last_ts = newest;
    s->prev = before;
    s->run_min = lowest;
    s->run_max = highest;
    s->run_count = run;
    s->run_start = run_t0;
    s->faulty = (uint8_t)is_faulty;
    s->good = good;
    s->held = in_window;
    s->next = next_slot;
}

/* `check_with` for binding b's window length; the common lengths (the benchmark's 9, the
 * default 25) as constants, so the window loops are unrolled. */
static void check(const Detector *d, Py_ssize_t b, const Reading *readings, Py_ssize_t count, Moves *moves) {
    Py_ssize_t w = d->state[b].spike_window;
    switch (w) {
    case 9: check_with(d, b, readings, count, moves, 9); break;
    case 25: check_with(d, b, readings, count, moves, 25); break;
    default: check_with(d, b, readings, count, moves, w); break;
    }
}

static PyObject *evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "evaluate() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    Borrowed arrays = {0};
    Detector d;
    const int32_t *binding = borrow(&arrays, args[0], "binding", 'i', 4, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[2], "value", 'f', 8, m, READ);
    Moves moves = {NULL, NULL, 0};
    moves.position = borrow(&arrays, args[3], "moved", 'i', 8, -1, WRITE);
    if (!arrays.failed && borrowed_length(&arrays) < m) {
        PyErr_Format(PyExc_ValueError, "moved: expected at least %zd elements, got %zd", m,
                     borrowed_length(&arrays));
        give_back(&arrays);
        return NULL;
    }
    moves.flag = borrow(&arrays, args[4], "flag", 'f', 8, -1, WRITE);
    if (!arrays.failed && borrowed_length(&arrays) < m) {
        PyErr_Format(PyExc_ValueError, "flag: expected at least %zd elements, got %zd", m,
                     borrowed_length(&arrays));
        give_back(&arrays);
        return NULL;
    }
    d.state = borrow(&arrays, args[5], "state", 'r', sizeof(State), -1, WRITE);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    d.windows = borrow(&arrays, args[6], "windows", 'f', 8, -1, WRITE);
    Py_ssize_t n_windows = arrays.failed ? 0 : borrowed_length(&arrays);
    d.slots = borrow(&arrays, args[7], "slots", 'i', 4, n_windows, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;
    if (m > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "binding: more than 2**31 - 1 readings");
        return give_back(&arrays), NULL;
    }

    /* The binding numbers come from the batch: all are checked before anything changes, so a
     * wrong batch changes nothing. */
    for (Py_ssize_t r = 0; r < m; r++) {
        int32_t b = binding[r];
        if (b < -1 || b >= n) {
            PyErr_Format(PyExc_ValueError, "binding %d at position %zd is not in -1..%zd", (int)b, r, n - 1);
            return give_back(&arrays), NULL;
        }
    }

    /* The readings are taken a run of one binding at a time, so a binding's state is loaded
     * once per run, not once per reading. `detectors.batching.bound_readings` groups a batch
     * by channel, so with one binding per channel a run is all of the binding's readings, and
     * the runs follow the order of the state records, which the hardware prefetcher follows. A
     * long run is taken in pieces of RUN readings (the state is stored between them). */
    enum { RUN = 256 };
    Reading run[RUN];
    for (Py_ssize_t r = 0, end; r < m; r = end) {
        int32_t b = binding[r];
        for (end = r + 1; end < m && end - r < RUN && binding[end] == b; end++) {
        }
        if (b < 0) continue;
        /* A window's bounds come from the state, which only this kernel changes (keeping them
         * in range) after quality.py set them up: they are checked as each run takes its
         * record, not in a pass of their own before the loop, which in a full batch read every
         * record twice. A corrupted record therefore stops the batch at its first run, after
         * the runs before it were evaluated. */
        const State *s = &d.state[b];
        int32_t w = s->spike_window;
        if (w != 0 && (w < 0 || s->spike_start < 0 || s->spike_start > n_windows - w || s->held < 0
                       || s->held > w || s->next < 0 || s->next >= w)) {
            PyErr_Format(PyExc_ValueError, "binding %d: spike window of %d readings at %lld (held %d, next %d) "
                         "is not within the %zd-element windows array", (int)b, (int)w,
                         (long long)s->spike_start, (int)s->held, (int)s->next, n_windows);
            return give_back(&arrays), NULL;
        }
        for (Py_ssize_t i = r; i < end; i++) run[i - r] = (Reading){ts[i], value[i], (int32_t)i, b};
        check(&d, b, run, end - r, &moves);
    }
    give_back(&arrays);
    return PyLong_FromSsize_t(moves.count);
}

static PyMethodDef methods[] = {
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL,
     "evaluate(binding, ts, value, moved, flag, state, windows, slots) -> int\n\n"
     "Check each reading in order, update the state records in place, write the positions of\n"
     "the readings that changed their binding's faulty flag to `moved`; their count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_quality_kernel",
    "Per-reading sensor-fault checks for detectors.quality (see quality_kernel.c).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__quality_kernel(void) {
    PyObject *m = PyModule_Create(&module);
    if (m == NULL) return NULL;
    if (add_layout(m, "STATE", STATE_FIELDS, (int)(sizeof STATE_FIELDS / sizeof STATE_FIELDS[0]), sizeof(State)) < 0)
        return Py_DECREF(m), NULL;
    return m;
}
