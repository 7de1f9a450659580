"""Contrastive Temporal Coding hook: exact checks of banks, losses, snapshot, resume, errors."""
import io
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from infodyn.ctc import (CTC, CTCSchedule, MemoryBank, NegativeSampler, binary_nce_loss, factors,
                         info_nce_loss, instance_discrimination_loss)

N, C, D_IN = 120, 4, 10


def make_model(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(D_IN, 24), nn.ReLU(), nn.Linear(24, 12), nn.ReLU(),
                         nn.Linear(12, C))


def feat(m, x):
    return m[:4](x)


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(N, D_IN, generator=g)
    y = torch.arange(N) % C
    return x, y


def batches(epoch, bs=16):
    """Deterministic shuffled batches of the toy set for a given epoch."""
    x, y = data()
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(1000 + epoch))
    return [(x[perm[i:i + bs]], y[perm[i:i + bs]], perm[i:i + bs]) for i in range(0, N, bs)]


def full_loader(bs=40):
    x, y = data()
    return [(x[i:i + bs], y[i:i + bs], torch.arange(i, min(i + bs, N))) for i in range(0, N, bs)]


def make_ctc(model, **kw):
    args = dict(switch_epoch=2, total_epochs=4, num_negatives=20, proj_dim=8, seed=3)
    args.update(kw)
    return CTC(model, feat, N, C, **args)


def step(model, ctc, opt, x, y, idx):
    f = feat(model, x)
    extra = ctc.loss(x, f, y, idx)
    loss = F.cross_entropy(model[4](f), y) + extra
    opt.zero_grad()
    loss.backward()
    opt.step()
    return extra.detach()


def to_stage2(model, ctc, opt, refill=True):
    for epoch in (1, 2):
        for b in batches(epoch):
            step(model, ctc, opt, *b)
        ctc.end_epoch(epoch, full_loader() if refill else None)
    assert ctc.stage == 2


# ----------------------------------------------------------------------------------------------
# memory bank and sampler


def test_bank_update_follows_formula_exactly():
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(10, 5, momentum=0.7, generator=g)
    assert torch.allclose(bank.weight.norm(dim=1), torch.ones(10), atol=1e-6)
    old = bank.weight.clone()
    idx = torch.tensor([3, 7, 3])  # sample 3 twice: the last row wins
    z = F.normalize(torch.randn(3, 5, generator=g), dim=1)
    bank.update(idx, z)
    for i, row in ((3, 2), (7, 1)):
        v = 0.7 * old[i] + 0.3 * z[row]
        assert torch.equal(bank.weight[i], F.normalize(v, dim=0))
    untouched = [i for i in range(10) if i not in (3, 7)]
    assert torch.equal(bank.weight[untouched], old[untouched])
    bank.fill(torch.tensor([0]), torch.tensor([[3.0, 0, 0, 4.0, 0]]))
    assert torch.allclose(bank.weight[0], torch.tensor([0.6, 0, 0, 0.8, 0]))


def test_ctc_stage1_bank_update_is_exact():
    model = make_model()
    ctc = make_ctc(model, momentum=0.8)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    x, y, idx = batches(1)[0]
    old = ctc.banks["instance"].weight.clone()
    with torch.no_grad():
        z = F.normalize(ctc.heads["instance"](feat(model, x)), dim=1)  # before the step changes them
    step(model, ctc, opt, x, y, idx)
    ctc.flush()
    expect = F.normalize(0.8 * old[idx] + 0.2 * z, dim=1)
    assert torch.allclose(ctc.banks["instance"].weight[idx], expect, atol=1e-6)
    others = torch.ones(N, dtype=torch.bool)
    others[idx] = False
    assert torch.equal(ctc.banks["instance"].weight[others], old[others])


def test_sampler_draws_only_other_classes_and_uses_all_when_short():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, -1, 2])
    s = NegativeSampler(labels, num_negatives=4)
    g = torch.Generator().manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every pool holds >= K samples: no warning
        idx, mask = s.sample(torch.tensor([0, 1, 2]), g)
    # class 0: other-class pool {3, 4, 5, 7} (6 is unlabelled) = 4 = K -> K draws
    # class 1: pool {0, 1, 2, 5, 7} >= K; class 2: pool {0, 1, 2, 3, 4} >= K
    assert mask.all()
    for row, c in enumerate([0, 1, 2]):
        got = labels[idx[row]]
        assert (got != c).all() and (got >= 0).all()
    s2 = NegativeSampler(labels, num_negatives=6)
    with pytest.warns(RuntimeWarning, match="using all other-class samples"):
        idx, mask = s2.sample(torch.tensor([0, 2]), g)
    assert set(idx[0][mask[0]].tolist()) == {3, 4, 5, 7} and mask[0].sum() == 4
    assert set(idx[1][mask[1]].tolist()) == {0, 1, 2, 3, 4} and mask[1].sum() == 5
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once already: silent now
        s2.sample(torch.tensor([0, 2]), g)


def test_sampler_rejects_inconsistent_labels():
    s = NegativeSampler(torch.full((5,), -1), 3)
    s.record(torch.tensor([1, 2]), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="sample index 2 was seen before with label 1"):
        s.record(torch.tensor([2]), torch.tensor([0]))


# ----------------------------------------------------------------------------------------------
# loss functions against independent formulas


def _manual_infonce(a, p, negs, tau):
    out = []
    for i in range(a.shape[0]):
        s = torch.cat([(a[i] * p[i]).sum().reshape(1), negs[i] @ a[i]]) / tau
        out.append(-(s[0] - torch.logsumexp(s, 0)))
    return torch.stack(out).mean()


def test_info_nce_and_mask():
    g = torch.Generator().manual_seed(1)
    a, p = (F.normalize(torch.randn(5, 6, generator=g), dim=1) for _ in range(2))
    negs = F.normalize(torch.randn(5, 7, 6, generator=g), dim=2)
    assert torch.allclose(info_nce_loss(a, p, negs, 0.2), _manual_infonce(a, p, negs, 0.2), atol=1e-5)
    mask = torch.ones(5, 7, dtype=torch.bool)
    mask[:, 4:] = False
    assert torch.allclose(info_nce_loss(a, p, negs, 0.2, mask),
                          _manual_infonce(a, p, negs[:, :4], 0.2), atol=1e-5)
    # InfoNCE never exceeds log(1 + K) below its bound: loss >= 0 and a perfect positive beats it
    assert info_nce_loss(a, a, -a.unsqueeze(1).expand(5, 7, 6), 0.1) < 1e-6


def test_instance_discrimination_target_is_own_row():
    g = torch.Generator().manual_seed(2)
    mem = F.normalize(torch.randn(9, 4, generator=g), dim=1)
    z = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    idx = torch.tensor([5, 0, 8])
    got = instance_discrimination_loss(z, mem, idx, 0.1)
    # the same as InfoNCE with the own row as positive and all other rows as negatives
    negs = torch.stack([mem[[j for j in range(9) if j != i]] for i in idx.tolist()])
    assert torch.allclose(got, _manual_infonce(z, mem[idx], negs, 0.1), atol=1e-5)
    # and it is smallest when the anchor is its own row
    assert instance_discrimination_loss(mem[idx], mem, idx, 0.1) < instance_discrimination_loss(
        mem[idx], mem, torch.tensor([0, 8, 5]), 0.1)


def test_binary_nce_formula():
    g = torch.Generator().manual_seed(3)
    a, p = (F.normalize(torch.randn(4, 5, generator=g), dim=1) for _ in range(2))
    negs = F.normalize(torch.randn(4, 6, 5, generator=g), dim=2)
    Z, n = 37.0, 100
    got = binary_nce_loss(a, p, negs, 0.5, n, Z)
    total = 0.0
    for i in range(4):
        pp = math.exp(float(a[i] @ p[i]) / 0.5) / Z
        total += math.log(pp / (pp + 6 / n + 1e-7))
        for k in range(6):
            pk = math.exp(float(negs[i, k] @ a[i]) / 0.5) / Z
            total += math.log((6 / n) / (pk + 6 / n + 1e-7))
    assert abs(float(got) - (-total / 4)) < 1e-5
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[:, 3:] = False
    assert torch.allclose(binary_nce_loss(a, p, negs, 0.5, n, Z, mask),
                          binary_nce_loss(a, p, negs[:, :3], 0.5, n, Z), atol=1e-6)


# ----------------------------------------------------------------------------------------------
# the CTC object


def test_stage1_loss_positive_is_own_entry():
    model = make_model()
    ctc = make_ctc(model, alpha=0.5, tau_instance=0.2)
    x, y, idx = batches(1)[0]
    f = feat(model, x)
    mem = ctc.banks["instance"].weight.clone()
    got = ctc.loss(x, f, y, idx)
    z = F.normalize(ctc.heads["instance"](f), dim=1)
    expect = 0.5 * F.cross_entropy(z @ mem.t() / 0.2, idx)
    assert torch.allclose(got, expect, atol=1e-6)
    assert ctc.last_negatives is None and set(ctc.banks) == {"instance"}  # no stage-2 work


@pytest.mark.parametrize("contrast,path", [("infonce", "gemm"), ("infonce", "gather"),
                                           ("nce", "gemm"), ("nce", "gather")])
def test_stage2_loss_matches_definition(contrast, path):
    model = make_model()
    ctc = make_ctc(model, contrast=contrast, beta=0.7, tau_contrast=0.3)
    ctc._score_path = path  # both ways of scoring must give the definition
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
    to_stage2(model, ctc, opt)
    assert set(ctc.banks) == {"current", "snapshot"}
    for b in batches(3)[:2]:
        step(model, ctc, opt, *b)
    x, y, idx = batches(3)[2]
    ctc.flush()
    cur, snap = ctc.banks["current"].weight.clone(), ctc.banks["snapshot"].weight.clone()
    z = ctc.normalisers.clone()
    f = feat(model, x)
    got = ctc.loss(x, f, y, idx)
    neg, mask = ctc.last_negatives
    assert mask.all()
    with torch.no_grad():
        v1 = F.normalize(ctc.heads["current"](f), dim=1)
        v2 = F.normalize(ctc.heads["snapshot"](feat(ctc.snapshot, x)), dim=1)
        # positives: the same sample index in the other view's bank
        if contrast == "infonce":
            expect = _manual_infonce(v1, snap[idx], snap[neg], 0.3) + _manual_infonce(
                v2, cur[idx], cur[neg], 0.3)
        else:
            expect = (binary_nce_loss(v1, snap[idx], snap[neg], 0.3, N, float(z[0]))
                      + binary_nce_loss(v2, cur[idx], cur[neg], 0.3, N, float(z[1])))
    assert torch.allclose(got.detach(), 0.7 * expect, atol=1e-5)
    if contrast == "nce":
        assert torch.isfinite(z).all() and (z > 0).all()


def test_stage2_negatives_never_same_class():
    model = make_model()
    ctc = make_ctc(model, num_negatives=50)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
    to_stage2(model, ctc, opt)
    labels = data()[1]
    for b in batches(3):
        step(model, ctc, opt, *b)
        neg, mask = ctc.last_negatives
        y = b[1]
        assert mask.all() and neg.shape == (len(y), 50)
        assert (labels[neg] != y[:, None]).all()


def test_fewer_negatives_than_asked_uses_all_and_warns_once():
    model = make_model()
    ctc = make_ctc(model, num_negatives=500)  # each class has 90 other-class samples
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
    to_stage2(model, ctc, opt)
    labels = data()[1]
    with pytest.warns(RuntimeWarning, match="using all other-class samples") as rec:
        for b in batches(3):
            step(model, ctc, opt, *b)
            neg, mask = ctc.last_negatives
            for row, c in enumerate(b[1].tolist()):
                assert sorted(neg[row][mask[row]].tolist()) == torch.nonzero(labels != c).reshape(-1).tolist()
    assert sum("using all other-class" in str(w.message) for w in rec) == 1


def test_snapshot_frozen_equal_to_model_at_switch_and_no_gradient():
    model = make_model()
    ctc = make_ctc(model)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    for b in batches(1):
        step(model, ctc, opt, *b)
    ctc.end_epoch(1)
    assert ctc.stage == 1 and ctc.snapshot is None
    for b in batches(2):
        step(model, ctc, opt, *b)
    at_switch = {k: v.clone() for k, v in model.state_dict().items()}
    ctc.end_epoch(2, full_loader())
    snap = ctc.snapshot
    assert snap is not model and not snap.training
    assert all(not p.requires_grad for p in snap.parameters())
    for k, v in snap.state_dict().items():
        assert torch.equal(v, at_switch[k])
    head_before = ctc.heads["snapshot"].weight.clone()
    for b in batches(3):
        step(model, ctc, opt, *b)
        assert all(p.grad is None for p in snap.parameters())  # no gradient reaches it
    assert ctc.heads["snapshot"].weight.grad is not None  # its head does train
    assert not torch.equal(ctc.heads["snapshot"].weight, head_before)
    model.train()
    for k, v in snap.state_dict().items():
        assert torch.equal(v, at_switch[k])  # never changes
    assert any(not torch.equal(v, at_switch[k]) for k, v in model.state_dict().items())


def test_refill_writes_snapshot_embeddings():
    model = make_model()
    ctc = make_ctc(model)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    to_stage2(model, ctc, opt)
    x, _ = data()
    with torch.no_grad():
        fs = feat(ctc.snapshot, x)
        assert torch.allclose(ctc.banks["snapshot"].weight,
                              F.normalize(ctc.heads["snapshot"](fs), dim=1), atol=1e-6)
        assert torch.allclose(ctc.banks["current"].weight,
                              F.normalize(ctc.heads["current"](fs), dim=1), atol=1e-6)


def test_missing_refill_warns():
    model = make_model()
    ctc = make_ctc(model)
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    to_stage2(model, ctc, opt, refill=False)
    with pytest.warns(RuntimeWarning, match="not refilled"):
        step(model, ctc, opt, *batches(3)[0])


@pytest.mark.parametrize("contrast,stop_epoch", [("infonce", 1), ("infonce", 3), ("nce", 3)])
def test_resume_gives_identical_next_loss(contrast, stop_epoch):
    def fresh(seed):
        model = make_model(seed)
        ctc = make_ctc(model, contrast=contrast)
        opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05,
                              momentum=0.9, weight_decay=1e-3)
        return model, ctc, opt

    def run(model, ctc, opt, epochs, first=None):
        out = []
        for epoch in epochs:
            bs = batches(epoch)
            for b in (bs if first is None or epoch != epochs[0] else bs[first:]):
                out.append(step(model, ctc, opt, *b))
            ctc.end_epoch(epoch, full_loader())
        return out

    model, ctc, opt = fresh(0)
    ref = run(model, ctc, opt, [1, 2, 3, 4])
    cut = 3  # stop after 3 steps of stop_epoch
    model, ctc, opt = fresh(0)
    run(model, ctc, opt, list(range(1, stop_epoch)))
    for b in batches(stop_epoch)[:cut]:
        step(model, ctc, opt, *b)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "ctc": ctc.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    model2, ctc2, opt2 = fresh(1)  # different init: everything must come from the state
    model2.load_state_dict(saved["model"])
    ctc2.load_state_dict(saved["ctc"])
    opt2 = torch.optim.SGD(list(model2.parameters()) + list(ctc2.parameters()), lr=0.05,
                           momentum=0.9, weight_decay=1e-3)
    opt2.load_state_dict(saved["opt"])
    assert ctc2.stage == ctc.stage
    rest = run(model2, ctc2, opt2, list(range(stop_epoch, 5)), first=cut)
    done = sum(len(batches(e)) for e in range(1, stop_epoch)) + cut
    assert len(rest) == len(ref) - done
    for a, b in zip(ref[done:], rest):
        assert torch.equal(a, b)


def test_same_seed_same_losses_and_global_rng_untouched():
    def losses(seed):
        model = make_model()
        torch.manual_seed(123)
        ctc = make_ctc(model, seed=seed)
        marker = torch.rand(1)
        opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
        to_stage2(model, ctc, opt)
        return marker, [step(model, ctc, opt, *b) for b in batches(3)]

    m1, a = losses(5)
    m2, b = losses(5)
    _, c = losses(6)
    torch.manual_seed(123)
    assert torch.equal(m1, torch.rand(1)) and torch.equal(m1, m2)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert any(not torch.equal(u, v) for u, v in zip(a, c))


def test_fixed_instance_head_option():
    model = make_model()
    ctc = make_ctc(model, train_instance_head=False)
    names = {id(p) for p in ctc.parameters()}
    assert id(ctc.heads["instance"].weight) not in names
    assert id(ctc.heads["current"].weight) in names
    w = ctc.heads["instance"].weight.clone()
    opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.1)
    x, y, idx = batches(1)[0]
    f = feat(model, x)
    ctc.loss(x, f, y, idx).backward()
    assert model[0].weight.grad is not None and model[0].weight.grad.abs().sum() > 0
    opt.step()
    assert torch.equal(ctc.heads["instance"].weight, w)


def test_losses_finite_on_real_small_model():
    from infodyn.data import load

    ds = load("digits:0-4", seed=0)
    x = torch.as_tensor(ds.x_train[:320])
    y = torch.as_tensor(ds.y_train[:320])
    n = len(y)
    torch.manual_seed(0)
    body = nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 32), nn.ReLU())
    model = nn.Sequential(body, nn.Linear(32, ds.num_classes))
    for contrast in ("infonce", "nce"):
        ctc = CTC(model, lambda m, t: m[0](t), n, ds.num_classes, switch_epoch=1, total_epochs=2,
                  num_negatives=128, contrast=contrast)
        opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05,
                              momentum=0.9)
        loader = [(x[i:i + 64], y[i:i + 64], torch.arange(i, min(i + 64, n))) for i in range(0, n, 64)]
        for epoch in (1, 2):
            for xb, yb, ib in loader:
                f = model[0](xb)
                extra = ctc.loss(xb, f, yb, ib)
                loss = F.cross_entropy(model[1](f), yb) + extra
                assert torch.isfinite(extra) and extra > 0
                opt.zero_grad()
                loss.backward()
                opt.step()
            ctc.end_epoch(epoch, loader)
        assert ctc.stage == 2


# ----------------------------------------------------------------------------------------------
# bad input


def test_bad_arguments_raise_named_errors():
    model = make_model()
    with pytest.raises(ValueError, match="switch_epoch=5 is beyond training.*total_epochs=5"):
        CTC(model, feat, N, C, switch_epoch=5, total_epochs=5)
    with pytest.raises(ValueError, match="no nn.Linear.*feature_dim"):
        CTC(nn.Sequential(nn.Conv1d(1, 2, 3), nn.ReLU()), feat, N, C, switch_epoch=2)
    ok = CTC(nn.Sequential(nn.Conv1d(1, 2, 3)), feat, N, C, switch_epoch=2, feature_dim=6)
    assert ok.feature_dim == 6
    with pytest.raises(ValueError, match="momentum"):
        make_ctc(model, momentum=1.0)
    with pytest.raises(ValueError, match="tau_contrast"):
        make_ctc(model, tau_contrast=0.0)
    with pytest.raises(ValueError, match="contrast must be one of"):
        make_ctc(model, contrast="triplet")
    ctc = make_ctc(model)
    assert ctc.feature_dim == 12  # in_features of the last nn.Linear
    x, y, idx = batches(1)[0]
    f = feat(model, x)
    with pytest.raises(ValueError, match=r"sample index 120 in idx is out of range \[0, num_samples=120\)"):
        ctc.loss(x, f, y, torch.cat([idx[:-1], torch.tensor([N])]))
    with pytest.raises(ValueError, match="sample index -1"):
        ctc.loss(x, f, y, torch.cat([idx[:-1], torch.tensor([-1])]))
    with pytest.raises(ValueError, match=r"feature dimension mismatch: f has shape \(16, 24\).*feature_dim=12"):
        ctc.loss(x, model[:2](x), y, idx)
    with pytest.raises(ValueError, match="2-D tensor"):
        ctc.loss(x, f[:, :, None], y, idx)
    with pytest.raises(ValueError, match="batch size mismatch"):
        ctc.loss(x, f, y[:-1], idx)
    with pytest.raises(ValueError, match="y has value 4 outside"):
        ctc.loss(x, f, torch.full_like(y, 4), idx)
    with pytest.raises(ValueError, match="idx must hold integers"):
        ctc.loss(x, f, y, idx.float())
    with pytest.raises(ValueError, match="refill"):
        ctc.refill(full_loader())
    other = make_ctc(make_model(), proj_dim=16)
    with pytest.raises(ValueError, match="proj_dim=8 but this object has proj_dim=16"):
        other.load_state_dict(ctc.state_dict())
    with pytest.raises(ValueError, match="not a CTC state"):
        other.load_state_dict({"heads": {}})


def test_nan_loss_fails_loudly():
    model = make_model()
    ctc = make_ctc(model)
    x, y, idx = batches(1)[0]
    f = feat(model, x) * float("nan")
    with pytest.raises(FloatingPointError, match="stage-1 loss is nan"):
        ctc.loss(x, f, y, idx)


# ----------------------------------------------------------------------------------------------
# schedule


def test_schedule_factors_and_optimizer():
    assert factors(0, total_epochs=30, switch_epoch=20) == (1.0, 2.0)
    lr, wd = factors(10, total_epochs=30, switch_epoch=20)
    assert abs(lr - 0.5) < 1e-12 and wd == 2.0
    assert factors(20, total_epochs=30, switch_epoch=20) == (pytest.approx(0.1), 1.0)
    assert factors(25, total_epochs=30, switch_epoch=20)[0] == pytest.approx(0.05)
    assert factors(25, total_epochs=30, switch_epoch=20, stage2="constant") == (0.1, 1.0)
    with pytest.raises(ValueError, match="switch_epoch < total_epochs"):
        factors(0, total_epochs=20, switch_epoch=20)
    p = nn.Parameter(torch.zeros(2))
    q = nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([{"params": [p]}, {"params": [q], "weight_decay": 0.0}], lr=0.2,
                          weight_decay=5e-4)
    sched = CTCSchedule(opt, total_epochs=30, switch_epoch=20)
    assert sched.set(0) == [(0.2, 1e-3), (0.2, 0.0)]
    got = sched.set(20)
    assert got[0] == (pytest.approx(0.02), 5e-4) and got[1][1] == 0.0


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_cpu_bank_matches_cpu():
    def run(device, bank_device):
        model = make_model().to(device)
        ctc = CTC(model, feat, N, C, switch_epoch=2, total_epochs=4, num_negatives=20,
                  proj_dim=8, seed=3, bank_device=bank_device)
        opt = torch.optim.SGD(list(model.parameters()) + list(ctc.parameters()), lr=0.05)
        out = []
        for epoch in (1, 2, 3):
            for x, y, idx in batches(epoch):
                out.append(float(step(model, ctc, opt, x.to(device), y.to(device), idx)))
            ctc.end_epoch(epoch, [(a.to(device), b, c) for a, b, c in full_loader()])
        return np.array(out)

    np.testing.assert_allclose(run("cuda", "cpu"), run("cpu", None), rtol=1e-3, atol=1e-4)
