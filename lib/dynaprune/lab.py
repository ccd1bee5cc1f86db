"""Notebooks stay output-free in git whatever JupyterLab saves.

`make lab` starts JupyterLab with `.jupyter/jupyter_server_config.py`, which sets `strip_on_save` as the contents
manager's pre-save hook: before a notebook is written, its outputs and execution counts are dropped and the metadata
Lab adds (the kernel's language_info, a cell's scrolled / collapsed state) removed, so a saved notebook is byte for byte
what git holds, and `git status` stays clean after Run All and a save. The outputs stay in the open tab; on disk the
notebook re-renders from the results cache in seconds.
"""
from __future__ import annotations

KEEP_NOTEBOOK_METADATA = ("kernelspec",)
KEEP_CELL_METADATA = ("tags",)


def strip(nb: dict) -> dict:
    """``nb`` (an nbformat dict) with no outputs, no execution counts and only the committed metadata keys; in place."""
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items() if k in KEEP_NOTEBOOK_METADATA}
    for c in nb.get("cells", []):
        c["metadata"] = {k: v for k, v in c.get("metadata", {}).items() if k in KEEP_CELL_METADATA}
        if c.get("cell_type") == "code":
            c["outputs"], c["execution_count"] = [], None
    return nb


def strip_on_save(model, **_):
    """Jupyter's ``FileContentsManager.pre_save_hook``: strip a notebook model's content before it is written."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        strip(model["content"])
