#!/usr/bin/env bash
# Runs every native fuzz target in the module for the given time each
# (default 20s): `make fuzz FUZZTIME=5m` for a real session. Fuzz targets
# are seeded from testdata/ by their own packages; new crashers land in the
# package's testdata/fuzz/ and become regression tests. Minimizing is capped
# at 5s: with the 128 KiB disk-image seeds the default 60s minimization of
# each new input left FuzzImage doing ~100 execs in 2.5 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
t=${1:-20s}
fail=0
while IFS= read -r line; do
  file=${line%%:*}
  name=$(sed -E 's/^func (Fuzz[A-Za-z0-9_]*).*/\1/' <<<"${line#*:}")
  pkg=./$(dirname "$file")
  echo "== $pkg $name ($t)"
  if ! go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$t" -fuzzminimizetime 5s; then
    echo "FAIL: $pkg $name"; fail=1
  fi
done < <(grep -rE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/\.cache/' | sort)
exit $fail
