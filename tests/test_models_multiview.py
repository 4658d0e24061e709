"""Fidelity tests for the multi-view / multi-scale families: mvms_ecg, ecgnet, msse_transformer."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from ecgtool.models import create_model
from ecgtool.models.mvms_ecg import MVMS_VIEWS, CoordAttention1d
from ecgtool.profile.measure import count_parameters

# --------------------------------------------------------------------------- MVMS-ECG


def _bn(c):
    return 2 * c


def _coordatt(c):  # official CoordAtt(c, c): mid = max(8, c // 16); conv1 (bias), BN2d, conv_h, conv_w (bias)
    mid = max(8, c // 16)
    return (c * mid + mid) + _bn(mid) + 2 * (mid * c + c)


def _res2block(cin, cout, k=15, scale=4, base_width=26):
    width = int(cout * base_width / 64)  # 52 for cout = 128
    p = cin * width * scale + _bn(width * scale)  # conv1 1x1 (no bias) + bn1
    p += (scale - 1) * (width * width * k + _bn(width))  # branch convs (no bias) + bns
    p += width * scale * cout + _bn(cout)  # conv3 1x1 (no bias) + bn3
    p += _coordatt(cout)
    p += (cin * cout + cout) + _bn(cout)  # strided shortcut: 1x1 conv with bias + BN
    return p


def _mynet(in_channels):  # official MyNet(single_view=True): conv k25 (no bias), BN, two Res2Blocks
    return in_channels * 64 * 25 + _bn(64) + _res2block(64, 128) + _res2block(128, 128)


# Official setting: PTB-XL at 100 Hz (1000 samples), config.experiment "exp0" = the 71 "all" statements.
OFFICIAL_CLASSES = 71
OFFICIAL_SAMPLES = 1000


def test_mvms_block_counts_by_hand():
    # The numbers the formulas above produce, spelled out once.
    assert _coordatt(128) == 3352
    assert _res2block(64, 128) == 174528
    assert _res2block(128, 128) == 196032
    assert _mynet(1) == 1600 + 370688


def test_mvms_ecg_parameter_parity_with_official_code():
    # MyNet6View: six MyNets with 1, 2, 2, 2, 2, 3 input leads, six AdaptiveWeight(128) = Linear(128, 1), fc.
    expected = sum(_mynet(len(v)) for v in MVMS_VIEWS) + 6 * (128 + 1) + (128 * OFFICIAL_CLASSES + OFFICIAL_CLASSES)
    assert expected == 2_253_261
    model = create_model("mvms_ecg", num_classes=OFFICIAL_CLASSES, num_samples=OFFICIAL_SAMPLES)
    assert count_parameters(model)["total"] == expected


def test_mvms_single_parameter_parity_with_official_code():
    # Distillation student: MyNet(input_channels=12, single_view=False) incl. its fc.
    expected = _mynet(12) + 128 * OFFICIAL_CLASSES + OFFICIAL_CLASSES
    assert expected == 399_047
    model = create_model("mvms_single", num_classes=OFFICIAL_CLASSES, num_samples=OFFICIAL_SAMPLES)
    assert count_parameters(model)["total"] == expected


def test_mvms_views_are_the_official_lead_groups():
    model = create_model("mvms_ecg", num_classes=5)
    # aVR | I, aVL | V1, V2 | V3, V4 | V5, V6 | II, III, aVF
    assert model.view_leads == [[3], [0, 4], [6, 7], [8, 9], [10, 11], [1, 2, 5]]
    named = create_model("mvms_ecg", num_classes=5, views=[["aVR"], ["I", "aVL"], ["V1", "V2"], ["V3", "V4"],
                                                             ["V5", "V6"], ["II", "III", "aVF"]])
    assert named.view_leads == model.view_leads


def test_each_mvms_view_reads_exactly_its_leads():
    torch.manual_seed(0)
    model = create_model("mvms_ecg", num_classes=5).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        ref = model.views(x)  # (B, 6, 128)
        assert ref.shape == (2, 6, 128)
        for i, leads in enumerate(model.view_leads):
            others = [j for j in range(12) if j not in leads]
            x_other = x.clone()
            x_other[:, others] = 0.0
            assert torch.allclose(model.views(x_other)[:, i], ref[:, i], atol=1e-6), f"view {i} reads other leads"
            x_own = x.clone()
            x_own[:, leads] = torch.randn(2, len(leads), 1000)
            assert not torch.allclose(model.views(x_own)[:, i], ref[:, i], atol=1e-4), f"view {i} ignores its leads"
            # and the view's own net on exactly those leads, in the official order, gives the same vector
            assert torch.allclose(model.views.nets[i](x[:, leads]), ref[:, i], atol=1e-6)


def test_mvms_fallback_views_for_other_lead_counts():
    m = create_model("mvms_ecg", num_classes=3, num_leads=3, num_samples=400)
    assert m.view_leads == [[0], [1], [2]]
    m = create_model("mvms_ecg", num_classes=3, num_leads=3, num_samples=400, view_fallback="all")
    assert m.view_leads == [[0, 1, 2]]
    with pytest.raises(ValueError):
        create_model("mvms_ecg", num_classes=3, num_leads=2, views=[[0, 5]])


def test_mvms_fusion_is_sigmoid_weighted_sum():
    torch.manual_seed(1)
    model = create_model("mvms_ecg", num_classes=4).eval()
    feats = torch.randn(2, 6, 128)
    expected = sum(torch.sigmoid(lin(feats[:, i])) * feats[:, i] for i, lin in enumerate(model.fusion.weights))
    assert torch.allclose(model.fusion(feats), expected, atol=1e-6)


def test_coordinate_attention_matches_the_official_2d_formulation():
    """Official CoordAtt runs on x.unsqueeze(2) with Conv2d/BatchNorm2d; rebuild that and compare."""
    torch.manual_seed(2)
    att = CoordAttention1d(128).train()
    conv1 = nn.Conv2d(128, 8, 1)
    bn1 = nn.BatchNorm2d(8)
    conv_h = nn.Conv2d(8, 128, 1)
    conv_w = nn.Conv2d(8, 128, 1)
    for c2, c1 in ((conv1, att.conv1), (conv_h, att.conv_h), (conv_w, att.conv_w)):
        c2.weight.data.copy_(c1.weight.data.unsqueeze(-1))
        c2.bias.data.copy_(c1.bias.data)
    x = torch.randn(3, 128, 50)
    x4 = x.unsqueeze(2)  # (n, c, h=1, w)
    h, w = x4.shape[2:]
    x_h = x4.mean(dim=3, keepdim=True)  # AdaptiveAvgPool2d((None, 1))
    x_w = x4.permute(0, 1, 3, 2)
    y = torch.cat([x_h, x_w], dim=2)
    y = conv1(y)
    y = bn1(y)
    y = y * torch.clamp(y + 3, 0, 6) / 6  # h_swish
    y_h, y_w = torch.split(y, [h, w], dim=2)
    out = x4 * torch.sigmoid(conv_w(y_w.permute(0, 1, 3, 2))) * torch.sigmoid(conv_h(y_h))
    assert torch.allclose(att(x), out.squeeze(2), atol=1e-5)


def test_mvms_temporal_sizes_follow_official_padding():
    model = create_model("mvms_single", num_classes=2).eval()
    x = torch.randn(1, 12, 1000)
    with torch.no_grad():
        s = model.stem(x)
        l1 = model.layer1(s)
        l2 = model.layer2(l1)
    assert s.shape == (1, 64, 976)  # k25, padding 0
    assert l1.shape == (1, 128, 488) and l2.shape == (1, 128, 244)


# --------------------------------------------------------------------------- ECGNet


def _ecgnet_reference_params(num_leads, num_classes, kernels=(15, 17, 19, 21), k=17, planes=16, blocks=15):
    """Layer by layer from the reference ECGNet (time concat, 16 planes, 15 ResBlocks, LSTM 40, fc 680)."""
    p = sum(num_leads * planes * kk for kk in kernels) + _bn(planes) + planes * planes * k
    c = planes
    for i in range(blocks):
        o = c + planes if (i + 1) % 4 == 0 else c
        p += _bn(c) + c * o * k + _bn(o) + o * o * k + (c * o if o != c else 0)
        c = o
    p += _bn(c)
    lstm = 4 * 40 * (num_leads + 40) + 2 * 4 * 40
    p += lstm + (c * 10 + 40) * num_classes + num_classes
    return p


def test_ecgnet_reference_configuration_parameter_parity():
    # The reference's own setting: 8 leads, 34 classes, 5000 samples.
    expected = _ecgnet_reference_params(8, 34)
    model = create_model("ecgnet_lstm", num_classes=34, num_leads=8, num_samples=5000, stem_concat="time")
    assert count_parameters(model)["total"] == expected
    assert model.num_features == 680
    # CNN-only variant: no LSTM, fc over 640 features
    cnn = create_model("ecgnet", num_classes=34, num_leads=8, num_samples=5000, stem_concat="time")
    lstm = 4 * 40 * (8 + 40) + 2 * 4 * 40
    assert count_parameters(cnn)["total"] == expected - lstm - 40 * 34
    assert cnn.num_features == 640


def test_ecgnet_widths_and_downsampling():
    model = create_model("ecgnet", num_classes=3).eval()
    with torch.no_grad():
        out = model.blocks(model.stem(torch.randn(1, 12, 1000)))
    assert out.shape == (1, 64, 4)  # 1000 -> 500 (stem stride 2) -> 7 halvings (ceil) -> 4
    model = create_model("ecgnet", num_classes=3, stem_concat="time").eval()
    with torch.no_grad():
        assert model(torch.randn(2, 12, 1000)).shape == (2, 3)


def test_ecgnet_lstm_path_sees_the_raw_signal():
    torch.manual_seed(0)
    model = create_model("ecgnet_lstm", num_classes=3).eval()
    x = torch.randn(2, 12, 1000)
    with torch.no_grad():
        f = model.forward_features(x)
        assert torch.allclose(f[:, -40:], model.lstm(x))
        assert torch.allclose(f[:, :-40], model.global_pool(model.post(model.blocks(model.stem(x)))))


class _RefResBlock(nn.Module):
    """A residual block in the layout of the reference ECGNet (Amadeuszhao/SE-ECGNet ``models/ECGNet.py``).

    Written for this test after reading the reference: same module names and order (bn1, relu,
    dropout, conv1, bn2, conv2, maxpool, downsample), floor-mode max-pool by 2 on the main path,
    ``downsample`` = [1x1 conv,] max-pool on the shortcut.
    """

    def __init__(self, cin, cout, k, pool):
        super().__init__()
        self.bn1 = nn.BatchNorm1d(cin)
        self.relu = nn.ReLU()
        self.dropout = nn.Dropout(0.1)
        self.conv1 = nn.Conv1d(cin, cout, k, padding=k // 2, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, k, padding=k // 2, bias=False)
        self.maxpool = nn.MaxPool1d(2, 2)
        widen = [nn.Conv1d(cin, cout, 1, bias=False)] if cout != cin else []
        self.downsample = nn.Sequential(*widen, nn.MaxPool1d(2, 2)) if pool else None

    def forward(self, x):
        h = self.conv1(self.dropout(self.relu(self.bn1(x))))
        h = self.conv2(self.dropout(self.relu(self.bn2(h))))
        if self.downsample is None:
            return h + x
        return self.maxpool(h) + self.downsample(x)


class _RefECGNet(nn.Module):
    """The reference ECGNet's layout and state-dict names: parallel_conv, bn1, conv1, block, bn2, avgpool, rnn, fc."""

    def __init__(self, leads=8, classes=34, kernels=(15, 17, 19, 21), k=17, planes=16, blocks=15):
        super().__init__()
        self.parallel_conv = nn.ModuleList(nn.Conv1d(leads, planes, kk, bias=False) for kk in kernels)
        self.bn1 = nn.BatchNorm1d(planes)
        self.relu = nn.ReLU()
        self.conv1 = nn.Conv1d(planes, planes, k, stride=2, padding=2, bias=False)
        layers, c = [], planes
        for i in range(blocks):
            o = c + planes if (i + 1) % 4 == 0 else c
            layers.append(_RefResBlock(c, o, k, pool=(i + 1) % 2 == 0))
            c = o
        self.block = nn.Sequential(*layers)
        self.bn2 = nn.BatchNorm1d(c)
        self.avgpool = nn.AvgPool1d(8, 8, padding=2)
        self.rnn = nn.LSTM(leads, 40)  # sequence-first, as the reference calls it with x.permute(2, 0, 1)
        self.fc = nn.Linear(c * 10 + 40, classes)

    def forward(self, x):
        h = self.relu(self.bn1(torch.cat([conv(x) for conv in self.parallel_conv], dim=2)))
        h = self.block(self.conv1(h))
        h = self.avgpool(self.relu(self.bn2(h))).flatten(1)
        _, (hn, _) = self.rnn(x.permute(2, 0, 1))
        return self.fc(torch.cat([h, hn[-1]], dim=1))


def _reference_to_ecgtool(key: str) -> str:
    parts = key.split(".")
    head, rest = parts[0], ".".join(parts[1:])
    if head == "parallel_conv":
        return f"stem.branches.{rest}"
    if head == "block":
        i, sub = parts[1], ".".join(parts[2:])
        return f"blocks.{i}.proj.weight" if sub == "downsample.0.weight" else f"blocks.{i}.{sub}"
    return {"bn1": "stem.bn", "conv1": "stem.conv", "bn2": "post.0", "rnn": "lstm.lstm", "fc": "head"}[head] + "." + rest


def test_ecgnet_reference_pooling_reproduces_the_reference_logits():
    torch.manual_seed(0)
    ref = _RefECGNet()
    for m in ref.modules():  # non-trivial BatchNorm statistics and affine parameters
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    ref.eval()
    model = create_model("ecgnet_lstm", num_classes=34, num_leads=8, num_samples=5000, stem_concat="time",
                         pooling="reference").eval()
    mapped = {_reference_to_ecgtool(k): v for k, v in ref.state_dict().items()}
    assert sorted(mapped) == sorted(model.state_dict())
    model.load_state_dict(mapped)

    lengths = []
    for blk in model.blocks:
        if blk.pool is not None:
            blk.register_forward_hook(lambda m, i, o: lengths.append(o.shape[-1]))
    x = torch.randn(2, 8, 5000)
    with torch.no_grad():
        expected, got = ref(x), model(x)
    assert lengths == [4980, 2490, 1245, 622, 311, 155, 77]  # floor-mode pools, as the reference
    assert (got - expected).abs().max().item() < 1e-5

    # The default (adaptive) pooling is a different function of the same weights.
    adaptive = create_model("ecgnet_lstm", num_classes=34, num_leads=8, num_samples=5000, stem_concat="time").eval()
    adaptive.load_state_dict(mapped)
    with torch.no_grad():
        assert (adaptive(x) - expected).abs().max().item() > 1e-3


def test_ecgnet_reference_pooling_features_follow_the_length():
    assert create_model("ecgnet", num_classes=3, num_leads=8, num_samples=5000, stem_concat="time",
                        pooling="reference").num_features == 640
    # 2000 samples, channel stem: 1000 after the stem, 7 after seven floor halvings, one AvgPool1d(8, 8, 2) bin
    model = create_model("ecgnet", num_classes=3, num_leads=12, num_samples=2000, pooling="reference").eval()
    assert model.num_features == 64
    with torch.no_grad():
        assert model(torch.randn(2, 12, 2000)).shape == (2, 3)
    with pytest.raises(ValueError, match="longer input"):
        create_model("ecgnet", num_classes=3, num_samples=1000, pooling="reference")
    with pytest.raises(ValueError, match="pooling"):
        create_model("ecgnet", num_classes=3, pooling="nearest")


# --------------------------------------------------------------------------- multi-scale SE-ResNet + transformer


def test_msse_windows_cover_the_record_with_overlap():
    model = create_model("msse_transformer", num_classes=3)
    x = torch.arange(1000, dtype=torch.float32).expand(1, 12, 1000)
    wins = model.sampler(x)
    assert [tuple(w.shape) for w in wins] == [(1, 7, 12, 250), (1, 3, 12, 500)]
    for w in wins:
        starts = w[0, :, 0, 0].tolist()
        size = w.shape[-1]
        assert starts[0] == 0 and starts[-1] + size == 1000
        assert all(b - a == size // 2 for a, b in zip(starts, starts[1:]))
    # a stride that does not reach the end gets a last, end-aligned window
    odd = model.sampler(torch.randn(1, 12, 1100))
    assert odd[0][0, -1].shape[-1] == 250 and odd[0].shape[1] == 8


def test_msse_scales_and_cam_layer():
    torch.manual_seed(0)
    model = create_model("msse_transformer", num_classes=4, window_fracs=[0.2, 0.4, 0.8]).eval()
    assert model.num_features == 3 * 64 and len(model.encoders) == 3
    store = {}
    h = model.get_submodule(model.default_cam_layer).register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    with torch.no_grad():
        assert model(torch.randn(2, 12, 1000)).shape == (2, 4)
    h.remove()
    assert store["a"].shape == (2, 64, 9)  # finest scale: 200-sample windows, stride 100 -> 9 windows
