#!/usr/bin/env python3
"""Which public items have no example: a code block in their docs, or a link into the
guide (`guide::`). Types, functions, constants and inherent methods reachable from the
crate root; the guide's own pages are not counted.

    python3 scripts/doc_examples.py [--strict]

Builds the crate's rustdoc JSON with the nightly toolchain (`cargo +nightly rustdoc
--all-features -- -Z unstable-options --output-format json`), prints the counts and the
items without one; `--strict` exits 1 when any is missing (for CI, once they all have one).
"""
import json
import os
import subprocess
import sys
from collections import Counter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.environ.get("CARGO_TARGET_DIR") or os.path.join(ROOT, "target")
DOCUMENTED = ("struct", "enum", "trait", "function", "module", "macro", "type_alias", "constant")


def has_example(item):
    docs = item.get("docs") or ""
    return "```" in docs or "guide::" in docs


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
        found.append(("::".join(here), kind, has_example(item)))
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
                    found.append(("::".join(here + [method["name"]]), "method", has_example(method)))


def main():
    subprocess.run(["cargo", "+nightly", "rustdoc", "--all-features", "--lib", "--quiet", "--",
                    "-Z", "unstable-options", "--output-format", "json"], cwd=ROOT, check=True)
    with open(os.path.join(TARGET, "doc", "actix_meta_websocket.json")) as f:
        doc = json.load(f)
    found = []
    walk(doc["index"], doc["root"], [], set(), found)
    missing = [(p, k) for p, k, ok in found if not ok]
    for p, k in missing:
        print(f"no example: {p} ({k})")
    counts = Counter(k for _, k in missing)
    print(f"{len(found) - len(missing)} of {len(found)} public items have an example or a link into the guide; "
          f"without: {dict(counts)}")
    sys.exit(1 if missing and "--strict" in sys.argv else 0)


if __name__ == "__main__":
    main()
