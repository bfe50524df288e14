#!/usr/bin/env python3
"""Keeps docs/internals/ true to the code (issue 14). Standard library only.

    python3 scripts/check_docs.py [ROOT]          # ROOT: the repository (default: this script's ..)
    python3 scripts/check_docs.py [ROOT] --fix    # also rewrite stale line numbers it can resolve

For every .md file under ROOT/docs/internals/ it checks three things:

1. Code references. Inline code of the form `path/to/file.cpp:123 symbol` must name a file that
   exists (relative to ROOT) whose line 123 contains `symbol`. When the line moved, the error says
   what line 123 holds now and, if `symbol` occurs on exactly one line of the file, where it went;
   --fix rewrites such references in place.
2. Quoted code. A fenced code block right after `<!-- snippet: examples/foo.cpp#name -->` must equal
   (modulo common leading indentation and trailing spaces) the lines between `// [name]` and
   `// [/name]` in that file, and the file must be an example ctest builds and runs: it is listed in
   an add_executable() in examples/CMakeLists.txt whose target an add_test() runs.
   `<!-- excerpt: core/x.cpp#name -->` does the same for library files, without the ctest rule.
3. Relative links `[text](../../core/x.h)` must point at files or folders that exist.

It prints one line per problem, "doc:line: what is wrong", and exits 1 when there is any.
"""
import os
import re
import sys
import textwrap

# `path:line symbol`: a path with an extension (or a bare CMakeLists.txt), a line number, then the
# symbol, which is everything after the first space.
REF_RE = re.compile(r"^(?P<path>[A-Za-z0-9_./-]+\.[A-Za-z0-9]+):(?P<line>\d+) (?P<symbol>.+)$")
INLINE_CODE_RE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
MARKER_RE = re.compile(r"^\s*<!--\s*(?P<kind>snippet|excerpt):\s*(?P<path>[^#\s]+)#(?P<name>[\w.-]+)\s*-->\s*$")
FENCE_RE = re.compile(r"^\s*(```|~~~)")
LINK_RE = re.compile(r"\[[^\]]*\]\((?P<target>[^)\s]+)\)")


class Checker:
    def __init__(self, root):
        self.root = os.path.abspath(root)
        self.problems = []
        self.fixes = {}  # doc path -> list of (old text, new text)
        self._lines_cache = {}
        self._example_sources = None

    # ---- helpers ----
    def problem(self, doc, lineno, msg):
        self.problems.append(f"{os.path.relpath(doc, self.root)}:{lineno}: {msg}")

    def lines_of(self, rel):
        if rel not in self._lines_cache:
            with open(os.path.join(self.root, rel), encoding="utf-8", errors="replace") as f:
                self._lines_cache[rel] = f.read().split("\n")
        return self._lines_cache[rel]

    def example_sources(self):
        """Source files (relative to ROOT) of examples that an add_test() runs."""
        if self._example_sources is not None:
            return self._example_sources
        self._example_sources = set()
        cml = os.path.join(self.root, "examples", "CMakeLists.txt")
        if not os.path.isfile(cml):
            return self._example_sources
        with open(cml, encoding="utf-8") as f:
            text = re.sub(r"#[^\n]*", "", f.read())  # comments out
        tested = " ".join(m.group(1) for m in re.finditer(r"add_test\s*\(([^)]*)\)", text))
        tested_words = set(re.findall(r"[\w.$<>:-]+", tested))
        for m in re.finditer(r"add_executable\s*\(\s*([\w.-]+)([^)]*)\)", text):
            target, sources = m.group(1), m.group(2).split()
            runs = target in tested_words or f"$<TARGET_FILE:{target}>" in tested_words
            if runs:
                for s in sources:
                    self._example_sources.add(os.path.normpath(os.path.join("examples", s)))
        return self._example_sources

    # ---- the three checks ----
    def check_reference(self, doc, lineno, ref, m):
        path, line, symbol = m.group("path"), int(m.group("line")), m.group("symbol")
        full = os.path.join(self.root, path)
        if not os.path.isfile(full):
            self.problem(doc, lineno, f"`{ref}`: file {path} does not exist")
            return
        lines = self.lines_of(path)
        if 1 <= line <= len(lines) and symbol in lines[line - 1]:
            return
        now = lines[line - 1].strip() if 1 <= line <= len(lines) else f"(past the end: {len(lines)} lines)"
        hits = [i + 1 for i, text in enumerate(lines) if symbol in text]
        if len(hits) == 1:
            where = f"; `{symbol}` is now on line {hits[0]}"
            self.fixes.setdefault(doc, []).append((f"`{ref}`", f"`{path}:{hits[0]} {symbol}`"))
        elif hits:
            where = f"; `{symbol}` occurs on lines {', '.join(map(str, hits[:8]))}"
        else:
            where = f"; `{symbol}` no longer occurs in {path}"
        self.problem(doc, lineno, f"`{ref}`: line {line} of {path} does not contain `{symbol}`, it holds: {now!r}{where}")

    def region(self, path, name):
        """Lines between `// [name]` and `// [/name]`, or an error string."""
        lines = self.lines_of(path)
        open_re = re.compile(r"^\s*//\s*\[" + re.escape(name) + r"\]\s*$")
        close_re = re.compile(r"^\s*//\s*\[/" + re.escape(name) + r"\]\s*$")
        starts = [i for i, l in enumerate(lines) if open_re.match(l)]
        ends = [i for i, l in enumerate(lines) if close_re.match(l)]
        if len(starts) != 1 or len(ends) != 1:
            return None, f"{path} has {len(starts)} `// [{name}]` and {len(ends)} `// [/{name}]` markers, expected one of each"
        if ends[0] <= starts[0]:
            return None, f"{path}: `// [/{name}]` comes before `// [{name}]`"
        return lines[starts[0] + 1 : ends[0]], None

    @staticmethod
    def normalise(lines):
        text = textwrap.dedent("\n".join(l.rstrip() for l in lines))
        return text.strip("\n").split("\n")

    def check_quote(self, doc, lineno, kind, path, name, block):
        where = f"<!-- {kind}: {path}#{name} -->"
        if not os.path.isfile(os.path.join(self.root, path)):
            self.problem(doc, lineno, f"{where}: file {path} does not exist")
            return
        if kind == "snippet" and os.path.normpath(path) not in self.example_sources():
            self.problem(doc, lineno, f"{where}: {path} is not an example that examples/CMakeLists.txt builds "
                                      "and runs with add_test (use `excerpt:` for library code)")
        want, err = self.region(path, name)
        if err:
            self.problem(doc, lineno, f"{where}: {err}")
            return
        if block is None:
            self.problem(doc, lineno, f"{where}: not followed by a fenced code block")
            return
        a, b = self.normalise(block), self.normalise(want)
        if a != b:
            for i in range(max(len(a), len(b))):
                da = a[i] if i < len(a) else "(nothing)"
                db = b[i] if i < len(b) else "(nothing)"
                if da != db:
                    break
            self.problem(doc, lineno, f"{where}: the quoted block differs from {path}#{name} at its line {i + 1}: "
                                      f"doc has {da.strip()!r}, file has {db.strip()!r}")

    def check_link(self, doc, lineno, target):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            return  # a URL or an anchor in this page
        path = target.split("#")[0]
        if not path:
            return
        full = os.path.normpath(os.path.join(os.path.dirname(doc), path))
        if not os.path.exists(full):
            self.problem(doc, lineno, f"link ({target}) points at {os.path.relpath(full, self.root)}, which does not exist")

    def check_doc(self, doc):
        with open(doc, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        pending = None  # (lineno, kind, path, name) of a marker waiting for its block
        while i < len(lines):
            line = lines[i]
            if FENCE_RE.match(line):
                fence = FENCE_RE.match(line).group(1)
                j = i + 1
                while j < len(lines) and not lines[j].strip().startswith(fence):
                    j += 1
                if j == len(lines):
                    self.problem(doc, i + 1, "code block is never closed")
                if pending:
                    self.check_quote(doc, pending[0], pending[1], pending[2], pending[3], lines[i + 1 : j])
                    pending = None
                i = j + 1
                continue
            if pending and line.strip():
                self.check_quote(doc, pending[0], pending[1], pending[2], pending[3], None)
                pending = None
            m = MARKER_RE.match(line)
            if m:
                pending = (i + 1, m.group("kind"), m.group("path"), m.group("name"))
                i += 1
                continue
            for code in INLINE_CODE_RE.findall(line):
                rm = REF_RE.match(code.strip())
                if rm:
                    self.check_reference(doc, i + 1, code.strip(), rm)
            for lm in LINK_RE.finditer(line):
                self.check_link(doc, i + 1, lm.group("target"))
            i += 1
        if pending:
            self.check_quote(doc, pending[0], pending[1], pending[2], pending[3], None)

    def run(self, fix=False):
        docs_dir = os.path.join(self.root, "docs", "internals")
        if not os.path.isdir(docs_dir):
            self.problems.append(f"{os.path.relpath(docs_dir, self.root)}: no such folder")
            return
        docs = sorted(os.path.join(d, f) for d, _, fs in os.walk(docs_dir) for f in fs if f.endswith(".md"))
        if not docs:
            self.problems.append(f"{os.path.relpath(docs_dir, self.root)}: no .md files")
        for doc in docs:
            self.check_doc(doc)
        if fix:
            for doc, pairs in self.fixes.items():
                with open(doc, encoding="utf-8") as f:
                    text = f.read()
                for old, new in pairs:
                    text = text.replace(old, new)
                with open(doc, "w", encoding="utf-8") as f:
                    f.write(text)
                print(f"fixed {len(pairs)} reference(s) in {os.path.relpath(doc, self.root)}")


def main(argv):
    args = [a for a in argv if not a.startswith("--")]
    fix = "--fix" in argv
    root = args[0] if args else os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    checker = Checker(root)
    checker.run(fix=fix)
    for p in checker.problems:
        print(p)
    if checker.problems:
        print(f"check_docs: {len(checker.problems)} problem(s) in docs/internals/")
        if checker.fixes and not fix:
            n = sum(len(v) for v in checker.fixes.values())
            print(f"check_docs: {n} moved reference(s) can be rewritten: python3 scripts/check_docs.py --fix")
        return 1
    print("check_docs: docs/internals/ matches the code")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
