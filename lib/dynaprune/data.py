"""Datasets as in-memory tensors, every sample addressable by its index.

`load_dataset(name, root=None, **options)` is the one entry point; ``root=None`` means
`data_root()`: $DYNAPRUNE_DATA, else the project's own `data/` folder, whatever the working
directory (a notebook run from `notebooks/` reads the same files as `make data`). Samplers
work on indices 0..n-1 of the training split, so every dataset here is a pair
of tensors (and the variants below keep a record of which original samples
they hold).

Variants on any classification set (seeded, recorded in ``meta``):
- ``imbalance=True``: [Raju] Table 2 subsampling rates by class
  (classes 0,1 at 25%; 2,3,4 at 50%; 5,6 at 75%; 7,8,9 at 100%).
- ``per_class=k``: downsample to k samples per class ([Raju] §4.6).
- ``label_noise=rate, noise_type="flip"|"uniform"`` ([ES] §3.2): exactly
  round(rate * n) training labels corrupted; ``flip`` maps y -> (y + 1) mod C
  (a fixed "flip to another class"), ``uniform`` draws a different class
  uniformly. ``meta["noisy_indices"]`` says which ones.
"""
from __future__ import annotations

import gzip
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

# [Raju] Table 2: fraction of each CIFAR-10 class kept in the imbalanced variant.
IMBALANCE_RATES = (0.25, 0.25, 0.5, 0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 1.0)
NOISE_TYPES = ("flip", "uniform")
FASHION_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                 "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
CIFAR_MEAN = {"cifar10": (0.4914, 0.4822, 0.4465), "cifar100": (0.5071, 0.4865, 0.4409)}
CIFAR_STD = {"cifar10": (0.2470, 0.2435, 0.2616), "cifar100": (0.2673, 0.2564, 0.2762)}


@dataclass
class Dataset:
    """Train/test tensors plus metadata. ``x_train[i]`` is sample ``i`` for the samplers."""
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    task: str  # "classification" or "regression"
    meta: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return len(self.x_train)

    @property
    def num_classes(self) -> int | None:
        return self.meta.get("num_classes")

    @property
    def input_shape(self) -> tuple:
        return tuple(self.x_train.shape[1:])

    @property
    def output_dim(self) -> int:
        return self.num_classes if self.task == "classification" else int(self.y_train.shape[1])


def data_root() -> Path:
    """Where datasets live: $DYNAPRUNE_DATA if set, else <project>/data (never relative to the cwd)."""
    return Path(os.environ.get("DYNAPRUNE_DATA", Path(__file__).resolve().parents[2] / "data"))


class DatasetError(ValueError):
    """A dataset that cannot be produced; the message says how to get it."""


# --------------------------------------------------------------------------- sources

def _fashion_debian_files() -> list[Path]:
    """Where the Debian package `dataset-fashion-mnist` put its gzipped IDX files."""
    try:
        out = subprocess.run(["dpkg", "-L", "dataset-fashion-mnist"], capture_output=True, text=True)
    except FileNotFoundError:
        return []
    return [Path(p) for p in out.stdout.split() if p.endswith("-ubyte.gz")]


def prepare_fashion_mnist(root: str | os.PathLike | None = None, install: bool = True, download: bool = True) -> Path:
    """Make `root/FashionMNIST/raw/` hold the four IDX files and return that folder.

    Order of sources: already under root; the Debian package (installed with
    apt when we are root on Debian and ``install``); torchvision's download.
    """
    root = data_root() if root is None else Path(root)
    raw = root / "FashionMNIST" / "raw"
    if all((raw / f).exists() for f in FASHION_FILES):
        return raw
    files = _fashion_debian_files()
    if not files and install and _can_apt():
        subprocess.run(["apt-get", "update", "-qq"], check=False, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "-qq", "dataset-fashion-mnist"], check=False,
                       capture_output=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        files = _fashion_debian_files()
    if files:
        raw.mkdir(parents=True, exist_ok=True)
        for gz in files:
            # torchvision rejects the recompressed .gz (MD5 differs) but reads the raw IDX files.
            target = raw / gz.name[:-3]
            tmp = target.with_suffix(".part")
            with gzip.open(gz, "rb") as src, open(tmp, "wb") as dst:
                shutil.copyfileobj(src, dst)
            tmp.replace(target)
        if all((raw / f).exists() for f in FASHION_FILES):
            return raw
    if download:
        try:
            import torchvision
            torchvision.datasets.FashionMNIST(str(root), train=True, download=True)
            torchvision.datasets.FashionMNIST(str(root), train=False, download=True)
            return raw
        except Exception as err:  # offline: fall through to the explanation
            last = err
    else:
        last = None
    raise DatasetError(
        "Fashion-MNIST is not available. Three ways to get it:\n"
        f"  1. put the four IDX files ({', '.join(FASHION_FILES)}) in {raw}/;\n"
        "  2. on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` (then rerun; we decompress it);\n"
        "  3. with internet access: torchvision downloads it (download=True).\n"
        f"Last error: {last!r}")


def _can_apt() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get") is not None \
        and Path("/etc/debian_version").exists()


def _fashion_mnist(root, download=True, train_limit=None, **_):
    """Fashion-MNIST, normalised; ``train_limit``: the first k training images only (the gpu-mini profile: what
    `pack_fashion_mnist` ships to a GPU machine, the same data whether the files hold all 60,000 or those k)."""
    import torchvision
    prepare_fashion_mnist(root, download=download)
    tr = torchvision.datasets.FashionMNIST(str(root), train=True, download=False)
    te = torchvision.datasets.FashionMNIST(str(root), train=False, download=False)
    if train_limit is not None and not 0 < int(train_limit) <= len(tr.data):
        raise ValueError(f"train_limit must lie in 1..{len(tr.data)}, got {train_limit}")
    # Normalise with the (full) training-set statistics (0.2860, 0.3530).
    f = lambda d, k=None: ((d.data[:k].float().div(255).sub(0.2860).div(0.3530)).unsqueeze(1), d.targets[:k].long())
    (xtr, ytr), (xte, yte) = f(tr, None if train_limit is None else int(train_limit)), f(te)
    return Dataset(xtr, ytr, xte, yte, "classification",
                   {"num_classes": 10, "source": str(Path(root) / "FashionMNIST")})


def _cifar(name, root, download=True, **_):
    import torchvision
    cls = {"cifar10": torchvision.datasets.CIFAR10, "cifar100": torchvision.datasets.CIFAR100}[name]
    try:
        tr = cls(str(root), train=True, download=download)
        te = cls(str(root), train=False, download=download)
    except Exception as err:
        raise DatasetError(
            f"{name} is not under {root}/ and could not be downloaded ({err!r}). "
            f"Put the torchvision copy there or run once with internet access.") from err
    mean = torch.tensor(CIFAR_MEAN[name]).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR_STD[name]).view(1, 3, 1, 1)
    f = lambda d: ((torch.from_numpy(d.data).permute(0, 3, 1, 2).float().div(255) - mean) / std,
                   torch.tensor(d.targets, dtype=torch.long))
    (xtr, ytr), (xte, yte) = f(tr), f(te)
    return Dataset(xtr, ytr, xte, yte, "classification",
                   {"num_classes": 100 if name == "cifar100" else 10, "augment": "crop_flip"})


def _imagefolder(root, path=None, size=64, test_fraction=0.1, seed=0, stream="auto", **_):
    """ImageNet-100, Tiny-ImageNet, CINIC-10 ... from a folder (torchvision ImageFolder layout).

    ``path/train`` and ``path/val`` (or ``test``) are used when present; else a seeded split of
    ``path``. Images are resized to ``size`` and normalised per channel by the mean and standard
    deviation of a seeded sample of at most 2048 training images. ``stream``: True keeps the
    images on disk (`LazyImages`: the engine trains through a DataLoader with workers), False
    holds them in memory (faster), "auto" streams when the training images as float32 would take
    more than half of the available memory ($DYNAPRUNE_MEMORY_GB overrides). Both give the same
    batches, so a run's results do not depend on the choice (with the default "auto" it is not part
    of the cache key either).
    """
    import torchvision
    if path is None:
        raise DatasetError("imagefolder needs path=<folder with one sub-folder per class>")
    if stream not in (True, False, "auto"):
        raise ValueError(f"stream must be True, False or 'auto', got {stream!r}")
    path = Path(path)
    folder = lambda p: torchvision.datasets.ImageFolder(str(p))
    test_dir = next((path / d for d in ("val", "test") if (path / d).is_dir()), None)
    if (path / "train").is_dir() and test_dir is not None:
        tr, te = folder(path / "train"), folder(test_dir)
        (ptr, ytr), (pte, yte), classes = zip(*tr.samples), zip(*te.samples), tr.classes
    else:
        full = folder(path)
        if not full.samples:
            raise DatasetError(f"no images found under {path}")
        perm = torch.randperm(len(full.samples), generator=torch.Generator().manual_seed(seed)).tolist()
        k = max(1, int(round(test_fraction * len(perm))))
        pick = lambda ix: zip(*[full.samples[i] for i in ix])
        (pte, yte), (ptr, ytr), classes = pick(perm[:k]), pick(perm[k:]), full.classes
    xtr, xte = LazyImages(list(ptr), size), LazyImages(list(pte), size)
    probe = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(seed + 1))[:2048].sort().values
    sample = xtr[probe]
    mean, std = sample.mean(dim=(0, 2, 3)), sample.std(dim=(0, 2, 3)).clamp_min(1e-6)
    xtr, xte = xtr.normalised(mean, std), xte.normalised(mean, std)
    if stream == "auto":
        limit = float(os.environ.get("DYNAPRUNE_MEMORY_GB", 0)) * 2 ** 30 or 0.5 * _available_memory()
        stream = xtr.nbytes > limit
    if not stream:
        xtr, xte = xtr[torch.arange(len(xtr))], xte[torch.arange(len(xte))]
    return Dataset(xtr, torch.tensor(ytr, dtype=torch.long), xte, torch.tensor(yte, dtype=torch.long), "classification",
                   {"num_classes": len(classes), "classes": list(classes), "augment": "crop_flip", "streamed": bool(stream)})


def _available_memory() -> float:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 8 * 2 ** 30


class LazyImages(torch.utils.data.Dataset):
    """Images on disk that index like a tensor: ``x[i]`` (an int) is one (C, H, W) image, ``x[idx]``
    (a tensor or list of indices) a stacked batch, loaded from the files, resized and normalised.
    ``len`` and ``shape`` are those of the tensor it stands for; ``.to(device)`` leaves it on disk
    (the engine moves each batch). A DataLoader's workers call ``x[i]``."""

    def __init__(self, paths, size, mean=None, std=None):
        self.paths, self.size, self.mean, self.std = list(paths), int(size), mean, std
        if not self.paths:
            raise DatasetError("no images found")

    def normalised(self, mean, std) -> "LazyImages":
        return LazyImages(self.paths, self.size, mean, std)

    def __len__(self):
        return len(self.paths)

    @property
    def shape(self):
        return torch.Size((len(self), 3, self.size, self.size))

    @property
    def nbytes(self) -> int:
        return len(self) * 3 * self.size * self.size * 4

    def to(self, *args, **kwargs):
        return self

    def _load(self, i: int) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import v2 as T
        with Image.open(self.paths[i]) as im:
            x = T.functional.to_dtype(T.functional.to_image(im.convert("RGB").resize((self.size, self.size),
                                                                                     Image.BILINEAR)), torch.float32, scale=True)
        if self.mean is not None:
            x = (x - self.mean.view(3, 1, 1)) / self.std.view(3, 1, 1)
        return x

    def __getitem__(self, idx):
        if isinstance(idx, (int, np.integer)):
            return self._load(int(idx))
        if isinstance(idx, slice):
            idx = range(*idx.indices(len(self)))
        idx = torch.as_tensor(list(idx) if isinstance(idx, range) else idx).cpu().flatten().tolist()
        if not idx:
            return torch.empty(0, 3, self.size, self.size)
        return torch.stack([self._load(i) for i in idx])


def subset(x, idx):
    """Rows ``idx`` of a tensor, or the lazy subset of `LazyImages` (nothing is loaded)."""
    if isinstance(x, LazyImages):
        return LazyImages([x.paths[i] for i in torch.as_tensor(idx).flatten().tolist()], x.size, x.mean, x.std)
    return x[idx]


VALIDATION_SEED = 20_261_129   # one split for every method and seed: it never depends on a run's seed


def validation_split(y: torch.Tensor, size: int, seed: int = VALIDATION_SEED) -> tuple[torch.Tensor, torch.Tensor]:
    """(training indices, validation indices), both sorted: ``size`` samples held out, stratified by class
    (each class's share of the validation set equals its share of ``y``, by largest remainder), drawn
    with a fixed seed, so the split is identical across methods and seeds. No run trains on the held-out
    part; learning rates are chosen on it, never on test data."""
    y = torch.as_tensor(y).cpu()
    n = len(y)
    if int(size) != size or not 0 < size < n:
        raise ValueError(f"validation size must be an integer in 1..{n - 1}, got {size}")
    if y.is_floating_point():
        raise ValueError("validation_split stratifies by class: it needs integer class labels")
    classes, counts = torch.unique(y, return_counts=True)
    exact = counts.double() * size / n
    take_c = exact.floor().long()
    left = int(size - take_c.sum())
    take_c[torch.argsort(exact - take_c, descending=True, stable=True)[:left]] += 1   # largest remainder
    g = torch.Generator().manual_seed(int(seed))
    val = torch.cat([(members := torch.nonzero(y == c).flatten())[torch.randperm(len(members), generator=g)[:k]]
                     for c, k in zip(classes.tolist(), take_c.tolist())])
    mask = torch.ones(n, dtype=torch.bool)
    mask[val] = False
    return torch.nonzero(mask).flatten(), torch.sort(val).values


def take(x, idx, device) -> torch.Tensor:
    """Rows ``idx`` (a tensor of indices or a slice) of an in-memory tensor or of `LazyImages`, on ``device``."""
    if isinstance(x, LazyImages):
        return x[idx].to(device, non_blocking=True)
    if isinstance(idx, torch.Tensor):
        idx = idx.to(x.device)
    return x[idx]


def _mnist1d(root, num_samples=5000, train_split=0.8, seed=0, **_):
    """MNIST-1D generated locally by the `mnist1d` package (no network)."""
    from mnist1d.data import get_dataset_args, make_dataset
    args = get_dataset_args()
    args.num_samples, args.train_split, args.seed = int(num_samples), float(train_split), int(seed)
    d = make_dataset(args)
    t = lambda a, dt: torch.as_tensor(np.asarray(a), dtype=dt)
    return Dataset(t(d["x"], torch.float32), t(d["y"], torch.long), t(d["x_test"], torch.float32),
                   t(d["y_test"], torch.long), "classification", {"num_classes": 10})


def _toy2d(root, n_train=1000, n_test=1000, noise=0.1, seed=0, **_):
    """Two classes split by a sine-shaped boundary in [-1, 1]^2 ([OnlineIS] Fig. 1)."""
    rng = np.random.default_rng(seed)

    def draw(n):
        x = rng.uniform(-1, 1, size=(n, 2))
        boundary = 0.5 * np.sin(np.pi * x[:, 0])
        y = (x[:, 1] + noise * rng.standard_normal(n) > boundary).astype(np.int64)
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    return Dataset(xtr, ytr, xte, yte, "classification", {"num_classes": 2})


def _poly_regression(root, n_train=1000, n_test=200, degree=3, noise=0.1, seed=0, **_):
    """y = sum_k c_k x^k + noise, x in [-1, 1], seeded coefficients ([OnlineIS] Fig. 2)."""
    rng = np.random.default_rng(seed)
    coef = rng.standard_normal(degree + 1)

    def draw(n):
        x = rng.uniform(-1, 1, size=(n, 1))
        y = np.polynomial.polynomial.polyval(x, coef) + noise * rng.standard_normal((n, 1))
        return torch.tensor(x, dtype=torch.float32), torch.tensor(y, dtype=torch.float32)
    (xtr, ytr), (xte, yte) = draw(n_train), draw(n_test)
    return Dataset(xtr, ytr, xte, yte, "regression", {"coefficients": coef.tolist(), "degree": degree})


def _image_regression(root, size=64, **_):
    """Pixel coordinates in [-1, 1]^2 -> RGB in [0, 1] of skimage's cat photo ([OnlineIS] Fig. 4).

    Training and test sets are the same pixels: the task is to fit the image.
    """
    from skimage.data import chelsea
    from skimage.transform import resize
    img = chelsea()
    h, w = img.shape[:2]
    hh, ww = (int(size), int(round(size * w / h))) if size else (h, w)
    img = resize(img, (hh, ww), anti_aliasing=True).astype(np.float32)
    ys, xs = np.meshgrid(np.linspace(-1, 1, hh), np.linspace(-1, 1, ww), indexing="ij")
    coords = torch.tensor(np.stack([xs, ys], -1).reshape(-1, 2), dtype=torch.float32)
    rgb = torch.tensor(img.reshape(-1, 3))
    return Dataset(coords, rgb, coords.clone(), rgb.clone(), "regression", {"image_shape": (hh, ww, 3)})


_LOADERS = {
    "fashion_mnist": _fashion_mnist,
    "cifar10": lambda root, **o: _cifar("cifar10", root, **o),
    "cifar100": lambda root, **o: _cifar("cifar100", root, **o),
    "imagefolder": _imagefolder,
    "mnist1d": _mnist1d,
    "toy2d": _toy2d,
    "poly_regression": _poly_regression,
    "image_regression": _image_regression,
}
DATASETS = tuple(_LOADERS)


# --------------------------------------------------------------------------- variants

def _class_subsample(ds: Dataset, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices keeping ``counts[c]`` random samples of each class c, in original order."""
    y = ds.y_train.numpy()
    keep = [np.sort(rng.choice(np.flatnonzero(y == c), size=int(k), replace=False)) for c, k in enumerate(counts)]
    return np.sort(np.concatenate(keep))


def _apply_variants(ds: Dataset, imbalance=False, per_class=None, label_noise=0.0,
                    noise_type="flip", variant_seed=0) -> Dataset:
    variants = imbalance or per_class is not None or label_noise
    if not variants:
        return ds
    if ds.task != "classification":
        raise ValueError("imbalance / per_class / label_noise apply to classification datasets only")
    if not 0.0 <= float(label_noise) < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown noise_type {noise_type!r}; known: {', '.join(NOISE_TYPES)}")
    rng = np.random.default_rng(variant_seed)
    C = ds.num_classes
    available = np.bincount(ds.y_train.numpy(), minlength=C)
    index = np.arange(ds.n)
    if imbalance:
        if C != len(IMBALANCE_RATES):
            raise ValueError(f"imbalance follows [Raju] Table 2 and needs 10 classes, this dataset has {C}")
        counts = np.floor(available * np.array(IMBALANCE_RATES)).astype(int)
        index = _class_subsample(ds, counts, rng)
    elif per_class is not None:
        k = int(per_class)
        if k <= 0 or k > available.min():
            raise ValueError(f"per_class={per_class} must be in 1..{available.min()} "
                             f"(the smallest class has {available.min()} samples)")
        index = _class_subsample(ds, np.full(C, k), rng)
    x, y = subset(ds.x_train, index), ds.y_train[index].clone()
    meta = dict(ds.meta, original_index=index, class_counts=np.bincount(y.numpy(), minlength=C).tolist(),
                variant=dict(imbalance=bool(imbalance), per_class=per_class, label_noise=float(label_noise),
                             noise_type=noise_type, variant_seed=variant_seed))
    if label_noise:
        m = int(round(label_noise * len(y)))
        noisy = np.sort(rng.choice(len(y), size=m, replace=False))
        clean = y[noisy]
        if noise_type == "flip":
            y[noisy] = (clean + 1) % C
        else:  # a different class, uniformly
            y[noisy] = (clean + torch.as_tensor(rng.integers(1, C, size=m))) % C
        meta.update(noisy_indices=noisy, clean_labels=clean.numpy())
    return Dataset(x, y, ds.x_test, ds.y_test, ds.task, meta)


def load_dataset(name: str, root: str | os.PathLike | None = None, *, imbalance=False, per_class=None,
                 label_noise=0.0, noise_type="flip", variant_seed=0, **options) -> Dataset:
    """Load dataset ``name`` (one of `DATASETS`) as in-memory tensors, with optional variants."""
    if name not in _LOADERS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    # Refuse bad variant options before any (possibly slow) loading.
    if not 0.0 <= float(label_noise) < 1.0:
        raise ValueError(f"label_noise must be in [0, 1), got {label_noise}")
    if noise_type not in NOISE_TYPES:
        raise ValueError(f"unknown noise_type {noise_type!r}; known: {', '.join(NOISE_TYPES)}")
    ds = _LOADERS[name](data_root() if root is None else Path(root), **options)
    ds.meta.setdefault("name", name)
    ds.meta["options"] = dict(options)
    return _apply_variants(ds, imbalance, per_class, label_noise, noise_type, variant_seed)


def pack_fashion_mnist(out, train_limit: int = 30_000, root=None) -> Path:
    """Write the raw Fashion-MNIST files with only the first ``train_limit`` training images (and all 10,000 test
    images) into the xz-compressed tar ``out``, small enough to travel with the working tree to a GPU machine (the
    full set does not fit its 64 MiB beside the results cache). Unpacked as ``<root>/FashionMNIST/raw`` there, the
    `_fashion_mnist` loader with ``train_limit`` reads the same tensors as from the full files."""
    import io
    import struct
    import tarfile
    raw = prepare_fashion_mnist(root)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(out, "w:xz", preset=6) as tar:
        for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
            blob = (raw / name).read_bytes()
            if name.startswith("train"):        # idx header: magic, count, then dims; keep the first k items
                ndim = blob[3]
                head = 4 + 4 * ndim
                per = int(np.prod(struct.unpack(f">{ndim}I", blob[4:head])[1:])) if ndim > 1 else 1
                blob = blob[:4] + struct.pack(">I", train_limit) + blob[8:head] + blob[head:head + train_limit * per]
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return out


def random_crop_flip(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Standard CIFAR augmentation on a batch tensor (N, C, H, W): random crop with
    zero padding ``pad`` and a horizontal flip with probability 1/2, vectorised."""
    n, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device)[None])  # (n, h)
    cols = (dx[:, None] + torch.arange(w, device=x.device)[None])  # (n, w)
    out = xp[torch.arange(n, device=x.device)[:, None, None, None], torch.arange(x.shape[1], device=x.device)[None, :, None, None],
             rows[:, None, :, None], cols[:, None, None, :]]
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    return torch.where(flip[:, None, None, None], out.flip(-1), out)


def _main(argv=None):
    import argparse
    p = argparse.ArgumentParser(description="Prepare datasets under data/.")
    p.add_argument("command", choices=["prepare"])
    p.add_argument("name", nargs="?", default="fashion_mnist")
    p.add_argument("--root", default=None, help="default: $DYNAPRUNE_DATA, else the project's data/")
    a = p.parse_args(argv)
    if a.name != "fashion_mnist":
        raise SystemExit("only fashion_mnist needs preparing; the others are generated or downloaded")
    print(prepare_fashion_mnist(a.root))


if __name__ == "__main__":
    _main()


class IndexedDataset(torch.utils.data.Dataset):
    """(x, y, index) triples, so a training loop can hand indices to a sampler's `reweight`."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x ({len(x)}) and y ({len(y)}) differ in length")
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i], i
