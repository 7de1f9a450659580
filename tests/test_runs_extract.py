"""Layer resolution, feature extraction (checked against hand-written forward passes), the cache."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from infodyn.models import ib12bit_net, mlp, small_cnn
from infodyn.runs import (FeatureCache, array_digest, cached_features, extract_features,
                          file_sha256, resolve_layers)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return mlp(12, (10, 7, 5, 4, 3), 2, "tanh")


@pytest.fixture
def cnn():
    torch.manual_seed(1)
    return small_cnn(1, 3, 4, input_shape=[1, 8, 8], hidden=6)


def test_resolve_layers_names_globs_and_order(net):
    assert resolve_layers(net, ["out", "fc1"]) == ["fc1", "out"]  # model order
    assert resolve_layers(net, "fc*") == ["fc1", "fc2", "fc3", "fc4", "fc5"]
    assert resolve_layers(net, "fc[12]") == ["fc1", "fc2"]
    assert resolve_layers(net, ["fc1.*"]) == ["fc1.linear", "fc1.act"]
    assert resolve_layers(net, "**.act") == [f"fc{i}.act" for i in range(1, 6)]
    assert resolve_layers(net, "fc1, fc1, out") == ["fc1", "out"]


def test_resolve_layers_unknown_lists_closest(net):
    with pytest.raises(ValueError, match=r"layer 'fc_1' does not exist in MLP; closest names: fc1"):
        resolve_layers(net, ["fc_1"])
    with pytest.raises(ValueError, match=r"layer 'conv\*' does not exist"):
        resolve_layers(net, ["conv*"])
    with pytest.raises(ValueError, match="no layers given"):
        resolve_layers(net, [])


def test_mlp_features_equal_a_hand_written_forward(net):
    x = np.random.default_rng(0).integers(0, 2, size=(300, 12)).astype(np.float64)
    feats = extract_features(net, x, ["fc1", "fc2", "fc2.linear", "out"], batch_size=64)
    assert list(feats) == ["fc1", "fc2", "fc2.linear", "out"]  # named_modules order
    h = x
    want = {}
    for i in range(1, 6):
        lin = getattr(net, f"fc{i}").linear
        pre = h @ lin.weight.detach().double().numpy().T + lin.bias.detach().double().numpy()
        h = np.tanh(pre)
        want[f"fc{i}"], want[f"fc{i}.linear"] = h, pre
    want["out"] = h @ net.out.weight.detach().double().numpy().T + net.out.bias.detach().double().numpy()
    for name, arr in feats.items():
        assert arr.dtype == np.float32 and arr.shape == want[name].shape
        np.testing.assert_allclose(arr, want[name], rtol=1e-5, atol=1e-6)


def test_batch_size_does_not_change_values_or_order(net):
    x = np.random.default_rng(1).normal(size=(257, 12)).astype(np.float32)
    a = extract_features(net, x, "fc*", batch_size=1000)
    b = extract_features(net, torch.from_numpy(x), "fc*", batch_size=7)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-6, atol=1e-7)
    single = extract_features(net, x[100:101], ["fc3"])["fc3"]
    np.testing.assert_allclose(single[0], a["fc3"][100], rtol=1e-6, atol=1e-7)


def test_cnn_flatten_and_avg_pool(cnn):
    x = np.random.default_rng(2).normal(size=(50, 64)).astype(np.float32)  # flat digits-like rows
    flat = extract_features(cnn, x, ["conv1", "conv2", "fc1"], batch_size=16, pool="flatten")
    avg = extract_features(cnn, x, ["conv1", "conv2", "fc1"], pool="avg")
    default = extract_features(cnn, x, ["conv1", "conv2", "fc1"])  # conv maps avg-pooled
    for k in avg:
        np.testing.assert_array_equal(default[k], avg[k])
    xi = torch.from_numpy(x).reshape(50, 1, 8, 8)
    c1 = F.relu(F.conv2d(xi, cnn.conv1.conv.weight, cnn.conv1.conv.bias, padding=1)).detach()
    assert flat["conv1"].shape == (50, 4 * 64)
    np.testing.assert_allclose(flat["conv1"], c1.reshape(50, -1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(avg["conv1"], c1.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    assert flat["conv2"].shape == (50, 8 * 16) and avg["conv2"].shape == (50, 8)
    np.testing.assert_allclose(avg["conv2"], flat["conv2"].reshape(50, 8, 16).mean(axis=2),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(flat["fc1"], avg["fc1"])  # 2-d outputs are unaffected by pool


def test_cnn_1d_and_image_inputs():
    torch.manual_seed(0)
    c1d = small_cnn(1, 2, 3, input_shape=[1, 40])
    flat = dict(pool="flatten")
    assert extract_features(c1d, np.zeros((5, 40), np.float32), ["conv2"], **flat)["conv2"].shape == (5, 6 * 20)
    c2d = small_cnn(1, 2, 3)
    assert extract_features(c2d, np.zeros((4, 1, 6, 6), np.float32), ["conv1"], **flat)["conv1"].shape == (4, 3 * 36)
    assert extract_features(c2d, np.zeros((4, 6, 6), np.float32), ["conv1"], **flat)["conv1"].shape == (4, 3 * 36)
    assert extract_features(c2d, np.zeros((4, 6, 6), np.float32), ["conv1"])["conv1"].shape == (4, 3)


def test_eval_mode_no_grad_and_training_flag_restored():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 50), torch.nn.Dropout(0.5), torch.nn.Linear(50, 2))
    model.train()
    x = np.ones((20, 5), np.float32)
    a = extract_features(model, x, ["1"])["1"]
    b = extract_features(model, x, ["1"])["1"]
    np.testing.assert_array_equal(a, b)  # dropout off: eval mode
    np.testing.assert_allclose(a, model[0](torch.from_numpy(x)).detach().numpy(), rtol=1e-6)
    assert model.training
    assert all(p.grad is None for p in model.parameters())


def test_stop_early_skips_later_layers(net):
    calls = []
    net.out.register_forward_hook(lambda *a: calls.append(1))
    x = np.zeros((10, 12), np.float32)
    extract_features(net, x, ["fc2"], batch_size=4)
    assert calls == []
    extract_features(net, x, ["fc2"], batch_size=4, stop_early=False)
    assert len(calls) == 3


def test_bad_inputs(net):
    x = np.zeros((4, 12), np.float32)
    with pytest.raises(ValueError, match="pool must be one of"):
        extract_features(net, x, ["fc1"], pool="maximum")
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        extract_features(net, x, ["fc1"], batch_size=0)
    with pytest.raises(ValueError, match=r"at least one sample.*\(0, 12\)"):
        extract_features(net, np.zeros((0, 12)), ["fc1"])
    with pytest.raises(ValueError, match="numeric array"):
        extract_features(net, np.array([["a"] * 12]), ["fc1"])
    with pytest.raises(ValueError, match=r"12 features per sample, got shape \(4, 13\)"):
        extract_features(net, np.zeros((4, 13), np.float32), ["fc1"], stop_early=False)


def test_non_finite_features_are_an_error(net):
    with torch.no_grad():
        net.fc3.linear.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match=r"layer 'fc3': 10 of 50 feature values are NaN"):
        extract_features(net, np.ones((10, 12), np.float32), ["fc2", "fc3"])


def test_layer_not_on_the_forward_path():
    class Side(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.used, self.unused = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)

        def forward(self, x):
            return self.used(x)

    with pytest.raises(ValueError, match=r"\['unused'\] were not called"):
        extract_features(Side(), np.zeros((2, 3), np.float32), ["unused"])


def test_amp_on_cpu_warns_and_computes_in_full_precision(net):
    x = np.ones((3, 12), np.float32)
    with pytest.warns(UserWarning, match="amp=True has no effect on CPU"):
        a = extract_features(net, x, ["fc1"], amp=True, device="cpu")
    np.testing.assert_array_equal(a["fc1"], extract_features(net, x, ["fc1"], device="cpu")["fc1"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_and_amp_is_close(cnn):
    x = np.random.default_rng(3).normal(size=(100, 64)).astype(np.float32)
    cpu = extract_features(cnn, x, ["conv2", "out"], device="cpu")
    gpu = extract_features(cnn, x, ["conv2", "out"], device="cuda")
    half = extract_features(cnn, x, ["conv2", "out"], device="cuda", amp=True)
    for k in cpu:
        assert gpu[k].dtype == np.float32 and half[k].dtype == np.float32
        np.testing.assert_allclose(gpu[k], cpu[k], rtol=1e-3, atol=1e-4)
        np.testing.assert_allclose(half[k], cpu[k], rtol=2e-2, atol=2e-2)


# ---------------------------------------------------------------------------------------------
# cache


def _ckpt(tmp_path, model, name="epoch1.pt"):
    path = tmp_path / name
    torch.save({"state_dict": model.state_dict()}, path)
    return path


def test_cached_features_hit_miss_and_no_model_on_warm_cache(tmp_path, net):
    cache = FeatureCache(tmp_path / "cache")
    ck = _ckpt(tmp_path, net)
    x = np.random.default_rng(0).normal(size=(40, 12)).astype(np.float32)
    built = []

    def factory():
        built.append(1)
        return net

    first = cached_features(cache, checkpoint=ck, layers=["fc1", "fc2"], dataset="toy", x=x,
                            model=factory)
    assert built == [1] and cache.misses == 2 and cache.hits == 0
    second = cached_features(cache, checkpoint=ck, layers=["fc1", "fc2"], dataset="toy", x=x,
                             model=factory)
    assert built == [1] and cache.hits == 2  # the model was never built again
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
        np.testing.assert_array_equal(first[k], extract_features(net, x, [k])[k])
    assert len(list((tmp_path / "cache").rglob("*.npy"))) == 2


def test_cache_key_changes_with_content_data_pool_and_dataset(tmp_path, net):
    cache = FeatureCache(tmp_path / "c")
    ck = _ckpt(tmp_path, net)
    x = np.ones((8, 12), np.float32)
    base = dict(checkpoint=ck, layers=["fc1"], dataset="toy", x=x, model=net)
    cached_features(cache, **base)
    for change in ({"dataset": "other"}, {"x": x * 2}, {"pool": "avg"}, {"transform": "std"}):
        misses = cache.misses
        cached_features(cache, **{**base, **change})
        assert cache.misses == misses + 1, change
    # a rewritten checkpoint (same name, new weights) is a new entry; a renamed copy is not
    with torch.no_grad():
        net.fc1.linear.bias.add_(1.0)
    torch.save({"state_dict": net.state_dict()}, ck)
    misses = cache.misses
    new = cached_features(cache, **base)
    assert cache.misses == misses + 1
    np.testing.assert_allclose(new["fc1"], extract_features(net, x, ["fc1"])["fc1"])
    copy = tmp_path / "renamed.pt"
    copy.write_bytes(ck.read_bytes())
    hits = cache.hits
    cached_features(cache, **{**base, "checkpoint": copy})
    assert cache.hits == hits + 1


def test_interrupted_extraction_resumes_with_missing_layers_only(tmp_path, net):
    cache = FeatureCache(tmp_path / "c")
    ck = _ckpt(tmp_path, net)
    x = np.ones((6, 12), np.float32)
    cached_features(cache, checkpoint=ck, layers=["fc1"], dataset="toy", x=x, model=net)
    seen = []
    net.fc1.register_forward_hook(lambda *a: seen.append("fc1"))
    net.fc3.register_forward_hook(lambda *a: seen.append("fc3"))
    out = cached_features(cache, checkpoint=ck, layers=["fc1", "fc3"], dataset="toy", x=x, model=net)
    assert list(out) == ["fc1", "fc3"] and cache.hits == 1
    # one forward pass for fc3 only (fc1 runs on the way, but its features come from the cache)
    assert seen == ["fc1", "fc3"]


def test_corrupted_cache_entry_is_recomputed(tmp_path, net):
    cache = FeatureCache(tmp_path / "c")
    ck = _ckpt(tmp_path, net)
    x = np.ones((6, 12), np.float32)
    good = cached_features(cache, checkpoint=ck, layers=["fc2"], dataset="toy", x=x, model=net)
    (entry,) = list((tmp_path / "c").rglob("*.npy"))
    entry.write_bytes(entry.read_bytes()[:40])
    with pytest.warns(UserWarning, match="unreadable"):
        again = cached_features(cache, checkpoint=ck, layers=["fc2"], dataset="toy", x=x, model=net)
    np.testing.assert_array_equal(good["fc2"], again["fc2"])
    assert np.load(entry).shape == (6, 7)


def test_half_written_entries_are_never_read(tmp_path):
    cache = FeatureCache(tmp_path / "c")
    parts = {"layer": "fc1", "checkpoint": "abc"}

    class Boom(Exception):
        pass

    def explode():
        raise Boom

    with pytest.raises(Boom):
        cache.get_or_compute(parts, explode)
    assert parts not in cache and not list((tmp_path / "c").rglob("*.npy"))
    # a crash in the middle of a write leaves only a hidden temporary, which is not an entry
    p = cache.path(parts)
    p.parent.mkdir(parents=True, exist_ok=True)
    (p.parent / f".{p.name}.x1y2.tmp").write_bytes(b"\x93NUMPY half")
    assert cache.get(parts) is None
    calls = []
    val = cache.get_or_compute(parts, lambda: calls.append(1) or np.arange(3.0))
    np.testing.assert_array_equal(val, np.arange(3.0))
    np.testing.assert_array_equal(cache.get_or_compute(parts, explode), np.arange(3.0))
    assert calls == [1]


def test_digests():
    a = np.arange(6, dtype=np.float32)
    assert array_digest(a) == array_digest(a.copy()) == array_digest(torch.arange(6.0))
    assert array_digest(a) != array_digest(a.reshape(2, 3))
    assert array_digest(a) != array_digest(a.astype(np.float64))


def test_file_sha256_tracks_content(tmp_path):
    import hashlib

    p = tmp_path / "f.bin"
    p.write_bytes(b"hello")
    assert file_sha256(p) == hashlib.sha256(b"hello").hexdigest()
    p.write_bytes(b"hello, world")
    assert file_sha256(p) == hashlib.sha256(b"hello, world").hexdigest()


def test_ib12bit_net_shape():
    net = ib12bit_net()
    widths = [getattr(net, f"fc{i}").linear.out_features for i in range(1, 6)]
    assert widths == [10, 7, 5, 4, 3] and net.out.out_features == 2 and net.fc1.linear.in_features == 12
    assert isinstance(net.fc1.act, torch.nn.Tanh)
    assert isinstance(mlp(4, (3,), 2, "relu").fc1.act, torch.nn.ReLU)
    with pytest.raises(ValueError, match="activation must be one of"):
        mlp(4, (3,), 2, "swish")
    with pytest.raises(ValueError, match="input_shape must be"):
        small_cnn(3, 2, 4, input_shape=[1, 8, 8])


# ---------------------------------------------------------------------------------------------
# feature shapes: conv maps, 1-d conv maps, transformer tokens (issue 15 item 3)


def test_cnn_1d_auto_pools_over_length_not_channels():
    torch.manual_seed(0)
    c1d = small_cnn(1, 2, 3, input_shape=[1, 40])
    x = np.random.default_rng(0).normal(size=(7, 40)).astype(np.float32)
    log = {}
    got = extract_features(c1d, x, ["conv1", "conv1.act", "pool", "conv2"], pool_log=log)
    xi = torch.from_numpy(x).reshape(7, 1, 40)
    c1 = F.relu(F.conv1d(xi, c1d.conv1.conv.weight, c1d.conv1.conv.bias, padding=1)).detach()
    p = F.max_pool1d(c1, 2, ceil_mode=True)
    np.testing.assert_allclose(got["conv1"], c1.mean(dim=2).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["conv1.act"], c1.mean(dim=2).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["pool"], p.mean(dim=2).numpy(), rtol=1e-5, atol=1e-6)
    assert got["conv2"].shape == (7, 6)
    assert log["conv1.act"] == {"pool": "avg", "layout": "channels-first", "shape": [3, 40]}
    assert log["pool"] == {"pool": "avg", "layout": "channels-first", "shape": [3, 20]}


def test_max_and_grid_pools_equal_torch_ops(cnn):
    x = np.random.default_rng(4).normal(size=(9, 64)).astype(np.float32)
    xi = torch.from_numpy(x).reshape(9, 1, 8, 8)
    c1 = F.relu(F.conv2d(xi, cnn.conv1.conv.weight, cnn.conv1.conv.bias, padding=1)).detach()
    mx = extract_features(cnn, x, ["conv1"], pool="max")["conv1"]
    np.testing.assert_allclose(mx, c1.amax(dim=(2, 3)).numpy(), rtol=1e-6)
    log = {}
    grid = extract_features(cnn, x, ["conv1"], pool="avg2x2", pool_log=log)["conv1"]
    want = c1.reshape(9, 4, 2, 4, 2, 4).mean(dim=(3, 5)).reshape(9, -1)  # 8x8 -> 2x2 blocks of 4x4
    np.testing.assert_allclose(grid, want.numpy(), rtol=1e-5, atol=1e-6)
    assert grid.shape == (9, 4 * 4) and log["conv1"]["pool"] == "avg2x2"


class _Tokens(torch.nn.Module):
    """A ViT-like net: conv patch embedding -> tokens (with a CLS token) -> encoder layer, plus a
    ConvNeXt-like channels-last stage (permute, LayerNorm over C)."""

    def __init__(self):
        super().__init__()
        self.patch = torch.nn.Conv2d(1, 8, kernel_size=2, stride=2)
        self.embed = torch.nn.Identity()
        self.cls = torch.nn.Parameter(torch.randn(1, 1, 8))
        self.block = torch.nn.TransformerEncoderLayer(8, 2, 16, dropout=0.0, batch_first=True)
        self.norm = torch.nn.LayerNorm(8)
        self.act = torch.nn.GELU()
        self.head = torch.nn.Linear(8, 3)

    def forward(self, x):
        p = self.patch(x)                                     # (n, 8, 2, 2) channels first
        cl = self.act(self.norm(p.permute(0, 2, 3, 1)))      # (n, 2, 2, 8) channels last
        t = self.embed(p.flatten(2).transpose(1, 2))          # (n, 4, 8) tokens
        t = torch.cat([self.cls.expand(len(x), -1, -1), t], dim=1)
        h = self.block(t)
        return self.head(h[:, 0] + cl.mean(dim=(1, 2)))


def test_transformer_tokens_cls_mean_and_per_layer_pool():
    torch.manual_seed(0)
    net = _Tokens().eval()
    x = np.random.default_rng(5).normal(size=(6, 1, 4, 4)).astype(np.float32)
    xt = torch.from_numpy(x)
    with torch.no_grad():
        p = net.patch(xt)
        cl = net.act(net.norm(p.permute(0, 2, 3, 1)))
        t = p.flatten(2).transpose(1, 2)
        h = net.block(torch.cat([net.cls.expand(6, -1, -1), t], dim=1))
    log = {}
    auto = extract_features(net, x, ["patch", "act", "embed", "block"], pool_log=log, batch_size=4)
    np.testing.assert_allclose(auto["patch"], p.mean(dim=(2, 3)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto["act"], cl.mean(dim=(1, 2)).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto["embed"], t.mean(dim=1).numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(auto["block"], h.mean(dim=1).numpy(), rtol=1e-5, atol=1e-5)
    assert log["act"]["layout"] == "channels-last" and log["act"]["shape"] == [2, 2, 8]
    assert log["embed"] == {"pool": "mean", "layout": "channels-last", "shape": [4, 8]}
    assert log["patch"]["layout"] == "channels-first"
    per = extract_features(net, x, ["patch", "embed", "block"],
                           pool={"block": "cls", "p*": "flatten"})
    np.testing.assert_allclose(per["block"], h[:, 0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(per["patch"], p.reshape(6, -1).numpy(), rtol=1e-6)
    np.testing.assert_allclose(per["embed"], auto["embed"])  # unmatched: auto
    for v in per.values():
        assert v.dtype == np.float32


def test_pool_errors_name_the_layer_and_shape(cnn):
    x = np.zeros((3, 64), np.float32)
    with pytest.raises(ValueError, match=r"layer 'conv1': pool 'cls'.*\(4, 8, 8\)"):
        extract_features(cnn, x, ["conv1"], pool="cls")
    net = _Tokens()
    with pytest.raises(ValueError, match=r"layer 'embed': pool 'avg2x2'.*\(4, 8\)"):
        extract_features(net, np.zeros((2, 1, 4, 4), np.float32), ["embed"], pool="avg2x2")
    with pytest.raises(ValueError, match=r"pool is given for layer 'conv9'.*\['conv1'\]"):
        extract_features(cnn, x, ["conv1"], pool={"conv9": "avg"})
    with pytest.raises(ValueError, match=r"pool for layer 'conv1' must be one of"):
        extract_features(cnn, x, ["conv1"], pool={"conv1": "avg0x2"})


def test_mapping_outputs_and_split_inputs():
    class Out(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(3, 4)

        def forward(self, x):
            return {"logits": x[:, :1], "last_hidden_state": self.lin(x)}

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = Out()

        def forward(self, x):
            return self.inner(x)["last_hidden_state"]

    torch.manual_seed(0)
    m = Wrap()
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    want = m.inner.lin(torch.from_numpy(x)).detach().numpy()
    from infodyn.data.splits import ArraySplit

    split = ArraySplit(x, np.zeros(10, np.int64), "test")
    got = extract_features(m, split.take([9, 0, 3]), ["inner"], batch_size=2)["inner"]
    np.testing.assert_allclose(got, want[[9, 0, 3]], rtol=1e-6)


def test_hugging_face_bert_cls_and_mean():
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    cfg = transformers.BertConfig(vocab_size=30, hidden_size=16, num_hidden_layers=2,
                                  num_attention_heads=2, intermediate_size=32,
                                  max_position_embeddings=16)
    model = transformers.BertModel(cfg, add_pooling_layer=False).eval()
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, 30, size=(5, 7)))
    with torch.no_grad():
        last = model(input_ids=ids).last_hidden_state
    cls = extract_features(model, ids, ["encoder.layer.1"], pool="cls")["encoder.layer.1"]
    mean = extract_features(model, ids, ["encoder.layer.1"])["encoder.layer.1"]
    np.testing.assert_allclose(cls, last[:, 0].numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean, last.mean(dim=1).numpy(), rtol=1e-5, atol=1e-5)
