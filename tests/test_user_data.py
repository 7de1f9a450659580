"""Data as users keep it (issue 15 item 2): their own splits, image folders, torch Dataset
factories, Hugging Face save_to_disk folders, input transforms, read by index; content digests."""
import textwrap

import numpy as np
import pytest
import torch

from infodyn import data
from infodyn.data.lazy import LazyDataset
from infodyn.data.spec import DataSpec, parse_data_spec
from infodyn.data.splits import carve
from infodyn.runs import extract_features, parse_manifest

Image = pytest.importorskip("PIL.Image")


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


@pytest.fixture
def pets(tmp_path):
    """A flat image folder: 3 classes x 6 RGB images of 5x4 pixels, values known."""
    rng = np.random.default_rng(0)
    pix = {}
    for c in ("cat", "dog", "eel"):
        for i in range(6):
            a = rng.integers(0, 256, size=(5, 4, 3), dtype=np.uint8)
            _png(tmp_path / "pets" / c / f"{i:02d}.png", a)
            pix[(c, i)] = a
    (tmp_path / "pets" / "cat" / "notes.txt").write_text("not an image")
    return tmp_path / "pets", pix


def test_image_folder_labels_pixels_and_stratified_split(pets):
    root, pix = pets
    ds = data.load(str(root), seed=3)
    assert isinstance(ds, LazyDataset) and ds.classes == ("cat", "dog", "eel")
    assert ds.splits_given == () and [len(ds.split(s)) for s in ("train", "val", "test")] == [12, 3, 3]
    for s in ("train", "val", "test"):  # stratified: every class in every split
        assert np.bincount(ds.split(s).labels, minlength=3).min() >= 1
    tr = ds.split("train")
    x = tr.read(np.arange(len(tr)))
    assert x.dtype == np.float32 and x.shape == (12, 3, 5, 4)
    # every read input is one of the files of its class, as (C, H, W) / 255
    for xi, yi, row in zip(x, tr.labels, tr.rows):
        f = tr.reader.files[row]
        assert f.parent.name == ds.classes[yi]
        want = pix[(f.parent.name, int(f.stem))].transpose(2, 0, 1) / 255.0
        np.testing.assert_allclose(xi, want, atol=1e-7)
    # same seed, same split; another seed, another split; digest follows
    again = data.load(str(root), seed=3)
    np.testing.assert_array_equal(again.split("test").rows, ds.split("test").rows)
    assert again.digest == ds.digest
    other = data.load(str(root), seed=4)
    assert not np.array_equal(other.split("test").rows, ds.split("test").rows)
    assert other.digest != ds.digest
    assert ds.split_params()["splits"] == {"train": "carved", "val": "carved", "test": "carved"}


def test_image_folder_with_its_own_split_resize_grey_and_normalise(tmp_path):
    rng = np.random.default_rng(1)
    for split, n in (("train", 4), ("test", 2)):
        for c in ("a", "b"):
            for i in range(n):
                _png(tmp_path / "im" / split / c / f"{i}.png",
                     rng.integers(0, 256, size=(8, 6, 3), dtype=np.uint8))
    spec = {"images": str(tmp_path / "im"), "size": [4, 3], "mode": "L", "mean": 0.5, "std": 0.25,
            "split": [0.75, 0.25, 0.0]}
    ds = data.load(spec, seed=0)
    assert ds.splits_given == ("train", "test")
    test = ds.split("test")
    assert len(test) == 4 and test.given and not ds.split("val").given
    assert sorted(f.parent.parent.name for f in (test.reader.files[r] for r in test.rows)) == ["test"] * 4
    assert len(ds.split("train")) + len(ds.split("val")) == 8 and len(ds.split("val")) == 2
    x = test.read([0])
    f = test.reader.files[test.rows[0]]
    with Image.open(f) as img:
        want = np.asarray(img.convert("L").resize((3, 4), Image.BILINEAR), np.float32) / 255.0
    np.testing.assert_allclose(x[0, 0], (want - 0.5) / 0.25, atol=1e-6)
    assert x.shape == (1, 1, 4, 3)
    assert ds.split_params()["transform"] == {"mean": 0.5, "std": 0.25}


def test_transform_on_a_folder_named_by_path(pets):
    root, _ = pets
    plain = data.load(str(root))
    norm = data.load(str(root), transform={"mean": [0.5, 0.5, 0.0], "std": 0.5})
    np.testing.assert_allclose(norm.split("val").read([1]),
                               (plain.split("val").read([1]) - np.array([0.5, 0.5, 0.0])[:, None, None]) / 0.5,
                               rtol=1e-6, atol=1e-6)
    assert norm.digest != plain.digest and norm.split_params()["transform"]["std"] == 0.5
    with pytest.raises(ValueError, match=r"mean has 2 values but inputs have shape \(3, 5, 4\)"):
        data.load(str(root), transform={"mean": [0.5, 0.5]}).split("val").read([0])


def test_image_folder_errors_and_digest_follows_an_edit(tmp_path, pets):
    root, pix = pets
    d0 = data.load(str(root)).digest
    _png(root / "dog" / "03.png", np.zeros((5, 4, 3), np.uint8))
    assert data.load(str(root)).digest != d0
    _png(root / "dog" / "09.png", np.zeros((7, 4, 3), np.uint8))
    ds = data.load(str(root), split=[0.5, 0.5])
    with pytest.raises(ValueError, match=r"inputs differ in shape.*\(3, 5, 4\).*\(3, 7, 4\).*size"):
        ds.split("train").arrays()
    (tmp_path / "empty" / "x").mkdir(parents=True)
    with pytest.raises(ValueError, match=r"no image files"):
        data.load(str(tmp_path / "empty"))


def test_npz_with_its_own_train_test_split_is_kept(tmp_path):
    rng = np.random.default_rng(2)
    xtr, ytr = rng.normal(size=(40, 3)).astype(np.float32), np.repeat([0, 1], 20)
    xte, yte = rng.normal(size=(10, 3)).astype(np.float32), np.repeat([0, 1], 5)
    f = tmp_path / "mine.npz"
    np.savez(f, x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    ds = data.load(str(f), seed=0)
    assert ds.splits_given == ("train", "test")
    np.testing.assert_array_equal(ds.x_test, xte)  # the user's test set, in its order
    np.testing.assert_array_equal(ds.y_test, yte)
    # train and val partition the user's train rows; val is 0.2/(0.6+0.2) of them, per class
    got = np.concatenate([ds.x_train, ds.x_val])
    assert sorted(map(tuple, got)) == sorted(map(tuple, xtr))
    assert np.bincount(ds.y_val).tolist() == [5, 5]
    assert ds.split("test").given and not ds.split("val").given
    assert ds.split_params() == {"splits": {"train": "given", "val": "carved", "test": "given"},
                                 "split": [0.6, 0.2, 0.2], "seed": 0, "carved_from": "train"}
    d0 = ds.digest
    # an edit of the file changes the digest; the same content under another name does not
    xte2 = xte.copy()
    xte2[3, 1] += 1e-3
    np.savez(f, x_train=xtr, y_train=ytr, x_test=xte2, y_test=yte)
    assert data.load(str(f), seed=0).digest != d0
    np.savez(tmp_path / "copy.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    assert data.load(str(tmp_path / "copy.npz"), seed=0).digest == d0
    # all three given: nothing is carved
    np.savez(f, x_train=xtr, y_train=ytr, x_val=xte[:4], y_val=yte[:4], x_test=xte, y_test=yte)
    ds3 = data.load(str(f))
    assert ds3.splits_given == ("train", "val", "test")
    np.testing.assert_array_equal(ds3.x_train, xtr)
    np.testing.assert_array_equal(ds3.x_val, xte[:4])


def test_npz_split_errors(tmp_path):
    f = tmp_path / "bad.npz"
    np.savez(f, x_train=np.zeros((4, 2)), x_test=np.zeros((2, 2)), y_test=np.zeros(2))
    with pytest.raises(ValueError, match=r"bad.npz: has x_train but not y_train"):
        data.load(str(f))
    np.savez(f, x_train=np.zeros((4, 2)), y_train=np.zeros(4), x_test=np.zeros((2, 3)), y_test=np.zeros(2))
    with pytest.raises(ValueError, match=r"bad.npz: the splits' inputs differ in shape"):
        data.load(str(f))
    np.savez(f, x_test=np.zeros((2, 3)), y_test=np.zeros(2))
    with pytest.raises(ValueError, match=r"expected arrays 'x' and 'y', or 'x_train'"):
        data.load(str(f))


def test_carve_keeps_given_splits_and_is_stratified():
    y_tr = np.repeat([0, 1, 2], [10, 20, 30])
    plan = carve({"train": y_tr, "test": np.array([0, 1])}, (0.5, 0.25, 0.25), seed=1)
    assert plan["test"] == ("test", plan["test"][1]) and plan["test"][1].tolist() == [0, 1]
    tr, va = plan["train"][1], plan["val"][1]
    assert plan["train"][0] == plan["val"][0] == "train"
    assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).tolist() == list(range(60))
    # val = 0.25 / 0.75 of each class, rounded
    assert np.bincount(y_tr[va]).tolist() == [3, 7, 10]
    whole = carve({"all": y_tr}, (0.6, 0.2, 0.2), seed=1)
    assert [len(whole[s][1]) for s in ("train", "val", "test")] == [36, 12, 12]
    with pytest.raises(ValueError, match="no train split"):
        carve({"test": y_tr}, (0.6, 0.2, 0.2), 0)


FACTORY = '''
import torch
from torch.utils.data import Dataset, TensorDataset

def make(n_train=30, n_test=12, shift=0.0):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n_train + n_test, 2, 3, generator=g) + shift
    y = torch.arange(n_train + n_test) % 3
    return {"train": TensorDataset(x[:n_train], y[:n_train]),
            "test": TensorDataset(x[n_train:], y[n_train:])}

class Plain(Dataset):
    """No targets attribute: labels are found by reading every item."""
    def __init__(self, n):
        self.n = n
    def __len__(self):
        return self.n
    def __getitem__(self, i):
        return torch.full((4,), float(i)), ["a", "b"][i % 2]

def plain(n=8):
    return Plain(n)

def scale(x):
    return x * 10.0

def not_a_dataset():
    return 3

class Dicts(Dataset):
    """Hugging Face style items: mappings."""
    def __len__(self):
        return 6
    def __getitem__(self, i):
        return {"pixel_values": torch.full((2,), float(i)), "lab": i % 3}

def dicts():
    return Dicts()

class Noisy(Dataset):
    """A random augmentation: each read differs."""
    def __len__(self):
        return 10
    def __getitem__(self, i):
        return torch.rand(3), i % 2

def noisy():
    return Noisy()

def float_labels(frac=False):
    y = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0, 2.0]) + (0.5 if frac else 0.0)
    return TensorDataset(torch.randn(6, 2), y)
'''


@pytest.fixture
def factory_dir(tmp_path):
    (tmp_path / "mydata_f.py").write_text(FACTORY)
    return tmp_path


def test_torch_dataset_factory_from_a_manifest(factory_dir):
    text = textwrap.dedent("""\
        model: infodyn.models:mlp
        data:
          source:
            dataset: mydata_f:make
            kwargs: {n_train: 30, n_test: 12}
            transform: mydata_f:scale
            mean: [1.0, 2.0]
        layers: [fc1]
        pool: {fc1: flatten}
        """)
    import yaml

    m = parse_manifest(yaml.safe_load(text), factory_dir / "infodyn.yaml")
    assert isinstance(m.data_source, DataSpec) and m.data_source.kind == "dataset"
    assert m.pool == {"fc1": "flatten"}
    ds = data.load(m.data_source, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(42, 2, 3, generator=g).numpy()
    y = np.arange(42) % 3
    test = ds.split("test")
    assert ds.splits_given == ("train", "test") and len(test) == 12
    np.testing.assert_array_equal(test.labels, y[30:])
    want = x[30:] * 10.0 - np.array([1.0, 2.0], np.float32)[None, :, None]
    np.testing.assert_allclose(test.read(np.arange(12)), want, rtol=1e-6)
    np.testing.assert_allclose(test.read([5, 1]), want[[5, 1]], rtol=1e-6)
    assert len(ds.split("train")) + len(ds.split("val")) == 30
    # the digest covers the factory's kwargs (other data) and not just its name
    other = data.load(m.data_source.with_options(kwargs={"n_train": 30, "n_test": 12, "shift": 1.0}),
                      seed=0)
    assert other.digest != ds.digest
    assert data.load(m.data_source, seed=0).digest == ds.digest


def test_plain_torch_dataset_labels_by_reading_and_features_by_index(factory_dir):
    ds = data.load(parse_data_spec({"dataset": "mydata_f:plain", "kwargs": {"n": 20},
                                    "split": [0.5, 0.5]}, factory_dir), seed=0)
    assert ds.classes == ("a", "b") and ds.splits_given == ()
    te = ds.split("test")
    x = te.read(np.arange(len(te)))
    np.testing.assert_array_equal(x[:, 0], te.rows.astype(np.float32))  # item i is full of i
    np.testing.assert_array_equal(te.labels, te.rows % 2)
    # the engine's path: features of a subsample read batch by batch equal those of the arrays
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh())
    idx = np.array([7, 0, 3])
    f_lazy = extract_features(net, te.take(idx), ["1"], batch_size=2)["1"]
    f_arr = extract_features(net, x[idx], ["1"])["1"]
    np.testing.assert_allclose(f_lazy, f_arr, rtol=1e-6)
    assert [len(c) for c, _ in te.batches(idx, batch_size=2)] == [2, 1]


def test_dataset_factory_errors(factory_dir):
    with pytest.raises(ValueError, match=r"map-style torch Dataset.*got int"):
        data.load(parse_data_spec({"dataset": "mydata_f:not_a_dataset"}, factory_dir))
    with pytest.raises(ValueError, match=r"calling|raised TypeError"):
        data.load(parse_data_spec({"dataset": "mydata_f:make", "kwargs": {"nope": 1}}, factory_dir))
    with pytest.raises(ValueError, match=r"cannot import module 'nomodule'"):
        data.load(parse_data_spec({"dataset": "nomodule:make"}, factory_dir))


@pytest.mark.parametrize("value, match", [
    ({"images": "a", "dataset": "m:f"}, r"exactly one of"),
    ({"size": [2, 2]}, r"exactly one of"),
    ({"images": "a", "kwargs": {}}, r"unknown key\(s\) \['kwargs'\] for 'images'"),
    ({"images": "a", "size": [0, 3]}, r"'size' must be \[height, width\]"),
    ({"images": "a", "mode": "CMYK"}, r"'mode' must be RGB or L"),
    ({"images": "a", "mean": "big"}, r"'mean' must be a number or a list"),
    ({"dataset": "m:f", "digest": "stat"}, r"'digest' must be one of \('spec', 'full'\)"),
    ({"images": "a", "split": [0.5, 0.6]}, r"'split': split fractions"),
    (3, r"must be a data set name, a path, or a mapping"),
])
def test_bad_data_specs_name_the_key(tmp_path, value, match):
    with pytest.raises(ValueError, match=match):
        parse_data_spec(value, tmp_path, "infodyn.yaml: 'data.source'")


def test_manifest_paths_are_resolved_against_its_folder(tmp_path, pets):
    root, _ = pets
    m = parse_manifest({"model": "m:f", "layers": ["a"],
                        "data": {"source": "pets", "target": {"images": "pets", "classes": "cat,dog"}}},
                       tmp_path / "infodyn.yaml")
    assert m.data_source == str(root)
    assert m.data_target.target == str(root) and m.data_target.get("classes") == "cat,dog"
    tgt = data.load(m.data_target)
    assert tgt.classes == ("cat", "dog") and tgt.n == 12
    m2 = parse_manifest({"model": "m:f", "layers": ["a"], "data": "digits:0-4"}, tmp_path / "x.yaml")
    assert m2.data_source == "digits:0-4"
    hash(m.data_target)  # usable as a cache key


def test_in_memory_sets_have_the_same_split_interface():
    ds = data.load("digits:0-4", seed=0)
    te = ds.split("test")
    assert len(te) == len(ds.y_test) and not te.given
    np.testing.assert_array_equal(te.read([2, 0]), ds.x_test[[2, 0]])
    np.testing.assert_array_equal(te.labels, ds.y_test)
    assert te.digest == te.take(np.arange(len(te))).digest != ds.split("val").digest
    assert ds.digest == data.load("digits:0-4", seed=0).digest != data.load("digits:0-4", seed=1).digest
    shifted = data.load({"name": "digits:0-4", "mean": 8.0})
    np.testing.assert_allclose(shifted.x_test, ds.x_test - 8.0)
    assert shifted.digest != ds.digest


def test_source_target_with_a_lazy_set(pets):
    root, _ = pets
    src, tgt = data.source_target(f"{root}:cat,dog", f"{root}:eel")
    assert (src.role, tgt.role) == ("source", "target") and tgt.classes == ("eel",)
    assert src.num_classes == 2 and tgt.split("train").labels.max() == 0


def test_hugging_face_save_to_disk(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(3)
    feats = datasets.Features({"vec": datasets.Sequence(datasets.Value("float32")),
                               "label": datasets.ClassLabel(names=["neg", "pos"])})
    parts = {}
    for split, n in (("train", 20), ("validation", 6), ("test", 8)):
        parts[split] = datasets.Dataset.from_dict(
            {"vec": rng.normal(size=(n, 3)).astype(np.float32).tolist(),
             "label": (np.arange(n) % 2).tolist()}, features=feats)
    datasets.DatasetDict(parts).save_to_disk(str(tmp_path / "hf"))
    ds = data.load({"hf": str(tmp_path / "hf"), "input": "vec"})
    assert ds.splits_given == ("train", "val", "test") and ds.classes == (0, 1)
    assert ds.meta["class_names"] == ["neg", "pos"]
    np.testing.assert_allclose(ds.split("val").read(np.arange(6)),
                               np.asarray(parts["validation"]["vec"], np.float32))
    np.testing.assert_array_equal(ds.split("test").labels, np.arange(8) % 2)
    d0 = ds.digest
    assert data.load(str(tmp_path / "hf")).digest == d0  # a plain path finds it too
    with pytest.raises(ValueError, match=r"column 'pixels' \(key 'input'\) not in"):
        data.load({"hf": str(tmp_path / "hf"), "input": "pixels"})


def test_mapping_items_and_random_augmentation_warning(factory_dir):
    with pytest.raises(ValueError, match=r"item 0 is a mapping with keys \['pixel_values', 'lab'\]"):
        data.load(parse_data_spec({"dataset": "mydata_f:dicts"}, factory_dir))
    ds = data.load(parse_data_spec({"dataset": "mydata_f:dicts", "label": "lab", "split": [0.5, 0.5]},
                                   factory_dir))
    tr = ds.split("train")
    np.testing.assert_array_equal(tr.read(np.arange(len(tr)))[:, 1], tr.rows.astype(np.float32))
    np.testing.assert_array_equal(tr.labels, tr.rows % 3)
    noisy = data.load(parse_data_spec({"dataset": "mydata_f:noisy"}, factory_dir))
    with pytest.warns(UserWarning, match="random augmentation"):
        noisy.digest


def test_concat_view_reads_by_full_order_positions(pets):
    from infodyn.data.splits import SPLITS, concat

    root, _ = pets
    ds = data.load(str(root), seed=1)
    full = concat([ds.split(s) for s in SPLITS])
    x_all = np.concatenate([ds.split(s).arrays()[0] for s in SPLITS])
    assert len(full) == 18 and full.labels.tolist() == np.concatenate(
        [ds.split(s).labels for s in SPLITS]).tolist()
    for rows in (np.array([0, 5, 12, 13, 17]), np.array([17, 0, 13, 5])):
        view = full.take(rows)
        np.testing.assert_array_equal(view.read(np.arange(len(rows))), x_all[rows])
        np.testing.assert_array_equal(view.labels, full.labels[rows])
        np.testing.assert_array_equal(full.read(rows), x_all[rows])
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 3), torch.nn.ReLU())
    f = extract_features(net, full.take([1, 14, 2]), ["1"], batch_size=2)["1"]
    want = net(torch.from_numpy(x_all[[1, 14, 2]])).mean(dim=(2, 3)).detach().numpy()
    np.testing.assert_allclose(f, want, rtol=1e-5, atol=1e-6)


def test_float_labels_that_are_whole_numbers(factory_dir):
    ds = data.load(parse_data_spec({"dataset": "mydata_f:float_labels", "split": [0.5, 0.5]}, factory_dir))
    assert ds.classes == (0, 1, 2) and ds.split("train").labels.dtype == np.int64
    with pytest.raises(ValueError, match=r"labels must be class ids.*non-integer floats"):
        data.load(parse_data_spec({"dataset": "mydata_f:float_labels", "kwargs": {"frac": True}},
                                  factory_dir))


def test_hugging_face_image_column_unsplit(tmp_path):
    datasets = pytest.importorskip("datasets")
    rng = np.random.default_rng(4)
    imgs = [rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8) for _ in range(8)]
    files = []
    for i, a in enumerate(imgs):
        _png(tmp_path / "src" / f"{i}.png", a)
        files.append(str(tmp_path / "src" / f"{i}.png"))
    d = datasets.Dataset.from_dict({"image": files, "label": [i % 2 for i in range(8)]}).cast_column(
        "image", datasets.Image())
    d.save_to_disk(str(tmp_path / "hfimg"))
    ds = data.load({"hf": str(tmp_path / "hfimg"), "split": [0.5, 0.5], "mode": "L"})
    assert ds.splits_given == () and ds.classes == (0, 1)
    te = ds.split("test")
    x = te.read(np.arange(len(te)))
    assert x.shape == (4, 1, 6, 5)
    for xi, r in zip(x, te.rows):
        want = np.asarray(Image.fromarray(imgs[r]).convert("L"), np.float32) / 255.0
        np.testing.assert_allclose(xi[0], want, atol=1e-6)


KEYED = '''
import torch
from torch.utils.data import Dataset

class Keyed(Dataset):
    """Mapping items with two input keys that differ only in row 1 (not among the 8 rows the
    'spec' digest reads: 0, 3, 5, 8, 11, 14, 16, 19) and two label keys with equal values."""
    def __len__(self):
        return 20
    def __getitem__(self, i):
        a = torch.full((2,), float(i))
        return {"a": a, "b": a + (1.0 if i == 1 else 0.0), "lab": i % 2, "lab2": i % 2}

def keyed():
    return Keyed()
'''


def test_torch_digest_covers_the_input_and_label_keys(tmp_path):
    (tmp_path / "keyed_f.py").write_text(KEYED)

    def load(**keys):
        return data.load(parse_data_spec({"dataset": "keyed_f:keyed", **keys}, tmp_path), seed=0)

    base = load(input="a", label="lab")
    other_input, other_label = load(input="b", label="lab"), load(input="a", label="lab2")
    # the keys do give other inputs (row 1), which the sampled inputs alone would miss
    assert base.split("train").reader.read([1])[0, 0] != other_input.split("train").reader.read([1])[0, 0]
    assert len({base.digest, other_input.digest, other_label.digest}) == 3
    assert load(input="a", label="lab").digest == base.digest


def test_hugging_face_digest_covers_which_user_split_is_read(tmp_path):
    datasets = pytest.importorskip("datasets")
    from infodyn.data.sources import hf_readers

    rng = np.random.default_rng(5)
    lab = (np.arange(8) % 2).tolist()
    # "test" and "holdout": same length and labels, other inputs
    parts = {name: datasets.Dataset.from_dict({"vec": rng.normal(size=(8, 3)).astype(np.float32).tolist(),
                                               "label": lab if name != "train" else (np.arange(8) % 2).tolist()})
             for name in ("train", "test", "holdout")}
    root = tmp_path / "hf"
    datasets.DatasetDict(parts).save_to_disk(str(root))
    one = hf_readers(root, "t", "vec", "label", splits={"train": "train", "test": "test"})
    two = hf_readers(root, "t", "vec", "label", splits={"train": "train", "test": "holdout"})
    assert (one["test"].user_split, two["test"].user_split) == ("test", "holdout")
    assert one["test"].digest != two["test"].digest and one["train"].digest == two["train"].digest
    # the folder's files are hashed once for all the splits read from it
    assert one["train"]._folder_digest is one["test"]._folder_digest
    spec = {"hf": str(root), "input": "vec"}
    a = data.load({**spec, "splits": {"train": "train", "test": "test"}})
    b = data.load({**spec, "splits": {"train": "train", "test": "holdout"}})
    assert a.digest != b.digest
    assert a.digest == data.load({**spec, "splits": {"train": "train", "test": "test"}}).digest
