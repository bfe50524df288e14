"""Checks the flags a consumer project's source got from ember (run_package_test.sh calls this).

    check_compile_commands.py COMPILE_COMMANDS_JSON CONSUMER_SOURCE [EMBER_SOURCE]

CONSUMER_SOURCE's command must ask for C++20 or later (ember::ember's compile feature) and carry
none of ember's private flags: warnings, -march=native, sanitizers. EMBER_SOURCE (optional; a file
of ember's own, present when ember was configured as a subdirectory) must still get -Wall, so the
check is known to see the flags. Prints the consumer's command and, on stdout's last line, its
object file; exits 1 naming every problem.
"""
import json
import os
import shlex
import sys

PRIVATE_PREFIXES = ("-march=", "-W", "-fsanitize", "-fno-sanitize", "-fno-omit-frame-pointer")
CXX20_OR_LATER = ("-std=c++20", "-std=gnu++20", "-std=c++2a", "-std=gnu++2a", "-std=c++23", "-std=gnu++23",
                  "-std=c++2b", "-std=gnu++2b")


def command_of(entries, source):
    source = os.path.realpath(source)
    for entry in entries:
        if os.path.realpath(os.path.join(entry["directory"], entry["file"])) == source:
            args = entry["arguments"] if "arguments" in entry else shlex.split(entry["command"])
            return entry, args
    sys.exit(f"check_compile_commands: {source} is not in the compile commands")


def main():
    path, consumer = sys.argv[1], sys.argv[2]
    ember_source = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else None
    with open(path) as f:
        entries = json.load(f)
    problems = []

    entry, args = command_of(entries, consumer)
    print(" ".join(args), file=sys.stderr)
    leaked = [a for a in args if a.startswith(PRIVATE_PREFIXES)]
    if leaked:
        problems.append(f"ember's private flags reached the consumer's main.cpp: {' '.join(leaked)}")
    if not any(a in CXX20_OR_LATER for a in args):
        problems.append("the consumer's main.cpp is not compiled as C++20 (ember::ember's cxx_std_20 did not arrive)")

    if ember_source:
        _, ember_args = command_of(entries, ember_source)
        if "-Wall" not in ember_args:
            problems.append(f"ember's own {ember_source} lost -Wall: the check would not see leaked flags either")

    for problem in problems:
        print("check_compile_commands: " + problem, file=sys.stderr)
    if problems:
        sys.exit(1)
    # The object file: the entry's "output" (CMake 3.20+ writes it for some generators), else -o.
    output = entry.get("output") or next((b for a, b in zip(args, args[1:]) if a == "-o"), "")
    print(output)


if __name__ == "__main__":
    main()
