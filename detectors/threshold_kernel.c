/* Graded levels with hysteresis and hold time on readings: the kernel of detectors.threshold.
 *
 * `evaluate` runs `level_step` (level_machine.h, a transcription of
 * detectors/threshold_reference.py) on a batch of readings already bound to bindings, in the
 * order given: each binding's readings must be in (ts, batch row) order, as
 * detectors.batching.bound_readings gives them. Its arguments are, in order (m = readings,
 * n = bindings, k = rule rows, c = capacity of the findings):
 *
 *   binding (m,) int32, -1 = the row has no binding (skipped); ts (m,) int64 epoch ms;
 *   value (m,) float64;
 *   rule (n,) int32 - rule row of each binding;
 *   limit (k * 4,) f8, clear (k * 4,) f8, above (k,) bool, hold_ms (k,) int64 - as in
 *     level_machine.h; reach (k,) f8 - the value from which the row raises some level: its
 *     lowest limit ("above") or its highest ("below");
 *   state, written: level (n,) int8, since (n * 4,) int64 binding-major, last_ts (n,) int64
 *     (newest ts evaluated; a reading older than it is late and skipped);
 *   findings, written, (c,) each: binding int32, ts int64, level_before int8, level_after
 *     int8, value f8, limit f8, started_at int64 - one row per change of level, in evaluation
 *     order;
 *
 * and it returns (consumed, found): it stops before a reading that could change a level when
 * the findings are full, so the caller continues with the readings from `consumed` on after
 * taking the `found` rows. Every binding number, rule row and level is checked before the
 * first reading is evaluated, so a bad argument raises ValueError and changes nothing.
 *
 * Most readings are quiet: their binding is at level 0 with no run in progress and they reach
 * no limit, so the candidate level is 0 and nothing but last_ts changes (every `since` is
 * already unset: a run at any level is also one at the lowest). Those are told apart without
 * a full step: a comparison against `reach`, and for a rule with a hold time a look at the
 * run's start. Without a hold a binding at level 0 has no run: a run confirms its level at
 * once. Only the binding's level, rule row and last_ts are then read, and the batch comes
 * grouped by channel (bound_readings), so the state is read in order.
 */
#include "kernel_buffers.h"
#include "level_machine.h"

#define N_ARGS 19

typedef struct {
    int32_t low, high;
} Range;

/* Least and greatest of n values (0 and -1 when there are none). */
static inline Range range_of(const int32_t *values, Py_ssize_t n) {
    int32_t low = n ? values[0] : 0, high = n ? values[0] : -1;
    for (Py_ssize_t i = 0; i < n; i++) {
        low = values[i] < low ? values[i] : low;
        high = values[i] > high ? values[i] : high;
    }
    return (Range){low, high};
}

/* Whether two buffers share a byte. */
static inline int overlap(const Py_buffer *a, const Py_buffer *b) {
    const char *a0 = a->buf, *b0 = b->buf;
    return a->len > 0 && b->len > 0 && a0 < b0 + b->len && b0 < a0 + a->len;
}

/* Whether binding b's rule row or level is outside its table. */
static inline int bad_binding(const int32_t *rule, const int8_t *level, Py_ssize_t k, Py_ssize_t b) {
    return ((uint64_t)(int64_t)rule[b] >= (uint64_t)k) | ((uint8_t)level[b] > N_LEVELS);
}

/* One step of the state machine, with its finding row if the level changed. Kept out of the
 * loop: most readings are quiet, and inlined it would crowd the loop's values out of the
 * registers. */
static __attribute__((noinline)) void step(const LevelRules *rules, int32_t r, LevelState *state, int32_t b,
                                           int64_t t, double v, Findings *out) {
    LevelChange change;
    if (level_step(rules, r, state, b, t, v, &change)) record_finding(out, b, t, v, &change);
}

/* The loop over m checked readings; returns how many it consumed (m unless the findings filled
 * up). The arrays do not overlap (numpy arrays of the detector and the batch): `restrict`
 * lets the compiler keep the pointers and quiet-path values in registers across the stores. */
static __attribute__((noinline)) Py_ssize_t run(Py_ssize_t m, const int32_t *restrict binding, const int64_t *restrict ts,
                      const double *restrict value, const int32_t *restrict rule, const double *restrict reach,
                      const LevelRules *rules, int8_t *restrict level, int64_t *restrict since,
                      int64_t *restrict last_ts, Findings *out) {
    LevelState state = {level, since};
    const uint8_t *restrict above = rules->above;
    const int64_t *restrict hold_ms = rules->hold_ms;
    Py_ssize_t i = 0;
    for (; i < m; i++) {
        const int32_t b = binding[i];
        if (b < 0) continue;
        const int64_t t = ts[i];
        if (t < last_ts[b]) continue; /* late: archived, not evaluated */
        const double v = value[i];
        const int32_t r = rule[b];
        const int quiet = level[b] == 0 && !(above[r] ? v >= reach[r] : v <= reach[r])
                          && (hold_ms[r] <= 0 || since[(int64_t)b * N_LEVELS] == NO_SINCE);
        if (!quiet) {
            if (out->count == out->capacity) break; /* this reading may need a row: the caller makes room */
            step(rules, r, &state, b, t, v, out);
        }
        last_ts[b] = t;
    }
    return i;
}

static PyObject *evaluate(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "evaluate() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    Borrowed arrays = {0};
    const int32_t *binding = borrow(&arrays, args[0], "binding", 'i', 4, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[2], "value", 'f', 8, m, READ);
    const int32_t *rule = borrow(&arrays, args[3], "rule", 'i', 4, -1, READ);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    const double *limit = borrow(&arrays, args[4], "limit", 'f', 8, -1, READ);
    Py_ssize_t k = arrays.failed ? 0 : borrowed_length(&arrays) / N_LEVELS;
    if (!arrays.failed && borrowed_length(&arrays) != k * N_LEVELS) {
        PyErr_Format(PyExc_ValueError, "limit: expected a multiple of %d elements, got %zd", N_LEVELS,
                     borrowed_length(&arrays));
        arrays.failed = 1;
    }
    const double *clear = borrow(&arrays, args[5], "clear", 'f', 8, k * N_LEVELS, READ);
    const uint8_t *above = borrow(&arrays, args[6], "above", 'b', 1, k, READ);
    const int64_t *hold_ms = borrow(&arrays, args[7], "hold_ms", 'i', 8, k, READ);
    const double *reach = borrow(&arrays, args[8], "reach", 'f', 8, k, READ);
    int8_t *level = borrow(&arrays, args[9], "level", 'i', 1, n, WRITE);
    int64_t *since = borrow(&arrays, args[10], "since", 'i', 8, n * N_LEVELS, WRITE);
    int64_t *last_ts = borrow(&arrays, args[11], "last_ts", 'i', 8, n, WRITE);
    Findings out = borrow_findings(&arrays, args + 12);
    if (arrays.failed) return give_back(&arrays), NULL;

    /* Everything the loop indexes with, checked before it writes anything. A level is checked
     * too: a clearing step reads the limit of the level it leaves. The rule row and level of
     * every binding are checked when the batch is not much smaller than the bindings: one
     * sequential pass instead of a random access per reading. The passes are min/max
     * reductions (the compiler vectorises them); the culprit is looked for when one fails. */
    if (n > INT32_MAX || k > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "more bindings or rule rows than int32 numbers");
        return give_back(&arrays), NULL;
    }
    /* The arrays read as indexes must not share memory with one the kernel writes, which
     * could change them after they were checked. */
    const Py_buffer *indexes[] = {&arrays.views[0], &arrays.views[3]};
    for (int i = 0; i < 2; i++) {
        for (int w = 9; w < N_ARGS; w++) {
            if (overlap(indexes[i], &arrays.views[w])) {
                PyErr_Format(PyExc_ValueError, "argument %d shares memory with argument %d", w, i ? 3 : 0);
                return give_back(&arrays), NULL;
            }
        }
    }
    const Range bindings = range_of(binding, m);
    if (bindings.low < -1 || bindings.high >= n) {
        Py_ssize_t i = 0;
        while (binding[i] >= -1 && binding[i] < n) i++;
        PyErr_Format(PyExc_ValueError, "binding[%zd] = %d outside -1..%zd", i, (int)binding[i], n - 1);
        return give_back(&arrays), NULL;
    }
    int bad = 0;
    if (m >= n / 8) {
        const Range rows = range_of(rule, n);
        const uint8_t *levels = (const uint8_t *)level;
        uint8_t top = 0;
        for (Py_ssize_t b = 0; b < n; b++) top = levels[b] > top ? levels[b] : top;
        bad = rows.low < 0 || rows.high >= k || top > N_LEVELS;
    } else {
        for (Py_ssize_t i = 0; i < m; i++) bad |= binding[i] >= 0 && bad_binding(rule, level, k, binding[i]);
    }
    if (bad) {
        Py_ssize_t b = 0;
        while (!bad_binding(rule, level, k, b)) b++;
        PyErr_Format(PyExc_ValueError, "binding %zd: rule row %d outside 0..%zd or level %d outside 0..%d", b,
                     (int)rule[b], k - 1, (int)level[b], N_LEVELS);
        return give_back(&arrays), NULL;
    }

    const LevelRules rules = {limit, clear, above, hold_ms};
    Py_ssize_t consumed = run(m, binding, ts, value, rule, reach, &rules, level, since, last_ts, &out);
    give_back(&arrays);
    return Py_BuildValue("(nn)", consumed, out.count);
}

static PyMethodDef methods[] = {
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL,
     "evaluate(binding, ts, value, rule, limit, clear, above, hold_ms, reach, level, since, last_ts, "
     "found_binding, found_ts, found_before, found_after, found_value, found_limit, found_started_at) "
     "-> (consumed, found): run the threshold state machine over bound readings."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "_threshold_kernel",
    .m_doc = "Per-reading loop of the threshold detector (see detectors.threshold).",
    .m_size = -1,
    .m_methods = methods,
};

PyMODINIT_FUNC PyInit__threshold_kernel(void) { return PyModule_Create(&module); }
