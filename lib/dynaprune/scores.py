"""Per-sample importance signals, one function each.

- `per_sample_loss`: l_i (reduction="none").
- `output_grad_norm_ce`: ||dl_i/dz_i|| = ||softmax(z_i) - onehot(y_i)|| ([OnlineIS] eq. 7; EL2N; [Omission] §3.2 g~_i).
- `output_grad_norm`: the same by autodiff for any per-sample loss (e.g. MSE regression).
- `per_sample_grad_norms`: exact ||grad_theta l_i||: fast path from the activation x output-gradient
  identity for Linear / Conv2d layers (about one backward), `torch.func.vmap(grad)` as general fallback.
- `dlis_norm`: Katharopoulos & Fleuret 2018 (DLIS) last-layer gradient norm.
- `GradNormMemory`: SRGD-style memory of each sample's last observed full gradient norm ([OnlineIS] Fig. 2).
"""
from __future__ import annotations

import torch
from torch import nn
import torch.nn.functional as F

LOSSES = ("ce", "mse")


def _check_pair(outputs, targets):
    if outputs.shape[0] != targets.shape[0]:
        raise ValueError(f"outputs ({outputs.shape[0]}) and targets ({targets.shape[0]}) differ in batch size")


def per_sample_loss(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """Per-sample loss l_i ([Omission] §2's l_i(theta); [Raju] eq. 1 for cross-entropy): cross-entropy on
    logits, or squared error summed over output dims ("mse", [OnlineIS]'s regression tasks)."""
    _check_pair(outputs, targets)
    if loss == "ce":
        return F.cross_entropy(outputs, targets, reduction="none")
    if loss == "mse":
        return (outputs - targets).pow(2).flatten(1).sum(1)
    raise ValueError(f"unknown loss {loss!r}; known: {', '.join(LOSSES)}")


def output_grad_norm_ce(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Closed form of ||d CE(z_i, y_i) / d z_i|| = ||softmax(z_i) - onehot(y_i)||_2 ([OnlineIS] eq. 7)."""
    _check_pair(logits, targets)
    with torch.no_grad():
        d = torch.softmax(logits.float(), dim=1)
        # minus one at each target; scatter_add_ gives the same floats as indexed -= at about 30% less cost
        # per step (b ~ 128 on a CPU), where this runs for every batch of the samplers that track g~
        d.scatter_add_(1, targets.long().reshape(-1, 1), d.new_full((len(d), 1), -1.0))
        return d.norm(dim=1)


def logits_with_grad_norm(g) -> torch.Tensor:
    """Two-class logits whose cross-entropy output-gradient norm for target 0 is ``g`` (in [0, sqrt 2)):
    the inverse of `output_grad_norm_ce` there, for teaching with chosen importances. With target 0,
    g~ = sqrt(2) (1 - pi_0), so z = (t, -t) with sigmoid(2t) = pi_0 = 1 - g / sqrt(2)."""
    pi = 1 - torch.as_tensor(g, dtype=torch.float64) / 2 ** 0.5
    t = 0.5 * torch.log(pi / (1 - pi))
    return torch.stack([t, -t], 1).float()


def output_grad_norm(outputs: torch.Tensor, targets: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """||d l_i / d z_i|| by autodiff, for any per-sample loss of `per_sample_loss` ([OnlineIS] §3, "autodiff")."""
    z = outputs.detach().float().requires_grad_(True)
    with torch.enable_grad():
        l = per_sample_loss(z, targets, loss)
        (g,) = torch.autograd.grad(l.sum(), z)  # l_i depends on z_i only, so row i is dl_i/dz_i
    return g.flatten(1).norm(dim=1)


# ----------------------------------------------------------------- exact per-sample gradient norms

def _fast_supported(model: nn.Module) -> bool:
    """Every parameter belongs to a Linear or Conv2d layer (no batch coupling such as BatchNorm)."""
    for m in model.modules():
        own = list(m.parameters(recurse=False))
        if own and not isinstance(m, (nn.Linear, nn.Conv2d)):
            return False
    return True


def _fast_norms(model, x, y, loss):
    """Sum over layers of ||grad_W l_i||^2 + ||grad_b l_i||^2 from activations a and output gradients g:
    Linear: grad_W l_i = g_i a_i^T, so ||.||^2 = ||a_i||^2 ||g_i||^2 (one backward, Goodfellow 2015).
    Conv2d: grad_W l_i = G_i^T U_i with U_i the unfolded input patches."""
    acts, handles = {}, []
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for m in layers:
        handles.append(m.register_forward_hook(lambda mod, inp, out: acts.__setitem__(mod, (inp[0].detach(), out))))
    try:
        with torch.enable_grad():
            out = model(x)
            outs = [acts[m][1] for m in layers]
            grads = torch.autograd.grad(per_sample_loss(out, y, loss).sum(), outs)
    finally:
        for h in handles:
            h.remove()
    total = torch.zeros(len(x), dtype=torch.float64, device=x.device)
    for m, g in zip(layers, grads):
        a = acts[m][0]
        if isinstance(m, nn.Linear):
            if a.dim() == 2:
                total += (a.pow(2).sum(1) * g.pow(2).sum(1)).double()
            else:  # (N, T, d): sum over positions inside the outer product
                total += torch.einsum("nti,ntj->nij", g, a).pow(2).flatten(1).sum(1).double()
            if m.bias is not None:
                total += g.reshape(len(x), -1, g.shape[-1]).sum(1).pow(2).sum(1).double()
        else:
            u = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)  # (N, Cin k k, P)
            gg = g.flatten(2)  # (N, Cout, P)
            if m.groups != 1:
                raise NotImplementedError("grouped convolutions: use method='vmap'")
            total += torch.bmm(gg, u.transpose(1, 2)).pow(2).flatten(1).sum(1).double()
            if m.bias is not None:
                total += gg.sum(2).pow(2).sum(1).double()
    return total.sqrt().to(torch.float32)


def _vmap_norms(model, x, y, loss, chunk=256):
    from torch.func import functional_call, grad, vmap
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def one(p, xi, yi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return per_sample_loss(out, yi.unsqueeze(0), loss).sum()
    g = vmap(grad(one), in_dims=(None, 0, 0), chunk_size=chunk)(params, x, y)
    return torch.sqrt(sum(v.flatten(1).pow(2).sum(1) for v in g.values()))


def per_sample_grad_norms(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce",
                          method: str = "auto") -> torch.Tensor:
    """Exact ||grad_theta l_i(theta)|| for each sample ([Omission] Theorem 1's ||g_i||).

    ``method``: "fast" (Linear/Conv2d identity, about one backward), "vmap"
    (`torch.func`, any model, ~100x slower), "auto" (fast when every parameter
    is in a Linear/Conv2d layer). The model should be in eval mode when it has
    dropout or batch norm, or the per-sample gradients are not defined.
    """
    if method == "auto":
        method = "fast" if _fast_supported(model) else "vmap"
    if method == "fast":
        if not _fast_supported(model):
            raise ValueError("fast per-sample norms need all parameters in Linear/Conv2d layers; use method='vmap'")
        return _fast_norms(model, x, y, loss)
    if method == "vmap":
        return _vmap_norms(model, x, y, loss)
    raise ValueError(f"unknown method {method!r}; known: auto, fast, vmap")


def dlis_norm(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str = "ce") -> torch.Tensor:
    """DLIS signal (Katharopoulos & Fleuret 2018, as in [OnlineIS] Fig. 2): the norm of the per-sample gradient
    of the last Linear layer's parameters, ||a_i||^2 ||g_i||^2 + ||g_i||^2 with a_i its input."""
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    store = {}
    h = last.register_forward_hook(lambda mod, inp, out: store.update(a=inp[0].detach(), z=out))
    try:
        with torch.enable_grad():
            out = model(x)
            (g,) = torch.autograd.grad(per_sample_loss(out, y, loss).sum(), store["z"])
    finally:
        h.remove()
    a2 = store["a"].pow(2).sum(1) + (1.0 if last.bias is not None else 0.0)
    return (a2 * g.pow(2).sum(1)).sqrt().detach()


class GradNormMemory:
    """SRGD-style memory (El Hanchi & Stephens 2022, [OnlineIS] Fig. 2): the last observed full gradient
    norm of each sample, initialised to ``init``; sampling probabilities proportional to it."""

    def __init__(self, n: int, init: float = 1.0):
        self.norms = torch.full((n,), float(init), dtype=torch.float64)

    def update(self, indices: torch.Tensor, norms: torch.Tensor) -> None:
        idx = torch.as_tensor(indices, dtype=torch.long).cpu()
        val = torch.as_tensor(norms, dtype=torch.float64).detach().cpu()
        if idx.shape != val.shape:
            raise ValueError(f"indices {tuple(idx.shape)} and norms {tuple(val.shape)} differ in shape")
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self.norms)):
            raise IndexError("index out of range")
        if not torch.isfinite(val).all():
            raise ValueError("norms contain NaN or inf")
        self.norms[idx] = val

    def probs(self) -> torch.Tensor:
        return self.norms / self.norms.sum()
