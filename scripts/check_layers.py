#!/usr/bin/env python3
"""Checks that each folder library includes only headers of the folders it
depends on (directly or through another), as CMakeLists.txt declares them.

usage: check_layers.py <source root> <layers.txt written by CMake>
Each line of layers.txt reads `folder: dep dep ...`. Exits 1 and names every
offending include when one crosses the layering.
"""
import pathlib
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([a-z_]+)/[^"]+"', re.M)


def read_layers(path):
    deps = {}
    for line in pathlib.Path(path).read_text().splitlines():
        if ':' in line:
            folder, rest = line.split(':', 1)
            deps[folder.strip()] = rest.split()
    return deps


def closure(deps, folder, seen=None):
    seen = set() if seen is None else seen
    for dep in deps.get(folder, []):
        if dep not in seen:
            seen.add(dep)
            closure(deps, dep, seen)
    return seen


def main():
    root, layers = pathlib.Path(sys.argv[1]), read_layers(sys.argv[2])
    if not layers:
        print('no layers recorded in', sys.argv[2])
        return 1
    bad = []
    for folder in layers:
        allowed = closure(layers, folder) | {folder}
        for source in sorted((root / folder).glob('*.[ch]pp')):
            for target in INCLUDE.findall(source.read_text()):
                if target in layers and target not in allowed:
                    bad.append(f'{source.relative_to(root)} includes {target}/'
                               f' (allowed: {", ".join(sorted(allowed))})')
    for line in bad:
        print(line)
    print(f'{len(layers)} folders checked, {len(bad)} includes cross the layering')
    return 1 if bad else 0


if __name__ == '__main__':
    sys.exit(main())
