"""The study's profiles, in one place: what each notebook trains under smoke / quick / cpu / gpu.

- smoke: seconds per notebook (tests): MNIST-1D, a small MLP, 3 epochs, one seed.
- quick: the main job on 2 CPU cores (`make study`, target cold <= 20 min): Fashion-MNIST,
  first 10k training samples, MLP 784-256-256-10, 8 epochs, 2 seeds.
- cpu: the largest study that fits a CPU in hours: full Fashion-MNIST, small CNN, 20 epochs, 3 seeds.
- gpu: [Omission] §5's setting: CIFAR-10 ResNet-18, 200 epochs, batch 128, SGD momentum 0.9,
  cosine from 0.1 with 10% warm-up, wd 5e-4, drop_last, augmentation, four seeds (needs CUDA and the data).
EL2N's scoring ([Raju] §4: 10 models x 20 epochs) is scaled per profile (el2n_models, el2n_epochs).
"""
from __future__ import annotations

import torch

from .train import RunConfig

# The profile whose results are committed (data/results/) and that `make study` renders; the
# render test in `make test` renders every notebook of it with computing forbidden.
COMMITTED = "quick"

PROFILES = {
    "smoke": dict(
        base=dict(dataset="mnist1d", dataset_options={"num_samples": 1500}, model="mlp",
                  model_options={"hidden": [64, 64]}, epochs=3, batch_size=32, lr=0.05, schedule="cosine",
                  device="cpu"),
        seeds=[0], ratios=[0.5], sweep_epochs=4, variance_n=300, toy_epochs=(1, 2, 3),
        selection_epochs=4, per_class=60, noise_rates=[0.4], image_size=16, image_epochs=2,
        el2n_models=2, el2n_epochs=2),
    "quick": dict(
        base=dict(dataset="fashion_mnist", train_subset=10_000, model="mlp",
                  model_options={"hidden": [256, 256]}, epochs=8, batch_size=128, lr=0.05,
                  schedule="cosine", device="cpu"),
        seeds=[0, 1], ratios=[0.3, 0.5], sweep_epochs=8, variance_n=2000, toy_epochs=(1, 10, 50),
        selection_epochs=12, per_class=1000, noise_rates=[0.1, 0.4], image_size=48, image_epochs=30,
        el2n_models=10, el2n_epochs=20),   # [Raju] §4's EL2N protocol in full (an MLP epoch is cheap)
    # Full Fashion-MNIST, small CNN (106k parameters), 20 epochs: 7.5 s of training per full epoch on
    # 2 threads, 3 s per evaluation (hence every 2nd epoch). The headline comparison (05) runs its
    # headline methods on 5 paired seeds at keep_ratio 0.5, every other method on 3.
    "cpu": dict(
        base=dict(dataset="fashion_mnist", model="small_cnn", epochs=20, batch_size=128, lr=0.05,
                  schedule="cosine", device="cpu", eval_every=2),
        seeds=[0, 1, 2, 3, 4], ratios=[0.5], secondary_seeds=[0, 1, 2],
        headline=["full", "random", "random_dynamic", "omission", "infobatch", "es", "ucb", "online_is",
                  "kakurenbo", "reduce_epochs"],
        sweep_epochs=20, variance_n=5000, toy_epochs=(1, 20, 100),
        selection_epochs=20, per_class=1000, noise_rates=[0.1, 0.4], image_size=96, image_epochs=100,
        el2n_models=4, el2n_epochs=5),      # scaled: 10 x 20 CNN epochs would be 10 runs of the study
    "gpu": dict(
        # [Omission] §5: 200 epochs, batch 128, cosine from 0.1, wd 5e-4, 10% warm-up, drop_last=True
        base=dict(dataset="cifar10", model="resnet18", epochs=200, batch_size=128, lr=0.1, schedule="cosine",
                  warmup_epochs=20.0, drop_last=True, weight_decay=5e-4, momentum=0.9, augment=True, device="cuda"),
        seeds=[0, 1, 2, 3], ratios=[0.3, 0.5, 0.7], sweep_epochs=200, variance_n=5000, toy_epochs=(1, 20, 100),
        selection_epochs=200, per_class=1000, noise_rates=[0.1, 0.4], image_size=256, image_epochs=500,
        el2n_models=10, el2n_epochs=20),
}


def get(profile: str) -> dict:
    """The profile's parameters; a GPU profile on a machine without CUDA is refused clearly."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; known: {', '.join(PROFILES)}")
    p = PROFILES[profile]
    if p["base"]["device"].startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"profile {profile!r} needs a CUDA GPU and this machine has none "
                           "(torch.cuda.is_available() is False). Run smoke/quick/cpu here, or run this "
                           "profile on a GPU machine; its results join the same cache.")
    return {**p, "name": profile}


def base_config(profile: str, **overrides) -> RunConfig:
    """The profile's base RunConfig with ``overrides``."""
    return RunConfig(**{**get(profile)["base"], **overrides})
