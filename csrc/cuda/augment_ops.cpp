// Torch glue of the fused augmentation pass's CUDA kernel (augment.cu): the op list split
// into stages at every warp and pairing (and after kAugmentMaxOps point-wise ops), checked
// as the CPU kernel checks it (csrc/cpu/augment.cpp), one launch per stage on the current
// stream, never synchronising. Stages before the last write into two buffers in turn.
// Registered here, beside its glue, as patch_mask_ops.cpp is. Built only with CUDA
// (setup.py).
#include <ATen/ATen.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <array>
#include <mutex>
#include <optional>
#include <vector>

#include "../common/codes.h"
#include "../common/hash_noise.h"
#include "augment.h"

namespace fastecg {
namespace {

void check_cuda(cudaError_t err, const char* name) {
  TORCH_CHECK(err == cudaSuccess, name, ": ", cudaGetErrorString(err));
}

// The noise tables (radius, then cosines and sines: 3 kNoiseTable) on `device`, computed on the
// host and copied once per device and dtype. Deliberately never freed: they live as long
// as the process, and freeing at exit could run after the CUDA context is gone.
template <typename T>
const T* device_noise_tables(int device) {
  static std::mutex mutex;
  static std::array<T*, 64> tables{};
  TORCH_CHECK(device >= 0 && device < static_cast<int>(tables.size()),
              "_augment_kernel: device index ", device, " out of range");
  const std::lock_guard<std::mutex> lock(mutex);
  if (tables[device] == nullptr) {
    std::vector<T> host(3 * kNoiseTable);
    fill_noise_tables(host.data(), host.data() + kNoiseTable);
    T* dev = nullptr;
    check_cuda(cudaMalloc(&dev, sizeof(T) * host.size()), "_augment_kernel");
    check_cuda(cudaMemcpy(dev, host.data(), sizeof(T) * host.size(), cudaMemcpyHostToDevice),
               "_augment_kernel");
    tables[device] = dev;
  }
  return tables[device];
}

// A parameter tensor checked and made contiguous (kept alive by `keep`).
const void* param(std::vector<at::Tensor>& keep, const at::Tensor& t, const at::Tensor& x,
                  at::ScalarType dtype, at::IntArrayRef shape, const char* what) {
  TORCH_CHECK(t.device() == x.device() && t.scalar_type() == dtype, "_augment_kernel: ", what,
              " must be a ", dtype, " tensor on ", x.device(), ", got ", t.scalar_type(), " on ",
              t.device());
  TORCH_CHECK(t.sizes() == shape, "_augment_kernel: ", what, " must have shape ", shape,
              ", got ", t.sizes());
  keep.push_back(t.contiguous());
  return keep.back().const_data_ptr();
}

std::vector<AugmentStage> parse_stages(const at::Tensor& x, at::IntArrayRef codes,
                                       at::IntArrayRef ints, at::ArrayRef<double> floats,
                                       at::TensorList tensors, std::vector<at::Tensor>& keep) {
  const at::ScalarType dt = x.scalar_type();
  const int64_t n = x.size(0);
  std::vector<AugmentStage> stages(1);
  stages[0].lin = stages[0].lout = stages[0].lmax = x.size(1);
  stages[0].t_len = stages[0].t_in = x.size(2);
  size_t ti = 0, ii = 0, fi = 0;
  auto next_tensor = [&]() -> const at::Tensor& {
    TORCH_CHECK(ti < tensors.size(), "_augment_kernel: too few tensors for the ops");
    return tensors[ti++];
  };
  // A stage whose input is the one before, materialised (head: -1, WARP or PAIR).
  auto new_stage = [&](int64_t head, int64_t t_len) -> AugmentStage& {
    const AugmentStage& prev = stages.back();
    AugmentStage next;
    next.head = head;
    next.lin = next.lout = next.lmax = prev.lout;
    next.t_in = prev.t_len;
    next.t_len = t_len;
    stages.push_back(next);
    return stages.back();
  };
  for (const int64_t code : codes) {
    if (code != kWarp && code != kPair && stages.back().n_ops == kAugmentMaxOps)
      new_stage(-1, stages.back().t_len);
    AugmentStage& st = stages.back();
    const int64_t L = st.lout, len = st.t_len;
    AugmentOp op;
    op.code = code;
    op.lin = op.lout = L;
    switch (code) {
      case kLeadMix: {
        const at::Tensor& m = next_tensor();
        TORCH_CHECK(m.dim() == 3, "_augment_kernel: lead matrix must be (N, L_out, L_in)");
        op.lout = m.size(1);
        op.a = param(keep, m, x, at::kDouble, {n, op.lout, L}, "lead matrix");
        break;
      }
      case kLeadAffine:
        op.a = param(keep, next_tensor(), x, dt, {n, L}, "gain");
        op.b = param(keep, next_tensor(), x, dt, {n, L}, "shift");
        break;
      case kSines: {
        const at::Tensor& coef = next_tensor();
        TORCH_CHECK(coef.dim() == 3, "_augment_kernel: sine coefficients must be (N, L, J)");
        op.count = coef.size(2);
        op.a = param(keep, coef, x, dt, {n, L, op.count}, "sine coefficients");
        op.b = param(keep, next_tensor(), x, dt, {op.count, len}, "sine basis");
        const at::Tensor& keys = next_tensor();
        const at::Tensor& noise_std = next_tensor();
        if (keys.numel() > 0) {
          op.c = param(keep, keys, x, at::kLong, {n, L, 2}, "noise keys");
          op.d = param(keep, noise_std, x, dt, {n, L}, "noise std");
        }
        break;
      }
      case kNoise:
        op.a = param(keep, next_tensor(), x, at::kLong, {n, L, 2}, "noise keys");
        op.b = param(keep, next_tensor(), x, dt, {n, L}, "noise std");
        break;
      case kTimeMask: {
        const at::Tensor& start = next_tensor();
        TORCH_CHECK(start.dim() == 2, "_augment_kernel: mask starts must be (N, S)");
        op.count = start.size(1);
        op.a = param(keep, start, x, at::kLong, {n, op.count}, "mask starts");
        op.b = param(keep, next_tensor(), x, at::kLong, {n, op.count}, "mask ends");
        TORCH_CHECK(fi < floats.size(), "_augment_kernel: too few floats for the ops");
        op.value = floats[fi++];
        break;
      }
      case kAddRows:
        op.a = param(keep, next_tensor(), x, dt, {n, L, len}, "added rows");
        break;
      case kFirNoise: {
        op.a = param(keep, next_tensor(), x, at::kLong, {n, L, 2}, "noise keys");
        op.b = param(keep, next_tensor(), x, dt, {n, L}, "noise std");
        const at::Tensor& taps = next_tensor();
        TORCH_CHECK(taps.dim() == 1 && taps.size(0) >= 1,
                    "_augment_kernel: FIR taps must be (K,), K >= 1");
        op.count = taps.size(0);
        op.c = param(keep, taps, x, dt, {op.count}, "FIR taps");
        st.taps = std::max(st.taps, op.count);
        break;
      }
      case kWarp: {
        const void* offset = param(keep, next_tensor(), x, at::kLong, {n}, "warp offsets");
        const void* limit = param(keep, next_tensor(), x, at::kLong, {n}, "warp limits");
        const void* ratio = param(keep, next_tensor(), x, at::kDouble, {n}, "warp ratios");
        TORCH_CHECK(ii < ints.size() && ints[ii] >= 1, "_augment_kernel: warp needs its length");
        AugmentStage& next = new_stage(kWarp, ints[ii++]);
        next.h0 = static_cast<const int64_t*>(offset);
        next.h1 = static_cast<const int64_t*>(limit);
        next.hr = static_cast<const double*>(ratio);
        continue;
      }
      case kPair: {
        const at::Tensor& partner = next_tensor();
        const void* p = param(keep, partner, x, at::kLong, {n}, "partners");
        const void* lam = param(keep, next_tensor(), x, at::kDouble, {n}, "mixing weights");
        // The range on the device, asynchronously (no sync).
        if (n > 0)
          at::_assert_async(((partner >= 0) & (partner < n)).all(),
                            "_augment_kernel: partner out of range");
        AugmentStage& next = new_stage(kPair, len);
        next.h0 = static_cast<const int64_t*>(p);
        next.hr = static_cast<const double*>(lam);
        continue;
      }
      default:
        TORCH_CHECK(false, "_augment_kernel: unknown op code ", code);
    }
    st.ops[st.n_ops++] = op;
    st.lout = op.lout;
    st.lmax = std::max({st.lmax, op.lin, op.lout});
  }
  TORCH_CHECK(ti == tensors.size() && ii == ints.size() && fi == floats.size(),
              "_augment_kernel: more tensors, ints or floats than the ops use");
  return stages;
}

// Launch one stage; its statistics (n, lout, 4) when `stats`, reduced over the blocks.
template <typename T>
std::optional<at::Tensor> launch(const AugmentStage& st, const at::Tensor& src, T* out,
                                 bool stats, int64_t n, const T* tables, cudaStream_t stream) {
  const int64_t block = augment_block(st, sizeof(T));
  const int64_t tiles = (st.t_len + block - 1) / block;
  at::Tensor partial;
  if (stats) partial = at::empty({n, tiles, st.lout, 4}, src.options().dtype(at::kDouble));
  check_cuda(augment_stage_cuda<T>(src.const_data_ptr<T>(), out,
                                   stats ? partial.mutable_data_ptr<double>() : nullptr, st,
                                   tables, tables + kNoiseTable, n, stream),
             "_augment_kernel");
  if (!stats) return std::nullopt;
  return at::stack({std::get<0>(partial.select(3, 0).min(1)),
                    std::get<0>(partial.select(3, 1).max(1)), partial.select(3, 2).sum(1),
                    partial.select(3, 3).sum(1)},
                   -1);
}

template <typename T>
std::tuple<at::Tensor, at::Tensor> augment_typed(const at::Tensor& x, at::IntArrayRef codes,
                                                 at::IntArrayRef ints, at::ArrayRef<double> floats,
                                                 at::TensorList tensors, bool want_stats,
                                                 const std::optional<at::Tensor>& out_buffer) {
  const int64_t n = x.size(0);
  std::vector<at::Tensor> keep;
  keep.reserve(tensors.size());
  const std::vector<AugmentStage> stages = parse_stages(x, codes, ints, floats, tensors, keep);
  const AugmentStage& last = stages.back();
  const std::vector<int64_t> shape{n, last.lout, last.t_len};
  at::Tensor out;
  if (out_buffer.has_value()) {
    out = *out_buffer;
    TORCH_CHECK(out.scalar_type() == x.scalar_type() && out.device() == x.device() &&
                    out.is_contiguous() && out.sizes() == at::IntArrayRef(shape),
                "_augment_kernel: out must be a contiguous ", x.scalar_type(), " tensor on ",
                x.device(), " of shape ", at::IntArrayRef(shape), ", got ", out.scalar_type(),
                " ", out.sizes());
    const char* o = static_cast<const char*>(out.data_ptr());
    const char* i = static_cast<const char*>(x.data_ptr());
    TORCH_CHECK(o + out.nbytes() <= i || i + x.nbytes() <= o,
                "_augment_kernel: out must not overlap x");
  } else {
    out = at::empty(shape, x.options());
  }
  at::Tensor stats = at::empty({0}, x.options().dtype(at::kDouble));
  if (n > 0 && last.lout > 0 && last.t_len > 0) {
    const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
    const T* tables = device_noise_tables<T>(x.get_device());
    std::array<at::Tensor, 2> buffers;
    at::Tensor src = x;
    for (size_t s = 0; s < stages.size(); ++s) {
      const AugmentStage& st = stages[s];
      const bool final = s + 1 == stages.size();
      at::Tensor dest = out;
      if (!final) {
        // Stage s writes buffers[s % 2] while stage s + 1 will read it and write the other.
        at::Tensor& buf = buffers[s % 2];
        const int64_t need = n * st.lout * st.t_len;
        if (!buf.defined() || buf.numel() < need) buf = at::empty({need}, x.options());
        dest = buf.narrow(0, 0, need).view({n, st.lout, st.t_len});
      }
      std::optional<at::Tensor> st_stats =
          launch<T>(st, src, dest.mutable_data_ptr<T>(), want_stats && final, n, tables, stream);
      if (st_stats.has_value()) stats = *st_stats;
      src = dest;
    }
  } else if (want_stats) {
    stats = at::empty({n, last.lout, 4}, x.options().dtype(at::kDouble));
  }
  // Written into `out`: the first result is then empty (the schema does not alias it).
  return {out_buffer.has_value() ? at::empty({0}, x.options()) : out, stats};
}

std::tuple<at::Tensor, at::Tensor> augment_cuda_op(const at::Tensor& x, at::IntArrayRef codes,
                                                   at::IntArrayRef ints,
                                                   at::ArrayRef<double> floats,
                                                   at::TensorList tensors, bool stats,
                                                   const std::optional<at::Tensor>& out) {
  TORCH_CHECK(x.dim() == 3, "_augment_kernel: expected (n, n_leads, n_samples), got ", x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_augment_kernel: expected float32 or float64, got ", x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  if (xc.scalar_type() == at::kFloat)
    return augment_typed<float>(xc, codes, ints, floats, tensors, stats, out);
  return augment_typed<double>(xc, codes, ints, floats, tensors, stats, out);
}

// Per-lead (min, max, sum, sum of squares) of x (n, n_leads, n_samples): a stage with no
// ops that writes nothing but its statistics.
at::Tensor lead_stats_cuda_op(const at::Tensor& x) {
  TORCH_CHECK(x.dim() == 3, "_lead_stats_kernel: expected (n, n_leads, n_samples), got ",
              x.sizes());
  TORCH_CHECK(x.scalar_type() == at::kFloat || x.scalar_type() == at::kDouble,
              "_lead_stats_kernel: expected float32 or float64, got ", x.scalar_type());
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const int64_t n = xc.size(0);
  AugmentStage st;
  st.lin = st.lout = st.lmax = xc.size(1);
  st.t_len = st.t_in = xc.size(2);
  if (n == 0 || st.lout == 0 || st.t_len == 0) {
    at::Tensor empty = at::empty({n, st.lout, 4}, xc.options().dtype(at::kDouble));
    empty.select(2, 0).fill_(INFINITY);
    empty.select(2, 1).fill_(-INFINITY);
    empty.narrow(2, 2, 2).zero_();
    return empty;
  }
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  if (xc.scalar_type() == at::kFloat)
    return *launch<float>(st, xc, nullptr, true, n, device_noise_tables<float>(xc.get_device()),
                          stream);
  return *launch<double>(st, xc, nullptr, true, n, device_noise_tables<double>(xc.get_device()),
                         stream);
}

}  // namespace

TORCH_LIBRARY_IMPL(fastecg, CUDA, m) {
  m.impl("_augment_kernel", &augment_cuda_op);
  m.impl("_lead_stats_kernel", &lead_stats_cuda_op);
}

}  // namespace fastecg
