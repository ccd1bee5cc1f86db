"""Every notebook runs end to end on the smoke profile (papermill), writes its figures, and its key
numbers are finite; sources are committed clean and parameterised (pyprobml / numpyro style)."""
import json
from pathlib import Path

import nbformat
import numpy as np
import pytest

from dynaprune import profiles
from dynaprune.stats import VERDICTS

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


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_smoke_profile_runs_and_produces_figures(path, tmp_path, monkeypatch):
    """Each notebook executed for the smoke profile by `make book`'s code path (`dynaprune.book`): its figures,
    its labelled numbers, and its page of the site with the figures embedded."""
    from dynaprune import book
    monkeypatch.setenv("DYNAPRUNE_RESULTS", str(tmp_path / "results"))
    executed = book.execute("smoke", tmp_path, only=[path.stem])
    assert [p.name for p in executed] == [path.name]
    figs = tmp_path / "figures"
    prefix = path.stem[:2]
    pngs = list(figs.glob(f"{prefix}_*.png"))
    assert pngs, f"{path.name} wrote no figure"
    assert all(p.stat().st_size > 5000 for p in pngs)
    numbers = json.loads((figs / f"{path.stem}_numbers.json").read_text())
    # labelled: profile and device stated; every value finite (key_numbers refuses NaN); verdicts three-valued
    assert numbers["notebook"] == path.stem and numbers["profile"] == "smoke" and numbers["device"]
    assert numbers["numbers"]
    assert all(v["verdict"] in VERDICTS for v in numbers["verdicts"])
    book.render(executed, tmp_path, "smoke")
    page = (tmp_path / f"{path.stem}.html").read_text(encoding="utf-8")
    assert page.count("data:image/png;base64,") >= len(pngs) and "Take-aways" in page and "<details>" in page
    assert "../NOTATION.md" not in page and 'href="NOTATION.html"' in page


def test_book_site(tmp_path):
    """`make book`'s site: an index linking every notebook's page in order with its learning objectives, and the
    notation and references as pages of the site (links rewritten, not pointing into the repository)."""
    import re
    from dynaprune import book
    index = book.render(NOTEBOOKS, tmp_path, "smoke")      # the sources: the executed pages are tested above
    text = index.read_text(encoding="utf-8")
    pages = re.findall(r'href="(\d\d_\w+\.html)"', text)
    assert pages == [f"{p.stem}.html" for p in NOTEBOOKS]
    assert "Learning objectives" not in text and text.count("<li>") >= 8 * 2   # each entry lists its objectives
    for name in pages:
        assert 'href="NOTATION.html"' in (tmp_path / name).read_text(encoding="utf-8")
    for doc in ("NOTATION.html", "REFERENCES.html", "references.bib"):
        assert (tmp_path / doc).stat().st_size > 1000
    assert "[Omission]" in (tmp_path / "REFERENCES.html").read_text(encoding="utf-8")


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
