/* The trend detector's per-reading work: sliding window, running moments, slope, forecast.
 *
 * `detectors/trend.py` keeps all state in numpy arrays and calls `advance` once per batch with
 * its readings expanded to bindings (`detectors.batching.bound_readings`: each binding's in
 * (ts, row) order, binding -1 for a row without one, late readings included); readings without
 * a binding, and late ones (older than the binding's newest evaluated ts; equal ts is
 * evaluated), are skipped with a NaN statistic. For every other reading the loop below is
 * `trend_reference.statistic` for one reading, except that the window is kept as running
 * moments instead of re-summed
 * (see trend.py's module docstring for the rules: Welford add and remove, exact re-summing,
 * readings of one instant have no slope). The arithmetic is written in the order numpy used
 * to do it, and built without FMA contraction (-ffp-contract=off), so the statistics are
 * those of the array version.
 *
 * Every array is borrowed with its dtype and length checked (kernel_buffers.h), and every
 * binding number and ring slot taken from them is checked before the first write, so a wrong
 * argument raises ValueError and leaves the state as it was.
 */
#include "kernel_buffers.h"

#include <math.h>

/* The detector's arrays, in the order of the `state` tuple; exported as FIELDS, the names of
 * the TrendDetector attributes holding them, so trend.py builds the tuple from this list. */
enum {
    WINDOW_S, MIN_POINTS, MAX_POINTS, HORIZON_S, IS_FORECAST, DIRECTION, SIGN, LIMITS, LOWEST,
    RING_T, RING_V, HEAD, LIVE, MEAN_T, MEAN_V, CTT, CTV, LAST_TS,
    SLOPE_PER_MIN, LAST_VALUE, FORECAST_LEVEL, FORECAST_ETA_S, NEXT_LEVEL, NEXT_ETA_S, HOT,
    N_FIELDS
};

static const char *const FIELD_NAMES[N_FIELDS] = {
    "_window_s", "_min_points", "_max_points", "_horizon_s", "_is_forecast", "_direction", "_sign",
    "_limits", "_lowest",
    "_t", "_v", "_head", "_live", "_mean_t", "_mean_v", "_ctt", "_ctv", "_last_ts",
    "slope_per_min", "last_value", "forecast_level", "forecast_eta_s", "next_level", "next_eta_s", "_hot",
};

#define N_LEVELS 4

/* Running moments of one binding's window: count, means of t and v, co-moments. */
typedef struct {
    int32_t n;
    double mean_t, mean_v, ctt, ctv;
} Moments;

/* Welford's update for a reading entering the window (from an empty window it gives
 * mean_t = t and Ctt = 0 exactly). */
static inline void enter(Moments *m, double t, double v) {
    m->n += 1;
    double dt = t - m->mean_t;
    m->mean_t = m->mean_t + dt / m->n;
    m->mean_v = m->mean_v + (v - m->mean_v) / m->n;
    m->ctt = m->ctt + dt * (t - m->mean_t);
    m->ctv = m->ctv + dt * (v - m->mean_v);
}

/* The same update solved for the previous state: the reading (t, v) leaves. A window left
 * with fewer than two readings must be reset afterwards. */
static inline void leave(Moments *m, double t, double v) {
    m->n -= 1;
    double dt = t - m->mean_t, dv = v - m->mean_v;
    int32_t k = m->n > 1 ? m->n : 1;
    m->mean_t = m->mean_t - dt / k;
    m->mean_v = m->mean_v - dv / k;
    m->ctt = m->ctt - dt * (t - m->mean_t);
    m->ctv = m->ctv - dt * (v - m->mean_v);
}

/* Two-pass sums over the `n` readings of a ring ending just before `head`, oldest first as
 * the reference sums them. */
static void refit(Moments *m, const double *ring_t, const double *ring_v, int64_t span, int64_t head) {
    int64_t first = head - m->n;
    if (first < 0) first += span;
    double sum_t = 0.0, sum_v = 0.0;
    for (int64_t i = 0, slot = first; i < m->n; i++, slot = slot + 1 == span ? 0 : slot + 1) {
        sum_t += ring_t[slot];
        sum_v += ring_v[slot];
    }
    m->mean_t = sum_t / m->n;
    m->mean_v = sum_v / m->n;
    double ctt = 0.0, ctv = 0.0;
    for (int64_t i = 0, slot = first; i < m->n; i++, slot = slot + 1 == span ? 0 : slot + 1) {
        double dt = ring_t[slot] - m->mean_t;
        ctt += dt * dt;
        ctv += dt * (ring_v[slot] - m->mean_v);
    }
    m->ctt = ctt;
    m->ctv = ctv;
}

static PyObject *advance(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 9) {
        PyErr_SetString(PyExc_TypeError,
                        "advance(state, origin_ms, capacity, binding, ts, value, statistic, feed, fed)");
        return NULL;
    }
    PyObject *state = args[0];
    if (!PyTuple_Check(state) || PyTuple_GET_SIZE(state) != N_FIELDS) {
        PyErr_Format(PyExc_ValueError, "state: expected a tuple of %d arrays (FIELDS)", N_FIELDS);
        return NULL;
    }
    int64_t origin_ms = PyLong_AsLongLong(args[1]);
    Py_ssize_t capacity = PyLong_AsSsize_t(args[2]);
    if (PyErr_Occurred()) return NULL;
    if (capacity < 1) {
        PyErr_SetString(PyExc_ValueError, "capacity: must be at least 1");
        return NULL;
    }
#define FIELD(i) PyTuple_GET_ITEM(state, i)
    Borrowed arrays = {0};
    const double *window_s = borrow(&arrays, FIELD(WINDOW_S), "window_s", 'f', 8, -1, READ);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    if (!arrays.failed && n > PY_SSIZE_T_MAX / N_LEVELS / capacity) {
        PyErr_SetString(PyExc_ValueError, "capacity: ring buffers too large");
        arrays.failed = 1;
    }
    const int64_t *min_points = borrow(&arrays, FIELD(MIN_POINTS), "min_points", 'i', 8, n, READ);
    const int64_t *max_points = borrow(&arrays, FIELD(MAX_POINTS), "max_points", 'i', 8, n, READ);
    const double *horizon_s = borrow(&arrays, FIELD(HORIZON_S), "horizon_s", 'f', 8, n, READ);
    const uint8_t *is_forecast = borrow(&arrays, FIELD(IS_FORECAST), "is_forecast", 'b', 1, n, READ);
    const double *direction = borrow(&arrays, FIELD(DIRECTION), "direction", 'f', 8, n, READ);
    const double *sign = borrow(&arrays, FIELD(SIGN), "sign", 'f', 8, n, READ);
    const double *limits = borrow(&arrays, FIELD(LIMITS), "limits", 'f', 8, N_LEVELS * n, READ);
    const double *lowest = borrow(&arrays, FIELD(LOWEST), "lowest", 'f', 8, n, READ);
    double *ring_t = borrow(&arrays, FIELD(RING_T), "t", 'f', 8, n * capacity, WRITE);
    double *ring_v = borrow(&arrays, FIELD(RING_V), "v", 'f', 8, n * capacity, WRITE);
    int32_t *head = borrow(&arrays, FIELD(HEAD), "head", 'i', 4, n, WRITE);
    int32_t *live = borrow(&arrays, FIELD(LIVE), "live", 'i', 4, n, WRITE);
    double *mean_t = borrow(&arrays, FIELD(MEAN_T), "mean_t", 'f', 8, n, WRITE);
    double *mean_v = borrow(&arrays, FIELD(MEAN_V), "mean_v", 'f', 8, n, WRITE);
    double *ctt = borrow(&arrays, FIELD(CTT), "ctt", 'f', 8, n, WRITE);
    double *ctv = borrow(&arrays, FIELD(CTV), "ctv", 'f', 8, n, WRITE);
    int64_t *last_ts = borrow(&arrays, FIELD(LAST_TS), "last_ts", 'i', 8, n, WRITE);
    double *slope_per_min = borrow(&arrays, FIELD(SLOPE_PER_MIN), "slope_per_min", 'f', 8, n, WRITE);
    double *last_value = borrow(&arrays, FIELD(LAST_VALUE), "last_value", 'f', 8, n, WRITE);
    int8_t *forecast_level = borrow(&arrays, FIELD(FORECAST_LEVEL), "forecast_level", 'i', 1, n, WRITE);
    double *forecast_eta_s = borrow(&arrays, FIELD(FORECAST_ETA_S), "forecast_eta_s", 'f', 8, n, WRITE);
    int8_t *next_level = borrow(&arrays, FIELD(NEXT_LEVEL), "next_level", 'i', 1, n, WRITE);
    double *next_eta_s = borrow(&arrays, FIELD(NEXT_ETA_S), "next_eta_s", 'f', 8, n, WRITE);
    uint8_t *hot = borrow(&arrays, FIELD(HOT), "hot", 'b', 1, n, WRITE);
#undef FIELD
    const int32_t *binding = borrow(&arrays, args[3], "binding", 'i', 4, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[4], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[5], "value", 'f', 8, m, READ);
    double *statistic = borrow(&arrays, args[6], "statistic", 'f', 8, m, WRITE);
    uint8_t *feed = borrow(&arrays, args[7], "feed", 'b', 1, n, WRITE);
    int64_t *fed = borrow(&arrays, args[8], "fed", 'i', 8, m, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;

    /* Everything indexed below is checked first: the binding numbers, and the ring of each
     * (its length within the buffers' capacity, its write slot and count within its length).
     * The loop keeps 0 <= head < span and 0 <= live <= span, so a binding's later readings
     * stay in range too. */
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t b = binding[i];
        if (b < -1 || b >= n) {
            PyErr_Format(PyExc_ValueError, "binding %lld outside -1..%zd", (long long)b, n - 1);
            return give_back(&arrays), NULL;
        }
        if (b < 0) {
            statistic[i] = NAN;  /* no binding: not evaluated */
            continue;
        }
        int64_t span = max_points[b];
        if (span < 1 || span > capacity || head[b] < 0 || head[b] >= span || live[b] < 0 || live[b] > span) {
            PyErr_Format(PyExc_ValueError, "binding %lld: ring of %lld slots (capacity %zd), head %d, live %d",
                         (long long)b, (long long)span, capacity, head[b], live[b]);
            return give_back(&arrays), NULL;
        }
    }

    /* In the order given: `detectors.batching.bound_readings` groups a batch by channel, so a
     * binding's readings come together and the bindings in the order of the state arrays,
     * which the hardware prefetcher follows. */
    for (Py_ssize_t i = 0; i < m; i++) {
        if (binding[i] < 0) continue;
        int64_t b = binding[i];
        if (ts[i] < last_ts[b]) {
            /* Late: older than a reading already evaluated; not evaluated (no statistic). */
            statistic[i] = NAN;
            continue;
        }
        /* ts - origin as numpy computes it: int64 arithmetic wrapping around, not undefined */
        double t = (double)(int64_t)((uint64_t)ts[i] - (uint64_t)origin_ms) / 1000.0, v = value[i];
        int64_t span = max_points[b];
        double *bt = ring_t + b * capacity, *bv = ring_v + b * capacity;
        Moments w = {live[b], mean_t[b], mean_v[b], ctt[b], ctv[b]};
        last_ts[b] = ts[i];

        /* Readings leave the window oldest first: in a full ring the one the new reading
         * overwrites, and any older than the window (seconds). */
        double lower = t - window_s[b];
        int64_t oldest;
        while (1) {
            oldest = head[b] - w.n;
            if (oldest < 0) oldest += span;
            if (!(w.n == span || (w.n > 0 && bt[oldest] < lower))) break;
            leave(&w, bt[oldest], bv[oldest]);
            if (w.n <= 1) {
                /* Down to one reading (or none): take it as it is, so no rounding residue
                 * outlives it. */
                int64_t newest = oldest + 1 == span ? 0 : oldest + 1;
                w.mean_t = w.n == 1 ? bt[newest] : 0.0;
                w.mean_v = w.n == 1 ? bv[newest] : 0.0;
                w.ctt = w.ctv = 0.0;
            }
        }
        /* The oldest reading of the window once the new one is in (itself in an empty one). */
        double oldest_t = w.n > 0 ? bt[oldest] : t;
        bt[head[b]] = t;
        bv[head[b]] = v;
        head[b] = head[b] + 1 == span ? 0 : head[b] + 1;
        enter(&w, t, v);
        /* Every max_points readings (staggered by binding, to spread the work over rounds)
         * the moments are summed afresh, so the rounding of the running updates cannot
         * accumulate. */
        if (head[b] == b % span) refit(&w, bt, bv, span, head[b]);
        live[b] = w.n;
        mean_t[b] = w.mean_t;
        mean_v[b] = w.mean_v;
        ctt[b] = w.ctt;
        ctv[b] = w.ctv;

        /* A slope needs min_points readings at two different times at least. */
        int enough = w.n >= min_points[b] && oldest_t < t && w.ctt > 0;
        double slope_s = enough ? w.ctv / w.ctt : NAN;
        slope_per_min[b] = slope_s * 60.0;
        last_value[b] = v;
        double stat = slope_s * 60.0 * direction[b];

        if (is_forecast[b]) {
            /* The highest level not yet reached whose eta is within the horizon, and the
             * lowest level not yet reached. Without a slope, or with one leading away from
             * the limits, there is neither (undefined limits are NaN: never pending). */
            int level = 0, next = 0;
            double level_eta = INFINITY, next_eta = INFINITY;
            if (enough && slope_s * sign[b] > 0) {
                double fitted = w.mean_v + slope_s * (t - w.mean_t);
                const double *limit = limits + N_LEVELS * b;
                for (int l = 0; l < N_LEVELS; l++) {
                    if (isnan(limit[l]) || v * sign[b] >= limit[l] * sign[b]) continue;  /* reached */
                    double eta = (limit[l] - fitted) / slope_s;
                    if (!(eta >= 0)) eta = INFINITY;
                    if (next == 0) {
                        next = l + 1;
                        next_eta = eta;
                    }
                    if (eta <= horizon_s[b]) {
                        level = l + 1;
                        level_eta = eta;
                    }
                }
            }
            forecast_level[b] = (int8_t)level;
            forecast_eta_s[b] = level_eta;
            next_level[b] = (int8_t)next;
            next_eta_s[b] = next_eta;
            stat = enough ? (double)level : NAN;
        }
        statistic[i] = stat;
        /* Whether the binding's last finite statistic reached its lowest level; a binding
         * that did in this batch must be fed to the level machine. */
        if (isfinite(stat)) {
            hot[b] = stat >= lowest[b];
            if (hot[b]) feed[b] = 1;
        }
    }
    /* The positions of the readings whose binding is marked in `feed`, for the level machine:
     * one pass here instead of numpy's gather of `feed` by binding, a mask and flatnonzero
     * (0.4 ms per 100,000 readings). */
    Py_ssize_t n_fed = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        if (binding[i] >= 0 && feed[binding[i]]) fed[n_fed++] = i;
    }
    give_back(&arrays);
    return PyLong_FromSsize_t(n_fed);
}

static PyMethodDef methods[] = {
    {"advance", (PyCFunction)(void (*)(void))advance, METH_FASTCALL,
     "advance(state, origin_ms, capacity, binding, ts, value, statistic, feed, fed) -> int\n\n"
     "Append each reading to its binding's window (a binding's readings in time order; binding -1\n"
     "and readings older than the binding's last_ts are skipped, statistic NaN) and\n"
     "compute its statistic (slope per\n"
     "minute times the direction, or the forecast level; NaN without a slope) into\n"
     "`statistic`, updating the state arrays (the tuple named by FIELDS) in place and marking\n"
     "in `feed` the bindings whose statistic reached their lowest level; writes to `fed` the\n"
     "positions of the readings of the bindings marked in `feed`, and returns their count."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_trend_kernel",
    .m_doc = "Per-reading kernel of detectors.trend.",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__trend_kernel(void) {
    PyObject *mod = PyModule_Create(&module);
    if (mod == NULL) return NULL;
    PyObject *fields = PyTuple_New(N_FIELDS);
    if (fields == NULL) return Py_DECREF(mod), NULL;
    for (int i = 0; i < N_FIELDS; i++) {
        PyObject *name = PyUnicode_FromString(FIELD_NAMES[i]);
        if (name == NULL) return Py_DECREF(fields), Py_DECREF(mod), NULL;
        PyTuple_SET_ITEM(fields, i, name);
    }
    if (PyModule_AddObject(mod, "FIELDS", fields) < 0) return Py_DECREF(fields), Py_DECREF(mod), NULL;
    return mod;
}
