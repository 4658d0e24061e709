"""Token relevance from the attention rollout: mean-pooled tokens, padding tokens, and CLS-pooled models."""

from __future__ import annotations

import numpy as np
import torch

from ecgtool.explain.attention import _group_map, attention_rollout, token_relevance
from ecgtool.models.explainable import SelfAttention, Spans


def test_cls_pooled_relevance_is_the_cls_row_of_the_rollout():
    a = torch.eye(3).view(1, 1, 3, 3).clone()
    a[0, 0, 0] = torch.tensor([0.0, 0.8, 0.2])  # the CLS token (index 0) attends to tokens 1 and 2
    rollout = attention_rollout([a])  # CLS row: 0.5 I + 0.5 A = [0.5, 0.4, 0.1]
    np.testing.assert_allclose(rollout[0, 0].numpy(), [0.5, 0.4, 0.1], atol=1e-7)
    np.testing.assert_allclose(token_relevance(rollout, cls_index=0), [[1.6, 0.4]], atol=1e-7)  # 1 = uniform
    # the spans list the other tokens only; a CLS in the middle is skipped the same way
    group = SelfAttention([a], Spans(np.array([0, 10]), 10), cls_index=0)
    out = _group_map(group, 20, {})
    np.testing.assert_allclose(out[0, :10], 1.6, atol=1e-7)
    np.testing.assert_allclose(out[0, 10:], 0.4, atol=1e-7)


def test_mean_pooled_relevance_leaves_padding_tokens_out():
    a = torch.full((1, 1, 3, 3), 1 / 3)
    rollout = attention_rollout([a])
    np.testing.assert_allclose(token_relevance(rollout), [[1.0, 1.0, 1.0]], atol=1e-7)  # uniform: 1 each
    valid = np.array([[True, True, False]])
    relevance = token_relevance(rollout, valid=valid)  # the two real tokens' rows only
    np.testing.assert_allclose(relevance[0, :2], rollout[0, :2, :2].sum(0).numpy(), atol=1e-7)
    group = SelfAttention([a], Spans(np.array([[0, 5, 10]]), 5), valid=valid)
    out = _group_map(group, 15, {})
    assert (out[0, 10:] == 0).all()  # a padding token is on no sample
