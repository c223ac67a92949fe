/* The fast path's JSON parser: plain telemetry payloads straight into (channel, ts, value) rows.
 *
 * Almost every message is a plain CONTRACT §4 payload: an object of sensor id -> reading object
 * (or array of them), each reading object {"ts": integer, "values": {metric: number}}. This
 * parser accepts only a strict subset of that shape and hands back everything else, whole, to
 * the precise decoder (ingest/decode.py), which knows every rule and every rejection reason:
 *
 * - a document is JSON whitespace, one object, whitespace, end;
 * - keys (sensor ids, "ts", "values", metric names) are strings without escapes or control
 *   bytes; every one must match a known name byte for byte, so an accepted document is valid
 *   UTF-8 without being checked for it;
 * - a sensor is one of the gateway's own, and appears once per message; a metric is declared
 *   for the sensor, and appears once per "values" object (duplicated keys are handed back:
 *   which occurrence counts is the precise decoder's decision);
 * - a reading object has "values" (a non-empty object) and optionally "ts" (a JSON integer
 *   without sign, at most 2**62; missing is written as -1, for the caller to replace by the
 *   arrival time), nothing else: a waveform block ("dt") is handed back;
 * - a value is a strict JSON number of at most 64 characters with a finite float64 value,
 *   correctly rounded (exact fast path when both mantissa and power of ten are exact, else
 *   strtod in the C locale); the integer literal -0 is +0.0, as msgspec decodes it.
 *
 * Accepting means producing exactly the readings msgspec's typed decoding produced before this
 * parser; handing back is always safe. Timestamps are not checked against the arrival window
 * here: the caller does that for the whole group with numpy.
 *
 * The sensor table (gateway's sensor id -> metric -> channel) is built once per gateway into an
 * open-addressing hash table held by a capsule. Duplicate keys are found with "seen at stamp k"
 * marks in the table, so one table is used by one parse call at a time: a call that finds a
 * table in use by another thread hands that table's messages back. */
#include "../detectors/kernel_buffers.h"

#include <locale.h>
#include <math.h>
#include <stdlib.h>

#define TABLE_CAPSULE "ingest._payload_parser.Table"
#define MAX_NUMBER_CHARS 64
#define MAX_TS ((uint64_t)1 << 62)
#define MAX_NAME_BYTES (1 << 20)

typedef struct {
    size_t name;        /* offset in the pool */
    uint32_t name_len;
    int32_t channel;
    uint64_t seen;      /* stamp of the last "values" object that named the metric */
} Metric;

typedef struct {
    size_t id;          /* offset in the pool */
    uint32_t id_len;
    uint32_t hash;
    size_t first_metric;
    size_t n_metrics;
    uint64_t seen;      /* stamp of the last message that named the sensor */
} Sensor;

typedef struct {
    Sensor *sensors;
    size_t n_sensors;
    Metric *metrics;
    int32_t *slots;     /* sensor index or -1; at most half full, so a probe always ends */
    size_t mask;
    char *pool;
    uint64_t clock;     /* the last stamp handed out */
    uint64_t owner;     /* the parse call using the table, 0 when none; changed with the GIL held */
} Table;

static locale_t c_locale;
static uint64_t last_call;  /* changed with the GIL held */

static inline uint32_t hash_step(uint32_t hash, unsigned char c) { return (hash ^ c) * 16777619u; }
#define HASH_SEED 2166136261u  /* FNV-1a */

static void free_table(Table *table) {
    if (table == NULL) return;
    free(table->sensors);
    free(table->metrics);
    free(table->slots);
    free(table->pool);
    free(table);
}

static void table_capsule_destructor(PyObject *capsule) {
    free_table(PyCapsule_GetPointer(capsule, TABLE_CAPSULE));
}

/* ---------------------------------------------------------------- building a table -- */

typedef struct {
    char *data;
    size_t len, cap;
} Pool;

/* Appends `len` bytes; returns their offset, or (size_t)-1 with MemoryError set. */
static size_t pool_add(Pool *pool, const char *bytes, size_t len) {
    if (pool->len + len > pool->cap) {
        size_t cap = pool->cap ? pool->cap : 256;
        while (cap < pool->len + len) cap *= 2;
        char *grown = realloc(pool->data, cap);
        if (grown == NULL) {
            PyErr_NoMemory();
            return (size_t)-1;
        }
        pool->data = grown;
        pool->cap = cap;
    }
    memcpy(pool->data + pool->len, bytes, len);
    pool->len += len;
    return pool->len - len;
}

/* The UTF-8 bytes of a str key, or NULL with TypeError/ValueError set. */
static const char *name_bytes(PyObject *name, const char *what, Py_ssize_t *len) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "%s must be str, got %.100s", what, Py_TYPE(name)->tp_name);
        return NULL;
    }
    const char *bytes = PyUnicode_AsUTF8AndSize(name, len);
    if (bytes != NULL && *len > MAX_NAME_BYTES) {
        PyErr_Format(PyExc_ValueError, "%s is longer than %d bytes", what, MAX_NAME_BYTES);
        return NULL;
    }
    return bytes;
}

static uint32_t hash_bytes(const char *bytes, size_t len) {
    uint32_t hash = HASH_SEED;
    for (size_t i = 0; i < len; i++) hash = hash_step(hash, (unsigned char)bytes[i]);
    return hash;
}

/* table(sensors: dict[str, dict[str, int]]) -> capsule */
static PyObject *table(PyObject *self, PyObject *sensors) {
    (void)self;
    if (!PyDict_Check(sensors)) {
        PyErr_Format(PyExc_TypeError, "table(sensors): expected a dict of sensor id -> {metric: channel}, got %.100s",
                     Py_TYPE(sensors)->tp_name);
        return NULL;
    }
    /* Snapshots: nothing below can change what is iterated. */
    PyObject *items = PyDict_Items(sensors);
    if (items == NULL) return NULL;
    Py_ssize_t n_sensors = PyList_GET_SIZE(items);
    Table *t = calloc(1, sizeof(Table));
    Pool pool = {0};
    size_t n_metrics = 0, metrics_cap = 0;
    if (t == NULL) goto no_memory;
    t->sensors = calloc(n_sensors ? (size_t)n_sensors : 1, sizeof(Sensor));
    size_t slots = 2;
    while (slots < 2 * (size_t)n_sensors) slots *= 2;
    t->slots = malloc(slots * sizeof(int32_t));
    if (t->sensors == NULL || t->slots == NULL) goto no_memory;
    if (n_sensors > INT32_MAX / 2) {
        PyErr_SetString(PyExc_ValueError, "table(sensors): too many sensors");
        goto fail;
    }
    t->mask = slots - 1;
    for (size_t s = 0; s < slots; s++) t->slots[s] = -1;
    for (Py_ssize_t i = 0; i < n_sensors; i++) {
        PyObject *item = PyList_GET_ITEM(items, i);
        PyObject *id = PyTuple_GET_ITEM(item, 0), *channels = PyTuple_GET_ITEM(item, 1);
        Py_ssize_t id_len;
        const char *id_bytes = name_bytes(id, "a sensor id", &id_len);
        if (id_bytes == NULL) goto fail;
        if (!PyDict_Check(channels)) {
            PyErr_Format(PyExc_TypeError, "sensor %R: expected a dict of metric -> channel, got %.100s", id,
                         Py_TYPE(channels)->tp_name);
            goto fail;
        }
        PyObject *metric_items = PyDict_Items(channels);
        if (metric_items == NULL) goto fail;
        Sensor *sensor = &t->sensors[i];
        sensor->id = pool_add(&pool, id_bytes, (size_t)id_len);
        sensor->id_len = (uint32_t)id_len;
        sensor->hash = hash_bytes(id_bytes, (size_t)id_len);
        sensor->first_metric = n_metrics;
        sensor->n_metrics = (size_t)PyList_GET_SIZE(metric_items);
        if (sensor->id == (size_t)-1) {
            Py_DECREF(metric_items);
            goto fail;
        }
        if (n_metrics + sensor->n_metrics > metrics_cap) {
            size_t cap = metrics_cap ? metrics_cap : 64;
            while (cap < n_metrics + sensor->n_metrics) cap *= 2;
            Metric *grown = realloc(t->metrics, cap * sizeof(Metric));
            if (grown == NULL) {
                Py_DECREF(metric_items);
                goto no_memory;
            }
            t->metrics = grown;
            metrics_cap = cap;
        }
        for (size_t m = 0; m < sensor->n_metrics; m++) {
            PyObject *pair = PyList_GET_ITEM(metric_items, m);
            PyObject *metric_name = PyTuple_GET_ITEM(pair, 0), *channel = PyTuple_GET_ITEM(pair, 1);
            Py_ssize_t name_len;
            const char *name = name_bytes(metric_name, "a metric name", &name_len);
            long long number = -1;
            if (name != NULL) {
                if (!PyLong_Check(channel) || PyBool_Check(channel)) {
                    PyErr_Format(PyExc_TypeError, "sensor %R, metric %R: the channel must be int, got %.100s", id,
                                 metric_name, Py_TYPE(channel)->tp_name);
                    name = NULL;
                } else {
                    number = PyLong_AsLongLong(channel);
                    if (number < 0 || number > INT32_MAX) {
                        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
                            PyErr_Clear();
                            PyErr_Format(PyExc_ValueError, "sensor %R, metric %R: channel %R is not in 0..2**31-1",
                                         id, metric_name, channel);
                        }
                        name = NULL;
                    }
                }
            }
            Metric *metric = &t->metrics[n_metrics + m];
            if (name != NULL) metric->name = pool_add(&pool, name, (size_t)name_len);
            if (name == NULL || metric->name == (size_t)-1) {
                Py_DECREF(metric_items);
                goto fail;
            }
            metric->name_len = (uint32_t)name_len;
            metric->channel = (int32_t)number;
            metric->seen = 0;
        }
        Py_DECREF(metric_items);
        n_metrics += sensor->n_metrics;
        size_t slot = sensor->hash & t->mask;
        while (t->slots[slot] >= 0) slot = (slot + 1) & t->mask;
        t->slots[slot] = (int32_t)i;
    }
    t->n_sensors = (size_t)n_sensors;
    t->pool = pool.data;
    Py_DECREF(items);
    PyObject *capsule = PyCapsule_New(t, TABLE_CAPSULE, table_capsule_destructor);
    if (capsule == NULL) free_table(t);
    return capsule;
no_memory:
    PyErr_NoMemory();
fail:
    free(pool.data);
    free_table(t);
    Py_DECREF(items);
    return NULL;
}

/* ---------------------------------------------------------------------- parsing -- */

typedef struct {
    int32_t *channel;
    int64_t *ts;
    double *value;
    Py_ssize_t cap;
} Rows;

static inline int is_ws(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
static inline int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static inline const unsigned char *skip_ws(const unsigned char *p, const unsigned char *end) {
    while (p < end && is_ws(*p)) p++;
    return p;
}

/* After a member of an object or an element of an array: 1 with *p on the next one (past the
 * ','), 0 with *p past `close`, or -1 when neither follows. */
static inline int next_item(const unsigned char **p, const unsigned char *end, unsigned char close) {
    const unsigned char *q = skip_ws(*p, end);
    if (q < end && *q == ',') {
        *p = skip_ws(q + 1, end);
        return 1;
    }
    if (q < end && *q == close) {
        *p = q + 1;
        return 0;
    }
    return -1;
}

/* With p just after an opening quote: the closing quote, or NULL for an unterminated key or
 * one with an escape or a control byte. */
static inline const unsigned char *scan_key(const unsigned char *p, const unsigned char *end, uint32_t *hash) {
    uint32_t h = HASH_SEED;
    for (; p < end; p++) {
        unsigned char c = *p;
        if (c == '"') {
            *hash = h;
            return p;
        }
        if (c == '\\' || c < 0x20) return NULL;
        h = hash_step(h, c);
    }
    return NULL;
}

static Sensor *find_sensor(const Table *t, const unsigned char *id, size_t len, uint32_t hash) {
    for (size_t slot = hash & t->mask;; slot = (slot + 1) & t->mask) {
        int32_t s = t->slots[slot];
        if (s < 0) return NULL;
        Sensor *sensor = &t->sensors[s];
        if (sensor->hash == hash && sensor->id_len == len && memcmp(t->pool + sensor->id, id, len) == 0)
            return sensor;
    }
}

static Metric *find_metric(const Table *t, const Sensor *sensor, const unsigned char *name, size_t len) {
    Metric *metric = &t->metrics[sensor->first_metric];
    for (size_t m = 0; m < sensor->n_metrics; m++, metric++)
        if (metric->name_len == len && memcmp(t->pool + metric->name, name, len) == 0) return metric;
    return NULL;
}

static const double exact_powers[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                      1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A strict JSON number at p with a finite value: returns its end, or NULL. */
static const unsigned char *parse_number(const unsigned char *p, const unsigned char *end, double *out) {
    const unsigned char *start = p;
    int negative = 0, plain_integer = 1, inexact = 0;
    uint64_t mantissa = 0;
    int64_t exponent = 0;
    if (p < end && *p == '-') {
        negative = 1;
        p++;
    }
    if (p >= end) return NULL;
    if (*p == '0') {
        p++;
    } else if (*p >= '1' && *p <= '9') {
        for (; p < end && is_digit(*p); p++) {
            if (mantissa < 100000000000000000ULL) mantissa = mantissa * 10 + (uint64_t)(*p - '0');
            else inexact = 1;
        }
    } else {
        return NULL;
    }
    if (p < end && *p == '.') {
        plain_integer = 0;
        p++;
        if (p >= end || !is_digit(*p)) return NULL;
        for (; p < end && is_digit(*p); p++) {
            if (mantissa < 100000000000000000ULL) {
                mantissa = mantissa * 10 + (uint64_t)(*p - '0');
                exponent--;
            } else {
                inexact = 1;
            }
        }
    }
    if (p < end && (*p == 'e' || *p == 'E')) {
        plain_integer = 0;
        p++;
        int exponent_negative = 0;
        if (p < end && (*p == '+' || *p == '-')) exponent_negative = *p++ == '-';
        if (p >= end || !is_digit(*p)) return NULL;
        int64_t written = 0;
        for (; p < end && is_digit(*p); p++)
            if (written < 100000) written = written * 10 + (*p - '0');
        exponent += exponent_negative ? -written : written;
    }
    size_t len = (size_t)(p - start);
    if (len > MAX_NUMBER_CHARS) return NULL;
    double value;
    if (!inexact && mantissa == 0) {
        value = 0.0;
    } else if (!inexact && mantissa <= ((uint64_t)1 << 53) && exponent >= -22 && exponent <= 22) {
        /* Both operands exact, so the one rounding of * or / is the correct rounding. */
        value = exponent >= 0 ? (double)mantissa * exact_powers[exponent] : (double)mantissa / exact_powers[-exponent];
    } else {
        char copy[MAX_NUMBER_CHARS + 1];
        memcpy(copy, start, len);
        copy[len] = '\0';
        char *stop;
        value = strtod_l(negative ? copy + 1 : copy, &stop, c_locale);
        if (stop != copy + len) return NULL;
    }
    if (!isfinite(value)) return NULL;
    /* msgspec decodes the integer -0 as the integer 0: +0.0 (-0.0 and -0e1 stay negative). */
    *out = negative && !(plain_integer && value == 0.0) ? -value : value;
    return p;
}

/* An unsigned JSON integer at p of at most 2**62: returns its end, or NULL. A leading zero is
 * followed by something other than a delimiter, which the caller refuses. */
static inline const unsigned char *parse_ts(const unsigned char *p, const unsigned char *end, int64_t *out) {
    if (p >= end || !is_digit(*p)) return NULL;
    if (*p == '0') {
        *out = 0;
        return p + 1;
    }
    uint64_t ts = 0;
    int digits = 0;
    for (; p < end && is_digit(*p); p++) {
        if (++digits > 19) return NULL;
        ts = ts * 10 + (uint64_t)(*p - '0');
    }
    if (ts > MAX_TS) return NULL;
    *out = (int64_t)ts;
    return p;
}

/* A reading object at p (its '{') of `sensor`, its rows written from *row on: returns its end
 * and advances *row, or NULL. */
static const unsigned char *parse_reading(const unsigned char *p, const unsigned char *end, Table *t,
                                          const Sensor *sensor, const Rows *out, Py_ssize_t *row) {
    Py_ssize_t first = *row, next = *row;
    int64_t ts = -1;
    int have_ts = 0, have_values = 0;
    p = skip_ws(p + 1, end);
    for (;;) {
        if (p >= end || *p != '"') return NULL;
        uint32_t hash;
        const unsigned char *key = p + 1, *key_end = scan_key(key, end, &hash);
        if (key_end == NULL) return NULL;
        size_t key_len = (size_t)(key_end - key);
        p = skip_ws(key_end + 1, end);
        if (p >= end || *p != ':') return NULL;
        p = skip_ws(p + 1, end);
        if (key_len == 2 && memcmp(key, "ts", 2) == 0) {
            if (have_ts) return NULL;
            have_ts = 1;
            p = parse_ts(p, end, &ts);
            if (p == NULL) return NULL;
        } else if (key_len == 6 && memcmp(key, "values", 6) == 0) {
            if (have_values) return NULL;
            have_values = 1;
            if (p >= end || *p != '{') return NULL;
            p = skip_ws(p + 1, end);
            uint64_t stamp = ++t->clock;
            for (;;) {  /* at least one metric: an empty "values" is handed back */
                if (p >= end || *p != '"') return NULL;
                const unsigned char *name = p + 1, *name_end = scan_key(name, end, &hash);
                if (name_end == NULL) return NULL;
                Metric *metric = find_metric(t, sensor, name, (size_t)(name_end - name));
                if (metric == NULL || metric->seen == stamp) return NULL;
                metric->seen = stamp;
                p = skip_ws(name_end + 1, end);
                if (p >= end || *p != ':') return NULL;
                p = skip_ws(p + 1, end);
                double value;
                p = parse_number(p, end, &value);
                if (p == NULL || next >= out->cap) return NULL;
                out->channel[next] = metric->channel;
                out->value[next] = value;
                next++;
                int more = next_item(&p, end, '}');
                if (more < 0) return NULL;
                if (!more) break;
            }
        } else {
            return NULL;
        }
        int more = next_item(&p, end, '}');
        if (more < 0) return NULL;
        if (!more) break;
    }
    if (!have_values) return NULL;
    for (Py_ssize_t r = first; r < next; r++) out->ts[r] = ts;
    *row = next;
    return p;
}

/* Rows of one message, written from `row` on, or -1 to hand the message back. */
static Py_ssize_t parse_message(const unsigned char *p, size_t len, Table *t, const Rows *out, Py_ssize_t row) {
    const unsigned char *end = p + len;
    Py_ssize_t first = row;
    uint64_t stamp = 0;
    p = skip_ws(p, end);
    if (p >= end || *p != '{') return -1;
    p = skip_ws(p + 1, end);
    if (p < end && *p == '}') {
        p++;
    } else {
        for (;;) {
            if (p >= end || *p != '"') return -1;
            uint32_t hash;
            const unsigned char *id = p + 1, *id_end = scan_key(id, end, &hash);
            if (id_end == NULL || t == NULL) return -1;
            Sensor *sensor = find_sensor(t, id, (size_t)(id_end - id), hash);
            if (sensor == NULL) return -1;
            if (stamp == 0) stamp = ++t->clock;
            if (sensor->seen == stamp) return -1;
            sensor->seen = stamp;
            p = skip_ws(id_end + 1, end);
            if (p >= end || *p != ':') return -1;
            p = skip_ws(p + 1, end);
            if (p < end && *p == '{') {
                p = parse_reading(p, end, t, sensor, out, &row);
                if (p == NULL) return -1;
            } else if (p < end && *p == '[') {
                p = skip_ws(p + 1, end);
                if (p < end && *p == ']') {
                    p++;
                } else {
                    for (;;) {
                        if (p >= end || *p != '{') return -1;
                        p = parse_reading(p, end, t, sensor, out, &row);
                        if (p == NULL) return -1;
                        int more = next_item(&p, end, ']');
                        if (more < 0) return -1;
                        if (!more) break;
                    }
                }
            } else {
                return -1;
            }
            int more = next_item(&p, end, '}');
            if (more < 0) return -1;
            if (!more) break;
        }
    }
    p = skip_ws(p, end);
    return p == end ? row - first : -1;
}

typedef struct {
    const unsigned char *data;
    size_t len;
    Table *table;
    int skip;  /* handed back without parsing */
} Job;

/* parse(payloads, tables, max_payload_bytes, channel, ts, value, counts) -> rows written */
static PyObject *parse(PyObject *self, PyObject *const *args, Py_ssize_t nargs) {
    (void)self;
    if (nargs != 7) {
        PyErr_SetString(PyExc_TypeError, "parse(payloads, tables, max_payload_bytes, channel, ts, value, counts)");
        return NULL;
    }
    if (!PyList_Check(args[0]) && !PyTuple_Check(args[0])) {
        PyErr_Format(PyExc_TypeError, "payloads: expected a list of bytes, got %.100s", Py_TYPE(args[0])->tp_name);
        return NULL;
    }
    if (!PyList_Check(args[1]) && !PyTuple_Check(args[1])) {
        PyErr_Format(PyExc_TypeError, "tables: expected a list of tables or None, got %.100s",
                     Py_TYPE(args[1])->tp_name);
        return NULL;
    }
    if (!PyLong_Check(args[2])) {
        PyErr_Format(PyExc_TypeError, "max_payload_bytes: expected int, got %.100s", Py_TYPE(args[2])->tp_name);
        return NULL;
    }
    Py_ssize_t max_payload_bytes = PyLong_AsSsize_t(args[2]);
    if (max_payload_bytes < 0) {
        if (!PyErr_Occurred() || PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_SetString(PyExc_ValueError, "max_payload_bytes must be in 0..sys.maxsize");
        }
        return NULL;
    }
    /* Tuples hold their own references: the payloads and tables stay alive and unchanged while
     * the GIL is released, whatever other threads do with the caller's lists. */
    PyObject *payloads = PySequence_Tuple(args[0]);
    if (payloads == NULL) return NULL;
    PyObject *tables = PySequence_Tuple(args[1]);
    if (tables == NULL) {
        Py_DECREF(payloads);
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(payloads);
    Borrowed arrays = {0};
    Job *jobs = NULL;
    Table **claimed = NULL;
    Py_ssize_t n_claimed = 0, rows = 0;
    PyObject *result = NULL;
    Rows out;
    int64_t *counts;
    uint64_t call;
    if (PyTuple_GET_SIZE(tables) != n) {
        PyErr_Format(PyExc_ValueError, "tables: expected %zd (one per payload), got %zd", n, PyTuple_GET_SIZE(tables));
        goto done;
    }
    out.channel = borrow(&arrays, args[3], "channel", 'i', 4, -1, WRITE);
    out.cap = arrays.failed ? 0 : borrowed_length(&arrays);
    out.ts = borrow(&arrays, args[4], "ts", 'i', 8, out.cap, WRITE);
    out.value = borrow(&arrays, args[5], "value", 'f', 8, out.cap, WRITE);
    counts = borrow(&arrays, args[6], "counts", 'i', 8, n, WRITE);
    if (arrays.failed) goto done;
    jobs = malloc((n ? (size_t)n : 1) * sizeof(Job));
    claimed = malloc((n ? (size_t)n : 1) * sizeof(Table *));
    if (jobs == NULL || claimed == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    call = ++last_call;
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *payload = PyTuple_GET_ITEM(payloads, i), *capsule = PyTuple_GET_ITEM(tables, i);
        Job *job = &jobs[i];
        job->table = NULL;
        if (capsule != Py_None) {
            job->table = PyCapsule_IsValid(capsule, TABLE_CAPSULE) ? PyCapsule_GetPointer(capsule, TABLE_CAPSULE)
                                                                    : NULL;
            if (job->table == NULL) {
                PyErr_Format(PyExc_TypeError, "tables[%zd]: expected a table() or None, got %.100s", i,
                             Py_TYPE(capsule)->tp_name);
                goto done;
            }
        }
        /* Anything but bytes (bytearray, str, ...) is the precise decoder's to handle. */
        job->skip = !PyBytes_Check(payload) || PyBytes_GET_SIZE(payload) > max_payload_bytes;
        job->data = job->skip ? NULL : (const unsigned char *)PyBytes_AS_STRING(payload);
        job->len = job->skip ? 0 : (size_t)PyBytes_GET_SIZE(payload);
        if (job->table != NULL && job->table->owner != call) {
            if (job->table->owner == 0) {
                job->table->owner = call;
                claimed[n_claimed++] = job->table;
            } else {
                job->skip = 1;  /* another thread is parsing with this table */
            }
        }
    }
    Py_BEGIN_ALLOW_THREADS
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_ssize_t got = jobs[i].skip ? -1 : parse_message(jobs[i].data, jobs[i].len, jobs[i].table, &out, rows);
        counts[i] = got;
        if (got > 0) rows += got;
    }
    Py_END_ALLOW_THREADS
    result = PyLong_FromSsize_t(rows);
done:
    for (Py_ssize_t c = 0; c < n_claimed; c++) claimed[c]->owner = 0;
    free(jobs);
    free(claimed);
    give_back(&arrays);
    Py_DECREF(payloads);
    Py_DECREF(tables);
    return result;
}

static PyMethodDef methods[] = {
    {"table", table, METH_O,
     "table(sensors: dict[str, dict[str, int]]) -> table\n"
     "a gateway's sensor id -> {metric: channel}, for parse()"},
    {"parse", (PyCFunction)(void (*)(void))parse, METH_FASTCALL,
     "parse(payloads, tables, max_payload_bytes, channel, ts, value, counts) -> rows written\n"
     "payloads: list of bytes; tables: one table() or None per payload; channel int32[cap], ts int64[cap],\n"
     "value float64[cap]: the rows, ts -1 when the reading has none; counts int64[len(payloads)]: rows of\n"
     "each message in order, or -1 for a message handed back (none of its rows are kept)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_payload_parser",
                                    "Plain telemetry payloads into (channel, ts, value) rows; see payload_parser.c",
                                    -1, methods, NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__payload_parser(void) {
    if (c_locale == (locale_t)0) {
        c_locale = newlocale(LC_ALL_MASK, "C", (locale_t)0);
        if (c_locale == (locale_t)0) return PyErr_NoMemory();
    }
    return PyModule_Create(&module);
}
