#!/usr/bin/env python3
"""Checks that the crate's module graph is its architecture (CI runs it).

    python3 scripts/module_graph.py          # checks; prints what is wrong
    python3 scripts/module_graph.py --print  # also prints the graph, layer by layer

Every `crate::` path in src/ (in `use` items and in code, not in comments or docs) is
resolved to the top-level module that defines it. The rules:

1. Inside the crate, names are reached by the path of the module that defines them:
   no path goes through lib.rs's re-exports (`crate::Name`), and lib.rs itself only
   declares modules and re-exports.
2. Imports go down the layers below and never up; within the data layer, plain data
   types may name each other.
3. So no machinery module is in an import loop.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")

# Lowest first. A module may import from any layer below its own; only the data layer
# may import within itself.
LAYERS = [
    ("protocol", ["protocol"]),
    ("data", ["setters", "message", "error", "settings", "stats", "prepared", "watchers", "registry", "telemetry", "redact"]),
    ("delivery", ["delivery"]),
    ("connection", ["connection"]),
    ("pool", ["pool"]),
    ("groups", ["groups"]),
    ("entry points", ["handler", "client"]),
    ("server", ["server"]),
    ("cluster", ["cluster"]),
    # The guide: chapters of documentation, no code.
    ("docs", ["guide"]),
]
DATA = "data"
LAYER_OF = {m: i for i, (_, mods) in enumerate(LAYERS) for m in mods}
MODULES = set(LAYER_OF)


def code_lines(text):
    """The text without comments (line, block and doc comments)."""
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return [re.sub(r"//.*", "", line) for line in text.split("\n")]


def crate_paths(text):
    """(line number, first segment after `crate::`) for every crate path in the code,
    group imports `use crate::{a::X, b::{Y, Z}}` included."""
    found = []
    lines = code_lines(text)
    joined = "\n".join(lines)
    for m in re.finditer(r"\bcrate::\{", joined):
        depth, i = 1, m.end()
        while depth and i < len(joined):
            depth += {"{": 1, "}": -1}.get(joined[i], 0)
            i += 1
        inner = joined[m.end():i - 1]
        line = joined.count("\n", 0, m.start()) + 1
        depth, start = 0, 0
        for j, c in enumerate(inner + ","):
            if c in "{":
                depth += 1
            elif c == "}":
                depth -= 1
            elif c == "," and depth == 0:
                item = inner[start:j].strip()
                start = j + 1
                if item:
                    found.append((line, re.split(r"::|\s", item)[0]))
    for n, line in enumerate(lines, 1):
        for m in re.finditer(r"\bcrate::([A-Za-z_][A-Za-z_0-9]*)", line):
            found.append((n, m.group(1)))
    return found


def module_of(path):
    rel = os.path.relpath(path, SRC)
    first = rel.split(os.sep)[0]
    return os.path.splitext(first)[0]


def main():
    problems = []
    edges = {}
    for dirpath, _, files in os.walk(SRC):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(dirpath, f)
            rel = os.path.relpath(path, ROOT)
            mod = module_of(path)
            with open(path) as fh:
                text = fh.read()
            if mod == "lib":
                for n, line in enumerate(code_lines(text), 1):
                    if re.match(r"\s*(pub(\(crate\))?\s+)?(fn|impl|static|const|enum|trait)\b", line):
                        problems.append(f"{rel}:{n}: lib.rs only declares modules and re-exports: {line.strip()}")
                continue
            if mod not in MODULES:
                problems.append(f"{rel}: module `{mod}` is in no layer of scripts/module_graph.py")
                continue
            for n, first in crate_paths(text):
                if first not in MODULES:
                    problems.append(f"{rel}:{n}: `crate::{first}` goes through lib.rs; import it from its module")
                    continue
                if first == mod:
                    continue
                edges[(mod, first)] = edges.get((mod, first), 0) + 1
                up, down = LAYER_OF[mod], LAYER_OF[first]
                if down > up or (down == up and LAYERS[up][0] != DATA):
                    problems.append(f"{rel}:{n}: `{mod}` imports `{first}`, which is not below it")
    problems += loops(edges)
    if "--print" in sys.argv:
        for name, mods in reversed(LAYERS):
            for m in mods:
                outs = sorted(t for (s, t) in edges if s == m)
                print(f"{name:13} {m:11} -> {', '.join(outs) if outs else '(nothing of the crate)'}")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"module graph: {len(edges)} edges between {len(MODULES)} modules, no import through lib.rs, "
          "none up a layer, no loop through the machinery")


def loops(edges):
    """Strongly connected sets of more than one module outside the data layer."""
    graph = {}
    for s, t in edges:
        graph.setdefault(s, set()).add(t)
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1 and any(LAYERS[LAYER_OF[c]][0] != DATA for c in comp):
                out.append(f"import loop through the machinery: {' <-> '.join(sorted(comp))}")

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


if __name__ == "__main__":
    main()
