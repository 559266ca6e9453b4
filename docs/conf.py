"""Sphinx configuration: the guide is the README, split into pages (one
source of truth), plus the API reference from the docstrings."""

import importlib.metadata

project = "flask-aistream"
copyright = "the flask-aistream developers"
release = importlib.metadata.version("flask-aistream")
version = release

extensions = [
    "sphinx.ext.autodoc",
    "pallets_sphinx_themes",
]
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_preserve_defaults = True
# No intersphinx: the build reads nothing from the network (CI has none).

html_theme = "flask"
html_context = {"project_links": []}
html_sidebars = {"**": ["localtoc.html", "relations.html", "searchbox.html"]}
html_title = f"flask-aistream {version}"
html_show_sourcelink = False
exclude_patterns = ["_build"]
