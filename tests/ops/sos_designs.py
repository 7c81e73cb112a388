"""Second-order-section filters shared by the sosfilt tests."""

import numpy as np
import scipy.signal as ss


def random_stable_sos(rng: np.random.Generator, n_sections: int) -> np.ndarray:
    """Conjugate pole pairs well inside the unit circle (radius 0.3-0.97), zeros anywhere
    up to radius 1.2, random gain: a stable filter no design routine would produce."""
    sos = []
    for _ in range(n_sections):
        r, th = rng.uniform(0.3, 0.97), rng.uniform(0, np.pi)
        zr, zth = rng.uniform(0, 1.2), rng.uniform(0, np.pi)
        b = np.array([1.0, -2 * zr * np.cos(zth), zr ** 2]) * rng.uniform(0.2, 2)
        sos.append([*b, 1.0, -2 * r * np.cos(th), r ** 2])
    return np.array(sos)


# SciPy designs of every family the filters take, built on demand.
DESIGNS = {
    "cheby1": lambda: ss.cheby1(5, 1, [1.0, 40.0], btype="bandpass", fs=500, output="sos"),
    "cheby2": lambda: ss.cheby2(4, 40, 30.0, fs=250, output="sos"),
    "ellip": lambda: ss.ellip(4, 0.5, 50, [0.7, 35.0], btype="bandpass", fs=500, output="sos"),
    "notch50": lambda: ss.tf2sos(*ss.iirnotch(50.0, 30.0, fs=500.0)),
    "notch60": lambda: ss.tf2sos(*ss.iirnotch(60.0, 20.0, fs=360.0)),
    "random": lambda: random_stable_sos(np.random.default_rng(3), 5),
}
