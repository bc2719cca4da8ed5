#!/usr/bin/env bash
# Builds every C example in this folder (one program per .c file, next to its source) with the system C
# compiler (cc) and linker: against the CKernels static library, or, for a program that includes
# bnn_inference.h, against the BNNInference static library (the C reader, the runtime and the kernels: the
# program needs OpenMP and libc at run time, no Swift runtime).
#   BNN_SCRATCH_PATH  SwiftPM build folder of the package, relative to the repository root (default .build)
#   CC                C compiler (default cc, else the Swift toolchain's clang)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
scratch="${BNN_SCRATCH_PATH:-.build}"
cc="${CC:-}"
if [[ -z "$cc" ]]; then
    if command -v cc >/dev/null 2>&1; then cc=cc; else cc=clang; fi
fi

cd "$root"
swift build --scratch-path "$scratch" --product CKernels
bin="$(swift build --scratch-path "$scratch" --product CKernels --show-bin-path)"
if [[ ! -f "$bin/libCKernels.a" ]]; then
    echo "build.sh: $bin/libCKernels.a not found after 'swift build --product CKernels'" >&2
    exit 1
fi

swift build --scratch-path "$scratch" --product BNNInference
if [[ ! -f "$bin/libBNNInference.a" ]]; then
    echo "build.sh: $bin/libBNNInference.a not found after 'swift build --product BNNInference'" >&2
    exit 1
fi

shopt -s nullglob
for source in "$here"/*.c; do
    program="${source%.c}"
    if grep -q '#include "bnn_inference.h"' "$source"; then
        # libomp.so.5 by file name: Debian's libomp-dev installs no unversioned libomp.so in the linker's path.
        "$cc" -std=c11 -O2 -Wall -Wextra -I "$root/Sources/BNNRuntime/include" "$source" -o "$program" \
            -L "$bin" -lBNNInference -l:libomp.so.5 -ldl -lm -lpthread
    else
        # libomp.so.5 by file name: Debian's libomp-dev installs no unversioned libomp.so in the linker's path.
        "$cc" -std=c11 -O2 -Wall -Wextra -I "$root/CKernels/include" "$source" -o "$program" \
            -L "$bin" -lCKernels -l:libomp.so.5 -ldl -lm
    fi
    echo "built ${program#"$root"/}"
done
