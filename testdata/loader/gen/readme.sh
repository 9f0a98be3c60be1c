#!/usr/bin/env bash
# Rewrites the case table of testdata/loader/*/README from each case's
# "source:" line (e2e/loader's TestCorpusDocumented checks they agree).
set -euo pipefail
cd "$(dirname "$0")/.."
for d in grub2 syslinux grub-legacy; do
  {
    sed '/^## Cases/,$d' "$d/README"
    echo "## Cases"
    echo
    for f in "$d"/*.case; do
      n=$(basename "$f" .case)
      s=$(sed -n 's/^source: //p' "$f" | head -1)
      echo "- $n: $s"
    done
  } > "$d/README.new"
  mv "$d/README.new" "$d/README"
done
