"""Check a built documentation site: every notebook page that plots shows an image, maths is served locally.

Usage: ``python docs/check_build.py docs/_build/html`` (run by ``make docs``); exit status 1 with one
line per problem when a page fails.

A notebook *plots* when one of its code cells calls a ``plot_*`` helper, ``plt.``/``az.plot_`` or
``display(``; its page (``notebooks/<name>.html``) must then hold at least one ``<img>`` whose file
exists.  Every page that loads MathJax must load it from the site itself (no ``http`` source) and the
script file must exist.
"""

from __future__ import annotations

import json
import re
import sys
from html.parser import HTMLParser
from pathlib import Path

NOTEBOOKS = Path(__file__).parent / "notebooks"
PLOTTING = re.compile(r"\bplot_\w+\(|\bplt\.|\baz\.plot_|\bdisplay\(")


class _Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images: list[str] = []
        self.scripts: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img" and attrs.get("src"):
            self.images.append(attrs["src"])
        if tag == "script" and attrs.get("src"):
            self.scripts.append(attrs["src"])


def _parse(path: Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


def plots(notebook: Path) -> bool:
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return any(PLOTTING.search("".join(c["source"])) for c in cells if c["cell_type"] == "code")


def check(site: Path) -> list[str]:
    problems = []
    for notebook in sorted(NOTEBOOKS.glob("*.ipynb")):
        page = site / "notebooks" / f"{notebook.stem}.html"
        if not page.is_file():
            problems.append(f"{page}: no page built for {notebook.name}")
            continue
        if not plots(notebook):
            continue
        images = [src for src in _parse(page).images if (page.parent / src).is_file()]
        if not images:
            problems.append(f"{page}: {notebook.name} plots but its page shows no image")
    for page in sorted(site.rglob("*.html")):
        for src in _parse(page).scripts:
            if "mathjax" in src.lower():
                if src.startswith(("http:", "https:", "//")):
                    problems.append(f"{page}: MathJax loaded from the network ({src})")
                elif not (page.parent / src.split("?")[0]).is_file():
                    problems.append(f"{page}: MathJax script {src} is missing")
    return problems


def main(argv: list[str]) -> int:
    if len(argv) != 1 or not Path(argv[0]).is_dir():
        print("usage: python docs/check_build.py BUILT_HTML_FOLDER", file=sys.stderr)
        return 2
    problems = check(Path(argv[0]))
    for line in problems:
        print(line, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
