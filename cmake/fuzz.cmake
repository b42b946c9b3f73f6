# Feature fragment "fuzz": libFuzzer targets for every reader of untrusted input (LIMUON_FUZZ=ON,
# clang only; scripts/fuzz.sh drives them), and otherwise just the regression tests their findings
# became. Included at the end of the top-level CMakeLists.txt, after the other fragments, so
# limuon_lib already holds every reader.
if(NOT LIMUON_FUZZ)
  # The regressions exercise the file readers of data_text and data_files.
  if(TARGET limuon_tests AND "data_text" IN_LIST LIMUON_FRAGMENTS AND "data_files" IN_LIST LIMUON_FRAGMENTS
     AND EXISTS ${PROJECT_SOURCE_DIR}/tests/test_fuzz_regressions.cpp)
    # The config-file reader lives in the CLI sources, not in limuon_lib: the tests compile it in,
    # as fuzz_config does.
    target_sources(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/test_fuzz_regressions.cpp
                                        ${PROJECT_SOURCE_DIR}/src/cli/args.cpp)
    target_include_directories(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
    # The regression tests build gzip inputs and safetensors/JSON texts themselves.
    find_package(ZLIB REQUIRED)
    find_package(nlohmann_json 3 REQUIRED)
    target_link_libraries(limuon_tests PRIVATE ZLIB::ZLIB nlohmann_json::nlohmann_json)
  endif()
  return()
endif()

if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "LIMUON_FUZZ needs clang (libFuzzer); configure with CXX=clang++-14 CC=clang-14")
endif()

find_package(ZLIB REQUIRED)
find_package(nlohmann_json 3 REQUIRED)

# Everything linked into a fuzz target must be instrumented: coverage for libFuzzer's guidance,
# ASan/UBSan so that memory errors and UB in our code are findings rather than silent. UB aborts
# (no recovery), otherwise libFuzzer would only print it and carry on.
set(LIMUON_FUZZ_SANITIZERS -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer)
set(LIMUON_FUZZ_COMPILE_FLAGS ${LIMUON_FUZZ_SANITIZERS} -fsanitize=fuzzer-no-link -g)

# The library and the other programs of this configuration (limuon, the examples, the tests share
# limuon_lib's precompiled header or link it) get the same flags, so any target still builds.
foreach(t limuon_lib limuon limuon_quickstart limuon_tests)
  if(TARGET ${t})
    target_compile_options(${t} PRIVATE ${LIMUON_FUZZ_COMPILE_FLAGS})
  endif()
endforeach()
target_link_options(limuon_lib INTERFACE -fsanitize=address,undefined)

set(LIMUON_FUZZ_TARGETS
  fuzz_safetensors fuzz_shard fuzz_idx fuzz_cifar fuzz_bpe_files fuzz_encoder fuzz_checkpoint fuzz_config)
foreach(name ${LIMUON_FUZZ_TARGETS})
  add_executable(${name} ${PROJECT_SOURCE_DIR}/fuzz/${name}.cpp)
  # fuzzer-no-link at compile time instruments exactly as -fsanitize=fuzzer does; the libFuzzer
  # runtime (and its main) comes in at link time.
  target_compile_options(${name} PRIVATE ${LIMUON_FUZZ_COMPILE_FLAGS} -Wall -Wextra -Wno-unused-parameter)
  target_link_options(${name} PRIVATE -fsanitize=fuzzer,address,undefined)
  target_link_libraries(${name} PRIVATE limuon_lib)
  set_target_properties(${name} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${PROJECT_BINARY_DIR}/fuzz)
endforeach()
# The real GPT-2 files for fuzz_encoder (LIMUON_DATA_DIR still overrides at run time).
target_compile_definitions(fuzz_encoder PRIVATE LIMUON_FUZZ_DATA_DIR="${PROJECT_SOURCE_DIR}/data")
# fuzz_idx gzips its inputs itself so that valid compressed streams reach the IDX parser.
target_link_libraries(fuzz_idx PRIVATE ZLIB::ZLIB)
# The config reader lives in the CLI sources, not in the library: compile it in directly.
target_sources(fuzz_config PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/args.cpp)
target_include_directories(fuzz_config PRIVATE ${PROJECT_SOURCE_DIR}/src/cli)
target_link_libraries(fuzz_config PRIVATE nlohmann_json::nlohmann_json)

add_custom_target(fuzz_all DEPENDS ${LIMUON_FUZZ_TARGETS})
