/* The trend detector's per-reading work: sliding window, running moments, slope, forecast.
 *
 * `detectors/trend.py` keeps each binding's parameters and state in one record (`State`
 * below, exported as STATE) and its ring of readings as (t, v) pairs (`Reading`, READING),
 * and calls `advance` once per batch with its readings expanded to bindings
 * (`detectors.batching.bound_readings`: each binding's in (ts, row) order, binding -1 for a
 * row without one, late readings included); readings without a binding, and late ones (older
 * than the binding's newest evaluated ts; equal ts is evaluated), are skipped with a NaN
 * statistic. For every other reading the loop below is `trend_reference.statistic` for one
 * reading, except that the window is kept as running moments instead of re-summed
 * (see trend.py's module docstring for the rules: Welford add and remove, exact re-summing,
 * readings of one instant have no slope). The arithmetic is written in the order numpy used
 * to do it, and built without FMA contraction (-ffp-contract=off), so the statistics are
 * those of the array version.
 *
 * Records, not one array per field: real batches are small (a few thousand readings over
 * 100,000 bindings), so each reading's binding is a random one, and what it costs is the cache
 * lines of state it touches: two or three of its record and one of its ring, where one array
 * per field touched about twenty.
 *
 * Every array is borrowed with its dtype (record size) and length checked (kernel_buffers.h),
 * and every binding number is checked before the first write, so a wrong argument raises
 * ValueError and leaves the state as it was; a record whose ring bounds are corrupt raises
 * ValueError when a reading reaches it, before anything is read or written out of bounds.
 */
#include "kernel_buffers.h"

#include <math.h>

#define N_LEVELS 4

/* One binding's parameters and state, exported as STATE (trend.py builds its record array
 * from it). A reading of a slope rule touches the first two cache lines; the third is read
 * only by a forecast on its way toward a limit.
 * Aligned to a cache line (trend.py aligns the array) so that each line of the record is one
 * line of memory. Whether a binding is `hot` stays a separate array of flags: trend.py reads
 * all of them at every batch, which through the records would cost a line per binding. */
typedef struct {
    _Alignas(64) int64_t last_ts;  /* newest evaluated reading (ms) */
    int32_t head, live;            /* next ring slot to write; readings in the window */
    int32_t max_points, min_points;
    double mean_t, mean_v, ctt, ctv;  /* running moments of the window (t in s since origin) */
    uint8_t is_forecast;
    int8_t forecast_level, next_level;
    double window_s, direction, lowest, slope_per_min, last_value, sign, forecast_eta_s, next_eta_s;
    double limits[N_LEVELS];  /* the paired threshold's limits, NaN where undefined */
    double horizon_s;
} State;

static const RecordField STATE_FIELDS[] = {
    RECORD_FIELD(State, last_ts, "<i8"), RECORD_FIELD(State, head, "<i4"), RECORD_FIELD(State, live, "<i4"),
    RECORD_FIELD(State, max_points, "<i4"), RECORD_FIELD(State, min_points, "<i4"),
    RECORD_FIELD(State, mean_t, "<f8"), RECORD_FIELD(State, mean_v, "<f8"), RECORD_FIELD(State, ctt, "<f8"),
    RECORD_FIELD(State, ctv, "<f8"), RECORD_FIELD(State, is_forecast, "?"),
    RECORD_FIELD(State, forecast_level, "i1"), RECORD_FIELD(State, next_level, "i1"),
    RECORD_FIELD(State, window_s, "<f8"),
    RECORD_FIELD(State, direction, "<f8"), RECORD_FIELD(State, lowest, "<f8"),
    RECORD_FIELD(State, slope_per_min, "<f8"), RECORD_FIELD(State, last_value, "<f8"),
    RECORD_FIELD(State, sign, "<f8"), RECORD_FIELD(State, forecast_eta_s, "<f8"),
    RECORD_FIELD(State, next_eta_s, "<f8"), RECORD_FIELD(State, limits, "(4,)<f8"),
    RECORD_FIELD(State, horizon_s, "<f8"),
};

/* A ring slot: a reading's time and value, which are always read together. Exported as
 * READING. */
typedef struct {
    double t, v;
} Reading;

static const RecordField READING_FIELDS[] = {RECORD_FIELD(Reading, t, "<f8"), RECORD_FIELD(Reading, v, "<f8")};

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
static void refit(Moments *m, const Reading *ring, int64_t span, int64_t head) {
    int64_t first = head - m->n;
    if (first < 0) first += span;
    double sum_t = 0.0, sum_v = 0.0;
    for (int64_t i = 0, slot = first; i < m->n; i++, slot = slot + 1 == span ? 0 : slot + 1) {
        sum_t += ring[slot].t;
        sum_v += ring[slot].v;
    }
    m->mean_t = sum_t / m->n;
    m->mean_v = sum_v / m->n;
    double ctt = 0.0, ctv = 0.0;
    for (int64_t i = 0, slot = first; i < m->n; i++, slot = slot + 1 == span ? 0 : slot + 1) {
        double dt = ring[slot].t - m->mean_t;
        ctt += dt * dt;
        ctv += dt * (ring[slot].v - m->mean_v);
    }
    m->ctt = ctt;
    m->ctv = ctv;
}

static PyObject *advance(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs) {
    if (nargs != 11) {
        PyErr_SetString(PyExc_TypeError,
                        "advance(state, ring, origin_ms, capacity, binding, ts, value, statistic, hot, feed, fed)");
        return NULL;
    }
    int64_t origin_ms = PyLong_AsLongLong(args[2]);
    Py_ssize_t capacity = PyLong_AsSsize_t(args[3]);
    if (PyErr_Occurred()) return NULL;
    if (capacity < 1) {
        PyErr_SetString(PyExc_ValueError, "capacity: must be at least 1");
        return NULL;
    }
    Borrowed arrays = {0};
    State *state = borrow(&arrays, args[0], "state", 'r', sizeof(State), -1, WRITE);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    if (!arrays.failed && n > PY_SSIZE_T_MAX / (Py_ssize_t)sizeof(Reading) / capacity) {
        PyErr_SetString(PyExc_ValueError, "capacity: ring buffers too large");
        arrays.failed = 1;
    }
    Reading *ring = borrow(&arrays, args[1], "ring", 'r', sizeof(Reading), n * capacity, WRITE);
    const int32_t *binding = borrow(&arrays, args[4], "binding", 'i', 4, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[5], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[6], "value", 'f', 8, m, READ);
    double *statistic = borrow(&arrays, args[7], "statistic", 'f', 8, m, WRITE);
    uint8_t *hot = borrow(&arrays, args[8], "hot", 'b', 1, n, WRITE);
    uint8_t *feed = borrow(&arrays, args[9], "feed", 'b', 1, n, WRITE);
    int64_t *fed = borrow(&arrays, args[10], "fed", 'i', 8, m, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;

    /* The binding numbers come from the batch: all are checked before the first write, so a
     * wrong batch changes nothing. */
    for (Py_ssize_t i = 0; i < m; i++) {
        int64_t b = binding[i];
        if (b < -1 || b >= n) {
            PyErr_Format(PyExc_ValueError, "binding %lld outside -1..%zd", (long long)b, n - 1);
            return give_back(&arrays), NULL;
        }
        if (b < 0) statistic[i] = NAN;  /* no binding: not evaluated */
    }

    /* In the order given: `detectors.batching.bound_readings` groups a batch by channel, so a
     * binding's readings come together and, in a full batch, the bindings in the order of
     * the records, which the hardware prefetcher follows. */
    for (Py_ssize_t i = 0; i < m; i++) {
        if (binding[i] < 0) continue;
        int64_t b = binding[i];
        State *s = &state[b];
        if (ts[i] < s->last_ts) {
            /* Late: older than a reading already evaluated; not evaluated (no statistic). */
            statistic[i] = NAN;
            continue;
        }
        /* The ring's bounds come from the state, which only this loop changes (keeping
         * 0 <= head < span and 0 <= live <= span) after trend.py set them up: they are checked
         * here, as each reading takes its record, not in a pass of their own before the loop,
         * which in a full batch read every record twice (1 ms per 100,000 readings). A
         * corrupted record therefore stops the batch at its first reading, after the readings
         * before it were evaluated. */
        int64_t span = s->max_points;
        if (span < 1 || span > capacity || s->head < 0 || s->head >= span || s->live < 0 || s->live > span) {
            PyErr_Format(PyExc_ValueError, "binding %lld: ring of %lld slots (capacity %zd), head %d, live %d",
                         (long long)b, (long long)span, capacity, s->head, s->live);
            return give_back(&arrays), NULL;
        }
        /* ts - origin as numpy computes it: int64 arithmetic wrapping around, not undefined */
        double t = (double)(int64_t)((uint64_t)ts[i] - (uint64_t)origin_ms) / 1000.0, v = value[i];
        Reading *r = ring + b * capacity;
        Moments w = {s->live, s->mean_t, s->mean_v, s->ctt, s->ctv};
        s->last_ts = ts[i];

        /* Readings leave the window oldest first: in a full ring the one the new reading
         * overwrites, and any older than the window (seconds). */
        double lower = t - s->window_s;
        int64_t oldest;
        while (1) {
            oldest = s->head - w.n;
            if (oldest < 0) oldest += span;
            if (!(w.n == span || (w.n > 0 && r[oldest].t < lower))) break;
            leave(&w, r[oldest].t, r[oldest].v);
            if (w.n <= 1) {
                /* Down to one reading (or none): take it as it is, so no rounding residue
                 * outlives it. */
                int64_t newest = oldest + 1 == span ? 0 : oldest + 1;
                w.mean_t = w.n == 1 ? r[newest].t : 0.0;
                w.mean_v = w.n == 1 ? r[newest].v : 0.0;
                w.ctt = w.ctv = 0.0;
            }
        }
        /* The oldest reading of the window once the new one is in (itself in an empty one). */
        double oldest_t = w.n > 0 ? r[oldest].t : t;
        r[s->head].t = t;
        r[s->head].v = v;
        s->head = s->head + 1 == span ? 0 : s->head + 1;
        enter(&w, t, v);
        /* Every max_points readings (staggered by binding, to spread the work over rounds)
         * the moments are summed afresh, so the rounding of the running updates cannot
         * accumulate. */
        if (s->head == b % span) refit(&w, r, span, s->head);
        s->live = w.n;
        s->mean_t = w.mean_t;
        s->mean_v = w.mean_v;
        s->ctt = w.ctt;
        s->ctv = w.ctv;

        /* A slope needs min_points readings at two different times at least. */
        int enough = w.n >= s->min_points && oldest_t < t && w.ctt > 0;
        double slope_s = enough ? w.ctv / w.ctt : NAN;
        s->slope_per_min = slope_s * 60.0;
        s->last_value = v;
        double stat = slope_s * 60.0 * s->direction;

        if (s->is_forecast) {
            /* The highest level not yet reached whose eta is within the horizon, and the
             * lowest level not yet reached. Without a slope, or with one leading away from
             * the limits, there is neither (undefined limits are NaN: never pending). */
            int reach = 0, next = 0;
            double reach_eta = INFINITY, next_eta = INFINITY;
            if (enough && slope_s * s->sign > 0) {
                double fitted = w.mean_v + slope_s * (t - w.mean_t);
                for (int l = 0; l < N_LEVELS; l++) {
                    double limit = s->limits[l];
                    if (isnan(limit) || v * s->sign >= limit * s->sign) continue;  /* reached */
                    double eta = (limit - fitted) / slope_s;
                    if (!(eta >= 0)) eta = INFINITY;
                    if (next == 0) {
                        next = l + 1;
                        next_eta = eta;
                    }
                    if (eta <= s->horizon_s) {
                        reach = l + 1;
                        reach_eta = eta;
                    }
                }
            }
            s->forecast_level = (int8_t)reach;
            s->forecast_eta_s = reach_eta;
            s->next_level = (int8_t)next;
            s->next_eta_s = next_eta;
            stat = enough ? (double)reach : NAN;
        }
        statistic[i] = stat;
        /* Whether the binding's last finite statistic reached its lowest level; a binding
         * that did in this batch must be fed to the level machine. */
        if (isfinite(stat)) {
            hot[b] = stat >= s->lowest;
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
     "advance(state, ring, origin_ms, capacity, binding, ts, value, statistic, hot, feed, fed) -> int\n\n"
     "Append each reading to its binding's window (a binding's readings in time order; binding -1\n"
     "and readings older than the binding's last_ts are skipped, statistic NaN) and compute its\n"
     "statistic (slope per minute times the direction, or the forecast level; NaN without a slope)\n"
     "into `statistic`, updating the records `state` (layout STATE, one per binding) and `ring`\n"
     "(layout READING, `capacity` per binding) in place, and `hot` (whether a binding's last finite\n"
     "statistic reached its lowest level); marks in `feed` the bindings whose statistic reached it;\n"
     "writes to `fed` the positions of the readings of the bindings marked in `feed` and returns\n"
     "their count."},
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
    if (add_layout(mod, "STATE", STATE_FIELDS, sizeof STATE_FIELDS / sizeof *STATE_FIELDS, sizeof(State)) < 0 ||
        add_layout(mod, "READING", READING_FIELDS, sizeof READING_FIELDS / sizeof *READING_FIELDS,
                   sizeof(Reading)) < 0)
        return Py_DECREF(mod), NULL;
    return mod;
}
