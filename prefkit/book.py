"""A browsable book of the executed notebooks, with the claims ledger as its index (``make book``).

Built offline from what is committed: the executed notebooks in ``reproductions/<method>/`` (outputs and figures
inline), their ``result.json`` (the ledger), the README's "Two commands" section (the front page) and the docstrings
of ``prefkit/losses/`` (one page per loss module). Nothing is fetched while building or reading: pages are plain HTML
with one stylesheet and one small script written here, figures stay embedded in the pages as the notebooks hold
them, and LaTeX in the notebooks' markdown is turned into MathML when the book is built (``latex2mathml``), which
browsers render natively. We chose nbconvert (already installed with the notebooks extra) with its ``basic``
template over mkdocs-material + mkdocs-jupyter: no theme to install, no JavaScript bundle, and the pages read the
same notebooks papermill wrote.

Every claim gets an anchor ``claim-<ID>`` at its line in its notebook's generated "What we found" reading; the
ledger page links each claim there.

    python -m prefkit.book [--out book/_site] [--reproductions reproductions] [--readme README.md]
"""

from __future__ import annotations

import argparse
import ast
import html
import json
import re
import shutil
from pathlib import Path

from .repro import claim_estimate, claim_status, load_result, method_status, result_scale

ROOT = Path(__file__).resolve().parents[1]
MATH = re.compile(r"\$\$(.+?)\$\$|(?<![\\$\w])\$(?!\s)([^$\n]+?)(?<!\s)\$(?![\w$])", re.S)


# -- math -------------------------------------------------------------------------------------------------------------
def latex_to_mathml(tex: str, display: bool) -> str:
    """MathML for one LaTeX expression (the source is kept as the annotation, for copying); a failed conversion keeps
    the LaTeX as code, so no page loses an equation silently."""
    from latex2mathml.converter import convert

    try:
        out = convert(tex.strip(), display="block" if display else "inline")
    except Exception:  # latex2mathml raises many kinds of errors on input it does not know
        return f'<code class="tex">{html.escape(tex)}</code>'
    return out


def math_in_markdown(text: str) -> str:
    """Replace $...$ and $$...$$ in markdown by MathML, leaving code spans and code blocks alone."""
    parts = re.split(r"(```.*?```|`[^`\n]*`)", text, flags=re.S)
    for i in range(0, len(parts), 2):
        parts[i] = MATH.sub(lambda m: latex_to_mathml(m.group(1) or m.group(2), m.group(1) is not None), parts[i])
    return "".join(parts)


# -- pages ------------------------------------------------------------------------------------------------------------
CSS = """
:root { --fg: #1d232b; --muted: #5b6570; --line: #dde2e7; --accent: #1f6fb2; --bg-side: #f6f8fa; }
* { box-sizing: border-box; }
body { margin: 0; font: 16px/1.55 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); }
a { color: var(--accent); }
.layout { display: flex; min-height: 100vh; }
nav.side { width: 260px; flex: none; background: var(--bg-side); border-right: 1px solid var(--line);
  padding: 1rem; position: sticky; top: 0; height: 100vh; overflow-y: auto; font-size: 14px; }
nav.side h2 { font-size: 15px; margin: 1rem 0 .3rem; }
nav.side ul { list-style: none; padding: 0; margin: 0; }
nav.side li { margin: .15rem 0; }
nav.side a.here { font-weight: 600; color: var(--fg); }
nav.side input { width: 100%; padding: .35rem .5rem; border: 1px solid var(--line); border-radius: 4px; }
#hits { font-size: 13px; }
main { flex: 1; min-width: 0; padding: 1.5rem 2rem 4rem; max-width: 1100px; }
main h1 { font-size: 1.8rem; line-height: 1.25; }
main h2 { font-size: 1.35rem; margin-top: 2rem; }
main h3 { font-size: 1.1rem; }
main img { max-width: 100%; height: auto; }
main > * , .jp-Cell, .jp-OutputArea, .jp-RenderedHTMLCommon { max-width: 100%; }
.jp-OutputArea-output, .jp-RenderedText { overflow-x: auto; }
.anchor-link { visibility: hidden; text-decoration: none; margin-left: .3rem; }
h1:hover .anchor-link, h2:hover .anchor-link, h3:hover .anchor-link { visibility: visible; }
main pre, main code { font-size: 13px; }
main :not(pre) > code, main a { overflow-wrap: anywhere; }
main pre { overflow-x: auto; background: #f6f8fa; padding: .6rem; border-radius: 4px; }
main table { border-collapse: collapse; display: block; overflow-x: auto; font-size: 14px; margin: .6rem 0; }
main th, main td { border: 1px solid var(--line); padding: .25rem .5rem; vertical-align: top; }
math[display="block"] { overflow-x: auto; overflow-y: hidden; margin: .6rem 0; }
.status { font-weight: 600; white-space: nowrap; }
.st-reproduced, .st-passed { color: #1a7f37; }
.st-reversed, .st-failed { color: #b42318; }
.st-not-reproduced, .st-inconclusive, .st-not-testable { color: #9a6700; }
:target { background: #fff3bf; scroll-margin-top: 1rem; }
.jp-InputPrompt, .jp-OutputPrompt, .prompt { display: none; }
.jp-Cell { margin: .4rem 0; }
.menu { display: none; }
@media (max-width: 800px) {
  .layout { display: block; }
  nav.side { width: auto; height: auto; position: static; border-right: 0; border-bottom: 1px solid var(--line); }
  nav.side .pages { display: none; }
  nav.side.open .pages { display: block; }
  .menu { display: inline-block; margin-bottom: .5rem; }
  main { padding: 1rem; }
  main h1 { font-size: 1.4rem; }
}
"""

SCRIPT = """
(function () {
  var box = document.getElementById('search'), hits = document.getElementById('hits');
  var menu = document.querySelector('.menu');
  if (menu) menu.addEventListener('click', function () { document.querySelector('nav.side').classList.toggle('open'); });
  if (!box) return;
  var index = window.BOOK_INDEX || [];
  box.addEventListener('input', function () {
    var q = box.value.trim().toLowerCase();
    hits.innerHTML = '';
    if (q.length < 2) return;
    index.filter(function (p) { return p.text.indexOf(q) >= 0; }).slice(0, 12).forEach(function (p) {
      var li = document.createElement('li'), a = document.createElement('a');
      a.href = p.url; a.textContent = p.title; li.appendChild(a); hits.appendChild(li);
    });
    if (!hits.children.length) hits.innerHTML = '<li>no page mentions that</li>';
  });
})();
"""


def _slug(status: str) -> str:
    return "st-" + status.replace(" ", "-")


def page(title: str, body: str, nav: list[tuple[str, str, str]], here: str) -> str:
    """One page: a sidebar (search, then the pages by section) and the body."""
    sections: dict[str, list[str]] = {}
    for section, url, name in nav:
        cls = ' class="here"' if url == here else ""
        sections.setdefault(section, []).append(f'<li><a href="{url}"{cls}>{html.escape(name)}</a></li>')
    side = "".join(f"<h2>{html.escape(s)}</h2><ul>{''.join(items)}</ul>" for s, items in sections.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)} · prefkit</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="book.css">
</head><body><div class="layout">
<nav class="side"><p><a href="index.html"><strong>prefkit</strong></a> <button class="menu" type="button">pages</button></p>
<input id="search" type="search" placeholder="Search the book" aria-label="Search the book"><ul id="hits"></ul>
<div class="pages">{side}</div></nav>
<main>{body}</main></div>
<script src="search-index.js"></script><script src="book.js"></script>
</body></html>
"""


def notebook_html(path: Path) -> str:
    """The body of an executed notebook as HTML (nbconvert's ``basic`` template: no scripts, no external assets;
    figures stay embedded), LaTeX in markdown turned into MathML, and an anchor ``claim-<ID>`` on each claim's line of
    the generated "What we found" reading."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = math_in_markdown(cell.source)
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            if "text/markdown" in data:
                data["text/markdown"] = math_in_markdown(data["text/markdown"])
    exporter = HTMLExporter(template_name="basic")
    exporter.exclude_input_prompt = exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    return re.sub(r"<li>(\s*(?:<p>)?\s*)<strong>([A-Za-z][\w-]*)</strong>(\s*\()",
                  lambda m: f'<li id="claim-{m.group(2)}">{m.group(1)}<strong>{m.group(2)}</strong>{m.group(3)}',
                  body)  # fmt: skip


def markdown_html(text: str) -> str:
    from nbconvert.filters.markdown import markdown2html

    return markdown2html(math_in_markdown(text))


def readme_front(readme: Path) -> str:
    """The README's opening and its "Two commands" section (up to the next ``## `` heading), as markdown."""
    text = readme.read_text()
    opening = text.split("\n## ", 1)[0]
    two = re.search(r"^## Two commands\n.*?(?=^## )", text, flags=re.S | re.M)
    return opening + "\n\n" + (two.group(0) if two else "")


def loss_module_page(path: Path) -> tuple[str, str]:
    """(title, HTML) of one ``prefkit/losses`` module: its docstring and each public function's signature and
    docstring (the equations are written in the docstrings)."""
    tree = ast.parse(path.read_text())
    name = f"prefkit.losses.{path.stem}" if path.stem != "__init__" else "prefkit.losses"
    parts = [f"<h1><code>{name}</code></h1>", f"<pre>{html.escape(ast.get_docstring(tree) or '')}</pre>"]
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            sig = f"{node.name}({ast.unparse(node.args)})"
            doc = ast.get_docstring(node) or ""
            parts.append(f'<h2 id="{node.name}"><code>{html.escape(sig)}</code></h2><pre>{html.escape(doc)}</pre>')
    return name, "\n".join(parts)


def ledger_html(results: list[tuple[str, dict, str]]) -> str:
    """The ledger: one summary row per notebook, then one row per claim linking to its place in its notebook."""
    rows = []
    for page_url, r, _ in results:
        rows.append(f'<tr><td><a href="{page_url}">{html.escape(r["method"])}</a></td>'
                    f'<td>{html.escape(r["paper"].get("title", ""))}</td><td>{html.escape(method_status(r))}</td></tr>')  # fmt: skip
    claims = []
    for page_url, r, scale in results:
        for c in r["claims"]:
            st = claim_status(c)
            ours = claim_estimate(c)
            claims.append(
                f'<tr id="{r["method"]}-{c["id"]}"><td><a href="{page_url}#claim-{c["id"]}">{html.escape(r["method"])}'
                f" {html.escape(c['id'])}</a></td><td>{html.escape(c.get('kind', ''))}</td>"
                f"<td>{html.escape(c['statement'])}</td><td>{html.escape(c.get('metric', ''))}: {ours}</td>"
                f'<td class="status {_slug(st)}">{html.escape(st)}</td><td>{html.escape(scale)}</td></tr>'
            )
    return (
        "<h1>The claims ledger</h1><p>Every claim every notebook tests, as its last full run judged it. A claim's id "
        "links to its line in the notebook's reading of the run. Paper numbers come from the papers' scale; ours from "
        "the offline toy worlds.</p><h2>Notebooks</h2><table><tr><th>notebook</th><th>papers</th><th>status</th></tr>"
        + "".join(rows)
        + "</table><h2>Claims</h2><table><tr><th>claim</th><th>kind</th><th>statement</th><th>ours: estimate "
        "[95% interval]</th><th>status</th><th>scale</th></tr>" + "".join(claims) + "</table>"
    )


def _text(body: str) -> str:
    body = re.sub(r'src="data:[^"]*"', "", body)
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", body, flags=re.S)
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", body))).strip().lower()[:100_000]


def build(out: Path, reproductions: Path, readme: Path, losses: Path) -> Path:
    """Write the site to ``out`` (replaced as a whole) and return the front page's path."""
    results = []
    for rj in sorted(reproductions.glob("*/result.json")):
        r = load_result(rj)
        executed = sorted(rj.parent.glob("[0-9][0-9]_*.ipynb"))
        if not executed:
            continue
        results.append((executed[0], r, result_scale(r)))
    results.sort(key=lambda t: t[0].name)
    nav = [("Start", "index.html", "Two commands"), ("Start", "ledger.html", "Claims ledger")]
    nav += [("Notebooks", f"{nb.stem}.html", nb.stem) for nb, _, _ in results]
    loss_files = sorted(p for p in losses.glob("*.py"))
    nav += [("Loss functions", f"losses-{p.stem}.html", p.stem) for p in loss_files]
    pages: dict[str, tuple[str, str]] = {
        "index.html": ("prefkit", markdown_html(readme_front(readme))),
        "ledger.html": ("Claims ledger", ledger_html([(f"{nb.stem}.html", r, s) for nb, r, s in results])),
    }
    for nb, _, _ in results:
        pages[f"{nb.stem}.html"] = (nb.stem, notebook_html(nb))
    for p in loss_files:
        pages[f"losses-{p.stem}.html"] = loss_module_page(p)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "book.css").write_text(CSS)
    (tmp / "book.js").write_text(SCRIPT)
    index = [{"url": url, "title": title, "text": _text(body)} for url, (title, body) in pages.items()]
    (tmp / "search-index.js").write_text("window.BOOK_INDEX = " + json.dumps(index) + ";\n")
    for url, (title, body) in pages.items():
        (tmp / url).write_text(page(title, body, nav, url))
    shutil.rmtree(out, ignore_errors=True)
    tmp.replace(out)  # a reader never sees a half-written site
    return out / "index.html"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(ROOT / "book" / "_site"))
    ap.add_argument("--reproductions", default=str(ROOT / "reproductions"))
    ap.add_argument("--readme", default=str(ROOT / "README.md"))
    a = ap.parse_args(argv)
    front = build(Path(a.out), Path(a.reproductions), Path(a.readme), ROOT / "prefkit" / "losses")
    print(f"wrote {front}")


if __name__ == "__main__":
    main()
