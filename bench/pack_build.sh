#!/usr/bin/env bash
# Packs what the GPU machine needs of a build folder into DEST (default .carry/build, git-ignored):
# CMakeCache.txt, the CTest files and every executable, stripped; the whole build folder is far
# over the device machine's carry limit. Then: bench/device.sh .carry/build, carrying .carry.
#   bench/pack_build.sh [BUILD] [DEST]
set -euo pipefail
BUILD=${1:-build}
DEST=${2:-.carry/build}
rm -rf "$DEST"
mkdir -p "$DEST"
cp "$BUILD/CMakeCache.txt" "$DEST/"
cd "$BUILD"
find . -name CTestTestfile.cmake -not -path "*/CMakeFiles/*" | while read -r f; do
  mkdir -p "$OLDPWD/$DEST/$(dirname "$f")" && cp "$f" "$OLDPWD/$DEST/$f"
done
find . -type f -perm -u+x -not -path "*/CMakeFiles/*" -not -name "*.so*" -not -name "*.sh" \
  -not -name "*.py" | while read -r f; do
  mkdir -p "$OLDPWD/$DEST/$(dirname "$f")"
  strip --strip-unneeded -o "$OLDPWD/$DEST/$f" "$f" 2>/dev/null || cp "$f" "$OLDPWD/$DEST/$f"
done
cd "$OLDPWD"
# device.sh's sass stage renders its CUBINs with moejit_render (bench/sass_check.sh).
[[ -x $DEST/tests/golden/moejit_render ]] ||
  echo "pack_build: no tests/golden/moejit_render in $BUILD: build that target too, or the sass" \
    "stage fails" >&2
du -sh "$DEST"
