"""The workbook as a course site: Sphinx + MyST-NB + sphinx-book-theme + sphinxcontrib-bibtex.

    python -m dynaprune.book [--profile quick] [--out build/book] [--only NAME ...]   (`make book`)

1. `execute`: every notebook is run by papermill for ``profile`` (at the committed profile with computing
   forbidden, so the site is built from the committed results cache: no training, no network); figures go
   to ``<out>-src/figures``, never over the committed ones.
2. `stage`: the executed notebooks, `docs/` (its `conf.py` and pages), NOTATION.md, REFERENCES.md and
   references.bib are copied into ``<out>-src``. On the way, the parameters cells (ours and papermill's) are
   removed, every other code cell is folded with its outputs shown (``hide-input``), and each citation key
   written as readable text in the sources (``[Omission] eq. 5``: what JupyterLab and GitHub show) becomes
   the role ``{cite:p}`Omission``` that links it to its entry of the bibliography generated from
   references.bib.
3. Sphinx builds ``<out>`` with navigation, search and offline maths (Debian's libjs-mathjax, copied into
   the site when it is installed; `make book` installs it as root on Debian).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import study
from .profiles import COMMITTED, PROFILES, get

ROOT = study.ROOT
DOCS = ROOT / "docs"
PAGES = ("README.md", "NOTATION.md", "REFERENCES.md")
MATHJAX_SRC = Path("/usr/share/javascript/mathjax")
# the parts of MathJax 2 that TeX input with CommonHTML output needs (the package holds 54 MB)
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX", "jax/output/CommonHTML",
                 "jax/element", "fonts/HTML-CSS/TeX/woff")


def bib_keys(bib: Path = ROOT / "references.bib") -> list[str]:
    """The citation keys of the bibliography."""
    return re.findall(r"^@\w+\{([^,\s]+),", bib.read_text(encoding="utf-8"), re.M)


def citation_pattern(keys) -> re.Pattern:
    """``[Key]`` as readable text (not a Markdown link ``[Key](...)``, not ``[[Key]]``)."""
    return re.compile(r"(?<![\[\w`])\[(" + "|".join(map(re.escape, keys)) + r")\](?![\(\[:])")


def cite_roles(text: str, keys) -> str:
    """Citation keys in readable text -> MyST ``{cite:p}`` roles (code spans and maths left alone)."""
    pat = citation_pattern(keys)
    parts = re.split(r"(`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$)", text, flags=re.S)
    return "".join(p if i % 2 else pat.sub(r"{cite:p}`\1`", p) for i, p in enumerate(parts))


def execute(profile: str, out: Path, only=None, notebooks_dir: Path | None = None) -> list[Path]:
    """Run the notebooks for ``profile`` into ``notebooks_dir`` (default ``out/executed``), figures into
    ``out/figures``; one line per notebook with its time."""
    import papermill as pm
    get(profile)   # refuses a GPU profile without a GPU before any work
    dst_dir = notebooks_dir or out / "executed"
    dst_dir.mkdir(parents=True, exist_ok=True)
    env = {"DYNAPRUNE_FIGURES": str(out / "figures")}
    if profile == COMMITTED:
        env["DYNAPRUNE_CACHE_ONLY"] = "1"   # the committed cache is complete for it: a miss is an error, not a run
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    done = []
    try:
        for nb in study.notebooks(only):
            t0 = time.time()
            dst = dst_dir / nb.name
            pm.execute_notebook(str(nb), str(dst), parameters=dict(profile=profile), cwd=str(study.NOTEBOOKS),
                                kernel_name="python3", progress_bar=False, extra_arguments=study.KERNEL_QUIET)
            print(f"[book] {nb.name} executed ({profile}) in {time.time() - t0:.1f} s", flush=True)
            done.append(dst)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return done


def for_site(nb, keys):
    """A notebook as the site shows it: parameters cells removed, code folded with outputs shown, citations linked."""
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if cell.cell_type == "code":
            if {"parameters", "injected-parameters"} & set(tags):
                tags.append("remove-cell")
            elif "hide-input" not in tags:
                tags.append("hide-input")
        elif cell.cell_type == "markdown":
            cell.source = cite_roles(cell.source, keys)
    return nb


def stage(executed: list[Path], src: Path) -> Path:
    """The Sphinx source folder, laid out like the repository: `docs/` (configuration and pages), the
    executed notebooks under `notebooks/`, NOTATION.md, REFERENCES.md (with the generated bibliography),
    references.bib, and the committed figures and examples that the pages link to."""
    import nbformat
    keys = bib_keys()
    shutil.copytree(DOCS, src / "docs", dirs_exist_ok=True, ignore=shutil.ignore_patterns("_build", "__pycache__"))
    shutil.copy2(ROOT / "references.bib", src / "references.bib")
    for folder, pattern in (("figures", "*.png"), ("examples", "*.py")):
        (src / folder).mkdir(parents=True, exist_ok=True)
        for f in (ROOT / folder).glob(pattern):
            shutil.copy2(f, src / folder / f.name)
    for page in PAGES:
        text = cite_roles((ROOT / page).read_text(encoding="utf-8"), keys)
        if page == "REFERENCES.md":
            text = text.replace("[references.bib](references.bib)", "`references.bib`")
            text += "\n\n## Bibliography\n\n```{bibliography}\n:all:\n```\n"
        (src / page).write_text(text, encoding="utf-8")
    for md in (src / "docs").glob("*.md"):
        md.write_text(cite_roles(md.read_text(encoding="utf-8"), keys), encoding="utf-8")
    nbdir = src / "notebooks"
    nbdir.mkdir(exist_ok=True)
    for path in executed:
        nb = for_site(nbformat.read(path, as_version=4), keys)
        nbformat.write(nb, nbdir / path.name)
    # the sidebar's lessons: the notebooks executed for this site (the page lists all of them as links)
    toc = "```{toctree}\n:caption: Lessons\n:maxdepth: 1\n:hidden:\n\n" + \
        "".join(f"../notebooks/{p.stem}\n" for p in executed) + "```"
    index = src / "docs" / "index.md"
    index.write_text(index.read_text(encoding="utf-8").replace("<!-- lessons-toctree -->", toc), encoding="utf-8")
    if (MATHJAX_SRC / "MathJax.js").exists():
        for part in MATHJAX_PARTS:
            s, d = MATHJAX_SRC / part, src / "docs" / "_static" / "mathjax" / part
            d.parent.mkdir(parents=True, exist_ok=True)
            if s.is_dir():
                shutil.copytree(s, d, dirs_exist_ok=True)
            else:
                shutil.copy2(s, d)
    return src


def sphinx(src: Path, out: Path) -> Path:
    """Build the HTML site (quiet: warnings and errors only); returns the index page."""
    t0 = time.time()
    r = subprocess.run([sys.executable, "-m", "sphinx", "-q", "-b", "html", "-c", str(src / "docs"), str(src), str(out)],
                       capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(f"sphinx-build failed ({r.returncode}):\n{r.stderr[-4000:]}")
    warnings = [w for w in r.stderr.splitlines() if "WARNING" in w or "ERROR" in w]
    for w in warnings:
        print(f"[book] {w}", file=sys.stderr)
    print(f"[book] site built in {time.time() - t0:.1f} s ({len(warnings)} warnings)", flush=True)
    return out / "index.html"


def build(profile: str = COMMITTED, out=None, only=None) -> Path:
    """Execute, stage and build the whole site; returns the index page."""
    out = Path(out) if out is not None else ROOT / "build" / "book"
    src = out.parent / (out.name + "-src")
    if src.exists():
        shutil.rmtree(src)
    work = out.parent / (out.name + "-work")
    executed = execute(profile, work, only, notebooks_dir=work / "executed")
    return sphinx(stage(executed, src), out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default=COMMITTED, choices=list(PROFILES))
    ap.add_argument("--out", default=str(ROOT / "build" / "book"))
    ap.add_argument("--only", nargs="*", help="notebook names (or parts of them)")
    a = ap.parse_args(argv)
    index = build(a.profile, a.out, a.only)
    print(f"[book] open {index} in a browser (file://{index.resolve()})")


if __name__ == "__main__":
    sys.exit(main())
