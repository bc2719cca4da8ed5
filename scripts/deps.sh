#!/usr/bin/env bash
# Makes sure the system libraries swift-bnn needs are installed (Debian/Ubuntu):
#   libomp-dev      the OpenMP runtime the kernels link (libomp.so.5)
#   libopenblas-dev OpenBLAS, loaded at run time for float GEMM (libopenblas.so.0)
#   libjpeg62-turbo-dev, libpng-dev   JPEG (libjpeg-turbo) and PNG decoding for image-folder data (libjpeg.so, libpng.so)
#   openmpi-bin, libopenmpi-dev       Open MPI: mpirun and libmpi.so.40, which `bnn train` loads when mpirun starts it
#                                     (data-parallel training and its tests; nothing else needs MPI)
# Quiet and quick when all are present; otherwise installs them with apt-get (through sudo when not root).
#   --fuzz          also clang and libclang-rt-dev (libFuzzer and the sanitizer runtimes), for scripts/fuzz when
#                   the Swift toolchain's clang cannot link -fsanitize=fuzzer
set -euo pipefail

# Each package with the library file the build (libomp) or the loader (OpenBLAS) needs from it.
declare -A library=(
    [libopenblas-dev]=/usr/lib/x86_64-linux-gnu/libopenblas.so.0
    [libomp-dev]=/usr/lib/x86_64-linux-gnu/libomp.so.5
    [libjpeg62-turbo-dev]=/usr/lib/x86_64-linux-gnu/libjpeg.so
    [libpng-dev]=/usr/lib/x86_64-linux-gnu/libpng.so
    [openmpi-bin]=/usr/bin/mpirun
    [libopenmpi-dev]=/usr/lib/x86_64-linux-gnu/libmpi.so.40
)
packages=(libopenblas-dev libomp-dev libjpeg62-turbo-dev libpng-dev openmpi-bin libopenmpi-dev)
if [[ "${1:-}" == "--fuzz" ]]; then
    library[clang]=/usr/bin/clang
    library[libclang-rt-dev]=/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a
    packages+=(clang libclang-rt-dev)
fi

installed() {
    # A package counts as present when dpkg says so; without dpkg, when its library file exists.
    local package=$1 file=${library[$1]}
    if command -v dpkg-query >/dev/null 2>&1; then
        [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null || true)" == "install ok installed" ]]
    else
        [[ -e "$file" ]] || ldconfig -p 2>/dev/null | grep -q "${file##*/}"
    fi
}

missing=()
for package in "${packages[@]}"; do
    installed "$package" || missing+=("$package")
done
((${#missing[@]} == 0)) && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "deps: apt-get not found; install ${missing[*]} (or your system's OpenBLAS, LLVM OpenMP runtime, libjpeg-turbo and libpng development files, and Open MPI) by hand" >&2
    exit 1
fi

as_root=()
if [[ "$(id -u)" != 0 ]]; then
    if command -v sudo >/dev/null 2>&1; then
        as_root=(sudo)
    else
        echo "deps: ${missing[*]} missing, not running as root and sudo not found; run as root:" >&2
        echo "  apt-get update && apt-get install -y ${missing[*]}" >&2
        exit 1
    fi
fi

echo "deps: installing ${missing[*]}" >&2
# env rather than export: sudo would drop an exported variable.
apt=("${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get)
# A fresh machine often has no package lists yet, so refresh them before installing.
if ! "${apt[@]}" update -qq; then
    echo "deps: 'apt-get update' failed; check the network and /etc/apt/sources.list" >&2
    exit 1
fi
if ! "${apt[@]}" install -y -qq "${missing[@]}" >/dev/null; then
    echo "deps: 'apt-get install -y ${missing[*]}' failed" >&2
    exit 1
fi

for package in "${packages[@]}"; do
    if ! installed "$package"; then
        echo "deps: $package still not installed after apt-get" >&2
        exit 1
    fi
done
