"""bandpass(method="fft" and "fir") traced with a symbolic length: torch.export with a
dynamic dimension and torch.compile(dynamic=True) give one program for every length."""

import numpy as np
import pytest
import scipy.signal as ss
import torch

from fastecg.ops import bandpass

FS, LOW, HIGH = 500.0, 5.0, 45.0


class FFTBandPass(torch.nn.Module):
    def forward(self, x):
        return bandpass(x, FS, LOW, HIGH, method="fft")


def _interior_error(y, x):
    """Largest difference from SciPy's sosfiltfilt beyond 5 / LOW seconds from the ends,
    relative to the peak: where the fft method equals it (bandpass's docstring: measured
    up to 1.3e-5; white noise here, up to 2.4e-5), and a wrong transform length, padding
    or response is off by O(1)."""
    sos = ss.butter(4, [LOW, HIGH], btype="bandpass", fs=FS, output="sos")
    ref = torch.from_numpy(ss.sosfiltfilt(sos, x.double().numpy(), axis=-1).copy())
    edge = int(5 / LOW * FS)
    return ((y.double() - ref)[..., edge:-edge].abs().max() / ref.abs().max()).item()


def test_export_with_a_dynamic_length_runs_every_length():
    # The transform length (a 2^a 3^b 5^c multiple of 8) was planned while tracing:
    # export refused the guards on its factors ("Constraints violated").
    x = torch.randn(2, 3, 3000, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(
        FFTBandPass(), (x,),
        dynamic_shapes={"x": {0: torch.export.Dim("batch"), 2: torch.export.Dim("n")}})
    gen = torch.Generator().manual_seed(1)
    for shape in ((2, 3, 3000), (1, 3, 2001), (4, 3, 3607), (1, 3, 2)):
        xi = torch.randn(shape, generator=gen)
        y = program.module()(xi)
        torch.testing.assert_close(y, bandpass(xi, FS, LOW, HIGH, method="fft"), rtol=0, atol=0)
        if shape[-1] > 2000:
            assert _interior_error(y, xi) < 1e-4


def test_exported_program_backward_is_the_eager_gradient():
    x = torch.randn(2, 700, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    program = torch.export.export(FFTBandPass(), (x,),
                                  dynamic_shapes={"x": {1: torch.export.Dim("n")}})
    xi = torch.randn(2, 913, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 913, dtype=torch.float64)
    (got,) = torch.autograd.grad((program.module()(xi) * w).sum(), xi)
    (want,) = torch.autograd.grad((bandpass(xi, FS, LOW, HIGH, method="fft") * w).sum(), xi)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_compile_dynamic_compiles_once_for_every_length():
    from torch._dynamo.testing import CompileCounter

    torch.compiler.reset()
    counter = CompileCounter()
    fn = torch.compile(lambda t: bandpass(t, FS, LOW, HIGH, method="fft"), backend=counter,
                       dynamic=True, fullgraph=True)
    gen = torch.Generator().manual_seed(3)
    for n in (2100, 2400, 2555, 3234):  # fast lengths 2176, 2560, 2592, 3240
        x = torch.randn(2, n, dtype=torch.float64, generator=gen)
        y = fn(x)
        torch.testing.assert_close(y, bandpass(x, FS, LOW, HIGH, method="fft"), rtol=0, atol=0)
        assert _interior_error(y, x) < 1e-4
    assert counter.frame_count == 1


@pytest.mark.parametrize("backend", ["cpu", "torch"])
def test_planned_op_passes_opcheck(backend):
    for adjoint in (False, True):
        torch.library.opcheck(
            torch.ops.fastecg.zero_phase_fft_planned.default,
            (torch.randn(5, 200, dtype=torch.float64, requires_grad=True), 4, LOW, HIGH, FS,
             16, adjoint, backend))


# ---- method="fir" ------------------------------------------------------------------------
# 101 taps (float32 and float64) and 21 taps in float64 run the FFT convolution, whose
# length (a 2^a 3^b 5^c multiple of 8) was planned while tracing, as the fft method's.
FIR_TAPS = 101


class FIRBandPass(torch.nn.Module):
    def __init__(self, numtaps=FIR_TAPS):
        super().__init__()
        self.numtaps = numtaps

    def forward(self, x):
        return bandpass(x, FS, LOW, HIGH, method="fir", numtaps=self.numtaps)


def _fir_scipy(x, numtaps=FIR_TAPS):
    taps = ss.firwin(numtaps, [LOW, HIGH], pass_zero=False, fs=FS)
    return torch.from_numpy(ss.filtfilt(taps, 1, x.double().numpy(), axis=-1).copy())


@pytest.mark.parametrize("dtype, numtaps", [(torch.float32, FIR_TAPS),
                                            (torch.float64, FIR_TAPS), (torch.float64, 21)])
def test_fir_export_with_a_dynamic_length_runs_every_length(dtype, numtaps):
    # Export refused the guards on the transform length's factors ("Constraints
    # violated"). The signal must be longer than the padding (SciPy's 3 * numtaps).
    x = torch.randn(2, 3, 3000, dtype=dtype, generator=torch.Generator().manual_seed(0))
    program = torch.export.export(
        FIRBandPass(numtaps), (x,),
        dynamic_shapes={"x": {0: torch.export.Dim("batch"),
                              2: torch.export.Dim("n", min=3 * numtaps + 1)}})
    gen = torch.Generator().manual_seed(1)
    for shape in ((2, 3, 3000), (1, 3, 2001), (4, 3, 3607), (1, 3, 3 * numtaps + 1)):
        xi = torch.randn(shape, dtype=dtype, generator=gen)
        y = program.module()(xi)
        want = bandpass(xi, FS, LOW, HIGH, method="fir", numtaps=numtaps)
        torch.testing.assert_close(y, want, rtol=0, atol=0)
        ref = _fir_scipy(xi, numtaps)
        tol = 1e-5 if dtype == torch.float32 else 1e-12
        assert ((y.double() - ref).abs().max() / ref.abs().max()).item() < tol


def test_fir_exported_program_backward_is_the_eager_gradient():
    x = torch.randn(2, 700, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    program = torch.export.export(FIRBandPass(), (x,),
                                  dynamic_shapes={"x": {1: torch.export.Dim("n", min=304)}})
    xi = torch.randn(2, 913, dtype=torch.float64, requires_grad=True)
    w = torch.randn(2, 913, dtype=torch.float64)
    (got,) = torch.autograd.grad((program.module()(xi) * w).sum(), xi)
    (want,) = torch.autograd.grad((FIRBandPass()(xi) * w).sum(), xi)
    torch.testing.assert_close(got, want, rtol=0, atol=1e-12)


def test_fir_compile_dynamic_compiles_once_for_every_length():
    from torch._dynamo.testing import CompileCounter

    torch.compiler.reset()
    counter = CompileCounter()
    fn = torch.compile(FIRBandPass(), backend=counter, dynamic=True, fullgraph=True)
    gen = torch.Generator().manual_seed(3)
    for n in (2100, 2400, 2555, 3234):
        x = torch.randn(2, n, dtype=torch.float64, generator=gen)
        y = fn(x)
        torch.testing.assert_close(y, FIRBandPass()(x), rtol=0, atol=0)
        torch.testing.assert_close(y, _fir_scipy(x), rtol=0, atol=1e-12)
    assert counter.frame_count == 1


def test_fir_planned_op_passes_opcheck_and_gradcheck():
    op = torch.ops.fastecg.fir_fft_valid_planned.default
    taps = torch.from_numpy(ss.firwin(35, [LOW, HIGH], pass_zero=False, fs=FS))
    for x in (torch.randn(5, 200, dtype=torch.float64, requires_grad=True),
              torch.randn(3, 80, requires_grad=True)):
        torch.library.opcheck(op, (x, taps.to(x.dtype)))
    # The valid convolution against NumPy's; its backward (the op on the cotangent
    # extended by k - 1 a side, taps reversed) against finite differences, twice.
    x = torch.randn(3, 60, dtype=torch.float64, requires_grad=True)
    want = [np.convolve(row, taps.numpy(), mode="valid") for row in x.detach().numpy()]
    torch.testing.assert_close(op(x, taps), torch.from_numpy(np.stack(want)), rtol=0,
                               atol=1e-12)
    assert torch.autograd.gradcheck(lambda t: op(t, taps), (x,))
    assert torch.autograd.gradgradcheck(lambda t: op(t, taps), (x,))
    with pytest.raises(RuntimeError, match="with respect to the taps"):
        op(x, taps.clone().requires_grad_()).sum().backward()
