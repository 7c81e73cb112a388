// CPU kernel of fastecg::_zero_phase_fft_kernel: the `fft` band-pass method's circular
// convolution of reflect-padded rows with a zero-phase response |H|^2, and its transpose.
//
// The same transforms as the torch reference (python/fastecg/ops/bandpass.py,
// _filter_rows / _adjoint_rows: torch's rFFT, the gain, torch's inverse rFFT), taken a
// block of rows at a time: the block's padded rows, spectrum and inverse stay in the
// caches, where the batch-wide ops write and read each intermediate (padded rows,
// spectrum, inverse: ~16 MB each for a (768, 5000) float32 batch) through memory. Each
// thread claims blocks and transforms them on its own (the FFT library runs on the
// calling thread inside a parallel region).
#include <ATen/ATen.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>

#include "../common/parallel.h"

namespace fastecg {
namespace {

// Samples per transform call: 32 rows of 5120 (the (64, 12, 5000) batch's length) ran
// fastest, 16 or 64 about 20% slower (2 threads): the block's padded rows and spectrum
// stay in the L2 caches, and the FFT library's per-call cost (~20 us here, against
// ~14 us a row) is spread over the rows. Longer rows take fewer per block, down to one
// (Holter rows: no cache to gain, level with the batch-wide transforms).
constexpr int64_t kBlockSamples = 32 * 5120;

// Rows per block: as many as kBlockSamples allow, but at least one block per thread.
int64_t block_rows(int64_t n_rows, int64_t n_fft) {
  const int64_t per_thread = (n_rows + at::get_num_threads() - 1) / at::get_num_threads();
  return std::clamp<int64_t>(std::min(kBlockSamples / n_fft, per_thread), 1, n_rows);
}

// Padded row of length n_fft (see _tail_index in bandpass.py): the row, its end
// reflected (`right` samples: x[n-2], x[n-3], ...), zeros, its start reflected (`pad`
// samples ending with x[1]), which a circular transform puts before x[0].
template <typename T>
void pad_row(const T* x, int64_t n, int64_t pad, int64_t right, int64_t n_fft, T* out) {
  std::copy(x, x + n, out);
  for (int64_t k = 0; k < right; ++k) out[n + k] = x[n - 2 - k];
  std::fill(out + n + right, out + n_fft - pad, T(0));
  for (int64_t k = 0; k < pad; ++k) out[n_fft - pad + k] = x[pad - k];
}

// Transpose of pad_row's reading: y[.. n) plus the extension's columns added back onto
// the samples they copied.
template <typename T>
void fold_row(const T* y, int64_t n, int64_t pad, int64_t right, int64_t n_fft, T* out) {
  std::copy(y, y + n, out);
  for (int64_t k = 0; k < right; ++k) out[n - 2 - k] += y[n + k];
  for (int64_t k = 0; k < pad; ++k) out[pad - k] += y[n_fft - pad + k];
}

// Rows [r0, r0 + count): padded (or zero-extended) into `padded`, transformed, filtered,
// transformed back, cropped (or folded) into y.
template <typename T>
void transform_block(const T* x, int64_t n, int64_t r0, int64_t count, const at::Tensor& gain,
                     int64_t pad, int64_t right, int64_t n_fft, bool adjoint,
                     const at::Tensor& padded, T* y) {
  const at::Tensor in = padded.narrow(0, 0, count);
  T* p = in.data_ptr<T>();
  for (int64_t r = 0; r < count; ++r) {
    const T* xr = x + (r0 + r) * n;
    T* pr = p + r * n_fft;
    if (adjoint) {  // the transpose reads the rows zero-extended
      std::copy(xr, xr + n, pr);
      std::fill(pr + n, pr + n_fft, T(0));
    } else {
      pad_row(xr, n, pad, right, n_fft, pr);
    }
  }
  const at::Tensor spectrum = at::fft_rfft(in, n_fft, -1);
  at::view_as_real(spectrum).view({count, -1}).mul_(gain);
  const at::Tensor filtered = at::fft_irfft(spectrum, n_fft, -1).contiguous();
  const T* f = filtered.data_ptr<T>();
  for (int64_t r = 0; r < count; ++r) {
    const T* fr = f + r * n_fft;
    T* yr = y + (r0 + r) * n;
    if (adjoint)
      fold_row(fr, n, pad, right, n_fft, yr);
    else
      std::copy(fr, fr + n, yr);
  }
}

template <typename T>
void zero_phase_fft_rows(const at::Tensor& rows, const at::Tensor& gain, int64_t pad,
                         int64_t right, int64_t n_fft, bool adjoint, at::Tensor& out) {
  const int64_t n_rows = rows.size(0), n = rows.size(1);
  const T* x = rows.data_ptr<T>();
  T* y = out.data_ptr<T>();
  const int64_t per_block = block_rows(n_rows, n_fft);
  parallel_claim((n_rows + per_block - 1) / per_block, [&](auto& claim) {
    const at::Tensor padded = at::empty({per_block, n_fft}, rows.options());
    for (int64_t b; (b = claim()) >= 0;)
      transform_block(x, n, b * per_block, std::min(per_block, n_rows - b * per_block), gain,
                      pad, right, n_fft, adjoint, padded, y);
  });
}

at::Tensor zero_phase_fft_cpu(const at::Tensor& rows, const at::Tensor& gain, int64_t pad,
                              int64_t right, int64_t n_fft, bool adjoint) {
  TORCH_CHECK(rows.dim() == 2, "expected (rows, n_samples), got ", rows.sizes());
  TORCH_CHECK(rows.scalar_type() == at::kFloat || rows.scalar_type() == at::kDouble,
              "expected float32 or float64, got ", rows.scalar_type());
  TORCH_CHECK(gain.scalar_type() == rows.scalar_type() && gain.dim() == 1 &&
                  gain.numel() == 2 * (n_fft / 2 + 1),
              "gain: expected ", 2 * (n_fft / 2 + 1), " values of the rows' dtype");
  const int64_t n = rows.size(1);
  TORCH_CHECK(n >= 2 && 0 <= pad && pad < n && 0 <= right && right < n && n + pad + right <= n_fft,
              "bad padding: n=", n, " pad=", pad, " right=", right, " n_fft=", n_fft);
  const at::Tensor xc = rows.contiguous(), g = gain.contiguous();
  at::Tensor out = at::empty_like(xc);
  if (xc.numel() == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(xc.scalar_type(), "zero_phase_fft_cpu", [&] {
    zero_phase_fft_rows<scalar_t>(xc, g, pad, right, n_fft, adjoint, out);
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CPU, m) { m.impl("_zero_phase_fft_kernel", &zero_phase_fft_cpu); }

}  // namespace fastecg
