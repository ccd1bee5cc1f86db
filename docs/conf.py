"""Sphinx configuration of the course site (`make book`): MyST-NB renders the notebooks that
`dynaprune.book` executed from the results cache (never executing them again), sphinx-book-theme gives
the sidebar, search and folded code, sphinxcontrib-bibtex links every citation key to its entry in
references.bib. Built offline: MathJax comes from Debian's libjs-mathjax when it is installed."""
from pathlib import Path

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as _Unsrt
from pybtex.style.labels import BaseLabelStyle

# The source folder mirrors the repository (docs/, notebooks/, NOTATION.md, ...), so links written for
# GitHub (docs/setup.md -> ../notebooks/05_method_comparison.ipynb) work on the site too; this file is
# its configuration directory (sphinx-build -c docs).
root_doc = "docs/index"
project = "dynaprune"
author = "the dynaprune authors"
extensions = ["myst_nb", "sphinxcontrib.bibtex"]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "docs/_extra", "docs/_static"]
html_theme = "sphinx_book_theme"
html_title = "dynaprune: the workbook"
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False,
                      "navbar_persistent": [], "navbar_end": []}
# one search box: the sidebar's (the header's persistent one is switched off above)
html_sidebars = {"**": ["navbar-logo.html", "search-button-field.html", "sbt-sidebar-nav.html"]}
html_context = {"default_mode": "light"}   # a stated mode: without one the theme logs "invalid theme mode" in the console
html_static_path = ["_static"]             # dynaprune.css, the favicon, and MathJax when dynaprune.book copies it in
html_css_files = ["dynaprune.css"]
html_favicon = "_static/favicon.svg"
html_extra_path = ["_extra"]          # index.html at the site's root: a redirect to docs/index.html
html_show_sourcelink = False

nb_execution_mode = "off"            # executed by papermill from the results cache before the build
myst_enable_extensions = ["dollarmath", "amsmath", "html_image"]
myst_dmath_double_inline = True     # $$...$$ inside a paragraph (as the notebooks write it, and as JupyterLab renders it)
myst_heading_anchors = 3
suppress_warnings = ["myst.header", "mystnb.unknown_mime_type"]


class _KeyLabels(BaseLabelStyle):
    """Cite by the short key the workbook uses in the text ([Omission]), not by an author-year label."""

    def format_labels(self, sorted_entries):
        for entry in sorted_entries:
            yield entry.key


class _KeyStyle(_Unsrt):
    default_label_style = _KeyLabels


register_plugin("pybtex.style.formatting", "dynaprune_keys", _KeyStyle)
bibtex_bibfiles = ["../references.bib"]   # relative to this folder: the repository's bibliography
bibtex_default_style = "dynaprune_keys"
bibtex_reference_style = "label"

# MathJax 2 from Debian's package, copied into _static by dynaprune.book; its CDN otherwise
if (Path(__file__).parent / "_static" / "mathjax" / "MathJax.js").exists():
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
    mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                                   "processEscapes": True, "processClass": "math|output_area",
                                   "ignoreClass": "document"}}
