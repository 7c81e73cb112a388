"""Second-order-section filters shared by the sosfilt tests."""

import numpy as np


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
