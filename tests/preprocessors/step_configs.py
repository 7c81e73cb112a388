"""One sample config per registered preprocessing step (shared by the tests)."""

STEP_CONFIGS = {
    "bandpass": [{"lowcut": 0.5, "highcut": 40.0},
                 {"lowcut": None, "highcut": 30.0, "filter_order": 3},
                 {"lowcut": 0.5, "highcut": 45.0, "filter_type": "fir", "filter_order": 100}],
    "baseline_remove": [{}, {"window1": 0.4, "window2": None, "mode": "constant"},
                        {"method": "mean"}],
    "normalize": [{}, {"method": "min-max", "per_channel": True},
                  {"method": "z-score", "ddof": 0, "eps": 0.0, "mean": 1.0, "std": 2.0}],
    "min_max_normalize": [{"per_channel": True}],
    "naive_normalize": [{"mean": 0.5, "std": 0.25}],
    "z_score_normalize": [{"mean": 1.0, "std": 3.0, "per_channel": True}],
    "sos_filter": [{"design": "iirnotch", "freq": 50.0, "q": 30.0},
                   {"design": "butter", "order": 3, "freq": [1.0, 30.0]},
                   {"design": "cheby1", "order": 4, "rp": 0.5, "freq": 40.0, "btype": "lowpass"},
                   {"design": "cheby2", "order": 4, "rs": 40.0, "freq": 0.7, "btype": "highpass"},
                   {"design": "ellip", "order": 3, "rp": 0.5, "rs": 40.0, "freq": [45.0, 55.0],
                    "btype": "bandstop"},
                   {"design": "bessel", "order": 4, "freq": 35.0, "btype": "lowpass"},
                   {"design": "iirpeak", "freq": 10.0, "q": 5.0},
                   {"design": "sos", "sos": [[0.2, 0.4, 0.2, 1.0, -0.3, 0.1]]},
                   {"design": "butter", "order": 2, "freq": 20.0, "btype": "lowpass",
                    "zero_phase": False}],
    "resample": [{"dst_fs": 250.0, "method": "fft"}, {"dst_fs": 360.0, "method": "linear"},
                 {"dst_fs": 100.0, "method": "decimate"}, {"siglen": 777, "method": "fft"},
                 {"dst_fs": 360.0}],
    "crop_or_pad": [{"length": 1500}, {"length": 2600, "mode": "left", "pad": "edge"},
                    {"duration_s": 2.5, "mode": "center", "pad": "zero"}],
    "lead_select": [{"leads": ["V1", "I", "aVR"]}],
}

LEAD_NAMES = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]


def step_cases():
    for name, configs in STEP_CONFIGS.items():
        for i, config in enumerate(configs):
            yield name, config, f"{name}-{i}"
