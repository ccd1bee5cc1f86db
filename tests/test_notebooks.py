"""Every notebook runs end to end on the smoke profile (papermill), writes its figures, and its key
numbers are finite; sources are committed clean and parameterised (pyprobml / numpyro style)."""
import json
import re
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dynaprune import profiles
from dynaprune.stats import INVALID, VERDICTS

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_there_are_eight_notebooks():
    assert [p.name[:2] for p in NOTEBOOKS] == [f"{i:02d}" for i in range(1, 9)]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_source_is_clean_and_parameterised(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code)
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    # opened in JupyterLab without parameters, a notebook shows the committed profile (rendered from the cache)
    assert f'profile = "{profiles.COMMITTED}"' in params[0].source
    # thin notebooks: no training loop in a notebook
    src = "\n".join(c.source for c in code)
    assert ".backward(" not in src and "optimizer.step" not in src and "opt.step" not in src


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_profile_runs_and_produces_figures(path, smoke_notebook):
    """Each notebook executed for the smoke profile by `make book`'s code path (`dynaprune.book.execute`, once per
    session: `conftest.smoke_notebook`): its figures, its labelled numbers, and the page the site makes of it
    (parameters removed, code folded, citations linked)."""
    from dynaprune import book
    done, figs = smoke_notebook(path.stem)
    executed = [done]
    prefix = path.stem[:2]
    pngs = list(figs.glob(f"{prefix}_*.png"))
    assert pngs, f"{path.name} wrote no figure"
    assert all(p.stat().st_size > 5000 for p in pngs)
    numbers = json.loads((figs / f"{path.stem}_numbers.json").read_text())
    # labelled: profile and device stated; every value finite (key_numbers refuses NaN); verdicts three-valued (or invalid)
    assert numbers["notebook"] == path.stem and numbers["profile"] == "smoke" and numbers["device"]
    assert numbers["numbers"]
    assert all(v["verdict"] in VERDICTS or v["verdict"].startswith(f"{INVALID}: ") for v in numbers["verdicts"])
    nb = book.for_site(nbformat.read(executed[0], as_version=4), book.bib_keys())
    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = [c for c in code if "remove-cell" not in c.metadata["tags"]]
    assert len(code) - len(shown) == 2          # our parameters cell and papermill's injected one
    assert all("hide-input" in c.metadata["tags"] for c in shown)
    assert sum(len(c.get("outputs", [])) for c in shown) >= len(pngs)
    md = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "{cite:p}`" in md and "Take-aways" in md
    executed_nb = nbformat.read(executed[0], as_version=4)
    assert not stray_outputs(executed_nb), stray_outputs(executed_nb)      # what a reader sees: no bare reprs, no paths


def stray_outputs(nb) -> list[str]:
    """Outputs a reader should not see on a lesson page: a machine path anywhere, or a cell's bare return value that is
    the repr of a dict, list or array longer than 3 lines (a table is shown as a DataFrame, a number in a sentence)."""
    bad = []
    for i, c in enumerate(nb.cells):
        for o in c.get("outputs", []) if c.cell_type == "code" else []:
            text = o.get("text", "") if o.get("output_type") == "stream" else o.get("data", {}).get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if "PosixPath(" in text or str(ROOT) in text:
                bad.append(f"cell {i}: a machine path: {text[:80]!r}")
            if o.get("output_type") == "execute_result" and "text/html" not in o.get("data", {}) \
                    and text.lstrip().startswith(("{", "[", "array(", "(")) and text.count("\n") > 3:
                bad.append(f"cell {i}: a bare repr of {text.count(chr(10)) + 1} lines: {text[:80]!r}")
    return bad


def test_stray_outputs_are_found():
    """The check above can fail: a dict's repr of many lines and a path are found, a short repr and a table are not."""
    out = lambda data, kind="execute_result": nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output(kind, data=data)])
    nb = nbformat.v4.new_notebook(cells=[out({"text/plain": "{'a': 1,\n 'b': 2,\n 'c': 3,\n 'd': 4,\n 'e': 5}"}),
                                         out({"text/plain": f"PosixPath('{ROOT}/figures/x.png')"}),
                                         out({"text/plain": "{'a': 1}"}),
                                         out({"text/plain": "   a\n0  1\n1  2\n2  3\n3  4", "text/html": "<table/>"})])
    assert [b.split(":")[0] for b in stray_outputs(nb)] == ["cell 0", "cell 1"]


@pytest.mark.slow
def test_book_site(tmp_path, smoke_notebook):
    """`make book`'s site (Sphinx + MyST-NB + sphinx-book-theme + sphinxcontrib-bibtex), built from the smoke
    profile's executed notebooks 01 and 02 (shared with the test above; `make book` builds all eight): a sidebar
    linking the lessons, search, code cells folded with outputs shown, citations linked to the bibliography generated
    from references.bib, notation and references as pages."""
    import re
    from dynaprune import book
    out = tmp_path / "book"
    executed = [smoke_notebook(p.stem)[0] for p in NOTEBOOKS if p.stem[:2] in ("01", "02")]
    index = book.sphinx(book.stage(executed, tmp_path / "book-src"), out)
    assert index == out / "index.html" and "docs/index.html" in index.read_text()
    home = (out / "docs" / "index.html").read_text(encoding="utf-8")
    assert 'href="../notebooks/01_optimal_sampling_theory.html"' in home and "search" in home
    page = (out / "notebooks" / "01_optimal_sampling_theory.html").read_text(encoding="utf-8")
    assert "tag_hide-input" in page and "<details" in page                   # folded code, outputs shown
    assert page.count('<img alt=') + page.count("image/png") >= 1
    assert "injected-parameters" not in page and 'profile = "smoke"' not in page
    cites = re.findall(r'<a class="reference internal" href="../REFERENCES.html#(id\d+)"[^>]*>(\w+)</a>', page)
    assert {"Omission", "OnlineIS", "InfoBatch"} <= {k for _, k in cites}
    refs = (out / "REFERENCES.html").read_text(encoding="utf-8")
    assert all(f'id="{i}"' in refs for i, _ in cites)                        # each link lands on a bibliography entry
    assert (out / "search.html").exists() and (out / "searchindex.js").stat().st_size > 1000
    assert (out / "NOTATION.html").exists() and 'href="NOTATION.html"' in page.replace("../NOTATION.html", "NOTATION.html")
    # the site as a reader opens it (headless Chromium): no console error, nothing wider than the text column, no output
    # taller than two screens, display maths centred, figures not shrunk below legible size
    if book.browser_missing():
        pytest.skip(f"browser part of the site test skipped: {book.browser_missing()}")
    found = book.check_site(out)
    assert set(found) >= {"docs/index.html", "notebooks/01_optimal_sampling_theory.html", "REFERENCES.html"}
    assert not any(found.values()), {p: v for p, v in found.items() if v}


def test_the_browser_check_finds_what_a_reader_would(tmp_path):
    """The site check can fail: a page with a console error, a 3,000 px wide table, an output 5 screens tall and a
    display equation pushed to the right is reported on each count; a clean page is not."""
    from dynaprune import book
    if book.browser_missing():
        pytest.skip(book.browser_missing())
    col = '<article class="bd-article" style="width:700px">{}</article>'
    (tmp_path / "bad.html").write_text("<html><body>" + col.format(
        '<script>console.error("boom")</script><table style="width:3000px"><tr><td>x</td></tr></table>'
        '<div class="cell_output" style="height:5000px">long</div>'
        '<div class="math" style="display:flex;flex-direction:row-reverse"><span class="MathJax_CHTML" style="width:100px;'
        'display:inline-block">x</span></div>') + "</body></html>")
    (tmp_path / "good.html").write_text("<html><body>" + col.format("<p>fine</p>") + "</body></html>")
    found = book.check_site(tmp_path, pages=["bad.html", "good.html"])
    assert found["good.html"] == []
    kinds = " | ".join(found["bad.html"])
    assert all(k in kinds for k in ("console:", "wider than the column", "taller than two screens", "off centre")), kinds


def test_lesson_titles_are_the_same_everywhere():
    """The sidebar shows each notebook's title (its first heading); the site's home page and the README list the same."""
    titles = [next(l[2:] for l in nbformat.read(p, as_version=4).cells[0].source.splitlines() if l.startswith("# "))
              for p in NOTEBOOKS]
    for doc in (ROOT / "docs" / "index.md", ROOT / "README.md"):
        listed = re.findall(r"^\s*- \[(\d\d · [^\]]+)\]\(", doc.read_text(encoding="utf-8"), re.M)
        assert listed == titles, doc.name


def test_every_citation_key_resolves_to_the_bibliography():
    """Every bracketed key in the notebooks' and documents' prose is an entry of references.bib, and the site's
    transform turns every one into a link (no `[Key]` left as text)."""
    import re
    from dynaprune import book
    keys = set(book.bib_keys())
    bracket = re.compile(r"(?<![\[\w`])\[([A-Z][\w-]+)\](?![\(\[:])")
    texts = [c.source for p in NOTEBOOKS for c in nbformat.read(p, as_version=4).cells if c.cell_type == "markdown"]
    texts += [(ROOT / f).read_text(encoding="utf-8") for f in ("README.md", "NOTATION.md", "REFERENCES.md")]
    texts += [f.read_text(encoding="utf-8") for f in sorted((ROOT / "docs").glob("*.md"))]
    for t in texts:
        prose = re.sub(r"`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$", "", t, flags=re.S)
        found = set(bracket.findall(prose))
        assert found <= keys, f"not in references.bib: {found - keys}"
        assert not bracket.findall(re.sub(r"`[^`]*`|\$\$.*?\$\$|\$[^$\n]*\$", "", book.cite_roles(t, keys), flags=re.S))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_teaches(path):
    """A course notebook: objectives at the top, a derivation, exercises with hidden solutions, take-aways at the end,
    the shared notation linked; a from-scratch teaching cell stays short and is checked against the library (assert)."""
    nb = nbformat.read(path, as_version=4)
    md = [c.source for c in nb.cells if c.cell_type == "markdown"]
    assert "### Learning objectives" in md[0] and "NOTATION.md" in md[0] and "REFERENCES.md" in md[0]
    assert any("Derivation" in m and "$" in m for m in md)
    ex = [m for m in md if "## Exercises" in m]
    assert ex and all("<details><summary>Solutions</summary>" in m for m in ex)
    assert "## Take-aways" in md[-1]
    teaching = [c.source for c in nb.cells if c.cell_type == "code" and c.source.startswith("# Teaching cell")]
    assert teaching and all(len(t.splitlines()) <= 30 and "assert" in t for t in teaching)


def test_citations_stand_on_their_own():
    """No folder outside the repository and no private file number: every citation is a bibliography key."""
    import re
    import subprocess
    files = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    bad = re.compile(r"shared/" r"papers|\b00[0-4] (eq|§|section|sec\.|Fig|Table|Alg|Theorem)")
    hits = [f"{f}:{i}" for f in files if f.endswith((".py", ".md", ".ipynb", ".toml", ".yml", ".bib", "Makefile"))
            for i, line in enumerate((ROOT / f).read_text(encoding="utf-8").splitlines(), 1) if bad.search(line)]
    assert not hits, hits
    keys = set(re.findall(r"^@\w+\{(\w+),", (ROOT / "references.bib").read_text(), re.M))
    used = set()
    for f in files:
        if f.endswith((".py", ".md", ".ipynb")):
            used |= set(re.findall(r"\[(Omission|Raju|ES|OnlineIS|InfoBatch|DLIS|BiasedIS|SelectiveBackprop|OrderedSGD|"
                                   r"KAKURENBO|EL2N|Forgetting|SRG|SIREN)\]", (ROOT / f).read_text(encoding="utf-8")))
    assert used and used <= keys and {"Omission", "Raju", "ES", "OnlineIS", "InfoBatch"} <= keys
    assert keys == set(re.findall(r"^\| \[(\w+)\] \|", (ROOT / "REFERENCES.md").read_text(), re.M))


@pytest.mark.parametrize("src", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_saved_by_jupyter_after_run_all_is_what_git_holds(src, tmp_path):
    """`make lab`'s save path: Jupyter's FileContentsManager with `dynaprune.lab.strip_on_save` as its pre-save hook
    (`.jupyter/jupyter_server_config.py`) writes an executed notebook (outputs, counts, language_info, Lab's cell state)
    as exactly the committed bytes, so `git status` stays clean after Run All and a save."""
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from traitlets.config import Config
    cfg = Config()
    exec(compile((ROOT / ".jupyter" / "jupyter_server_config.py").read_text(), "config", "exec"), {"c": cfg})
    nb = nbformat.read(src, as_version=4)
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    for i, c in enumerate(nb.cells):
        if c.cell_type == "code":
            c.execution_count = i
            c.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
            c.metadata["scrolled"] = True
    cm = FileContentsManager(root_dir=str(tmp_path))
    cm.pre_save_hook = cfg.FileContentsManager.pre_save_hook
    cm.save({"type": "notebook", "format": "json", "content": nb}, src.name)
    assert (tmp_path / src.name).read_bytes() == src.read_bytes()
