// The lazy sparse step loop of deepfound/optim/lazy.py as one XLA:CPU custom call (jax.ffi).
//
// lazy.run_steps steps a page of sampled rows in a lax.fori_loop; on the CPU each step is about
// seventeen small XLA kernels, and their launches, not the arithmetic, bound a step (about 2 us
// against scikit-learn's 0.5 to 0.8 us). This handler runs the same loop in one call: for every
// step of the page it brings the row's coordinates up to date (the catch-up of lazy._catch_up,
// with lazy._threshold_walk under L1), takes the loss derivative at the row's score, updates the
// gradient memory and the sums, and writes the row back at once (no deferred write). It covers
// the scalar layout (binary logistic and least squares), with and without a gradient memory
// (SAG, SAGA, SGD), L1, an intercept and sample weights; lazy.py keeps everything else (the
// rebase tests, the fold, multinomial targets) and is the reference the tests compare it to.
//
// The operations follow lazy._advance in order, and agree with it to rounding: the score's sum
// is taken over the row's stored entries in order (XLA may sum in another order), XLA may fuse
// or reorder its arithmetic, and the kernel is compiled without contraction (-ffp-contract=off).

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <vector>

#if defined(__GNUC__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wattributes"
#pragma GCC diagnostic ignored "-Wreturn-type"
#endif
#include "xla/ffi/api/ffi.h"
#if defined(__GNUC__)
#pragma GCC diagnostic pop
#endif

namespace ffi = xla::ffi;

namespace {

enum Loss : int64_t { kLogistic = 0, kLeastSquares = 1 };

struct Options {
  int64_t loss, keeps, unbiased, over_seen, fit_intercept, num_columns, num_samples;
  double l1, floor;
};

// jnp.maximum / jnp.minimum / jnp.sign semantics: NaN propagates.
template <typename T>
inline T Max(T a, T b) { return (std::isnan(a) || a > b) ? a : b; }
template <typename T>
inline T Min(T a, T b) { return (std::isnan(a) || a < b) ? a : b; }
template <typename T>
inline T Sign(T v) { return std::isnan(v) ? v : (v > 0 ? T(1) : (v < 0 ? T(-1) : T(0))); }

// numerics.soft_threshold: sign(v) max(|v| - t, 0).
template <typename T>
inline T Soft(T v, T t) { return Sign(v) * Max(std::abs(v) - t, T(0)); }

// jnp.searchsorted(sums, target, side="left") on an ascending array of size >= 1: the count of
// entries below target. Without branches (a binary search's branches mispredict half the time,
// and a step may search once per entry of its row).
template <typename T>
inline int64_t SearchLeft(const T* sums, int64_t size, T target) {
  const T* base = sums;
  while (size > 1) {
    const int64_t half = size / 2;
    base = base[half - 1] < target ? base + half : base;
    size -= half;
  }
  return (base - sums) + (base[0] < target ? 1 : 0);
}

// lazy._threshold_walk for one coordinate; ``sums`` holds Q up to ``to_index`` (where it is
// q_to) and +inf after. The cases the JAX version computes and then discards are skipped: the
// crossing step is searched for only where the walk does cross zero (target <= q_to, which is
// where the search over the whole array would end at or before to_index).
template <typename T>
T ThresholdWalk(T v, T h, T q_from, T q_to, T lam, const T* sums, int64_t size, int64_t to_index) {
  const T sign = h < 0 ? T(-1) : T(1);
  const T vv = v * sign, hh = h * sign;
  const T span = q_to - q_from;
  if (hh <= lam) return sign * Soft(vv - span * hh, span * lam);
  if (vv <= 0) return sign * (vv - span * (hh - lam));
  const T target = q_from + vv / Max(hh + lam, std::numeric_limits<T>::min());
  if (!(target <= q_to)) return sign * (vv - span * (hh + lam));  // not crossed (or NaN)
  const int64_t after = std::clamp<int64_t>(SearchLeft(sums, to_index + 1, target), 1, size - 1);
  const T q_after = sums[after], q_before = sums[after - 1];
  const T at_cross = vv - (q_before - q_from) * (hh + lam);
  const T step_q = q_after - q_before;
  const T landed = Min(T(0), at_cross - step_q * hh + step_q * lam);
  return sign * (landed - (q_to - q_after) * (hh - lam));
}

template <typename T>
inline T LossDerivative(int64_t loss, T score, T target) {
  if (loss == kLogistic) {  // -y sigmoid(-s y)
    return -target * (T(1) / (T(1) + std::exp(score * target)));
  }
  return score - target;
}

// The next step's row (a random row of a data set larger than the cache): its loads would
// otherwise wait on memory at the start of the step.
template <typename T>
inline void Prefetch(const int32_t* columns, const T* values, int64_t start, int64_t m) {
#if defined(__GNUC__) || defined(__clang__)
  constexpr int64_t kLine = 64;
  const char* c = reinterpret_cast<const char*>(columns + start);
  const char* x = reinterpret_cast<const char*>(values + start);
  for (int64_t b = 0; b < m * static_cast<int64_t>(sizeof(int32_t)); b += kLine) __builtin_prefetch(c + b);
  for (int64_t b = 0; b < m * static_cast<int64_t>(sizeof(T)); b += kLine) __builtin_prefetch(x + b);
#endif
}

template <typename T>
void CopyIfMoved(const ffi::AnyBuffer& from, ffi::AnyBuffer* to) {
  if (from.untyped_data() != to->untyped_data()) {
    std::memcpy(to->untyped_data(), from.untyped_data(), from.size_bytes());
  }
}

// The page: see lazy.run_kernel_steps for the operands.
template <typename T>
void RunPage(const Options o, const ffi::AnyBuffer& coordinates_in, const ffi::AnyBuffer& table_in,
             const ffi::AnyBuffer& sums_in, const ffi::AnyBuffer& scalars_in,
             const ffi::Buffer<ffi::S32>& counters, const ffi::Buffer<ffi::S32>& local_steps,
             const ffi::AnyBuffer& rates_in, const ffi::AnyBuffer& shrinks_in,
             const ffi::Buffer<ffi::S32>& indices, const ffi::Buffer<ffi::S32>& columns_in,
             const ffi::AnyBuffer& values_in, const ffi::AnyBuffer& targets_in,
             const ffi::AnyBuffer& weights_in, ffi::AnyBuffer coordinates_out,
             ffi::AnyBuffer table_out, ffi::AnyBuffer sums_out, ffi::AnyBuffer scalars_out,
             ffi::Result<ffi::Buffer<ffi::S32>> seen_out) {
  CopyIfMoved<T>(coordinates_in, &coordinates_out);
  CopyIfMoved<T>(table_in, &table_out);
  CopyIfMoved<T>(sums_in, &sums_out);
  T* coordinates = coordinates_out.typed_data<T>();
  T* table = table_out.typed_data<T>();
  T* sums = sums_out.typed_data<T>();
  const int64_t num_sums = static_cast<int64_t>(sums_in.element_count());
  const auto width_dims = coordinates_in.dimensions();
  const int64_t width = width_dims[width_dims.size() - 1];
  const auto column_dims = columns_in.dimensions();
  const int64_t m = column_dims[column_dims.size() - 1];
  const int64_t num_rows = column_dims[0];
  const int64_t table_size = static_cast<int64_t>(table_in.element_count());
  const bool keeps = o.keeps != 0, l1 = o.l1 != 0.0;
  const bool weighted = weights_in.element_count() > 0;
  const int64_t p = o.num_columns;

  const T* scalars = scalars_in.typed_data<T>();
  T intercept = scalars[0], scale = scalars[1], q_now = scalars[2], intercept_sum = scalars[3];
  int32_t origin = counters.typed_data()[0];
  const T floor = T(o.floor);
  int32_t num_seen = counters.typed_data()[1];
  const int32_t count = counters.typed_data()[2];
  const T* rates = rates_in.typed_data<T>();
  const T* shrinks = shrinks_in.typed_data<T>();
  const T* values = values_in.typed_data<T>();
  const T* targets = targets_in.typed_data<T>();
  const T* weights = weighted ? weights_in.typed_data<T>() : nullptr;
  const int32_t* steps = local_steps.typed_data();
  const int32_t* index = indices.typed_data();
  const int32_t* columns = columns_in.typed_data();

  // A sample index out of range (the driver never draws one) reads the nearest row and writes
  // no memory.
  auto row_of = [num_rows](int32_t i) { return std::clamp<int64_t>(i, 0, num_rows - 1); };
  std::vector<T> v(m), g(m);
  const int32_t steps_to_run = std::clamp<int32_t>(count, 0, static_cast<int32_t>(local_steps.element_count()));
  for (int32_t t = 0; t < steps_to_run; ++t) {
    const int64_t r = row_of(index[t]);
    if (t + 2 < steps_to_run) Prefetch(columns, values, row_of(index[t + 2]) * m, m);
    const int32_t* row_columns = columns + r * m;
    const T* row_values = values + r * m;
    int64_t to_index = static_cast<int64_t>(steps[t]) - origin;
    if (l1 && to_index >= 0 && to_index < num_sums) sums[to_index] = q_now;  // lazy._flush
    T den = o.over_seen ? T(std::max<int32_t>(num_seen, 1)) : T(o.num_samples);
    const T lam = T(o.l1) * (keeps ? den : T(1));
    T shrink = shrinks[t];

    // lazy.run_steps' guarded step: where this step's shrink would take the scale below the
    // floor, a rebase (every coordinate brought up to date, w = s v into v, s = 1, Q = 0 and its
    // sums restarted), and the shrink folded into every v once the row's score is taken.
    const bool fold = scale * shrink < floor;
    if (fold) {
      for (int64_t c = 0; c < p; ++c) {
        T* packed = coordinates + c * width;
        const T gc = keeps ? packed[1] : T(0);
        const T vc = !l1 ? (keeps ? packed[0] - (q_now - packed[width - 1]) * gc : packed[0])
                     : !keeps ? Soft(packed[0], (q_now - packed[width - 1]) * lam)
                              : ThresholdWalk(packed[0], gc, packed[width - 1], q_now, lam, sums,
                                              num_sums, to_index);
        packed[0] = scale * vc;
        packed[width - 1] = T(0);
      }
      coordinates[p * width] = T(0);  // the spare coordinate, as lazy.rebase leaves it
      coordinates[p * width + width - 1] = T(0);
      scale = T(1);
      q_now = T(0);
      origin = steps[t];
      to_index = 0;
      if (l1) {
        sums[0] = T(0);
        std::fill(sums + 1, sums + num_sums, std::numeric_limits<T>::infinity());
      }
    }

    // The row's coordinates, brought up to date (lazy._catch_up), and the score.
    T score = 0;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t c = row_columns[j];
      if (c < 0 || c >= p) continue;  // padding: value 0 on the spare coordinate p
      const T* packed = coordinates + c * width;
      T vj = packed[0];
      const T gj = keeps ? packed[1] : T(0);
      const T stamp = packed[width - 1];
      if (!l1) {
        if (keeps) vj = vj - (q_now - stamp) * gj;
      } else if (!keeps) {
        vj = Soft(vj, (q_now - stamp) * lam);
      } else {
        vj = ThresholdWalk(vj, gj, stamp, q_now, lam, sums, num_sums, to_index);
      }
      v[j] = vj;
      g[j] = gj;
      score += row_values[j] * (scale * vj);
    }
    score += intercept;
    T fresh = LossDerivative<T>(o.loss, score, targets[r]);
    if (weighted) fresh *= weights[r];
    if (fold) {  // (lazy._fold and lazy._advance's fold)
      for (int64_t c = 0; c <= p; ++c) coordinates[c * width] *= shrink;
      for (int64_t j = 0; j < m; ++j) v[j] *= shrink;
      shrink = T(1);
    }

    // The memory, the direction and the step (lazy._advance).
    const int64_t i = index[t];
    const bool stored = i >= 0 && i < table_size;
    T change = fresh, intercept_direction = fresh;
    if (keeps) {
      T old = table[std::clamp<int64_t>(i, 0, table_size - 1)];
      if (o.over_seen) {
        if (std::isnan(old)) {
          old = T(0);
          ++num_seen;
        }
        den = T(std::max<int32_t>(num_seen, 1));
      }
      change = fresh - old;
      if (!o.unbiased) {
        intercept_sum = intercept_sum + change;
        intercept_direction = intercept_sum / den;
      } else {
        intercept_direction = change + intercept_sum / den;
        intercept_sum = intercept_sum + change;
      }
      if (stored) table[i] = fresh;
    }
    const T next_scale = scale * shrink;
    const T ratio = rates[t] / next_scale;
    q_now = q_now + (keeps ? ratio / den : ratio);
    for (int64_t j = 0; j < m; ++j) {
      const int64_t c = row_columns[j];
      if (c < 0 || c >= p) continue;
      const T x = row_values[j];
      T direction, g_new = g[j];
      if (!keeps) {
        direction = x * fresh;
      } else {
        g_new = g[j] + x * change;
        direction = o.unbiased ? x * change + g[j] / den : g_new / den;
      }
      T vj = v[j] - ratio * direction;
      if (l1) vj = Soft(vj, ratio * T(o.l1));
      T* packed = coordinates + c * width;
      packed[0] = vj;
      if (keeps) packed[1] = g_new;
      packed[width - 1] = q_now;
    }
    if (o.fit_intercept) intercept = intercept - rates[t] * intercept_direction;
    scale = next_scale;
  }
  T* out = scalars_out.typed_data<T>();
  out[0] = intercept;
  out[1] = scale;
  out[2] = q_now;
  out[3] = intercept_sum;
  seen_out->typed_data()[0] = num_seen;
  seen_out->typed_data()[1] = origin;
}

ffi::Error LazyPage(ffi::AnyBuffer coordinates, ffi::AnyBuffer table, ffi::AnyBuffer sums,
                    ffi::AnyBuffer scalars, ffi::Buffer<ffi::S32> counters,
                    ffi::Buffer<ffi::S32> local_steps, ffi::AnyBuffer rates, ffi::AnyBuffer shrinks,
                    ffi::Buffer<ffi::S32> indices, ffi::Buffer<ffi::S32> columns,
                    ffi::AnyBuffer values, ffi::AnyBuffer targets, ffi::AnyBuffer weights,
                    ffi::Result<ffi::AnyBuffer> coordinates_out, ffi::Result<ffi::AnyBuffer> table_out,
                    ffi::Result<ffi::AnyBuffer> sums_out, ffi::Result<ffi::AnyBuffer> scalars_out,
                    ffi::Result<ffi::Buffer<ffi::S32>> seen_out, int64_t loss, int64_t keeps,
                    int64_t unbiased, int64_t over_seen, int64_t fit_intercept,
                    int64_t num_columns, int64_t num_samples, double l1, double floor) {
  const Options o{loss, keeps, unbiased, over_seen, fit_intercept, num_columns, num_samples, l1,
                  floor};
  if (loss != kLogistic && loss != kLeastSquares) {
    return ffi::Error::InvalidArgument("lazy kernel: unknown loss code");
  }
  // The operands' shapes, as lazy_kernel.run_page makes them: a call with others is refused,
  // never run out of bounds.
  const auto dims = coordinates.dimensions();
  const auto column_dims = columns.dimensions();
  const size_t page = local_steps.element_count();
  const size_t num_rows = column_dims.size() == 2 ? static_cast<size_t>(column_dims[0]) : 0;
  const bool shapes = dims.size() == 2 && dims[0] == num_columns + 1 && dims[1] == (keeps ? 3 : 2) &&
                      num_rows >= 1 && values.element_count() == columns.element_count() &&
                      scalars.element_count() == 4 && counters.element_count() == 3 &&
                      rates.element_count() == page && shrinks.element_count() == page &&
                      indices.element_count() == page && targets.element_count() >= num_rows &&
                      (weights.element_count() == 0 || weights.element_count() >= num_rows) &&
                      (!keeps || table.element_count() >= 1) &&
                      (l1 == 0.0 || sums.element_count() >= 2);
  if (!shapes) return ffi::Error::InvalidArgument("lazy kernel: operand shapes do not agree");
  if (l1 != 0.0) {  // every step within the cumulative sums, which the L1 walk searches
    const int32_t* counts = counters.typed_data();
    const int64_t steps = std::clamp<int64_t>(counts[2], 0, static_cast<int64_t>(page));
    for (int64_t t = 0; t < steps; ++t) {
      const int64_t k = static_cast<int64_t>(local_steps.typed_data()[t]) - counts[0];
      if (k < 0 || k >= static_cast<int64_t>(sums.element_count())) {
        return ffi::Error::InvalidArgument("lazy kernel: a step outside the cumulative sums");
      }
    }
  }
  const auto type = coordinates.element_type();
  for (const ffi::AnyBuffer* b : {&table, &sums, &scalars, &rates, &shrinks, &values, &targets, &weights}) {
    if (b->element_type() != type) {
      return ffi::Error::InvalidArgument("lazy kernel: operands of mixed float types");
    }
  }
  if (type == ffi::DataType::F32) {
    RunPage<float>(o, coordinates, table, sums, scalars, counters, local_steps, rates, shrinks,
                   indices, columns, values, targets, weights, *coordinates_out, *table_out,
                   *sums_out, *scalars_out, seen_out);
  } else if (type == ffi::DataType::F64) {
    RunPage<double>(o, coordinates, table, sums, scalars, counters, local_steps, rates, shrinks,
                    indices, columns, values, targets, weights, *coordinates_out, *table_out,
                    *sums_out, *scalars_out, seen_out);
  } else {
    return ffi::Error::InvalidArgument("lazy kernel: float32 or float64 only");
  }
  return ffi::Error::Success();
}

}  // namespace

// The one exported symbol (the library builds with hidden visibility).
#if defined(_WIN32)
#define DEEPFOUND_EXPORT __declspec(dllexport)
#else
#define DEEPFOUND_EXPORT __attribute__((visibility("default")))
#endif
extern "C" DEEPFOUND_EXPORT XLA_FFI_Error* DeepfoundLazyPage(XLA_FFI_CallFrame*);

// The digest of this file the library was built from (setup.py defines it), which
// lazy_kernel.py compares with the file next to it: a library left from an older source is not
// loaded.
#ifndef DEEPFOUND_LAZY_KERNEL_SOURCE
#define DEEPFOUND_LAZY_KERNEL_SOURCE "unknown"
#endif
extern "C" DEEPFOUND_EXPORT const char* DeepfoundLazyKernelSource() { return DEEPFOUND_LAZY_KERNEL_SOURCE; }

XLA_FFI_DEFINE_HANDLER_SYMBOL(DeepfoundLazyPage, LazyPage,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::AnyBuffer>()             // coordinates (p + 1, width)
                                  .Arg<ffi::AnyBuffer>()             // table (n,) or (0,)
                                  .Arg<ffi::AnyBuffer>()             // cumulative sums or (0,)
                                  .Arg<ffi::AnyBuffer>()             // intercept, scale, q_now, intercept_sum
                                  .Arg<ffi::Buffer<ffi::S32>>()      // origin, num_seen, steps to run
                                  .Arg<ffi::Buffer<ffi::S32>>()      // local steps (page,)
                                  .Arg<ffi::AnyBuffer>()             // rates (page,)
                                  .Arg<ffi::AnyBuffer>()             // shrinks (page,)
                                  .Arg<ffi::Buffer<ffi::S32>>()      // sample indices (page,)
                                  .Arg<ffi::Buffer<ffi::S32>>()      // the data's columns (n, m)
                                  .Arg<ffi::AnyBuffer>()             // the data's values (n, m)
                                  .Arg<ffi::AnyBuffer>()             // targets (n,)
                                  .Arg<ffi::AnyBuffer>()             // sample weights (n,) or (0,)
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::AnyBuffer>()
                                  .Ret<ffi::Buffer<ffi::S32>>()
                                  .Attr<int64_t>("loss")
                                  .Attr<int64_t>("keeps")
                                  .Attr<int64_t>("unbiased")
                                  .Attr<int64_t>("over_seen")
                                  .Attr<int64_t>("fit_intercept")
                                  .Attr<int64_t>("num_columns")
                                  .Attr<int64_t>("num_samples")
                                  .Attr<double>("l1")
                                  .Attr<double>("floor"));
