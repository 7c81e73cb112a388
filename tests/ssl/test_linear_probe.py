"""A linear probe on an ST-MEM encoder pretrained briefly on labelled synthetic ECG beats
the same probe on the randomly initialised encoder (fixed seeds).

Measured here (1 thread): 500 steps of batch 32 (~18 s), probe accuracy on 80 held-out
records of 40 unseen patients (5 balanced classes: NSR, SB, STach, AF, BBB) 0.66 against
0.56 at random init; 250 steps gave no margin yet (0.54 against 0.56).
"""

import torch

from fastecg.data import SyntheticECGDataset
from fastecg.registry import SSL
from fastecg.train import Trainer

CONFIG = dict(n_leads=3, seq_len=400, patch_size=20, embed_dim=32, depth=2, num_heads=4,
              decoder_dim=32, decoder_depth=1, decoder_heads=4, norm_pix=False,
              preprocess=None)
N_TRAIN = 240


def _probe_accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        f = model.embed(x)
    f = (f - f[:N_TRAIN].mean(0)) / (f[:N_TRAIN].std(0) + 1e-6)
    torch.manual_seed(0)
    clf = torch.nn.Linear(f.shape[1], 5)
    opt = torch.optim.LBFGS(clf.parameters(), max_iter=300)

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(clf(f[:N_TRAIN]), y[:N_TRAIN]) \
            + 1e-3 * clf.weight.square().sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return (clf(f[N_TRAIN:]).argmax(1) == y[N_TRAIN:]).float().mean().item()


def test_pretrained_st_mem_beats_random_init():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ds = SyntheticECGDataset(320, fs=50.0, seconds=8.0, n_leads=3, seed=0)
        x = torch.stack([ds[i][0] for i in range(len(ds))])
        y = torch.tensor([int(ds[i][1]) for i in range(len(ds))])
        x = (x - x.mean((-1, -2), keepdim=True)) / x.std((-1, -2), keepdim=True)
        torch.manual_seed(0)
        random_init = SSL.build("st_mem", **CONFIG)
        torch.manual_seed(0)
        model = SSL.build("st_mem", **CONFIG)
        Trainer(model, lr=2e-3, batch_size=32, max_steps=500, progress=False).fit(x[:N_TRAIN])
        pretrained, baseline = _probe_accuracy(model, x, y), _probe_accuracy(random_init, x, y)
    finally:
        torch.set_num_threads(threads)
    assert pretrained >= baseline + 0.075, (pretrained, baseline)
