"""Tests for the distillation loss terms (ecgtool.train.distill.losses).

Expected values are computed with plain NumPy from the formulas in docs/distill-methods.md (§1.1, §2.2,
§2.4, §3), independently of the implementation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ecgtool.train.distill.losses import (ContrastiveLeadTransfer, kd_loss, mlkd_loss, mvms_loss,
                                          sample_negatives)

S = [[0.5, -1.0, 2.0], [0.0, 1.0, -0.5]]  # student logits (B=2, C=3)
T_ = [[1.0, -2.0, 0.5], [0.3, 0.3, -1.0]]  # teacher logits
Y = [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]]  # multi-hot targets


def _t(x, grad=False):
    return torch.tensor(x, dtype=torch.float64, requires_grad=grad)


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def _softmax(x):
    e = np.exp(np.asarray(x, dtype=np.float64))
    return e / e.sum(axis=1, keepdims=True)


def np_bernoulli_kl(student, teacher, temperature=1.0):
    """KL(Bern(sigmoid(t/T)) || Bern(sigmoid(s/T))), summed over classes, mean over the batch (no T²)."""
    ps, pt = _sigmoid(np.asarray(student) / temperature), _sigmoid(np.asarray(teacher) / temperature)
    kl = pt * np.log(pt / ps) + (1 - pt) * np.log((1 - pt) / (1 - ps))
    return kl.sum(axis=1).mean()


def np_softmax_kl(student, teacher, temperature=1.0):
    """KL(softmax(t/T) || softmax(s/T)), summed over classes, divided by the batch size (no T²)."""
    ps, pt = _softmax(np.asarray(student) / temperature), _softmax(np.asarray(teacher) / temperature)
    return (pt * np.log(pt / ps)).sum() / len(ps)


def np_bce(logits, targets):
    p = _sigmoid(logits)
    y = np.asarray(targets)
    return float(np.mean(-(y * np.log(p) + (1 - y) * np.log(1 - p))))


# --------------------------------------------------------------------------- kd_loss


@pytest.mark.parametrize("multi_label", [True, False])
def test_kd_zero_when_equal(multi_label):
    assert kd_loss(_t(S), _t(S), multi_label=multi_label).item() == pytest.approx(0.0, abs=1e-12)


def test_kd_multi_label_hand_value():
    # a worked entry: T=2, record 0 class 0: p_t = sigmoid(0.5), p_s = sigmoid(0.25)
    pt, ps = 1 / (1 + math.exp(-0.5)), 1 / (1 + math.exp(-0.25))
    entry = pt * math.log(pt / ps) + (1 - pt) * math.log((1 - pt) / (1 - ps))
    assert entry == pytest.approx(0.0075, abs=2e-4)
    expected = 4.0 * np_bernoulli_kl(S, T_, 2.0)
    assert kd_loss(_t(S), _t(T_), multi_label=True, temperature=2.0).item() == pytest.approx(expected, rel=1e-10)


def test_kd_multi_class_hand_value():
    expected = 4.0 * np_softmax_kl(S, T_, 2.0)
    assert kd_loss(_t(S), _t(T_), multi_label=False, temperature=2.0).item() == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("multi_label", [True, False])
def test_kd_t_squared_scaling(multi_label):
    kl = np_bernoulli_kl if multi_label else np_softmax_kl
    for temp in (1.0, 3.0):
        got = kd_loss(_t(S), _t(T_), multi_label=multi_label, temperature=temp).item()
        assert got == pytest.approx(temp ** 2 * kl(S, T_, temp), rel=1e-10)
    assert kd_loss(_t(S), _t(T_), multi_label=multi_label, temperature=1.0).item() == pytest.approx(kl(S, T_))


@pytest.mark.parametrize("multi_label", [True, False])
def test_kd_gradient_to_student_only(multi_label):
    s, t = _t(S, grad=True), _t(T_, grad=True)
    kd_loss(s, t, multi_label=multi_label).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None


# --------------------------------------------------------------------------- mvms_loss


def test_mvms_hand_value():
    expected = 0.5 * 4.0 * np_softmax_kl(S, T_, 2.0) + 0.5 * np_bce(S, Y)
    assert mvms_loss(_t(S), _t(T_), _t(Y)).item() == pytest.approx(expected, rel=1e-10)
    expected = 0.3 * 9.0 * np_softmax_kl(S, T_, 3.0) + 0.7 * np_bce(S, Y)
    got = mvms_loss(_t(S), _t(T_), _t(Y), alpha=0.3, temperature=3.0).item()
    assert got == pytest.approx(expected, rel=1e-10)


def test_mvms_alpha_extremes():
    assert mvms_loss(_t(S), _t(T_), _t(Y), alpha=0.0).item() == pytest.approx(np_bce(S, Y), rel=1e-10)
    got = mvms_loss(_t(S), _t(T_), _t(Y), alpha=1.0, temperature=2.0).item()
    assert got == pytest.approx(4.0 * np_softmax_kl(S, T_, 2.0), rel=1e-10)


def test_mvms_gradient_to_student_only():
    s, t = _t(S, grad=True), _t(T_, grad=True)
    mvms_loss(s, t, _t(Y)).backward()
    assert s.grad is not None and t.grad is None


# --------------------------------------------------------------------------- mlkd_loss


def test_mlkd_hand_value_and_zero():
    assert mlkd_loss(_t(S), _t(T_)).item() == pytest.approx(np_bernoulli_kl(S, T_), rel=1e-10)
    # T on the logits, with T² (the documented choice): equal to the classic multi-label KD at that T
    assert mlkd_loss(_t(S), _t(T_), temperature=2.0).item() == pytest.approx(4 * np_bernoulli_kl(S, T_, 2.0),
                                                                            rel=1e-10)
    assert mlkd_loss(_t(T_), _t(T_)).item() == pytest.approx(0.0, abs=1e-12)


def test_mlkd_direction():
    forward, reverse = np_bernoulli_kl(S, T_), np_bernoulli_kl(T_, S)  # KL(t||s) vs KL(s||t)
    assert abs(forward - reverse) > 1e-3
    assert mlkd_loss(_t(S), _t(T_)).item() == pytest.approx(forward, rel=1e-10)
    assert mlkd_loss(_t(T_), _t(S)).item() == pytest.approx(reverse, rel=1e-10)


def np_official_mlkd(student, teacher, temperature):
    """The official MVKT value as §2.2 describes it: sigmoid, [p, 1-p] / T + 1e-8, KLDivLoss 'mean' over B x 2
    per class, summed over classes."""
    ps, pt = _sigmoid(student), _sigmoid(teacher)
    total = 0.0
    for c in range(ps.shape[1]):
        qs = np.stack([ps[:, c], 1 - ps[:, c]], axis=1) / temperature + 1e-8
        qt = np.stack([pt[:, c], 1 - pt[:, c]], axis=1) / temperature + 1e-8
        total += np.mean(qt * (np.log(qt) - np.log(qs)))
    return total


@pytest.mark.parametrize("temp", [1.0, 2.0, 4.0])
def test_mlkd_compat(temp):
    got = mlkd_loss(_t(S), _t(T_), temperature=temp, compat=True).item()
    assert got == pytest.approx(np_official_mlkd(S, T_, temp), rel=1e-10)
    # T only rescales: 1/(2T) x the Bernoulli KL with T on the probabilities (up to the 1e-8 terms)
    assert got == pytest.approx(np_bernoulli_kl(S, T_) / (2 * temp), rel=1e-6)


def test_mlkd_compat_half_at_t1():
    compat = mlkd_loss(_t(S), _t(T_), temperature=1.0, compat=True).item()
    assert compat == pytest.approx(0.5 * mlkd_loss(_t(S), _t(T_), temperature=1.0).item(), rel=1e-6)


@pytest.mark.parametrize("compat", [False, True])
def test_mlkd_gradient_to_student_only(compat):
    s, t = _t(S, grad=True), _t(T_, grad=True)
    mlkd_loss(s, t, temperature=2.0, compat=compat).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None


# --------------------------------------------------------------------------- ContrastiveLeadTransfer

N, K, E, DS, DT = 5, 2, 4, 3, 2
W_S = np.array([[1.0, 0.0, 0.5], [0.0, 1.0, -0.5], [0.5, 0.5, 0.0], [-1.0, 0.2, 0.3]])  # (E, DS)
B_S = np.array([0.1, -0.1, 0.0, 0.2])
W_T = np.array([[0.3, -0.7], [1.0, 0.0], [0.0, 1.0], [0.5, 0.5]])  # (E, DT)
B_T = np.array([0.0, 0.1, -0.2, 0.0])
BANK_S = np.array([[0.5, 0.5, 0.5, 0.5], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0.6, 0, 0, 0.8]])
BANK_T = np.array([[0, 0, 0, 1], [0.6, 0.8, 0, 0], [0.5, -0.5, 0.5, -0.5], [0, 0.6, 0.8, 0], [-1, 0, 0, 0]])
F_S = np.array([[1.0, 2.0, -1.0], [0.5, -0.3, 0.8]])
F_T = np.array([[0.2, 1.0], [-1.0, 0.4]])
INDEX = np.array([1, 3])
NEG = np.array([[0, 4], [2, 0]])


def _clt(**kwargs):
    torch.manual_seed(0)
    m = ContrastiveLeadTransfer(DS, DT, N, embed_dim=E, negatives=K, **kwargs).double()
    with torch.no_grad():
        m.embed_s.weight.copy_(torch.from_numpy(W_S))
        m.embed_s.bias.copy_(torch.from_numpy(B_S))
        m.embed_t.weight.copy_(torch.from_numpy(W_T))
        m.embed_t.bias.copy_(torch.from_numpy(B_T))
        m.memory_s.copy_(torch.from_numpy(BANK_S))
        m.memory_t.copy_(torch.from_numpy(BANK_T))
    return m


def _inputs():
    return (torch.from_numpy(F_S), torch.from_numpy(F_T), torch.from_numpy(INDEX), torch.from_numpy(NEG))


def _normalize(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def np_crd(bank_s, bank_t, z=None, temperature=0.07):
    """CRD's two-direction NCE on the fixed case; returns (loss, z, v_s, v_t)."""
    v_s = _normalize(F_S @ W_S.T + B_S)
    v_t = _normalize(F_T @ W_T.T + B_T)
    rows = np.concatenate([INDEX[:, None], NEG], axis=1)  # positive first
    out_s = np.exp(np.einsum("bke,be->bk", bank_t[rows], v_s) / temperature)  # student anchor, teacher bank
    out_t = np.exp(np.einsum("bke,be->bk", bank_s[rows], v_t) / temperature)  # teacher anchor, student bank
    if z is None:
        z = [out_s.mean() * N, out_t.mean() * N]
    pn, eps, b = 1.0 / N, 1e-7, len(INDEX)

    def nce(x):
        pos, neg = x[:, 0], x[:, 1:]
        return -(np.log(pos / (pos + K * pn + eps)).sum() + np.log(K * pn / (neg + K * pn + eps)).sum()) / b

    return nce(out_s / z[0]) + nce(out_t / z[1]), z, v_s, v_t


def test_clt_bank_init_range():
    torch.manual_seed(0)
    m = ContrastiveLeadTransfer(8, 8, 500, embed_dim=12)
    s = 1 / math.sqrt(12 / 3)
    for bank in (m.memory_s, m.memory_t):
        assert bank.shape == (500, 12)
        assert bank.min() >= -s and bank.max() <= s
        assert bank.min() < -0.95 * s and bank.max() > 0.95 * s  # it fills the range
    assert not torch.equal(m.memory_s, m.memory_t)
    assert m.z.tolist() == [-1.0, -1.0]
    assert {"memory_s", "memory_t", "z"} <= set(m.state_dict())
    assert all(not b.requires_grad for b in m.buffers())


def test_clt_hand_value_and_z_fixed():
    m = _clt()
    loss = m(*_inputs())
    expected, z, _, _ = np_crd(BANK_S, BANK_T)
    assert loss.item() == pytest.approx(expected, rel=1e-9)
    assert m.z.tolist() == pytest.approx(z, rel=1e-12)
    # second call: Z stays as set on the first batch; scores use the updated banks
    bank_s, bank_t = m.memory_s.numpy().copy(), m.memory_t.numpy().copy()
    loss2 = m(*_inputs())
    assert m.z.tolist() == pytest.approx(z, rel=1e-12)
    expected2, _, _, _ = np_crd(bank_s, bank_t, z=z)
    assert loss2.item() == pytest.approx(expected2, rel=1e-9)
    fresh_z = np_crd(bank_s, bank_t)[1]
    assert fresh_z != pytest.approx(z)  # so the check above does tell a fixed Z from a re-estimated one


def test_clt_bank_update():
    m = _clt(momentum=0.3)
    m(*_inputs())
    _, _, v_s, v_t = np_crd(BANK_S, BANK_T)
    new_s, new_t = m.memory_s.numpy(), m.memory_t.numpy()
    for i, row in enumerate(INDEX):
        assert new_s[row] == pytest.approx(_normalize(0.3 * BANK_S[row] + 0.7 * v_s[i]), rel=1e-12)
        assert new_t[row] == pytest.approx(_normalize(0.3 * BANK_T[row] + 0.7 * v_t[i]), rel=1e-12)
    others = [r for r in range(N) if r not in INDEX]
    np.testing.assert_array_equal(new_s[others], BANK_S[others])
    np.testing.assert_array_equal(new_t[others], BANK_T[others])


def test_clt_duplicate_index_takes_last():
    m = _clt()
    f_s, f_t, _, neg = _inputs()
    m(f_s, f_t, torch.tensor([2, 2]), neg)
    _, _, v_s, v_t = np_crd(BANK_S, BANK_T)
    assert m.memory_s[2].numpy() == pytest.approx(_normalize(0.5 * BANK_S[2] + 0.5 * v_s[1]), rel=1e-12)
    assert m.memory_t[2].numpy() == pytest.approx(_normalize(0.5 * BANK_T[2] + 0.5 * v_t[1]), rel=1e-12)


def test_clt_gradients_heads_not_banks():
    m = _clt()
    f_s, f_t, index, neg = _inputs()
    f_s.requires_grad_(True)
    f_t.requires_grad_(True)
    m(f_s, f_t, index, neg).backward()
    for p in m.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0
    assert f_s.grad is not None and f_t.grad is None  # the teacher's features are detached
    assert all(not b.requires_grad and b.grad is None for b in m.buffers())


def test_clt_state_dict_round_trip():
    a = _clt()
    a(*_inputs())
    torch.manual_seed(123)
    b = ContrastiveLeadTransfer(DS, DT, N, embed_dim=E, negatives=K).double()
    b.load_state_dict(a.state_dict())
    assert torch.equal(b.memory_s, a.memory_s) and torch.equal(b.memory_t, a.memory_t)
    assert torch.equal(b.z, a.z)
    assert a(*_inputs()).item() == b(*_inputs()).item()
    assert torch.equal(b.memory_s, a.memory_s) and torch.equal(b.memory_t, a.memory_t)


def test_clt_gather():
    calls = []

    def fake_gather(x):  # a second "rank": rows (index + 1) % N, its features the batch reversed
        calls.append(tuple(x.shape))
        other = (x + 1) % N if x.dtype == torch.long else x.flip(0)
        return torch.cat([x, other])

    m = _clt(gather=fake_gather)
    loss = m(*_inputs())
    expected, z, v_s, v_t = np_crd(BANK_S, BANK_T)
    assert loss.item() == pytest.approx(expected, rel=1e-9)  # the loss is this rank's batch only
    assert m.z.tolist() == pytest.approx(z, rel=1e-12)  # the reversed copy has the same mean score
    assert len(calls) == 4  # Z of each direction, the index, the embeddings
    new_s, new_t = m.memory_s.numpy(), m.memory_t.numpy()
    # this rank: rows 1, 3 take records 0, 1; the other rank: rows 2, 4 take records 1, 0 (reversed)
    for row, i in ((1, 0), (3, 1), (2, 1), (4, 0)):
        assert new_s[row] == pytest.approx(_normalize(0.5 * BANK_S[row] + 0.5 * v_s[i]), rel=1e-12)
        assert new_t[row] == pytest.approx(_normalize(0.5 * BANK_T[row] + 0.5 * v_t[i]), rel=1e-12)
    np.testing.assert_array_equal(new_s[0], BANK_S[0])
    np.testing.assert_array_equal(new_t[0], BANK_T[0])


# --------------------------------------------------------------------------- sample_negatives


def test_sample_negatives_shape_and_anchor():
    index = torch.tensor([0, 3, 7, 9])
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        neg = sample_negatives(10, index, 5, generator=g)
        assert neg.shape == (4, 5) and neg.dtype == torch.long
        assert not (neg == index[:, None]).any()
        assert ((neg >= 0) & (neg < 10)).all()
        assert all(len(set(r)) == 5 for r in neg.tolist())  # pool of 9 >= 5: without replacement


def test_sample_negatives_exclude():
    n = 8
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 0], [1, 0], [0, 1], [0, 0], [1, 0]], dtype=torch.float)
    index = torch.tensor([0, 2, 3])
    exclude = (labels[index] @ labels.T) > 0  # records sharing a positive label with the anchor
    allowed = {0: {2, 3, 5, 6}, 2: {0, 3, 4, 6, 7}, 3: {0, 1, 2, 4, 5, 6, 7}}
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        neg = sample_negatives(n, index, 3, generator=g, exclude=exclude)
        for a, row in zip(index.tolist(), neg.tolist()):
            assert set(row) <= allowed[a]
            assert len(set(row)) == 3
    # a pool smaller than K (anchor 0 has 4 records): drawn with replacement, still only from the pool
    neg = sample_negatives(n, index, 6, generator=torch.Generator().manual_seed(0), exclude=exclude)
    assert neg.shape == (3, 6)
    for a, row in zip(index.tolist(), neg.tolist()):
        assert set(row) <= allowed[a]
    with pytest.raises(ValueError):
        sample_negatives(3, torch.tensor([0]), 2, exclude=torch.tensor([[False, True, True]]))


def test_sample_negatives_deterministic():
    index = torch.arange(6)
    a = sample_negatives(50, index, 8, generator=torch.Generator().manual_seed(5))
    b = sample_negatives(50, index, 8, generator=torch.Generator().manual_seed(5))
    c = sample_negatives(50, index, 8, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)
    torch.manual_seed(1)
    d = sample_negatives(50, index, 8)
    torch.manual_seed(1)
    assert torch.equal(d, sample_negatives(50, index, 8))
