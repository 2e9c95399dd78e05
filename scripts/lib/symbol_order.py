"""Writes the functions of an executable that ran in a callgrind profile,
by instructions executed in each (its own, not its callees'), hottest first.

Usage: symbol_order.py PROFILE EXECUTABLE > symbol-order.txt

The profile must be recorded with --demangle=no: the linker matches the
list against symbol names as they are in the executable.
"""

import collections
import os
import re
import sys

# Callgrind writes a name in full once, as "(id) name", and as "(id)" after.
COMPRESSED = re.compile(r"\((\d+)\)(?: (.*))?$")
# Callgrind marks a recursive activation of a function with "'depth".
RECURSION = re.compile(r"'\d+$")
# A symbol's name, as the linker matches it; callgrind's pseudo-functions
# ("(below main)", and a bare address for code without a symbol) are not.
SYMBOL = re.compile(r"[A-Za-z_.$][A-Za-z0-9_.$]*$")


def self_costs(path):
    """Instructions executed in each function, by (object, function)."""
    tables = collections.defaultdict(dict)
    kinds = {"ob": "ob", "cob": "ob", "fn": "fn", "cfn": "fn",
             "fl": "fl", "fi": "fl", "fe": "fl", "cfi": "fl", "cfl": "fl"}

    def name(kind, value):
        match = COMPRESSED.match(value)
        if not match:
            return value
        table = tables[kinds[kind]]
        if match.group(2) is not None:
            table[match.group(1)] = match.group(2)
        return table.get(match.group(1), "?")

    costs = collections.Counter()
    obj = fn = None
    after_calls = False
    with open(path, errors="replace") as profile:
        for line in profile:
            line = line.rstrip("\n")
            if not line:
                continue
            key, eq, value = line.partition("=")
            if eq and key in kinds:
                resolved = name(key, value)
                if key == "ob":
                    obj = resolved
                elif key == "fn":
                    fn = RECURSION.sub("", resolved)
                    costs[(obj, fn)] += 0
                continue
            if eq and key == "calls":
                # The cost line after a call is the callee's inclusive cost.
                after_calls = True
                continue
            if line[0] in "0123456789+-*":
                if after_calls:
                    after_calls = False
                    continue
                fields = line.split()
                if len(fields) >= 2 and fn is not None:
                    costs[(obj, fn)] += int(fields[1])
    return costs


def main():
    # Callgrind names an object by the real path it was mapped from.
    profile, executable = sys.argv[1], os.path.realpath(sys.argv[2])
    costs = collections.Counter()
    for (obj, fn), cost in self_costs(profile).items():
        if obj == executable and SYMBOL.match(fn):
            costs[fn] += cost
    print("# The functions `berth serve` executed under scripts/symbol-order.sh,")
    print("# by instructions executed in each, hottest first; the release build's")
    print("# linker lays them out in this order (crates/berth/build.rs).")
    for fn, _ in sorted(costs.items(), key=lambda item: (-item[1], item[0])):
        print(fn)


if __name__ == "__main__":
    main()
