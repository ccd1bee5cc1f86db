"""The workbook as a static HTML site, for readers without Jupyter.

    python -m dynaprune.book [--profile quick] [--out build/book] [--only NAME ...]   (`make book`)

Executes every notebook with papermill for ``profile`` (at the committed profile with computing
forbidden, so the site is built from the committed results cache: no training, no network), and
converts each executed notebook to an HTML page with its figures, tables and verdicts embedded
(nbconvert). NOTATION.md and REFERENCES.md become pages of the site and the notebooks' links to
them are rewritten; an index page lists the notebooks with their learning objectives. Figures go
to ``<out>/figures``, never over the committed ones. MathJax is copied into the site from Debian's
``libjs-mathjax`` when it is installed (``make book`` installs it as root on Debian), so the maths
renders offline; otherwise the pages load MathJax from its CDN when opened.
"""
from __future__ import annotations

import argparse
import html
import os
import re
import shutil
import sys
from pathlib import Path

from . import study
from .profiles import COMMITTED, PROFILES, get

ROOT = study.ROOT
MATHJAX_SRC = Path("/usr/share/javascript/mathjax")
# the parts of MathJax 2 that TeX input with CommonHTML output needs (the package holds 54 MB)
MATHJAX_PARTS = ("MathJax.js", "config/TeX-AMS_CHTML.js", "extensions", "jax/input/TeX", "jax/output/CommonHTML",
                 "jax/element", "fonts/HTML-CSS/TeX/woff")
DOCS = ("NOTATION.md", "REFERENCES.md")


def execute(profile: str, out: Path, only=None) -> list[Path]:
    """Run the notebooks for ``profile`` into ``out/executed`` (figures into ``out/figures``)."""
    import papermill as pm
    get(profile)   # refuses a GPU profile without a GPU before any work
    (out / "executed").mkdir(parents=True, exist_ok=True)
    env = {"DYNAPRUNE_FIGURES": str(out / "figures")}
    if profile == COMMITTED:
        env["DYNAPRUNE_CACHE_ONLY"] = "1"   # the committed cache is complete for it: a miss is an error, not a run
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    done = []
    try:
        for nb in study.notebooks(only):
            dst = out / "executed" / nb.name
            print(f"[book] {nb.name} (profile {profile}) ...", flush=True)
            pm.execute_notebook(str(nb), str(dst), parameters=dict(profile=profile), cwd=str(study.NOTEBOOKS),
                                kernel_name="python3", progress_bar=False)
            done.append(dst)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return done


def _mathjax(out: Path) -> str:
    """The MathJax URL pages use: a copy inside the site when Debian's package is installed."""
    if not (MATHJAX_SRC / "MathJax.js").exists():
        return "https://cdnjs.cloudflare.com/ajax/libs/mathjax/2.7.7/MathJax.js?config=TeX-AMS_CHTML-full,Safe"
    for part in MATHJAX_PARTS:
        src, dst = MATHJAX_SRC / part, out / "mathjax" / part
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True)
        else:
            shutil.copy2(src, dst)
    return "mathjax/MathJax.js?config=TeX-AMS_CHTML"


def _links(text: str) -> str:
    """Notebook links to the repository's documents point at the site's pages."""
    for doc in DOCS:
        text = text.replace(f"../{doc}", doc.replace(".md", ".html")).replace(f'"{doc}"', f'"{doc.replace(".md", ".html")}"')
    return text


def _page(title: str, body: str, mathjax_url: str | None = None) -> str:
    # MathJax 2 reads $...$ only when told (the notebook pages carry nbconvert's own configuration)
    mj = ('<script type="text/x-mathjax-config">MathJax.Hub.Config({tex2jax: {inlineMath: [["$", "$"], ["\\\\(", "\\\\)"]], '
          f'displayMath: [["$$", "$$"]], processEscapes: true}}}});</script><script src="{mathjax_url}"></script>'
          if mathjax_url else "")
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>{mj}"
            "<style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.5}"
            "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.2rem .5rem}"
            "li{margin:.3rem 0}</style></head>\n<body>\n" + body + "\n</body></html>\n")


def render(executed: list[Path], out: Path, profile: str) -> Path:
    """HTML pages for ``executed`` notebooks, the documents and an index; returns the index path."""
    import nbformat
    from nbconvert import HTMLExporter
    from nbconvert.filters import markdown2html

    mathjax_url = _mathjax(out)
    exporter = HTMLExporter(template_name="lab", mathjax_url=mathjax_url)
    entries = []
    for path in executed:
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        page = out / f"{path.stem}.html"
        page.write_text(_links(body), encoding="utf-8")
        first = nb.cells[0].source if nb.cells and nb.cells[0].cell_type == "markdown" else path.stem
        title = re.search(r"^# (.+)$", first, re.M)
        objectives = re.search(r"### Learning objectives\n(.*?)(?:\n\n|\Z)", first, re.S)
        entries.append((page.name, title.group(1) if title else path.stem,
                        markdown2html(objectives.group(1)) if objectives else ""))
    for doc in DOCS:
        text = (ROOT / doc).read_text(encoding="utf-8")
        (out / doc.replace(".md", ".html")).write_text(
            _page(doc, _links(markdown2html(text)), mathjax_url), encoding="utf-8")
    shutil.copy2(ROOT / "references.bib", out / "references.bib")
    items = "\n".join(f'<li><a href="{href}"><b>{html.escape(title)}</b></a>{obj}</li>' for href, title, obj in entries)
    body = (f"<h1>dynaprune: the workbook</h1>\n<p>Dynamic data pruning and online importance sampling, reproduced and "
            f"explained. Executed for the <code>{html.escape(profile)}</code> profile from the results cache; every "
            f"figure states the profile and device that made it.</p>\n<ol>\n{items}\n</ol>\n"
            '<p><a href="NOTATION.html">Notation</a> · <a href="REFERENCES.html">References</a> '
            '(<a href="references.bib">BibTeX</a>)</p>')
    index = out / "index.html"
    index.write_text(_page("dynaprune: the workbook", body, mathjax_url), encoding="utf-8")
    return index


def build(profile: str = COMMITTED, out=None, only=None) -> Path:
    """Execute and render the whole site; returns the index page."""
    out = Path(out) if out is not None else ROOT / "build" / "book"
    out.mkdir(parents=True, exist_ok=True)
    return render(execute(profile, out, only), out, profile)


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
