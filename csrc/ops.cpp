// The one TORCH_LIBRARY(fastecg) block: schemas of the private compiled kernels.
// Public ops are Python custom ops (python/fastecg/ops/*) that call these with
// real, validated tensors; kernels live in csrc/cpu (CPU) and csrc/cuda (CUDA).
#include <Python.h>
#include <torch/library.h>

TORCH_LIBRARY(fastecg, m) {
  // x: (rows, n) contiguous float32/float64; method: 0 z-score, 1 min-max, 2 naive.
  // Each row is normalised on its own.
  m.def("_normalize_kernel(Tensor x, int method, float mean, float std, float eps, int ddof) -> Tensor");
  // The fused augmentation pass (csrc/cpu/augment.cpp; ops and their tensors: OpCode there,
  // python/fastecg/ops/augment.py). x: (n, n_leads, n_samples) float32/float64. Returns the
  // output (empty when written into `out`, a work buffer kept between calls) and, when
  // stats, its per-lead (min, max, sum, sum of squares) in float64 (else empty).
  m.def("_augment_kernel(Tensor x, int[] codes, int[] ints, float[] floats, Tensor[] tensors, "
        "bool stats, Tensor(a!)? out=None) -> (Tensor, Tensor)");
  // Philox 4x32-10 words of the counters (index low 32 bits, index bits 32-47 | view << 16,
  // c2_first + s, b), s < c2_count, b < blocks, per sample: (n, c2_count, 4 * blocks) int64.
  m.def("_philox_stream_kernel(Tensor index, Tensor view, int c2_first, int c2_count, "
        "int blocks, int k0, int k1) -> Tensor");
  // The same stream's first n words as uniforms in (0, 1), or (normal) n standard normals
  // by Box-Muller on its first 2n: (n_samples, n) float64.
  m.def("_philox_uniform_kernel(Tensor index, Tensor view, int c2, int n, int k0, int k1, "
        "bool normal) -> Tensor");
  // Beta(alpha, b) per row from uniforms u (n, 2 * tries + 2) and normals z (n, 2 * tries)
  // by Marsaglia-Tsang (python/fastecg/augmenters/classic.py, beta): (n,) float64.
  m.def("_beta_kernel(Tensor u, Tensor z, float alpha, float b) -> Tensor");
  // A whole parameter draw of the classic augmenter whose stream is `stream`
  // (csrc/cpu/augment_draw.cpp): the params dict's values in its order.
  m.def("_augment_draw_kernel(int stream, Tensor index, Tensor view, int slot, int k0, int k1, "
        "int[] ints, float[] floats, Tensor[] tensors) -> Tensor[]");
  // The fused pass's op tensors from the drawn parameters of that augmenter (its fuse()).
  m.def("_augment_fuse_kernel(int stream, int[] ints, Tensor[] tensors) -> Tensor[]");
  // Per-lead (min, max, sum, sum of squares) of x (n, n_leads, n_samples), float64 (n, L, 4).
  m.def("_lead_stats_kernel(Tensor x) -> Tensor");
  // x: (rows, n); sos: (n_sections, 6) float64 with a0 == 1; zi: sosfilt_zi(sos), float64.
  // padtype: 0 none, 1 odd, 2 even, 3 constant. Same recurrence, padding and initial
  // conditions as scipy.signal.sosfiltfilt, state in float64.
  m.def("_sosfiltfilt_kernel(Tensor x, Tensor sos, Tensor zi, int padlen, int padtype) -> Tensor");
  // Transpose of _sosfiltfilt_kernel: zero extension, zero initial states, edge_terms
  // (rows, 2) float64 added to the last forward and the first backward output (the
  // initial conditions' part, see python/fastecg/ops/sosfilt.py), backward pass
  // through both extensions, extension folded back (odd/even/constant).
  m.def("_sosfiltfilt_adjoint_kernel(Tensor g, Tensor sos, Tensor edge_terms, int padlen, "
        "int padtype) -> Tensor");
  // y, zf = scipy.signal.sosfilt(sos, x, zi=zi) per row; zi: (rows, n_sections, 2) float64.
  m.def("_sosfilt_kernel(Tensor x, Tensor sos, Tensor zi) -> (Tensor, Tensor)");
  // Running medians along time, scipy.ndimage.median_filter per stage (a chain: the dual
  // median of baseline removal). x: (rows, n) float32/float64; mode: 0 reflect, 1 mirror,
  // 2 nearest, 3 constant, 4 wrap. Returns the last stage's output (x minus it when
  // subtract) and, when need_index, the int64 row index of the sample each output
  // selected (-1: cval); otherwise an empty index.
  m.def("_median_filter_kernel(Tensor x, int[] sizes, int[] origins, int mode, float cval, "
        "bool subtract, bool need_index) -> (Tensor, Tensor)");
  // Chain of centred moving averages over torch's reflect padding (avg_pool1d of
  // F.pad(x, (w//2, w//2), "reflect")), double accumulators; x - result when subtract.
  m.def("_moving_average_kernel(Tensor x, int[] sizes, bool subtract) -> Tensor");
  // The fft band-pass method on rows (rows, n) float32/float64: reflect-padded to n_fft
  // (`right` samples of the end, zeros, `pad` of the start: bandpass.py's _filter_rows),
  // circularly convolved with the zero-phase response `gain` (the rFFT bins' |H|^2, each
  // repeated for the real and imaginary parts), cropped to n. adjoint: the transpose.
  m.def("_zero_phase_fft_kernel(Tensor rows, Tensor gain, int pad, int right, int n_fft, "
        "bool adjoint) -> Tensor");
  // Polyphase FIR resampling of rows (..., n_in) float32/float64 (resample_poly, upfirdn
  // cropped): y[r, m] = sum_i xe[r, i] * taps[m * down + offset - up * i] for m < n_out, xe
  // the row extended with cval; taps: 1-D, x's dtype. Computes only the kept outputs.
  m.def("_resample_poly_kernel(Tensor x, Tensor taps, int up, int down, int offset, int n_out, "
        "float cval) -> Tensor");
  // MAE patch masking (python/fastecg/ops/patch_mask.py). x: (batch, n_leads, n_samples),
  // n_samples a multiple of patch_size; mode: 0 temporal (token t = every lead of patch t,
  // lead-major), 1/2 per-lead tokens c * T + t; ids_keep: (batch, n_keep) int64 token ids.
  // Gather/scatter copy any dtype bit for bit; the scatter's other samples are zeros.
  m.def("_patch_gather_kernel(Tensor x, Tensor ids_keep, int patch_size, int mode) -> Tensor");
  m.def("_patch_scatter_kernel(Tensor kept, Tensor ids_keep, int patch_size, int mode, "
        "int n_leads, int n_samples) -> Tensor");
  // sum_l m_l |pred_l - target_l|^2 / D / sum_l m_l over tokens with m_l != 0 only, target
  // read from x (per-patch mean and unbiased std + eps when norm_pix); pred (batch, L, D),
  // x and mask (batch, L) of one float dtype. The backward gives (dpred, dx), dx empty
  // unless need_dx.
  m.def("_masked_recon_loss_kernel(Tensor pred, Tensor x, Tensor mask, int patch_size, "
        "int mode, bool norm_pix, float eps) -> Tensor");
  m.def("_masked_recon_loss_backward_kernel(Tensor grad, Tensor pred, Tensor x, Tensor mask, "
        "int patch_size, int mode, bool norm_pix, float eps, bool need_dx) -> (Tensor, Tensor)");
  // Instruction set the CPU kernels use (FASTECG_CPU_ISA may force a narrower one).
  m.def("_cpu_isa() -> str");
}

// An empty Python module, so that `import fastecg._C` loads the library and runs
// the registrations above (no pybind11: it would cost a heavy header per TU).
static struct PyModuleDef fastecg_c_module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&fastecg_c_module); }
