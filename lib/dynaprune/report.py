"""What notebooks need besides the library's computations: where figures go, provenance labels,
and the summary tables of the comparison (speed-up efficiency, equal-step / equal-time views)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]


def figures_dir() -> Path:
    """The one place figures go: $DYNAPRUNE_FIGURES, else <repo>/figures."""
    d = Path(os.environ.get("DYNAPRUNE_FIGURES", ROOT / "figures"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def savefig(fig, name: str, profile: str, device: str = "cpu"):
    """Save ``fig`` as figures/<name>.png, stamped with the profile and device that made it."""
    fig.text(0.995, 0.005, f"dynaprune · profile={profile} · device={device}", ha="right", va="bottom",
             fontsize=7, color="0.4")
    path = figures_dir() / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def provenance(df: pd.DataFrame) -> str:
    """One line naming the devices and dates behind a results table."""
    if df.empty:
        return "no runs"
    devs = ", ".join(sorted(set(map(str, df.get("device_name", df.get("device_used"))))))
    return f"{df['key'].nunique()} runs on {devs}"


def final_table(df: pd.DataFrame, by=("sampler", "label")) -> pd.DataFrame:
    """Per method: final test accuracy (mean, min, max over seeds), wall-clock including scoring cost,
    backprops, and speed-up efficiency = time saved / ideal time saved (ideal: backprops saved)."""
    last = df.sort_values("epoch").groupby("key").tail(1).copy()
    tot = df.groupby("key").agg(backprops=("backpropagated", "sum"), forwards=("forwarded", "sum"))
    last = last.join(tot, on="key")
    last["wall_total"] = last["wall"] + last["t_static_scoring"]
    last["target_share"] = [target_share(r) for r in last.to_dict("records")]
    by = [b for b in by if b in last.columns]
    g = last.groupby(list(by))
    out = g.agg(acc=("test_acc", "mean"), acc_min=("test_acc", "min"), acc_max=("test_acc", "max"),
                target_share=("target_share", "first"),
                wall=("wall_total", "mean"), backprops=("backprops", "mean"), forwards=("forwards", "mean"),
                seeds=("seed", "nunique"))
    full = out.xs("full", level="sampler") if "full" in out.index.get_level_values("sampler") else None
    if full is not None and len(full):
        f = full.iloc[0]
        out["backprop_saved"] = 1 - out["backprops"] / f["backprops"]
        out["time_saved"] = 1 - out["wall"] / f["wall"]
        with np.errstate(divide="ignore", invalid="ignore"):
            out["efficiency"] = np.where(out["backprop_saved"] > 0.01, out["time_saved"] / out["backprop_saved"], np.nan)
    return out.reset_index()


def at_budget(df: pd.DataFrame, column: str, budget: float, by=("sampler", "label")) -> pd.DataFrame:
    """Test accuracy of each run at the last evaluated epoch with `column` <= budget (equal-time or
    equal-step views of 003 Table 1), averaged over seeds."""
    d = df[(df[column] <= budget) & df["test_acc"].notna()]
    last = d.sort_values("epoch").groupby("key").tail(1)
    by = [b for b in by if b in last.columns]
    return last.groupby(list(by)).agg(acc=("test_acc", "mean"), at=(column, "mean")).reset_index()


def target_share(cfg: dict) -> float:
    """The backprop share a run was asked for: its keep_ratio, Reducing Epoch's scale, 1 for full
    data, NaN where the method's paper sets it indirectly and no keep_ratio was given."""
    import json
    opts = cfg.get("sampler_options") or {}
    if isinstance(opts, str):
        opts = json.loads(opts)
    if cfg.get("epochs_scale", 1.0) < 1.0:
        return float(cfg["epochs_scale"])
    if "keep_ratio" in opts:
        return float(opts["keep_ratio"])
    return 1.0 if cfg["sampler"] in ("full", "online_is") else float("nan")


def label_of(cfg: dict) -> str:
    """A short method label from a config dict (sampler, its options, Reducing Epoch variants)."""
    import json
    opts = cfg.get("sampler_options") or {}
    if isinstance(opts, str):
        opts = json.loads(opts)
    parts = [cfg["sampler"]]
    shown = {k: v for k, v in opts.items() if not isinstance(v, (list, tuple)) or len(v) < 8}
    if shown:
        parts.append(",".join(f"{k}={v}" for k, v in sorted(shown.items())))
    if cfg.get("epochs_scale", 1.0) < 1.0:
        parts = ["reduce_epochs" + ("_scaled" if cfg.get("scale_lr") else ""), f"x{cfg['epochs_scale']}"]
    return " ".join(parts)


def with_labels(df: pd.DataFrame) -> pd.DataFrame:
    if df.empty:
        return df.assign(label=[])
    return df.assign(label=[label_of(r) for r in df.to_dict("records")])


def key_numbers(name: str, **numbers) -> dict:
    """Record a notebook's headline numbers next to its figures (figures/<name>_numbers.json);
    refuses non-finite values, so a test of the notebook fails when a result is NaN."""
    import json
    bad = {k: v for k, v in numbers.items() if not np.all(np.isfinite(np.asarray(v, dtype=float)))}
    if bad:
        raise ValueError(f"non-finite key numbers in {name}: {bad}")
    # 10 significant digits: the last bits of a float sum vary with thread scheduling, and a warm
    # re-render must rewrite these files byte for byte
    clean = {k: np.vectorize(lambda x: float(f"{x:.10g}"), otypes=[float])(np.asarray(v, dtype=float)).tolist()
             for k, v in numbers.items()}
    (figures_dir() / f"{name}_numbers.json").write_text(json.dumps(clean, indent=1, sort_keys=True))
    return clean


def device_of(df: pd.DataFrame) -> str:
    """The device(s) the runs behind ``df`` used, for figure stamps."""
    if df.empty or "device_used" not in df:
        return "none"
    return "+".join(sorted(set(map(str, df["device_used"]))))
