#!/usr/bin/env python3
"""Tests for scripts/check_docs.py: a tiny project in a temp dir, one good doc and docs with each
kind of mistake; the checker must pass the first and name every mistake in the others.

    python3 scripts/test_check_docs.py        # ctest: docs_check_selftest
"""
import os
import subprocess
import sys
import tempfile
import textwrap
import unittest

CHECKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "check_docs.py")

LIB = """\
// lib.cpp
int helper() { return 1; }

int add_one(int x) {
  // [body]
  return x + 1;
  // [/body]
}
"""

EXAMPLE = """\
int main() {
    // [hello]
    int answer = 42;
    return answer - 42;
    // [/hello]
}
"""

CMAKE = """\
add_executable(ex_good good.cpp)
add_test(NAME example.good COMMAND ex_good)
# add_test(NAME commented COMMAND ex_untested) is a comment, so it does not count
add_executable(ex_untested untested.cpp)
"""

GOOD_DOC = """\
# Good
`add_one` lives at `src/lib.cpp:4 int add_one` and [the library](../../src/lib.cpp) links.
Not a reference: `x + 1`, `a:b`.

<!-- snippet: examples/good.cpp#hello -->
```cpp
int answer = 42;
return answer - 42;
```

<!-- excerpt: src/lib.cpp#body -->
```cpp
  return x + 1;
```

```cpp
// a fenced block without a marker is not checked: `src/lib.cpp:1 not checked here`
```
"""


def write(root, rel, text):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


class CheckDocsTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.root = self.tmp.name
        write(self.root, "src/lib.cpp", LIB)
        write(self.root, "examples/good.cpp", EXAMPLE)
        write(self.root, "examples/untested.cpp", EXAMPLE)
        write(self.root, "examples/CMakeLists.txt", CMAKE)

    def tearDown(self):
        self.tmp.cleanup()

    def run_checker(self, *extra):
        p = subprocess.run([sys.executable, CHECKER, self.root, *extra], capture_output=True, text=True)
        return p.returncode, p.stdout

    def test_good_doc_passes(self):
        write(self.root, "docs/internals/good.md", GOOD_DOC)
        rc, out = self.run_checker()
        self.assertEqual(rc, 0, out)
        self.assertIn("matches the code", out)

    def test_missing_folder_fails(self):
        rc, out = self.run_checker()
        self.assertEqual(rc, 1)
        self.assertIn("docs/internals: no such folder", out)

    def test_each_mistake_is_named(self):
        bad = textwrap.dedent("""\
            # Bad
            Stale: `src/lib.cpp:2 int add_one`.
            Gone: `src/nothing.cpp:1 foo`.
            Vanished symbol: `src/lib.cpp:1 int subtract`.
            Broken [link](../../src/missing.h).

            <!-- snippet: examples/good.cpp#hello -->
            ```cpp
            int answer = 41;
            return answer - 42;
            ```

            <!-- snippet: examples/untested.cpp#hello -->
            ```cpp
            int answer = 42;
            return answer - 42;
            ```

            <!-- excerpt: src/lib.cpp#nosuchname -->
            ```cpp
            return x + 1;
            ```

            <!-- excerpt: src/lib.cpp#body -->
            Prose where the block should be.
            """)
        write(self.root, "docs/internals/bad.md", bad)
        rc, out = self.run_checker()
        self.assertEqual(rc, 1, out)
        lines = out.strip().split("\n")
        expected = [
            ("bad.md:2: `src/lib.cpp:2 int add_one`: line 2 of src/lib.cpp does not contain `int add_one`",
             "`int add_one` is now on line 4"),
            ("bad.md:3: `src/nothing.cpp:1 foo`: file src/nothing.cpp does not exist", ""),
            ("bad.md:4: `src/lib.cpp:1 int subtract`", "no longer occurs in src/lib.cpp"),
            ("bad.md:5: link (../../src/missing.h) points at src/missing.h", "does not exist"),
            ("bad.md:7: <!-- snippet: examples/good.cpp#hello -->: the quoted block differs",
             "doc has 'int answer = 41;', file has 'int answer = 42;'"),
            ("bad.md:13: <!-- snippet: examples/untested.cpp#hello -->", "not an example that examples/CMakeLists.txt"),
            ("bad.md:19: <!-- excerpt: src/lib.cpp#nosuchname -->", "0 `// [nosuchname]`"),
            ("bad.md:24: <!-- excerpt: src/lib.cpp#body -->", "not followed by a fenced code block"),
        ]
        for start, also in expected:
            hits = [l for l in lines if start in l and also in l]
            self.assertEqual(len(hits), 1, f"expected one line with {start!r} and {also!r} in:\n{out}")
        self.assertIn("check_docs: 8 problem(s)", out)

    def test_fix_rewrites_a_moved_reference(self):
        write(self.root, "docs/internals/moved.md", "See `src/lib.cpp:2 int add_one`.\n")
        rc, out = self.run_checker("--fix")
        self.assertEqual(rc, 1, out)  # the run that fixes still reports what was wrong
        with open(os.path.join(self.root, "docs/internals/moved.md")) as f:
            self.assertEqual(f.read(), "See `src/lib.cpp:4 int add_one`.\n")
        rc, out = self.run_checker()
        self.assertEqual(rc, 0, out)


if __name__ == "__main__":
    unittest.main()
