"""Lineage as a printed tree, JSON, Graphviz DOT and (where Graphviz is installed) SVG or PNG."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

from rich.markup import escape
from rich.tree import Tree

from perovdb.provenance.lineage import Lineage

COLOURS = {
    "structure": "#8ecae6",
    "calculation": "#bde0fe",
    "material": "#caffbf",
    "model": "#ffd166",
    "prediction": "#f4a261",
    "evaluation": "#e9c46a",
    "job": "#d9d9d9",
    "flow": "#bfbfbf",
    "dataset": "#ffe5b4",
    "file": "#ffffff",
    "source": "#ffffff",
    "summary": "#eeeeee",
}


def to_tree(lineage: Lineage) -> Tree:
    """A rich Tree: the root, what it was derived from (down to source files), and what was derived from it."""
    root = lineage.nodes[lineage.root]
    tree = Tree(f"[bold]{escape(root['label'])}[/bold] [dim]{escape(lineage.root)}[/dim]")
    back = tree.add("[cyan]derived from[/cyan]")
    _grow(lineage, back, lineage.root, upstream=True, seen={lineage.root})
    forward = tree.add("[magenta]used by[/magenta]")
    _grow(lineage, forward, lineage.root, upstream=False, seen={lineage.root})
    return tree


def _grow(lineage: Lineage, branch: Tree, node_id: str, *, upstream: bool, seen: set[str]) -> None:
    links = lineage.inputs_of(node_id) if upstream else lineage.outputs_of(node_id)
    for other, relation in links:
        node = lineage.nodes.get(other)
        if node is None:
            continue
        child = branch.add(f"[dim]{escape(relation)}:[/dim] {escape(node['label'])} [dim]{escape(other)}[/dim]")
        if other not in seen:
            seen.add(other)
            _grow(lineage, child, other, upstream=upstream, seen=seen)


def to_json(lineage: Lineage, path: str | Path | None = None) -> str:
    """The lineage as JSON (written to ``path`` when given)."""
    text = json.dumps(lineage.to_json(), indent=2, default=str)
    if path is not None:
        Path(path).write_text(text)
    return text


def to_dot(lineage: Lineage) -> str:
    """Graphviz DOT of the lineage (inputs above outputs)."""

    def quote(text: str) -> str:
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = ["digraph lineage {", "  rankdir=TB;", '  node [shape=box, style="rounded,filled", fontname="Helvetica"];']
    for node_id, node in lineage.nodes.items():
        width = 3 if node_id == lineage.root else 1
        lines.append(
            f"  {quote(node_id)} [label={quote(node['kind'] + ': ' + node['label'])}, "
            f"fillcolor={quote(COLOURS.get(node['kind'], '#ffffff'))}, penwidth={width}];"
        )
    for source, target, relation in lineage.edges:
        if source in lineage.nodes and target in lineage.nodes:
            lines.append(f"  {quote(source)} -> {quote(target)} [label={quote(relation)}, fontsize=9];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(lineage: Lineage, path: str | Path) -> Path:
    """Write ``path`` (.dot, .svg or .png); SVG and PNG need Graphviz's ``dot`` on PATH."""
    path = Path(path)
    dot = to_dot(lineage)
    if path.suffix == ".dot":
        path.write_text(dot)
        return path
    executable = shutil.which("dot")
    if executable is None:
        raise RuntimeError("Graphviz 'dot' is not installed (apt install graphviz); write a .dot file instead")
    subprocess.run([executable, f"-T{path.suffix.lstrip('.')}", "-o", str(path)], input=dot.encode(), check=True)
    return path
