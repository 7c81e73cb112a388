import numpy as np
import pytest


@pytest.fixture(scope="session")
def records(cinc_records):
    """The CinC 2021 sample records as one float64 array (n_records, 12, 5000) in mV,
    read with wfdb (as the authors' code reads them), and their lead names."""
    wfdb = pytest.importorskip("wfdb")
    signals, names = [], None
    for path in cinc_records:
        signal, fields = wfdb.rdsamp(path)
        assert fields["fs"] == 500 and signal.shape == (5000, 12)
        names = names or fields["sig_name"]
        assert fields["sig_name"] == names
        signals.append(signal.T)
    return np.stack(signals), names
