/* The change detector's per-reading arithmetic: warm-up, CUSUM or EWMA statistic, learning.
 *
 * `detectors.change` evaluates a batch round by round (one reading per binding in a round);
 * this module evaluates one round. The loop body is `ReferenceChangeDetector.evaluate`
 * (detectors/change_reference.py) operation for operation, in the same order and with the
 * same IEEE-754 double arithmetic (built with -ffp-contract=off: no fused multiply-add), so
 * the two agree bit for bit. max and min behave like Python's: the first argument unless
 * the second is strictly larger (smaller), so that e.g. max(0.0, -0.0) is 0.0 as in the
 * reference.
 *
 * The level is decided by the Python LevelMachine between rounds. Learning needs it, but only
 * through "level 0 before and after the reading": a statistic below the rule's lowest level
 * cannot raise one, so a binding at level 0 stays there, and the reading can be learned here
 * already. The round reports which of its readings can change the LevelMachine's state (the
 * others leave every level and run as they are); restarting a chart once its alarm cleared is
 * left to the caller, which sees the LevelMachine's findings.
 *
 * Binding numbers come from the batch: every one is checked against the state arrays before
 * the loop starts, and a bad one raises ValueError with nothing changed.
 */
#include "kernel_buffers.h"

#include <math.h>

enum { BOTH = 0, UP = 1, DOWN = 2 };

static inline double py_max(double a, double b) { return b > a ? b : a; }
static inline double py_min(double a, double b) { return b < a ? b : a; }

#define N_ARGS 26

PyDoc_STRVAR(evaluate_doc,
"evaluate(binding, ts, value, fed, sigma_floor_rel, sigma_floor_abs,\n"
"         is_cusum, direction, k, lam, ewma_scale, warmup, learn, lowest, cap,\n"
"         rule, count, mean, var, upper, lower, ewma, stat, last_value, level, last_ts) -> int\n"
"\n"
"Evaluate one round: the reading value[i] at ts[i] of binding[i] (distinct bindings).\n"
"\n"
"Round arrays, (m,) each: binding intp, ts int64, value float64; out: fed intp, whose first\n"
"n entries (n is returned) are the positions i whose reading can change the binding's level\n"
"state, to be fed to the LevelMachine with the statistic stat[binding[i]]. Parameters,\n"
"(rules,) each: is_cusum bool, direction int8, k, lam, ewma_scale float64, warmup int32,\n"
"learn, lowest, cap float64. Per binding: rule int32 (its row in the parameters); state,\n"
"updated: count int32, mean, var, upper, lower, ewma, stat (NaN during warm-up), last_value\n"
"float64; level int8 (read: the confirmed level before the reading); last_ts int64.");

static PyObject *evaluate(PyObject *module, PyObject *const *args, Py_ssize_t nargs) {
    (void)module;
    if (nargs != N_ARGS) {
        PyErr_Format(PyExc_TypeError, "evaluate() takes %d arguments (%zd given)", N_ARGS, nargs);
        return NULL;
    }
    double sigma_floor_rel = PyFloat_AsDouble(args[4]);
    double sigma_floor_abs = PyFloat_AsDouble(args[5]);
    if (PyErr_Occurred()) return NULL;

    Borrowed arrays = {0};
    /* The round. */
    const int64_t *binding = borrow(&arrays, args[0], "binding", 'i', 8, -1, READ);
    Py_ssize_t m = arrays.failed ? 0 : borrowed_length(&arrays);
    const int64_t *ts = borrow(&arrays, args[1], "ts", 'i', 8, m, READ);
    const double *value = borrow(&arrays, args[2], "value", 'f', 8, m, READ);
    int64_t *fed = borrow(&arrays, args[3], "fed", 'i', 8, m, WRITE);
    /* Parameters per rule; the first fixes the number of rules. */
    const uint8_t *is_cusum = borrow(&arrays, args[6], "is_cusum", 'b', 1, -1, READ);
    Py_ssize_t n_rules = arrays.failed ? 0 : borrowed_length(&arrays);
    const int8_t *direction = borrow(&arrays, args[7], "direction", 'i', 1, n_rules, READ);
    const double *k = borrow(&arrays, args[8], "k", 'f', 8, n_rules, READ);
    const double *lam = borrow(&arrays, args[9], "lam", 'f', 8, n_rules, READ);
    const double *ewma_scale = borrow(&arrays, args[10], "ewma_scale", 'f', 8, n_rules, READ);
    const int32_t *warmup = borrow(&arrays, args[11], "warmup", 'i', 4, n_rules, READ);
    const double *learn = borrow(&arrays, args[12], "learn", 'f', 8, n_rules, READ);
    const double *lowest = borrow(&arrays, args[13], "lowest", 'f', 8, n_rules, READ);
    const double *cap = borrow(&arrays, args[14], "cap", 'f', 8, n_rules, READ);
    /* Per binding; the first fixes the number of bindings. */
    const int32_t *rule = borrow(&arrays, args[15], "rule", 'i', 4, -1, READ);
    Py_ssize_t n = arrays.failed ? 0 : borrowed_length(&arrays);
    int32_t *count = borrow(&arrays, args[16], "count", 'i', 4, n, WRITE);
    double *mean = borrow(&arrays, args[17], "mean", 'f', 8, n, WRITE);
    double *var = borrow(&arrays, args[18], "var", 'f', 8, n, WRITE);
    double *upper = borrow(&arrays, args[19], "upper", 'f', 8, n, WRITE);
    double *lower = borrow(&arrays, args[20], "lower", 'f', 8, n, WRITE);
    double *ewma = borrow(&arrays, args[21], "ewma", 'f', 8, n, WRITE);
    double *stat = borrow(&arrays, args[22], "stat", 'f', 8, n, WRITE);
    double *last_value = borrow(&arrays, args[23], "last_value", 'f', 8, n, WRITE);
    const int8_t *level = borrow(&arrays, args[24], "level", 'i', 1, n, READ);
    int64_t *last_ts = borrow(&arrays, args[25], "last_ts", 'i', 8, n, WRITE);
    if (arrays.failed) return give_back(&arrays), NULL;

    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t b = binding[i];
        if (b < 0 || b >= n || rule[b] < 0 || rule[b] >= n_rules) {
            PyErr_Format(PyExc_ValueError, "binding[%zd] = %lld: not a binding of a rule (%zd bindings, %zd rules)",
                         i, (long long)b, n, n_rules);
            return give_back(&arrays), NULL;
        }
    }

    Py_ssize_t n_fed = 0;
    for (Py_ssize_t i = 0; i < m; i++) {
        const int64_t b = binding[i];
        const int32_t r = rule[b];
        const double x = value[i];
        const double previous = stat[b];
        last_value[b] = x;
        last_ts[b] = ts[i];

        if (count[b] < warmup[r]) {
            /* Welford (1962): running mean and sum of squared deviations; no verdict yet. */
            count[b] += 1;
            const double delta = x - mean[b];
            mean[b] = mean[b] + delta / (double)count[b];
            var[b] = var[b] + delta * (x - mean[b]);
            if (count[b] == warmup[r]) {
                var[b] = var[b] / (double)(count[b] - 1);  /* sample variance; warmup >= 2 */
                ewma[b] = mean[b];
            }
            stat[b] = NAN;
            continue;
        }

        const double mu = mean[b];
        const double sigma = py_max(sqrt(var[b]), py_max(sigma_floor_rel * fabs(mu), sigma_floor_abs));
        double up, down;
        if (is_cusum[r]) {
            const double z = (x - mu) / sigma;
            upper[b] = py_min(py_max(0.0, upper[b] + z - k[r]), cap[r]);
            lower[b] = py_min(py_max(0.0, lower[b] - z - k[r]), cap[r]);
            up = upper[b];
            down = lower[b];
        } else {
            ewma[b] = lam[r] * x + (1.0 - lam[r]) * ewma[b];
            const double d = (ewma[b] - mu) / (sigma * ewma_scale[r]);
            up = py_max(d, 0.0);
            down = py_max(-d, 0.0);
        }
        const double s = direction[r] == UP ? up : direction[r] == DOWN ? down : py_max(up, down);
        stat[b] = s;

        /* With level 0, a statistic below the lowest level and none pending from the previous
         * reading, the LevelMachine would change nothing: nearly every reading in steady
         * operation. */
        if (level[b] > 0 || s >= lowest[r] || previous >= lowest[r]) fed[n_fed++] = i;
        if (level[b] == 0 && s < lowest[r]) {
            /* A normal reading (level 0 before and, with this statistic, after): the baseline
             * follows it with an exponentially weighted mean and variance. */
            const double diff = x - mu;
            const double incr = learn[r] * diff;
            mean[b] = mu + incr;
            var[b] = (1.0 - learn[r]) * (var[b] + diff * incr);
        }
    }
    give_back(&arrays);
    return PyLong_FromSsize_t(n_fed);
}

static PyMethodDef methods[] = {
    {"evaluate", (PyCFunction)(void (*)(void))evaluate, METH_FASTCALL, evaluate_doc},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef change_kernel = {
    PyModuleDef_HEAD_INIT, "detectors._change_kernel",
    "Per-reading arithmetic of the change detector (see detectors.change).", -1, methods,
    NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC PyInit__change_kernel(void) { return PyModule_Create(&change_kernel); }
