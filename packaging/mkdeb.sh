#!/usr/bin/env bash
# make deb: builds out/vtpmboot_VERSION_amd64.deb with Debian's tooling
# (dpkg-buildpackage, debhelper) from a copy of the working tree, then runs
# lintian on it (errors fail). Reproducible: the version and every
# timestamp (SOURCE_DATE_EPOCH, from the changelog entry) come from the
# commit, so one commit and one Go give the same .deb.
#   version: debian/changelog's (the next release) when HEAD is tagged
#   v<that version>, else <that version>~git<commit time>.<hash>, with
#   .dirty for uncommitted changes (then not reproducible, and it says so).
# Go: the go on PATH, which must be at least go.mod's (README, "Install").
# Build dependencies (debian/control) are installed with apt-get if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need=$(awk '$1 == "go" {print $2; exit}' go.mod)
have=$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//') || true
if [ -z "$have" ] || [ "$(printf '%s\n%s\n' "$need" "$have" | sort -V | head -1)" != "$need" ]; then
  echo "mkdeb: need Go >= $need on PATH (have: ${have:-none}; Debian 12's golang-go is 1.19): see README, Install" >&2
  exit 1
fi

if ! dpkg-checkbuilddeps debian/control >/dev/null 2>&1 || ! command -v lintian >/dev/null; then
  echo "mkdeb: installing build dependencies (debian/control) and lintian" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get build-dep -y -q --no-install-recommends "$root" >/dev/null
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends lintian >/dev/null
fi

base=$(dpkg-parsechangelog -l debian/changelog -SVersion)
hash=$(git rev-parse HEAD)
epoch=$(git log -1 --format=%ct HEAD)
dirty=""
[ -z "$(git status --porcelain --untracked-files=normal)" ] || dirty=.dirty
if [ -z "$dirty" ] && [ "$(git tag --points-at HEAD | grep -Fx "v$base" || true)" = "v$base" ]; then
  version=$base
else
  version="$base~git$(TZ=UTC date -d "@$epoch" +%Y%m%d%H%M%S).${hash:0:12}$dirty"
fi

build=.cache/deb
rm -rf "$build"
src="$build/vtpmboot-$version"
mkdir -p "$src" out
# The working tree as git sees it (tracked and new files, nothing ignored):
# no .cache, out or .git in the package's source.
git ls-files -z --cached --others --exclude-standard | while IFS= read -r -d '' f; do
  [ -e "$f" ] && printf '%s\0' "$f"
done | tar --null -T - -cf - | tar -xf - -C "$src"
{
  printf 'vtpmboot (%s) unstable; urgency=medium\n\n' "$version"
  if [ -n "$dirty" ]; then
    printf '  * Built from git commit %s,\n    with uncommitted changes.\n\n' "$hash"
  else
    printf '  * Built from git commit %s.\n\n' "$hash"
  fi
  printf ' -- %s  %s\n\n' "$(dpkg-parsechangelog -l debian/changelog -SMaintainer)" \
    "$(LC_ALL=C TZ=UTC date -R -d "@$epoch")"
  cat debian/changelog
} >"$src/debian/changelog"

echo "mkdeb: building vtpmboot $version with $(go version)" >&2
(
  cd "$src"
  GOCACHE=$(go env GOCACHE) GOMODCACHE=$(go env GOMODCACHE) \
    dpkg-buildpackage -b -uc -us --no-sign >"$root/$build/build.log" 2>&1
) || { tail -40 "$build/build.log" >&2; echo "mkdeb: dpkg-buildpackage failed; log in $build/build.log" >&2; exit 1; }
deb="vtpmboot_${version}_amd64.deb"
rm -f out/vtpmboot_*_amd64.deb
cp "$build/$deb" out/
echo "mkdeb: lintian out/$deb" >&2
lintian --fail-on error --suppress-tags-from-file /dev/null "out/$deb" >&2
echo "out/$deb"
