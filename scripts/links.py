#!/usr/bin/env python3
"""Checks the links of README.md and the guide's pages (CI runs it).

    python3 scripts/links.py

Every relative link must name a file or directory of the repository, and every `#anchor`
a heading of the page it points into (GitHub's anchor rules: lower case, punctuation
dropped, spaces to hyphens). Links into the crate's docs (`crate::...`, `super::...`) are
rustdoc's to check: `cargo doc` with `-D warnings` fails on a broken one. Links to other
sites are not followed (CI has no network); they are listed. Exits 1 on a broken link.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages():
    yield os.path.join(ROOT, "README.md")
    guide = os.path.join(ROOT, "src", "guide")
    for f in sorted(os.listdir(guide)):
        if f.endswith(".md"):
            yield os.path.join(guide, f)


def prose(text):
    """The text outside code blocks."""
    out, fenced = [], False
    for line in text.split("\n"):
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return "\n".join(out)


def anchors(path):
    if not path.endswith(".md") or not os.path.isfile(path):
        return set()
    with open(path) as f:
        text = prose(f.read())
    found = set()
    for line in text.split("\n"):
        m = re.match(r"^#{1,6} (.*)$", line)
        if m:
            slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
            found.add(slug)
    return found


def main():
    broken, outside = [], set()
    for page in pages():
        with open(page) as f:
            text = prose(f.read())
        for target in LINK.findall(text):
            if target.startswith(("http://", "https://")):
                outside.add(target)
                continue
            if target.startswith(("crate::", "super::", "self::")) or "::" in target.split("#")[0]:
                continue
            path, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(page), path)) if path else page
            where = os.path.relpath(page, ROOT)
            if not os.path.exists(full):
                broken.append(f"{where}: {target} (no such file)")
            elif anchor and anchor not in anchors(full):
                broken.append(f"{where}: {target} (no such heading)")
    for target in sorted(outside):
        print(f"not followed: {target}")
    for b in broken:
        print(f"BROKEN {b}")
    print(f"{len(broken)} broken links")
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
