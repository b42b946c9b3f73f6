#!/usr/bin/env bash
# Builds the Python binding in place: the C++ library (target limuon_lib in BUILD_DIR, default
# build), then the extension python/limuon/_C*.so compiled against the PyTorch that PYTHON
# (default /usr/bin/python3, Debian's python3-torch) imports. Use it with
#   PYTHONPATH=python /usr/bin/python3 -c "import limuon"
# Environment: BUILD_DIR, PYTHON, CXX, JOBS, FORCE=1 (rebuild the extension even if up to date),
# EXTRA_CXXFLAGS (e.g. sanitizer flags), PYTHON_PRELOAD (LD_PRELOAD for the import check).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR=${BUILD_DIR:-build}
PYTHON=${PYTHON:-/usr/bin/python3}
CXX=${CXX:-c++}

# Everything about the target torch comes from the interpreter itself, so the same script works
# for Debian's torch 1.13 and for a pip-installed torch 2.x.
read_torch() {
  "$PYTHON" - "$@" <<'EOF'
import os, sys, sysconfig
import torch
from torch.utils import cpp_extension as ce
what = sys.argv[1]
if what == "prefix":
    p = getattr(torch.utils, "cmake_prefix_path", "")
    print(p if p and os.path.isdir(p) else "")
elif what == "cflags":
    # -isystem: warnings in torch/pybind11 headers are not ours to fix
    flags = ["-isystem" + p for p in ce.include_paths()]
    flags.append("-isystem" + sysconfig.get_paths()["include"])
    try:
        import pybind11
        flags.append("-isystem" + pybind11.get_include())
    except ImportError:
        pass  # Debian's pybind11-dev lives in /usr/include
    flags.append("-D_GLIBCXX_USE_CXX11_ABI=%d" % int(torch._C._GLIBCXX_USE_CXX11_ABI))
    # Same pybind11 ABI tags as torch, so the two modules agree on shared pybind11 internals.
    for name in ("COMPILER_TYPE", "STDLIB", "BUILD_ABI"):
        val = getattr(torch._C, "_PYBIND11_" + name, None)
        if val is not None:
            flags.append('-DPYBIND11_%s="%s"' % (name, val))
    print(" ".join(flags))
elif what == "libdir":
    print(ce.library_paths()[0])
elif what == "suffix":
    print(sysconfig.get_config_var("EXT_SUFFIX"))
EOF
}

# 1. The C++ core, built against the same LibTorch as the Python torch.
if [ ! -f "$BUILD_DIR/CMakeCache.txt" ]; then
  prefix=$(read_torch prefix 2>/dev/null)
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    ${prefix:+-DCMAKE_PREFIX_PATH="$prefix"} ${CMAKE_ARGS:-} > "$BUILD_DIR.configure.log" 2>&1 || {
    cat "$BUILD_DIR.configure.log"; exit 1; }
fi
cmake --build "$BUILD_DIR" --target limuon_lib -j "${JOBS:-2}"
LIB="$BUILD_DIR/liblimuon.a"
[ -f "$LIB" ] || { echo "build_python.sh: $LIB was not produced" >&2; exit 1; }

# orth.cpp calls BLAS ?syrk/?symm directly when the build found a BLAS: link the same one.
BLAS=""
if grep -q '^LIMUON_USE_BLAS_SYRK:BOOL=ON' "$BUILD_DIR/CMakeCache.txt"; then
  BLAS=$(sed -n 's/^LIMUON_BLAS_LIB:FILEPATH=//p' "$BUILD_DIR/CMakeCache.txt")
fi

# 2. The extension, skipped when newer than everything it is made from.
SUFFIX=$(read_torch suffix 2>/dev/null)
OUT="python/limuon/_C$SUFFIX"
SRC=python/limuon_ext.cpp
stale=1
if [ -z "${FORCE:-}" ] && [ -f "$OUT" ]; then
  stale=0
  for dep in "$SRC" "$LIB" include/limuon/*.h; do
    [ "$dep" -nt "$OUT" ] && stale=1
  done
fi
if [ "$stale" = 1 ]; then
  CFLAGS=$(read_torch cflags 2>/dev/null)
  LIBDIR=$(read_torch libdir 2>/dev/null)
  echo "build_python.sh: compiling $OUT"
  # shellcheck disable=SC2086  # CFLAGS is a list of flags
  "$CXX" -O2 ${EXTRA_CXXFLAGS:-} -std=c++17 -fPIC -shared -fvisibility=hidden -Wall -Wextra -Wno-unused-parameter \
    -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H \
    -I"$ROOT/include" $CFLAGS \
    "$SRC" -o "$OUT.tmp" \
    "$LIB" -L"$LIBDIR" -Wl,-rpath,"$LIBDIR" \
    -ltorch -ltorch_cpu -lc10 -ltorch_python ${BLAS:+"$BLAS"}
  mv "$OUT.tmp" "$OUT"
fi

# 3. Smoke test: the module loads and sees the same torch.
PYTHONPATH="$ROOT/python${PYTHONPATH:+:$PYTHONPATH}" LD_PRELOAD="${PYTHON_PRELOAD:-}" "$PYTHON" -c \
  "import limuon, torch; print('limuon', limuon.__version__, 'on torch', torch.__version__, '->', limuon._C.__file__)"
