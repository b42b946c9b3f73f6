# How limuon finds LibTorch (>= LIMUON_TORCH_MIN_VERSION). Two sources, chosen by LIMUON_TORCH_SOURCE:
#
#  python  (default) The torch package that LIMUON_PYTHON imports, e.g. PyPI's wheel in the venv
#          scripts/setup.sh makes. Include and library paths come from torch.utils.cpp_extension, as
#          for a CppExtension, and become the imported target limuon::torch. This works for PyPI's
#          CUDA wheels on a machine without a CUDA toolkit, where the wheel's own TorchConfig.cmake
#          stops at configure time ("uses CUDA but I cannot find the CUDA libraries"). The CUDA
#          libraries are linked only when LIMUON_TORCH_CUDA is ON (default: when torch sees a GPU at
#          configure time); they need no toolkit, only the nvidia-* wheels torch already depends on.
#  package find_package(Torch): a LibTorch zip, a source build, or a CUDA wheel on a machine that has
#          the matching CUDA toolkit. Set CMAKE_PREFIX_PATH (or Torch_DIR) as usual.
#
# Either way this file sets TORCH_LIBRARIES, TORCH_INCLUDE_DIRS, LIMUON_TORCH_VERSION and
# LIMUON_TORCH_LIBDIR for the rest of the build, and refuses an older LibTorch by name.
set(LIMUON_TORCH_MIN_VERSION 2.9)
set(LIMUON_TORCH_SOURCE "python" CACHE STRING "Where LibTorch comes from: python (the torch LIMUON_PYTHON imports) or package (find_package(Torch))")
set_property(CACHE LIMUON_TORCH_SOURCE PROPERTY STRINGS python package)
if(SKBUILD AND Python_EXECUTABLE)
  set(_limuon_python_default "${Python_EXECUTABLE}")  # the interpreter pip runs
elseif(DEFINED ENV{LIMUON_PYTHON} AND NOT "$ENV{LIMUON_PYTHON}" STREQUAL "")
  set(_limuon_python_default "$ENV{LIMUON_PYTHON}")
else()
  find_program(_limuon_python_default NAMES python3 python)
endif()
set(LIMUON_PYTHON "${_limuon_python_default}" CACHE FILEPATH "Python interpreter whose torch limuon builds against")
if(SKBUILD AND Python_EXECUTABLE)
  # pip's interpreter always wins over what an earlier configure of the same build directory cached.
  set(LIMUON_PYTHON "${Python_EXECUTABLE}" CACHE FILEPATH "Python interpreter whose torch limuon builds against" FORCE)
endif()

if(LIMUON_TORCH_SOURCE STREQUAL "package")
  find_package(Torch REQUIRED)
  set(LIMUON_TORCH_VERSION "${Torch_VERSION}")
  get_filename_component(LIMUON_TORCH_LIBDIR "${TORCH_LIBRARY}" DIRECTORY)
  find_library(TORCH_PYTHON_LIBRARY torch_python PATHS "${LIMUON_TORCH_LIBDIR}" NO_DEFAULT_PATH)
elseif(LIMUON_TORCH_SOURCE STREQUAL "python")
  execute_process(
    COMMAND "${LIMUON_PYTHON}" -c [=[
import torch, torch.utils.cpp_extension as ce
print(torch.__version__.split('+')[0])
print('|'.join(ce.include_paths()))
print(ce.library_paths()[0])
print(int(torch._C._GLIBCXX_USE_CXX11_ABI))
print(int(torch.version.cuda is not None))
print(int(torch.cuda.is_available()))
]=]
    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "limuon: LIMUON_PYTHON='${LIMUON_PYTHON}' cannot import torch:\n${_err}\n"
      "Run scripts/setup.sh (it makes the project's virtual environment with the pinned torch) and build "
      "through scripts/build.sh, or pass -DLIMUON_PYTHON=/path/to/python-with-torch, or "
      "-DLIMUON_TORCH_SOURCE=package with CMAKE_PREFIX_PATH pointing at a LibTorch.")
  endif()
  string(REPLACE "\n" ";" _lines "${_out}")
  list(GET _lines 0 LIMUON_TORCH_VERSION)
  list(GET _lines 1 _incs)
  string(REPLACE "|" ";" _incs "${_incs}")
  list(GET _lines 2 LIMUON_TORCH_LIBDIR)
  list(GET _lines 3 _abi)
  list(GET _lines 4 _is_cuda_build)
  list(GET _lines 5 _sees_gpu)
  set(LIMUON_TORCH_CUDA_DEFAULT OFF)
  if(_sees_gpu)
    set(LIMUON_TORCH_CUDA_DEFAULT ON)
  endif()
  option(LIMUON_TORCH_CUDA "Link torch's CUDA libraries (--device cuda)" ${LIMUON_TORCH_CUDA_DEFAULT})
  set(TORCH_INCLUDE_DIRS ${_incs})
  set(_libs "${LIMUON_TORCH_LIBDIR}/libtorch.so" "${LIMUON_TORCH_LIBDIR}/libtorch_cpu.so" "${LIMUON_TORCH_LIBDIR}/libc10.so")
  if(LIMUON_TORCH_CUDA AND _is_cuda_build)
    # Nothing of ours references libtorch_cuda's symbols: without --no-as-needed the linker drops
    # it and CUDA silently reports "not available" at run time.
    list(APPEND _libs "-Wl,--no-as-needed" "${LIMUON_TORCH_LIBDIR}/libtorch_cuda.so"
         "${LIMUON_TORCH_LIBDIR}/libc10_cuda.so" "-Wl,--as-needed")
  endif()
  add_library(limuon_torch INTERFACE IMPORTED GLOBAL)
  set_target_properties(limuon_torch PROPERTIES
    INTERFACE_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_DIRS}"
    INTERFACE_SYSTEM_INCLUDE_DIRECTORIES "${TORCH_INCLUDE_DIRS}"
    INTERFACE_COMPILE_DEFINITIONS "_GLIBCXX_USE_CXX11_ABI=${_abi}"
    INTERFACE_LINK_LIBRARIES "${_libs}")
  add_library(limuon::torch ALIAS limuon_torch)
  set(TORCH_LIBRARIES limuon::torch)
  set(TORCH_PYTHON_LIBRARY "${LIMUON_TORCH_LIBDIR}/libtorch_python.so")
else()
  message(FATAL_ERROR "limuon: LIMUON_TORCH_SOURCE must be python or package, got '${LIMUON_TORCH_SOURCE}'")
endif()

if(LIMUON_TORCH_VERSION VERSION_LESS LIMUON_TORCH_MIN_VERSION)
  message(FATAL_ERROR "limuon: needs LibTorch >= ${LIMUON_TORCH_MIN_VERSION}, found ${LIMUON_TORCH_VERSION} "
    "(LIMUON_TORCH_SOURCE=${LIMUON_TORCH_SOURCE}, LIMUON_PYTHON=${LIMUON_PYTHON}). Debian's libtorch-dev 1.13 is no longer supported; "
    "scripts/setup.sh installs the pinned PyTorch from PyPI.")
endif()
message(STATUS "limuon: LibTorch ${LIMUON_TORCH_VERSION} from ${LIMUON_TORCH_SOURCE} (${LIMUON_TORCH_LIBDIR})")
