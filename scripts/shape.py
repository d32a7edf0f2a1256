#!/usr/bin/env python3
"""Checks the size limits that keep the code readable (CI runs it).

    python3 scripts/shape.py

In src/, tests/ and examples/ (Rust files): no file over 500 lines, no function over 60
lines (test bodies included), no struct with more than 12 fields. Past these, look for
the missing type or helper. Prints every file, function or struct over its limit.
"""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIRS = ["src", "tests", "examples"]
MAX_FILE, MAX_FN, MAX_FIELDS = 500, 60, 12


def rust_files():
    for d in DIRS:
        for dirpath, dirs, files in os.walk(os.path.join(ROOT, d)):
            dirs[:] = [x for x in dirs if x != "node_modules"]
            for f in sorted(files):
                if f.endswith(".rs"):
                    yield os.path.join(dirpath, f)


def strip(line):
    """The line without its comment and string contents, for brace counting."""
    line = re.sub(r'"(\\.|[^"\\])*"', '""', line)
    line = re.sub(r"'(\\.|[^'\\])'", "''", line)
    return re.sub(r"//.*", "", line)


def blocks(lines, start_re):
    """(name, first line, line count, body lines) of each item whose header matches."""
    out = []
    i = 0
    while i < len(lines):
        m = re.match(start_re, lines[i])
        if not m:
            i += 1
            continue
        depth, opened, j = 0, False, i
        while j < len(lines):
            code = strip(lines[j])
            if not opened and ";" in code and "{" not in code:
                break  # a declaration without a body
            depth += code.count("{") - code.count("}")
            opened = opened or "{" in code
            if opened and depth <= 0:
                out.append((m.group(1), i + 1, j - i + 1, lines[i:j + 1]))
                break
            j += 1
        i += 1
    return out


def main():
    problems = []
    for path in rust_files():
        rel = os.path.relpath(path, ROOT)
        with open(path) as f:
            lines = f.read().split("\n")
        if len(lines) > MAX_FILE:
            problems.append(f"{rel}: {len(lines)} lines (at most {MAX_FILE})")
        for name, at, n, _ in blocks(lines, r"^\s*(?:pub(?:\([a-z]+\))?\s+)?(?:async\s+)?(?:unsafe\s+)?fn\s+(\w+)"):
            if n > MAX_FN:
                problems.append(f"{rel}:{at}: fn {name} has {n} lines (at most {MAX_FN})")
        for name, at, _, body in blocks(lines, r"^\s*(?:pub(?:\([a-z]+\))?\s+)?struct\s+(\w+)[^;(]*\{\s*$"):
            fields = [l for l in body[1:-1] if re.match(r"^\s*(?:pub(?:\([a-z]+\))?\s+)?\w+\s*:", l)]
            if len(fields) > MAX_FIELDS:
                problems.append(f"{rel}:{at}: struct {name} has {len(fields)} fields (at most {MAX_FIELDS})")
    for p in problems:
        print(p)
    if problems:
        sys.exit(1)
    print(f"shape: no Rust file over {MAX_FILE} lines, no function over {MAX_FN}, no struct over {MAX_FIELDS} fields")


if __name__ == "__main__":
    main()
