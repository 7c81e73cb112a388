// CPU kernels of fastecg::_sosfilt_kernel and fastecg::_sosfiltfilt_kernel.
//
// Second-order sections in transposed direct form II, exactly SciPy's recurrence
// (scipy/signal/_sosfilt.pyx), state and arithmetic in float64 whatever the input
// dtype. A recurrence is sequential in time, so the vector lanes run across rows:
// kLanes rows are transposed into a lane-interleaved (structure-of-arrays) buffer and
// filtered together with GCC generic vectors. The instruction set is chosen at run
// time (AVX-512 when present, else baseline x86-64 / any other CPU; the AVX2 variant
// is compiled but measured slower, see select_isa); FASTECG_CPU_ISA (avx512, avx2,
// generic) forces one, so tests can run every variant the CPU has.
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>



namespace fastecg {
namespace {

constexpr int kLanes = 8;  // rows per block: one AVX-512 or two AVX2 vectors of float64 state
typedef double lanes_t __attribute__((vector_size(kLanes * sizeof(double))));

enum PadType : int64_t { kPadNone = 0, kPadOdd = 1, kPadEven = 2, kPadConstant = 3 };

// One pass of a cascade of S sections (S fixed at compile time, so that the loops
// unroll and the state stays in registers) over `len` lane-interleaved samples, in
// place. `state` holds 2 * S lanes_t (z0, z1 per section), updated on return.
// `reverse` walks from the last sample to the first.
template <int S>
inline __attribute__((always_inline)) void pass_fixed(double* buf, int64_t len,
                                                      const double* sos, double* state,
                                                      bool reverse) {
  lanes_t z0[S], z1[S];
  double b0[S], b1[S], b2[S], a1[S], a2[S];
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    std::memcpy(&z0[s], state + (2 * s) * kLanes, sizeof(lanes_t));
    std::memcpy(&z1[s], state + (2 * s + 1) * kLanes, sizeof(lanes_t));
    b0[s] = sos[6 * s], b1[s] = sos[6 * s + 1], b2[s] = sos[6 * s + 2];
    a1[s] = sos[6 * s + 4], a2[s] = sos[6 * s + 5];  // a0 == 1
  }
  const int64_t step = reverse ? -kLanes : kLanes;
  double* p = buf + (reverse ? (len - 1) * kLanes : 0);
  for (int64_t t = 0; t < len; ++t, p += step) {
    lanes_t x;
    std::memcpy(&x, p, sizeof(lanes_t));
#pragma GCC unroll 16
    for (int s = 0; s < S; ++s) {
      const lanes_t y = b0[s] * x + z0[s];
      z0[s] = b1[s] * x - a1[s] * y + z1[s];
      z1[s] = b2[s] * x - a2[s] * y;
      x = y;
    }
    std::memcpy(p, &x, sizeof(lanes_t));
  }
#pragma GCC unroll 16
  for (int s = 0; s < S; ++s) {
    std::memcpy(state + (2 * s) * kLanes, &z0[s], sizeof(lanes_t));
    std::memcpy(state + (2 * s + 1) * kLanes, &z1[s], sizeof(lanes_t));
  }
}

// Any number of sections: runs the cascade as passes of up to 8 sections each (a
// cascade is a composition, so splitting it changes nothing numerically).
inline __attribute__((always_inline)) void pass_body(double* buf, int64_t len, const double* sos,
                                                     int64_t n_sections, double* state,
                                                     bool reverse) {
  for (int64_t first = 0; first < n_sections; first += 8) {
    const double* c = sos + 6 * first;
    double* z = state + 2 * first * kLanes;
    switch (std::min<int64_t>(8, n_sections - first)) {
      case 1: pass_fixed<1>(buf, len, c, z, reverse); break;
      case 2: pass_fixed<2>(buf, len, c, z, reverse); break;
      case 3: pass_fixed<3>(buf, len, c, z, reverse); break;
      case 4: pass_fixed<4>(buf, len, c, z, reverse); break;
      case 5: pass_fixed<5>(buf, len, c, z, reverse); break;
      case 6: pass_fixed<6>(buf, len, c, z, reverse); break;
      case 7: pass_fixed<7>(buf, len, c, z, reverse); break;
      default: pass_fixed<8>(buf, len, c, z, reverse); break;
    }
  }
}

using PassFn = void (*)(double*, int64_t, const double*, int64_t, double*, bool);

void pass_generic(double* b, int64_t l, const double* c, int64_t s, double* z, bool r) {
  pass_body(b, l, c, s, z, r);
}
#if defined(__x86_64__)
__attribute__((target("arch=x86-64-v3"))) void pass_avx2(double* b, int64_t l, const double* c,
                                                          int64_t s, double* z, bool r) {
  pass_body(b, l, c, s, z, r);
}
__attribute__((target("arch=x86-64-v4"))) void pass_avx512(double* b, int64_t l, const double* c,
                                                            int64_t s, double* z, bool r) {
  pass_body(b, l, c, s, z, r);
}
#endif

// The widest ISA this CPU runs, unless FASTECG_CPU_ISA asks for a narrower one.
std::string select_isa() {
  std::string best = "generic";
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw"))
    best = "avx512";
  else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    best = "avx2";
#endif
  const char* forced = std::getenv("FASTECG_CPU_ISA");
  // Measured on an AVX2-only EPYC: the AVX2 clone is slower than the baseline one
  // (26 vs 18 ms for (768, 5000) rows on 2 threads), so it runs only when forced.
  if (forced == nullptr || *forced == '\0') return best == "avx2" ? "generic" : best;
  const std::string want(forced);
  const std::vector<std::string> order = {"generic", "avx2", "avx512"};
  auto rank = [&](const std::string& isa) {
    for (size_t i = 0; i < order.size(); ++i)
      if (order[i] == isa) return static_cast<int>(i);
    return -1;
  };
  TORCH_CHECK(rank(want) >= 0, "FASTECG_CPU_ISA must be generic, avx2 or avx512, got ", want);
  TORCH_CHECK(rank(want) <= rank(best), "FASTECG_CPU_ISA=", want, " but this CPU supports at most ",
              best);
  return want;
}

PassFn pass_for(const std::string& isa) {
#if defined(__x86_64__)
  if (isa == "avx512") return pass_avx512;
  if (isa == "avx2") return pass_avx2;
#endif
  return pass_generic;
}

struct AlignedBuffer {
  std::unique_ptr<double, decltype(&std::free)> data{nullptr, &std::free};
  explicit AlignedBuffer(size_t n_doubles)
      : data(static_cast<double*>(std::aligned_alloc(64, ((n_doubles * 8 + 63) / 64) * 64)),
             &std::free) {
    TORCH_CHECK(data, "sosfilt: out of memory for a ", n_doubles * 8, "-byte work buffer");
  }
  double* get() const { return data.get(); }
};

void check_sos(const at::Tensor& sos) {
  TORCH_CHECK(sos.dim() == 2 && sos.size(1) == 6 && sos.size(0) >= 1,
              "sos must have shape (n_sections, 6), got ", sos.sizes());
  TORCH_CHECK(sos.scalar_type() == at::kDouble && sos.device().is_cpu(),
              "sos must be a float64 CPU tensor here");
}

void check_signal(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 2, "expected (rows, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", x.scalar_type());
}

// Odd/even/constant extension of one row, built in the row's dtype as SciPy does
// (float32 in -> float32 padding), then widened into lane `lane` of `buf`.
template <typename T>
void gather_extended(const T* x, int64_t n, int64_t pad, int64_t padtype, double* buf, int lane) {
  const T x0 = x[0], xn = x[n - 1];
  for (int64_t i = 0; i < pad; ++i) {
    const T v = x[pad - i];
    const T e = padtype == kPadOdd ? static_cast<T>(T(2) * x0 - v) : padtype == kPadEven ? v : x0;
    buf[i * kLanes + lane] = e;
  }
  for (int64_t i = 0; i < n; ++i) buf[(pad + i) * kLanes + lane] = x[i];
  for (int64_t j = 0; j < pad; ++j) {
    const T v = x[n - 2 - j];
    const T e = padtype == kPadOdd ? static_cast<T>(T(2) * xn - v) : padtype == kPadEven ? v : xn;
    buf[(pad + n + j) * kLanes + lane] = e;
  }
}

template <typename T>
void sosfiltfilt_rows(const at::Tensor& x, at::Tensor& y, const double* sos, int64_t n_sections,
                      const double* zi, int64_t pad, int64_t padtype, PassFn pass) {
  const int64_t rows = x.size(0), n = x.size(1), len = n + 2 * pad;
  const T* xp = x.const_data_ptr<T>();
  T* yp = y.mutable_data_ptr<T>();
  const int64_t blocks = (rows + kLanes - 1) / kLanes;
  at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
    AlignedBuffer buf(static_cast<size_t>(len) * kLanes);
    AlignedBuffer state(static_cast<size_t>(2 * n_sections) * kLanes);
    double* b = buf.get();
    double* z = state.get();
    for (int64_t blk = begin; blk < end; ++blk) {
      const int64_t r0 = blk * kLanes, count = std::min<int64_t>(kLanes, rows - r0);
      if (count < kLanes) std::memset(b, 0, sizeof(double) * len * kLanes);
      for (int l = 0; l < count; ++l) gather_extended(xp + (r0 + l) * n, n, pad, padtype, b, l);
      // Forward pass from the steady state of a step of height ext[0] (sosfilt_zi * x0).
      for (int64_t s = 0; s < 2 * n_sections; ++s)
        for (int l = 0; l < kLanes; ++l) z[s * kLanes + l] = zi[s] * b[l];
      pass(b, len, sos, n_sections, z, false);
      // Backward pass from the steady state of the last forward output.
      const double* last = b + (len - 1) * kLanes;
      for (int64_t s = 0; s < 2 * n_sections; ++s)
        for (int l = 0; l < kLanes; ++l) z[s * kLanes + l] = zi[s] * last[l];
      pass(b, len, sos, n_sections, z, true);
      for (int l = 0; l < count; ++l) {
        T* out = yp + (r0 + l) * n;
        const double* src = b + pad * kLanes + l;
        for (int64_t i = 0; i < n; ++i) out[i] = static_cast<T>(src[i * kLanes]);
      }
    }
  });
}

at::Tensor sosfiltfilt_cpu(const at::Tensor& x, const at::Tensor& sos, const at::Tensor& zi,
                           int64_t padlen, int64_t padtype) {
  check_signal(x);
  check_sos(sos);
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.numel() == 2 * sos.size(0),
              "zi must be float64 of shape (n_sections, 2)");
  TORCH_CHECK(padtype >= kPadNone && padtype <= kPadConstant, "bad padtype code ", padtype);
  TORCH_CHECK(padlen >= 0 && (padtype != kPadNone || padlen == 0), "bad padlen ", padlen);
  TORCH_CHECK(x.size(1) > padlen, "signal length ", x.size(1), " must exceed padlen ", padlen);
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous(), zc = zi.contiguous();
  at::Tensor y = at::empty_like(xc);
  if (xc.size(0) == 0) return y;
  const PassFn pass = pass_for(select_isa());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sosfiltfilt_cpu", [&] {
    sosfiltfilt_rows<scalar_t>(xc, y, sc.const_data_ptr<double>(), sc.size(0),
                               zc.const_data_ptr<double>(), padlen, padtype, pass);
  });
  return y;
}

// y, zf = sosfilt(sos, x, zi) along rows; zi: (rows, n_sections, 2) float64.
std::tuple<at::Tensor, at::Tensor> sosfilt_cpu(const at::Tensor& x, const at::Tensor& sos,
                                               const at::Tensor& zi) {
  check_signal(x);
  check_sos(sos);
  const int64_t rows = x.size(0), n = x.size(1), n_sections = sos.size(0);
  TORCH_CHECK(zi.scalar_type() == at::kDouble && zi.dim() == 3 && zi.size(0) == rows &&
                  zi.size(1) == n_sections && zi.size(2) == 2,
              "zi must be float64 of shape (rows, n_sections, 2), got ", zi.sizes());
  const at::Tensor xc = x.contiguous(), sc = sos.contiguous(), zc = zi.contiguous();
  at::Tensor y = at::empty_like(xc);
  at::Tensor zf = at::empty_like(zc);
  if (rows == 0) return {y, zf};
  const PassFn pass = pass_for(select_isa());
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "sosfilt_cpu", [&] {
    const scalar_t* xp = xc.const_data_ptr<scalar_t>();
    scalar_t* yp = y.mutable_data_ptr<scalar_t>();
    const double* zin = zc.const_data_ptr<double>();
    double* zout = zf.mutable_data_ptr<double>();
    const int64_t blocks = (rows + kLanes - 1) / kLanes;
    at::parallel_for(0, blocks, 1, [&](int64_t begin, int64_t end) {
      AlignedBuffer buf(static_cast<size_t>(std::max<int64_t>(n, 1)) * kLanes);
      AlignedBuffer state(static_cast<size_t>(2 * n_sections) * kLanes);
      double* b = buf.get();
      double* z = state.get();
      for (int64_t blk = begin; blk < end; ++blk) {
        const int64_t r0 = blk * kLanes, count = std::min<int64_t>(kLanes, rows - r0);
        std::memset(b, 0, sizeof(double) * n * kLanes);
        std::memset(z, 0, sizeof(double) * 2 * n_sections * kLanes);
        for (int l = 0; l < count; ++l) {
          for (int64_t i = 0; i < n; ++i) b[i * kLanes + l] = xp[(r0 + l) * n + i];
          for (int64_t s = 0; s < 2 * n_sections; ++s)
            z[s * kLanes + l] = zin[(r0 + l) * 2 * n_sections + s];
        }
        pass(b, n, sc.const_data_ptr<double>(), n_sections, z, false);
        for (int l = 0; l < count; ++l) {
          for (int64_t i = 0; i < n; ++i) yp[(r0 + l) * n + i] = static_cast<scalar_t>(b[i * kLanes + l]);
          for (int64_t s = 0; s < 2 * n_sections; ++s)
            zout[(r0 + l) * 2 * n_sections + s] = z[s * kLanes + l];
        }
      }
    });
  });
  return {y, zf};
}

std::string cpu_isa() { return select_isa(); }

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) {
  m.impl("_sosfiltfilt_kernel", &sosfiltfilt_cpu);
  m.impl("_sosfilt_kernel", &sosfilt_cpu);
}

TORCH_LIBRARY_IMPL(fastecg, CompositeExplicitAutograd, m) { m.impl("_cpu_isa", &cpu_isa); }

}  // namespace fastecg
