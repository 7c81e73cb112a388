"""A linear probe on an ST-MEM encoder pretrained briefly on labelled synthetic ECG beats
the same probe on the randomly initialised encoder (fixed seeds).

Measured here (1 thread): 500 steps of batch 32 (~18 s), probe accuracy on 80 held-out
records of 40 unseen patients (5 balanced classes: NSR, SB, STach, AF, BBB) 0.66 against
0.56 at random init; 250 steps gave no margin yet (0.54 against 0.56).
"""

import pytest
import torch

from fastecg.registry import SSL
from fastecg.train import Trainer
from ssl_probe import N_TRAIN, probe_accuracy, synthetic_records

CONFIG = dict(n_leads=3, seq_len=400, patch_size=20, embed_dim=32, depth=2, num_heads=4,
              decoder_dim=32, decoder_depth=1, decoder_heads=4, norm_pix=False,
              preprocess=None)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_pretrained_st_mem_beats_random_init():
    x, y, _ = synthetic_records(per_lead=False)
    torch.manual_seed(0)
    random_init = SSL.build("st_mem", **CONFIG)
    torch.manual_seed(0)
    model = SSL.build("st_mem", **CONFIG)
    Trainer(model, lr=2e-3, batch_size=32, max_steps=500, progress=False).fit(x[:N_TRAIN])
    pretrained, baseline = probe_accuracy(model, x, y), probe_accuracy(random_init, x, y)
    assert pretrained >= baseline + 0.075, (pretrained, baseline)
