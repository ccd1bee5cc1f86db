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



# ---- the site as a reader opens it: headless Chromium (Debian's chromium + chromium-driver) through selenium ----
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# what is measured on every page, in the page (JavaScript): the content column's box, every element that sticks out of
# it (unless a scrolling ancestor inside the column holds it), every output block taller than two screens, every display
# equation whose rendered box is not centred in its block (MathJax 2's CommonHTML output)
_MEASURE = r"""
const col = document.querySelector('article.bd-article') || document.querySelector('main');
const c = col.getBoundingClientRect(), H = window.innerHeight, bad = {wide: [], tall: [], off_centre: [], shrunk: []};
const name = e => e.tagName.toLowerCase() + (e.id ? '#' + e.id : '') + (e.className && e.className.baseVal === undefined
  ? '.' + String(e.className).trim().split(/\s+/).slice(0, 2).join('.') : '');
const clipped = e => { for (let a = e.parentElement; a && a !== col; a = a.parentElement) {
  const s = getComputedStyle(a); if (/(auto|scroll|hidden)/.test(s.overflowX) && a.getBoundingClientRect().right <= c.right + 1) return true; }
  return false; };
for (const e of col.querySelectorAll('*')) {
  const r = e.getBoundingClientRect();
  if (r.width && r.right > c.right + 1 && !clipped(e)) bad.wide.push(`${name(e)}: ${Math.round(r.width)} px, right edge ${Math.round(r.right - c.right)} px past the column`);
}
for (const e of col.querySelectorAll('div.cell_output')) {
  const h = e.getBoundingClientRect().height; if (h > 2 * H) bad.tall.push(`${name(e)}: ${Math.round(h)} px (screen ${H} px)`);
}
for (const e of col.querySelectorAll('div.math')) {
  const m = e.querySelector('.MathJax_CHTML, mjx-container, .MathJax'); if (!m) continue;
  const a = e.getBoundingClientRect(), b = m.getBoundingClientRect();
  const off = (b.left + b.right) / 2 - (a.left + a.right) / 2;
  if (b.width < a.width - 40 && Math.abs(off) > 20) bad.off_centre.push(`${e.id || name(e)}: ${Math.round(off)} px off centre`);
}
for (const e of col.querySelectorAll('div.cell_output img')) {
  const k = e.naturalWidth / e.getBoundingClientRect().width;   // > 1: the figure is shown smaller than it was drawn
  if (e.naturalWidth && k > 1.35) bad.shrunk.push(`${e.getAttribute('src').split('/').pop()}: drawn ${e.naturalWidth} px, shown ${Math.round(e.getBoundingClientRect().width)} px`);
}
bad.column = Math.round(c.width); bad.height = Math.round(document.body.scrollHeight);
return bad;
"""


def browser_missing() -> str | None:
    """Why no browser check can run here (None where it can)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return f"no headless Chromium ({CHROMIUM}, {CHROMEDRIVER}): install Debian's chromium and chromium-driver " \
               "(`make browser`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (`make setup` installs it)"
    return None


def browser():
    """A headless Chromium driven by selenium, or None with the reason (no browser installed here)."""
    why = browser_missing()
    if why:
        return None, why
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    # offline: no background connections (this machine's network is closed), a fresh profile every time
    for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
              "--disable-background-networking", "--disable-component-update", "--disable-sync",
              "--disable-dev-shm-usage", "--window-size=1400,1000", "--hide-scrollbars"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts), None


def serve(site: Path):
    """The site on a loopback port (search needs http://: from file:// the browser blocks reading the pages' text);
    returns (server, base URL). Stop it with ``server.shutdown()``."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *a):
            pass

    handler = functools.partial(Quiet, directory=str(site))
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}/"


def lesson_pages(site: Path) -> list[str]:
    """The pages a reader opens, relative to the site: the home page, every lesson, every document."""
    pages = ["docs/index.html"] + sorted(str(p.relative_to(site)) for p in (site / "notebooks").glob("*.html"))
    pages += sorted(str(p.relative_to(site)) for p in (site / "docs").glob("*.html") if p.name not in ("index.html",))
    return pages + [p for p in ("README.html", "NOTATION.html", "REFERENCES.html") if (site / p).exists()]


def check_site(site: Path, pages=None, shots: Path | None = None) -> dict:
    """Open each page in headless Chromium at 1,400 x 1,000 px and measure it as a reader sees it: console errors,
    elements wider than the content column, output blocks taller than two screens, display equations off centre,
    figures shown at less than 1 / 1.35 of the size they were drawn (a 10 pt label would read below about 7 pt).
    Returns {page: [problems]} (empty lists: all good); with ``shots``, a screenshot of each page's first screen
    and one of the whole page (PNG) go there. Raises RuntimeError where no browser is installed."""
    import time as _time
    drv, why = browser()
    if drv is None:
        raise RuntimeError(why)
    srv, base = serve(Path(site))
    out = {}
    try:
        for page in pages or lesson_pages(Path(site)):
            drv.get(base + page)
            # MathJax 2 typesets after load: wait for its queue (or its absence) before measuring
            drv.execute_async_script("const done = arguments[arguments.length - 1];"
                                     "if (window.MathJax && MathJax.Hub) MathJax.Hub.Queue(() => done(1)); else done(0);")
            _time.sleep(0.2)
            m = drv.execute_script(_MEASURE)
            errors = [e["message"] for e in drv.get_log("browser") if e["level"] == "SEVERE"]
            out[page] = [f"console: {e}" for e in errors] + [f"wider than the column ({m['column']} px): {w}" for w in m["wide"][:5]] \
                + [f"taller than two screens: {t}" for t in m["tall"]] + [f"display maths off centre: {o}" for o in m["off_centre"][:5]] \
                + [f"figure shrunk (its text below legible size): {x}" for x in m["shrunk"]]
            if len(m["wide"]) > 5:
                out[page].append(f"... and {len(m['wide']) - 5} more elements wider than the column")
            if shots is not None:
                shots.mkdir(parents=True, exist_ok=True)
                stem = page.replace("/", "_").removesuffix(".html")
                drv.save_screenshot(str(shots / f"{stem}.png"))
                drv.set_window_size(1400, min(m["height"], 16000))
                drv.save_screenshot(str(shots / f"{stem}_full.png"))
                drv.set_window_size(1400, 1000)
    finally:
        drv.quit()
        srv.shutdown()
    return out


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
    ap.add_argument("--check", action="store_true",
                    help="after the build, open every page in headless Chromium and report what a reader would stumble on")
    ap.add_argument("--shots", help="with --check: a folder for each page's screenshots (first screen and whole page)")
    ap.add_argument("--check-only", action="store_true", help="check the site already built in --out (no build)")
    a = ap.parse_args(argv)
    out = Path(a.out)
    index = out / "index.html" if a.check_only else build(a.profile, out, a.only)
    if a.check or a.check_only:
        found = check_site(out, shots=Path(a.shots) if a.shots else None)
        for page, problems in found.items():
            print(f"[book] {page}: " + ("ok" if not problems else "\n    ".join([""] + problems)))
        if any(found.values()):
            return 1
    print(f"[book] serve it with `python -m http.server -d {out}` and open http://localhost:8000/ "
          f"(search needs http://; from file://{index.resolve()} pages open but search shows no text)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
