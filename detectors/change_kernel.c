/* The change detector's per-reading loop: warm-up, CUSUM or EWMA statistic, level, learning.
 *
 * `detectors.change` evaluates a whole batch with one call: the readings come as
 * `detectors.batching.bound_readings` gives them (each binding's in (ts, row) order, binding
 * -1 for rows without one) and are evaluated one after another. The statistic is
 * `ReferenceChangeDetector.evaluate` (detectors/change_reference.py) operation for operation,
 * in the same order and with the same IEEE-754 double arithmetic (built with
 * -ffp-contract=off: no fused multiply-add), so the two agree bit for bit. max and min behave
 * like Python's: the first argument unless the second is strictly larger (smaller), so that
 * e.g. max(0.0, -0.0) is 0.0 as in the reference.
 *
 * The levels on the statistic are the threshold state machine of level_machine.h, run inside
 * the loop because learning depends on the level after each reading: a reading is learned
 * only when the level was 0 before it and is 0 after it, and a reading that clears an alarm
 * restarts the chart. A statistic that is not finite (NaN during warm-up) gets no verdict and
 * leaves the level state as it is.
 *
 * Most readings in steady operation are quiet: level 0, a statistic below every limit, and
 * the previous reading's statistic finite and below every limit too. The state machine would
 * change nothing for them (no run can be in progress: the previous reading ended any, or
 * would have raised the level), so they skip it.
 *
 * A binding's state is one record (`ChangeState`, exported as the layout STATE for
 * `detectors.records`): a small batch spread over many bindings touches each binding's state
 * at random, and a record costs its two cache lines where separate arrays cost a line each.
 * The binding's level is in the record too; only the per-level run starts (`since`), which the
 * quiet readings never touch, stay in their own array. level_machine.h indexes level[b] and
 * since[b * 4], so the kernel hands it a one-binding LevelState (b = 0) pointing into the
 * binding's record and since row.
 *
 * Binding numbers come from the batch: every one is checked before the loop starts, and a bad
 * one raises ValueError with nothing changed. A record's rule row is checked when a reading
 * takes the record, so a corrupted one raises ValueError before any parameter is read out of
 * bounds.
 */
#include "kernel_buffers.h"
#include "level_machine.h"

#include <math.h>

enum { BOTH = 0, UP = 1, DOWN = 2 };

static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }

/* A binding's state and its rule row, in the order of use by a quiet reading (rule and
 * warm-up count first, the previous statistic, the baseline, the chart); 80 bytes, so a record
 * of a 16-byte aligned array spans exactly two cache lines. */
typedef struct {
    int64_t last_ts;   /* newest ts evaluated */
    int32_t rule;      /* row of the binding's rule in the parameters */
    int32_t count;     /* warm-up readings so far; == warmup once the baseline is formed */
    double stat;       /* statistic of the latest evaluated reading, NaN during warm-up */
    double mean;       /* baseline mean */
    double var;        /* Welford's M2 during warm-up, then the baseline variance */
    double upper;      /* CUSUM S+ */
    double lower;      /* CUSUM S- */
    double ewma;       /* EWMA of the readings */
    double last_value; /* latest evaluated reading */
    int8_t level;      /* confirmed level, 0 = none */
} ChangeState;

static const RecordField STATE_FIELDS[] = {
    RECORD_FIELD(ChangeState, last_ts, "<i8"), RECORD_FIELD(ChangeState, rule, "<i4"),
    RECORD_FIELD(ChangeState, count, "<i4"), RECORD_FIELD(ChangeState, stat, "<f8"),
    RECORD_FIELD(ChangeState, mean, "<f8"), RECORD_FIELD(ChangeState, var, "<f8"),
    RECORD_FIELD(ChangeState, upper, "<f8"), RECORD_FIELD(ChangeState, lower, "<f8"),
    RECORD_FIELD(ChangeState, ewma, "<f8"), RECORD_FIELD(ChangeState, last_value, "<f8"),
    RECORD_FIELD(ChangeState, level, "i1"),
};

#define N_ARGS 27

PyDoc_STRVAR(evaluate_doc,
"evaluate(binding, ts, value,\n"
"         found_binding, found_ts, found_before, found_after, found_value, found_limit, found_started_at,\n"
"         sigma_floor_rel, sigma_floor_abs,\n"
"         is_cusum, direction, k, lam, ewma_scale, warmup, learn, lowest, cap,\n"
"         limit, clear, above, hold_ms,\n"
"         state, since) -> int\n"
"\n"
"Evaluate a batch: the reading value[i] at ts[i] of binding[i], in the order given (each\n"
"binding's readings in (ts, row) order); binding -1 is no binding and a reading older than its\n"
"binding's last_ts is late, both skipped.\n"
"\n"
"Readings, (m,) each: binding int32, ts int64, value float64. Out, (m,) each: the finding\n"
"rows in evaluation order, of which the first n are written (n is returned): found_binding\n"
"int32, found_ts int64, found_before, found_after int8, found_value (the statistic),\n"
"found_limit float64, found_started_at int64. Parameters, (rules,) each: is_cusum bool,\n"
"direction int8, k, lam, ewma_scale float64, warmup int32, learn, lowest (the lowest limit),\n"
"cap (the highest limit) float64; levels as in level_machine.h: limit, clear (rules * 4)\n"
"float64, above bool, hold_ms int64. Per binding, updated: state, (bindings,) records of the\n"
"layout STATE (its rule row, the warm-up count, baseline, chart, statistic, latest reading and\n"
"ts, level); since (bindings * 4) int64.");

static PyObject *evaluate(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "evaluate() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    double sigma_floor_rel = PyFloat_AsDouble(args[10]);
    double sigma_floor_abs = PyFloat_AsDouble(args[11]);
    if (PyErr_Occurred()) return NULL;

    Borrowed arrays = {0};
    /* The readings; the first fixes their number. */
    const int32_t *binding = borrow(&arrays, args[0], "binding", 'i', 4, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[2], "value", 'f', 8, m, READ);
    /* Out: room for a finding per reading. */
    Findings found = borrow_findings(&arrays, args + 3);
    if (!arrays.failed && found.capacity != m) {
        PyErr_Format(PyExc_ValueError, "found_binding: expected %zd elements, got %zd", m, found.capacity);
        arrays.failed = 1;
    }
    /* Parameters per rule; the first fixes the number of rules. */
    const uint8_t *is_cusum = borrow(&arrays, args[12], "is_cusum", 'b', 1, -1, READ);
    Py_ssize_t n_rules = arrays.failed ? 0 : borrowed_length(&arrays);
    const int8_t *direction = borrow(&arrays, args[13], "direction", 'i', 1, n_rules, READ);
    const double *k = borrow(&arrays, args[14], "k", 'f', 8, n_rules, READ);
    const double *lam = borrow(&arrays, args[15], "lam", 'f', 8, n_rules, READ);
    const double *ewma_scale = borrow(&arrays, args[16], "ewma_scale", 'f', 8, n_rules, READ);
    const int32_t *warmup = borrow(&arrays, args[17], "warmup", 'i', 4, n_rules, READ);
    const double *learn = borrow(&arrays, args[18], "learn", 'f', 8, n_rules, READ);
    const double *lowest = borrow(&arrays, args[19], "lowest", 'f', 8, n_rules, READ);
    const double *cap = borrow(&arrays, args[20], "cap", 'f', 8, n_rules, READ);
    LevelRules rules;
    rules.limit = borrow(&arrays, args[21], "limit", 'f', 8, n_rules * N_LEVELS, READ);
    rules.clear = borrow(&arrays, args[22], "clear", 'f', 8, n_rules * N_LEVELS, READ);
    rules.above = borrow(&arrays, args[23], "above", 'b', 1, n_rules, READ);
    rules.hold_ms = borrow(&arrays, args[24], "hold_ms", 'i', 8, n_rules, READ);
    /* Per binding; the records fix the number of bindings. */
    ChangeState *state = borrow(&arrays, args[25], "state", 'r', sizeof(ChangeState), -1, WRITE);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    int64_t *since = borrow(&arrays, args[26], "since", 'i', 8, n * N_LEVELS, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;

    /* The binding numbers come from the batch: all are checked before the first write, so a
     * wrong batch changes nothing. */
    for (Py_ssize_t i = 0; i < m; i++) {
        const int32_t b = binding[i];
        if (b < -1 || b >= n) {
            PyErr_Format(PyExc_ValueError, "binding[%zd] = %ld: not a binding (%zd bindings)", i, (long)b, n);
            return give_back(&arrays), NULL;
        }
    }

    for (Py_ssize_t i = 0; i < m; i++) {
        const int32_t b = binding[i];
        if (b < 0) continue;  /* a row of a channel without a binding */
        ChangeState *st = &state[b];
        const int64_t t = ts[i];
        if (t < st->last_ts) continue;  /* late: archived elsewhere, not evaluated */
        /* The rule row comes from the record, which change.py set up and nothing else writes:
         * it is checked as the reading takes the record (a pass of its own before the loop read
         * every record twice in a full batch). A corrupted record stops the batch here, after
         * the readings before it were evaluated. */
        const int32_t r = st->rule;
        if (r < 0 || r >= n_rules) {
            PyErr_Format(PyExc_ValueError, "binding %ld: rule row %ld is not one of the %zd rules", (long)b, (long)r,
                         n_rules);
            return give_back(&arrays), NULL;
        }
        const double x = value[i];
        const double previous = st->stat;
        st->last_value = x;
        st->last_ts = t;

        if (st->count < warmup[r]) {
            /* Welford (1962): running mean and sum of squared deviations; no verdict yet. */
            st->count += 1;
            const double delta = x - st->mean;
            st->mean = st->mean + delta / (double)st->count;
            st->var = st->var + delta * (x - st->mean);
            if (st->count == warmup[r]) {
                st->var = st->var / (double)(st->count - 1);  /* sample variance; warmup >= 2 */
                st->ewma = st->mean;
            }
            st->stat = NAN;
            continue;
        }

        const double mu = st->mean;
        const double sigma = py_max(sqrt(st->var), py_max(sigma_floor_rel * fabs(mu), sigma_floor_abs));
        double up, down;
        if (is_cusum[r]) {
            const double z = (x - mu) / sigma;
            st->upper = py_min(py_max(0.0, st->upper + z - k[r]), cap[r]);
            st->lower = py_min(py_max(0.0, st->lower - z - k[r]), cap[r]);
            up = st->upper;
            down = st->lower;
        } else {
            st->ewma = lam[r] * x + (1.0 - lam[r]) * st->ewma;
            const double d = (st->ewma - mu) / (sigma * ewma_scale[r]);
            up = py_max(d, 0.0);
            down = py_max(-d, 0.0);
        }
        const double s = direction[r] == UP ? up : direction[r] == DOWN ? down : py_max(up, down);
        st->stat = s;

        const int before = st->level;
        const int quiet = before == 0 && s < lowest[r] && previous < lowest[r];
        if (!quiet && isfinite(s)) {
            LevelState levels = {&st->level, since + (Py_ssize_t)b * N_LEVELS};  /* binding 0 of its own */
            LevelChange change;
            if (level_step(&rules, r, &levels, 0, t, s, &change)) record_finding(&found, b, t, s, &change);
        }
        const int after = st->level;
        if (before == 0 && after == 0 && s < lowest[r]) {
            /* A normal reading: the baseline follows it with an exponentially weighted mean
             * and variance. */
            const double diff = x - mu;
            const double incr = learn[r] * diff;
            st->mean = mu + incr;
            st->var = (1.0 - learn[r]) * (st->var + diff * incr);
        }
        if (before > 0 && after == 0) {
            /* The alarm cleared: restart the chart. */
            st->upper = st->lower = 0.0;
            st->ewma = st->mean;
        }
    }
    give_back(&arrays);
    return PyLong_FromSsize_t(found.count);
}

static PyMethodDef methods[] = {
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL, evaluate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef change_kernel = {
    PyModuleDef_HEAD_INIT, "detectors._change_kernel",
    "The change detector's per-reading loop (see detectors.change).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__change_kernel(void) {
    PyObject *module = PyModule_Create(&change_kernel);
    if (module == NULL) return NULL;
    if (add_layout(module, "STATE", STATE_FIELDS, (int)(sizeof STATE_FIELDS / sizeof STATE_FIELDS[0]),
                   sizeof(ChangeState)) < 0) {
        Py_DECREF(module);
        return NULL;
    }
    return module;
}
