#!/usr/bin/env python3
"""Which public items have no example a reader can find from their docs.

    python3 scripts/doc_examples.py [--strict]

An item has one when
- its own docs hold a code block, or
- it is a method and the example of its type (on the same docs.rs page) calls it, or
- its docs link (an intra-doc link) to an item or a guide chapter whose code blocks use it.

"Use" means the name appears in a Rust code block as a word: `name(`, `.name`,
`::name` or the type's name. Types, functions, constants and inherent methods reachable
from the crate root are counted; the guide's own pages are not.

Builds the crate's rustdoc JSON with the nightly toolchain (`cargo +nightly rustdoc
--all-features -- -Z unstable-options --output-format json`), prints the counts and the
items without one; `--strict` exits 1 when any is missing (CI runs it so).
"""
import json
import os
import re
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
DOCUMENTED = ("struct", "enum", "trait", "function", "module", "macro", "type_alias", "constant")
FENCE = re.compile(r"```([^\n]*)\n(.*?)```", re.S)


def code_of(docs):
    """The Rust code blocks of a docs string (`text` and other languages left out)."""
    blocks = []
    for lang, body in FENCE.findall(docs or ""):
        tags = {t.strip() for t in lang.split(",")}
        if tags & {"text", "sh", "bash", "json", "toml", "console", "python"}:
            continue
        blocks.append(body)
    return "\n".join(blocks)


def uses(code, name):
    return re.search(r"(?<![A-Za-z0-9_])" + re.escape(name) + r"(?![A-Za-z0-9_])", code) is not None


class Item:
    def __init__(self, path, kind, docs, links, parent_docs):
        self.path, self.kind, self.docs, self.links, self.parent_docs = path, kind, docs, links, parent_docs

    @property
    def name(self):
        return self.path[-1]


def walk(index, iid, path, seen, found):
    if iid in seen:
        return
    seen.add(iid)
    item = index.get(str(iid))
    if not item:
        return
    kind = next(iter(item["inner"]))
    if kind == "use":
        target = item["inner"]["use"].get("id")
        if target is not None:
            walk(index, target, path, seen, found)
        return
    if item.get("visibility") != "public" and path:
        return
    here = path + [item["name"]] if item.get("name") else path
    if "guide" in here:
        return
    if kind in DOCUMENTED and path:
        found.append(Item(here, kind, item.get("docs") or "", item.get("links") or {}, None))
    if kind == "module":
        for child in item["inner"]["module"]["items"]:
            walk(index, child, here, seen, found)
    if kind in ("struct", "enum", "trait"):
        for imp in item["inner"][kind].get("impls", []):
            block = index.get(str(imp), {}).get("inner", {}).get("impl")
            if not block or block.get("trait") is not None:
                continue
            for m in block["items"]:
                method = index.get(str(m))
                if method and method.get("visibility") == "public" and "function" in method["inner"]:
                    found.append(Item(here + [method["name"]], "method", method.get("docs") or "",
                                      method.get("links") or {}, item.get("docs") or ""))


def has_example(it, index):
    if code_of(it.docs):
        return True
    if it.parent_docs is not None and uses(code_of(it.parent_docs), it.name):
        return True
    for target in it.links.values():
        linked = index.get(str(target))
        if linked and uses(code_of(linked.get("docs")), it.name):
            return True
    return False


def main():
    subprocess.run(["cargo", "+nightly", "rustdoc", "--all-features", "--lib", "--quiet", "--",
                    "-Z", "unstable-options", "--output-format", "json"], cwd=ROOT, check=True)
    with open(os.path.join(TARGET, "doc", "actix_meta_websocket.json")) as f:
        doc = json.load(f)
    # The layout read here ("inner" keyed by kind, "use" items, "links") is that of
    # format versions 40 and later; an older nightly would make every item look bare.
    if doc.get("format_version", 0) < 40:
        sys.exit(f"rustdoc JSON format {doc.get('format_version')} is too old: update the nightly toolchain")
    index = doc["index"]
    found = []
    walk(index, doc["root"], [], set(), found)
    missing = [it for it in found if not has_example(it, index)]
    for it in missing:
        print(f"no example: {'::'.join(it.path)} ({it.kind})")
    counts = Counter(it.kind for it in missing)
    print(f"{len(found) - len(missing)} of {len(found)} public items have an example, on their page or "
          f"one link away; without: {dict(counts)}")
    sys.exit(1 if missing and "--strict" in sys.argv else 0)


if __name__ == "__main__":
    main()
