#!/usr/bin/env bash
# Copies the shared libraries of the moejit binaries that the GPU machine's image may lack (this
# machine's libfmt, libsqlite3, ...) into DEST (default .carry/lib, git-ignored); bench/device.sh puts
# that folder (its CARRY_LIB) first on LD_LIBRARY_PATH. Carry it along with the build folder.
#   bench/carry_libs.sh [BUILD] [DEST]    (default: build .carry/lib)
set -euo pipefail
BUILD=${1:-build}
DEST=${2:-.carry/lib}
mkdir -p "$DEST"
# The C/C++ runtimes come with every image (a newer one reads older binaries); libnvrtc and libcuda
# come with the machine's CUDA and driver.
ldd "$BUILD/bench/moejit_bench" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' |
  while read -r name path; do
    case $name in
      libc.so* | libm.so* | libstdc++* | libgcc_s* | libpthread* | librt* | libdl* | ld-linux*) ;;
      libnvrtc* | libcuda*) ;;
      *) cp -L "$path" "$DEST/$name" && echo "carried $name" ;;
    esac
  done
