#!/usr/bin/env python3
"""The layer rules of docs/architecture.md, checked on the sources: every quoted #include and every
target_link_libraries() line is an edge from one folder (component) to another, and

  plugins/*, sdk/examples/*  ->  sdk/include only (the ABI and the plugin author's C++ layer)
  sdk/include                ->  nothing of ours
  sdk/*                      ->  sdk/* only (no LibTorch, nothing of the host)
  libraries                  ->  sdk/* and other libraries, never the application layer (framework/app)
  no folder-level cycle among the components.

Exit status 0 when every rule holds, 1 with one line per violation otherwise.
  check_layers.py [--root DIR]     check a source tree (default: this repository)
  check_layers.py --self-test      build small trees with one violation each and check that each is caught
"""
import argparse
import os
import re
import sys
import tempfile

SOURCE_EXT = (".c", ".cc", ".cpp", ".h", ".hpp")
SKIP_DIRS = {".git", "build", "node_modules"}

# Layers, lowest first. "plugin" sits beside them: it may use only sdk/include.
SDK_ABI, SDK, LIBRARY, APP, PLUGIN, TOOLING = "sdk/include", "sdk", "library", "application", "plugin", "tooling"


def component_of(path):
    """(component, layer) of a repository-relative path, or None for files outside the rules."""
    parts = path.split("/")
    top = parts[0]
    if top == "sdk":
        if len(parts) > 1 and parts[1] == "include":
            return "sdk/include", SDK_ABI
        if len(parts) > 2 and parts[1] == "examples":
            return "sdk/examples/" + parts[2], PLUGIN
        if len(parts) > 2:
            return "sdk/" + parts[1], SDK
        return "sdk", SDK
    if top == "plugins":
        return "plugins/" + (parts[1] if len(parts) > 2 else ""), PLUGIN
    if top == "framework":
        if len(parts) > 1 and parts[1] == "app":
            return "framework/app/" + (parts[2] if len(parts) > 3 else ""), APP
        if len(parts) > 3 and parts[1] == "include" and parts[2] == "prefdiff":
            # framework/include/prefdiff/<x>/... mirrors framework/src/<x>/; a header alone is its own component
            name = parts[3] if len(parts) > 4 else os.path.splitext(parts[3])[0]
            return "framework/" + name, LIBRARY
        if len(parts) > 2 and parts[1] == "src":
            return "framework/" + (parts[2] if len(parts) > 3 else os.path.splitext(parts[2])[0]), LIBRARY
        return "framework", LIBRARY
    if top in ("backbones", "datasets", "media") and len(parts) > 2:
        return top + "/" + parts[1], LIBRARY
    if top in ("tests", "bench"):
        return top, TOOLING
    return None


def allowed(src, dst):
    """Why the edge src -> dst breaks a rule, or None. Both are (component, layer)."""
    (a, la), (b, lb) = src, dst
    if a == b or la == TOOLING:
        return None
    if lb == TOOLING:
        return "%s must not depend on %s (tests and benchmarks sit above everything)" % (a, b)
    if la == PLUGIN and b != "sdk/include":
        return "plugin %s may use only sdk/include (the ABI), not %s" % (a, b)
    if la == SDK_ABI:
        return "sdk/include depends on nothing of ours, not on %s" % b
    if la == SDK and lb not in (SDK_ABI, SDK):
        return "%s is part of the SDK and may use only sdk/, not %s" % (a, b)
    if la == LIBRARY and lb == APP:
        return "library %s must not use the application layer (%s)" % (a, b)
    if lb == PLUGIN:
        return "%s must not use plugin %s (plugins meet the host only at the ABI)" % (a, b)
    return None


def walk(root):
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and not d.startswith("build"))
        for name in sorted(files):
            yield os.path.relpath(os.path.join(directory, name), root).replace(os.sep, "/")


def header_index(files):
    """Include name ("prefdiff/run/metrics.hpp") -> repository paths that provide it."""
    index = {}
    for path in files:
        if not path.endswith((".h", ".hpp")):
            continue
        parts = path.split("/")
        for i in range(len(parts) - 1):
            if parts[i] == "include":
                index.setdefault("/".join(parts[i + 1:]), []).append(path)
    return index


INCLUDE = re.compile(r'^\s*#\s*include\s*[<"]([^>"]+)[>"]', re.M)


def include_edges(root, files, index):
    """(file, line, target path) for every #include that resolves to a file of this tree."""
    edges = []
    for path in files:
        if not path.endswith(SOURCE_EXT):
            continue
        with open(os.path.join(root, path), encoding="utf-8", errors="replace") as f:
            text = f.read()
        for match in INCLUDE.finditer(text):
            name = match.group(1)
            line = text.count("\n", 0, match.start()) + 1
            local = os.path.normpath(os.path.join(os.path.dirname(path), name)).replace(os.sep, "/")
            if os.path.isfile(os.path.join(root, local)):
                edges.append((path, line, local))
            elif name in index:
                # Several providers of one name: prefer one in the including file's component.
                own = component_of(path)
                candidates = index[name]
                chosen = next((c for c in candidates if component_of(c) == own), candidates[0])
                edges.append((path, line, chosen))
    return edges


TARGET_DEF = re.compile(r'\b(?:add_library|add_executable|prefdiff_add_plugin|test_plugin)\s*\(\s*([A-Za-z0-9_.:-]+)')
ALIAS = re.compile(r'\badd_library\s*\(\s*([A-Za-z0-9_.:-]+)\s+ALIAS\s+([A-Za-z0-9_.:-]+)')
LINK = re.compile(r'\btarget_link_libraries\s*\(\s*([A-Za-z0-9_.:-]+)([^)]*)\)', re.S)
NAME = re.compile(r'[A-Za-z0-9_]+(?:::[A-Za-z0-9_]+)?')


def link_edges(root, files):
    """(CMakeLists path, line, from target, to target) and the component of every target defined here."""
    owners, aliases, links = {}, {}, []
    for path in files:
        if not path.endswith("CMakeLists.txt"):
            continue
        with open(os.path.join(root, path), encoding="utf-8") as f:
            text = re.sub(r"#[^\n]*", "", f.read())
        folder = os.path.dirname(path)
        for match in ALIAS.finditer(text):
            aliases[match.group(1)] = match.group(2)
        for match in TARGET_DEF.finditer(text):
            if match.group(1) not in aliases:
                owners.setdefault(match.group(1), folder + "/")
        for match in LINK.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            for name in NAME.findall(match.group(2)):
                links.append((path, line, match.group(1), name))
    edges = []
    for path, line, source, target in links:
        target = aliases.get(target, target)
        if source in owners and target in owners:
            edges.append((path, line, owners[source], owners[target], source, target))
    return edges


def find_cycle(graph):
    """One cycle of the component graph as a list of components, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def check(root):
    files = list(walk(root))
    index = header_index(files)
    problems, graph = [], {}
    for path, line, target in include_edges(root, files, index):
        src, dst = component_of(path), component_of(target)
        if src is None or dst is None:
            continue
        why = allowed(src, dst)
        if why:
            problems.append("%s:%d: includes %s: %s" % (path, line, target, why))
        if src[0] != dst[0] and TOOLING not in (src[1], dst[1]):
            graph.setdefault(src[0], set()).add(dst[0])
    for path, line, src_dir, dst_dir, source, target in link_edges(root, files):
        src, dst = component_of(src_dir + "x.cpp"), component_of(dst_dir + "x.cpp")
        if src is None or dst is None:
            continue
        why = allowed(src, dst)
        if why:
            problems.append("%s:%d: %s links %s: %s" % (path, line, source, target, why))
        if src[0] != dst[0] and TOOLING not in (src[1], dst[1]):
            graph.setdefault(src[0], set()).add(dst[0])
    cycle = find_cycle(graph)
    if cycle:
        problems.append("folder-level import cycle: " + " -> ".join(cycle))
    return problems, graph


def self_test():
    """Each tree holds exactly one kind of violation; the check must report it (and pass a clean tree)."""
    base = {
        "sdk/include/prefdiff/abi.h": "",
        "sdk/instance/include/prefdiff/instance/library.hpp": '#include "prefdiff/abi.h"\n',
        "framework/include/prefdiff/run/metrics.hpp": '#include "prefdiff/instance/library.hpp"\n',
        "framework/src/run/metrics.cpp": '#include "prefdiff/run/metrics.hpp"\n',
        "framework/app/sweep/include/prefdiff/sweep/sweep.hpp": '#include "prefdiff/run/metrics.hpp"\n',
        "plugins/objectives/dpo.cpp": '#include "prefdiff/abi.h"\n',
    }
    cases = {
        "clean": ({}, None),
        "library imports the application layer": (
            {"framework/src/run/report.cpp": '#include "prefdiff/sweep/sweep.hpp"\n'}, "must not use the application layer"),
        "plugin imports the host": (
            {"plugins/objectives/cdpo.cpp": '#include "prefdiff/run/metrics.hpp"\n'}, "may use only sdk/include"),
        "sdk imports the host": (
            {"sdk/instance/src/x.cpp": '#include "prefdiff/run/metrics.hpp"\n'}, "may use only sdk/"),
        "folder cycle": (
            {"framework/include/prefdiff/optim/adam.hpp": '#include "prefdiff/run/metrics.hpp"\n',
             "framework/src/run/ckpt.cpp": '#include "prefdiff/optim/adam.hpp"\n'}, "folder-level import cycle"),
        "link line": (
            {"framework/src/run/CMakeLists.txt": "add_library(prefdiff_run STATIC metrics.cpp)\n"
                                                 "target_link_libraries(prefdiff_run PRIVATE prefdiff_sweep)\n",
             "framework/app/sweep/CMakeLists.txt": "add_library(prefdiff_sweep STATIC s.cpp)\n"},
            "links prefdiff_sweep"),
    }
    failures = 0
    for name, (extra, expected) in cases.items():
        with tempfile.TemporaryDirectory() as root:
            for rel, text in {**base, **extra}.items():
                os.makedirs(os.path.dirname(os.path.join(root, rel)), exist_ok=True)
                with open(os.path.join(root, rel), "w") as f:
                    f.write(text)
            problems, _ = check(root)
            ok = (not problems) if expected is None else any(expected in p for p in problems)
            print("%s %s%s" % ("ok  " if ok else "FAIL", name, "" if ok else ": got %s" % problems))
            failures += 0 if ok else 1
    return failures


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    parser.add_argument("--self-test", action="store_true")
    parser.add_argument("--graph", action="store_true", help="print the component graph")
    args = parser.parse_args()
    if args.self_test:
        return 1 if self_test() else 0
    problems, graph = check(os.path.abspath(args.root))
    if args.graph:
        for node in sorted(graph):
            print("%s -> %s" % (node, ", ".join(sorted(graph[node]))))
    for p in problems:
        print(p)
    if problems:
        print("%d layer violation(s); see docs/architecture.md, 'Layers'" % len(problems))
        return 1
    print("layers: %d components, no violation, no cycle" % len(graph))
    return 0


if __name__ == "__main__":
    sys.exit(main())
