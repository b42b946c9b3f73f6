# Feature fragment "dist": data-parallel training on c10d (TCPStore + ProcessGroupGloo, which
# Debian's libtorch contains; compiling against them needs the Gloo headers from libgloo-dev).
# Without those headers the library still builds, and joining a multi-rank job is a clear error.
target_sources(limuon_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/dist.cpp)
find_path(LIMUON_GLOO_INCLUDE gloo/algorithm.h)
find_path(LIMUON_C10D_INCLUDE torch/csrc/distributed/c10d/ProcessGroupGloo.hpp HINTS ${TORCH_INCLUDE_DIRS})
if(LIMUON_GLOO_INCLUDE AND LIMUON_C10D_INCLUDE)
  set_source_files_properties(${PROJECT_SOURCE_DIR}/src/dist.cpp PROPERTIES
    COMPILE_DEFINITIONS "LIMUON_HAVE_DIST=1;USE_C10D_GLOO=1"
    SKIP_PRECOMPILE_HEADERS ON)
  target_include_directories(limuon_lib PRIVATE ${LIMUON_GLOO_INCLUDE})
  message(STATUS "limuon: data-parallel training with c10d/Gloo")
else()
  message(STATUS "limuon: no Gloo headers (libgloo-dev) or c10d headers: data-parallel training disabled")
endif()
if(TARGET limuon_tests)
  add_test(NAME dist_cli
    COMMAND ${LIMUON_PYTHON} ${PROJECT_SOURCE_DIR}/tests/dist_cli.py $<TARGET_FILE:limuon>)
  set_tests_properties(dist_cli PROPERTIES TIMEOUT 900)
endif()
