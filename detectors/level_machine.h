/* Graded levels with hysteresis and hold time, one reading at a time, for the C kernels.
 *
 * This is detectors/threshold_reference.py (`ReferenceThresholdDetector.evaluate`, the
 * specification) in C: the threshold kernel runs it on readings, and the kernels of detectors
 * that raise levels on a statistic of their own (a CUSUM sum, ...) run it on that statistic
 * inside their loop, where the next step depends on the level (change detection learns only
 * from readings that leave the level at 0).
 *
 * Levels 1..4 are blue, yellow, orange, red; index L - 1 in the per-level arrays. Parameters
 * are per *rule row* (bindings of one rule share a row), state per binding:
 *
 *   limit[row * 4 + L - 1]    reached when v >= limit ("above") / v <= limit ("below"); NaN
 *                             where the rule does not define level L
 *   clear[row * 4 + L - 1]    the level is held while v >= clear ("above") / <= ("below")
 *   above[row]                1 for "above", 0 for "below"
 *   hold_ms[row]              a raise waits until the run at that level has lasted this long
 *   level[b]                  confirmed level, 0 = none
 *   since[b * 4 + L - 1]      ts of the first reading of the current unbroken run of readings
 *                             whose candidate level is >= L, NO_SINCE when there is none
 */
#ifndef LIFELINE_LEVEL_MACHINE_H
#define LIFELINE_LEVEL_MACHINE_H

#include <math.h>
#include <stdint.h>

#define N_LEVELS 4
#define NO_SINCE INT64_MAX

typedef struct {
    const double *limit;    /* (rows * 4) */
    const double *clear;    /* (rows * 4) */
    const uint8_t *above;   /* (rows) bool */
    const int64_t *hold_ms; /* (rows) */
} LevelRules;

typedef struct {
    int8_t *level;  /* (bindings) */
    int64_t *since; /* (bindings * 4) */
} LevelState;

/* A change of confirmed level: one finding row. */
typedef struct {
    int8_t before, after;
    double limit;       /* the limit of the new level, or of the old one when clearing */
    int64_t started_at; /* since[lowest defined level]; for a clearing, its value before it */
} LevelChange;

/* Whether t - since >= hold, decided exactly like the reference's integers: t - since can
 * exceed the int64 range for far-apart timestamps (signed overflow is undefined in C). */
static inline int lasted(int64_t t, int64_t since, int64_t hold) {
    if (t >= since) return hold <= 0 || (uint64_t)t - (uint64_t)since >= (uint64_t)hold;
    return hold < 0 && (uint64_t)since - (uint64_t)t <= (uint64_t)0 - (uint64_t)hold;
}

/* Evaluate reading (t, v) of binding b under rule row `row`. Returns 1 and fills `change`
 * when the confirmed level changed, else 0. A NaN v reaches and holds nothing: callers that
 * mean "no verdict" must not call this. */
static inline int level_step(const LevelRules *rules, int64_t row, LevelState *state, int64_t b,
                             int64_t t, double v, LevelChange *change) {
    const double *limit = rules->limit + row * N_LEVELS;
    const double *clear = rules->clear + row * N_LEVELS;
    const int above = rules->above[row];
    int64_t *since = state->since + b * N_LEVELS;
    const int current = state->level[b];

    int raise_level = 0, band_level = 0, lowest = 0;
    for (int n = 1; n <= N_LEVELS; n++) {
        double lim = limit[n - 1];
        if (isnan(lim)) continue; /* not defined by the rule */
        if (lowest == 0) lowest = n;
        if (above ? v >= lim : v <= lim) raise_level = n;
        if (above ? v >= clear[n - 1] : v <= clear[n - 1]) band_level = n;
    }
    /* A value in the hysteresis band keeps the current level but cannot raise one. */
    int held = band_level < current ? band_level : current;
    int candidate = raise_level > held ? raise_level : held;

    int64_t since_lowest_before = lowest ? since[lowest - 1] : NO_SINCE;
    for (int n = 1; n <= N_LEVELS; n++) {
        if (candidate >= n) {
            if (since[n - 1] == NO_SINCE) since[n - 1] = t;
        } else {
            since[n - 1] = NO_SINCE;
        }
    }
    /* Raising waits for the hold; keeping or lowering a level does not. */
    int new_level = 0;
    for (int n = 1; n <= candidate; n++) {
        if (isnan(limit[n - 1])) continue;
        if (n <= current || (since[n - 1] != NO_SINCE && lasted(t, since[n - 1], rules->hold_ms[row]))) new_level = n;
    }
    if (new_level == current) return 0;
    change->before = (int8_t)current;
    change->after = (int8_t)new_level;
    if (new_level > 0) {
        change->limit = limit[new_level - 1];
        change->started_at = since[lowest - 1];
    } else {
        change->limit = limit[current - 1];
        change->started_at = since_lowest_before;
    }
    state->level[b] = (int8_t)new_level;
    return 1;
}

/* Finding rows (CONTRACT's level changes, `ThresholdFindings` in Python), written in
 * evaluation order into caller-provided arrays of `capacity` rows. */
typedef struct {
    int32_t *binding;
    int64_t *ts;
    int8_t *before, *after;
    double *value, *limit;
    int64_t *started_at;
    Py_ssize_t capacity, count;
} Findings;

/* Borrows the seven finding arrays args[0..6] (binding, ts, before, after, value, limit,
 * started_at), all of one length: the capacity. Needs kernel_buffers.h, included first. */
static inline Findings borrow_findings(Borrowed *arrays, PyObject *const *args) {
    Findings out = {0};
    out.binding = borrow(arrays, args[0], "found_binding", 'i', 4, -1, WRITE);
    out.capacity = arrays->failed ? 0 : borrowed_length(arrays);
    out.ts = borrow(arrays, args[1], "found_ts", 'i', 8, out.capacity, WRITE);
    out.before = borrow(arrays, args[2], "found_before", 'i', 1, out.capacity, WRITE);
    out.after = borrow(arrays, args[3], "found_after", 'i', 1, out.capacity, WRITE);
    out.value = borrow(arrays, args[4], "found_value", 'f', 8, out.capacity, WRITE);
    out.limit = borrow(arrays, args[5], "found_limit", 'f', 8, out.capacity, WRITE);
    out.started_at = borrow(arrays, args[6], "found_started_at", 'i', 8, out.capacity, WRITE);
    return out;
}

/* Appends the row of `change` (binding b, reading time t, the value the level was decided on);
 * the caller keeps count < capacity. */
static inline void record_finding(Findings *out, int32_t b, int64_t t, double v, const LevelChange *change) {
    Py_ssize_t f = out->count++;
    out->binding[f] = b;
    out->ts[f] = t;
    out->before[f] = change->before;
    out->after[f] = change->after;
    out->value[f] = v;
    out->limit[f] = change->limit;
    out->started_at[f] = change->started_at;
}

#endif
