# `make lab` starts JupyterLab with this file: a saved notebook is stripped of its outputs (dynaprune.lab), so the
# committed notebooks stay output-free whatever Lab saves.
from dynaprune.lab import strip_on_save

c.FileContentsManager.pre_save_hook = strip_on_save  # noqa: F821 (c: the config object Jupyter provides)
