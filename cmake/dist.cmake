# Feature fragment "dist": data-parallel training on c10d (TCPStore + ProcessGroupGloo).
#
# Gloo headers: ProcessGroupGloo.hpp includes five Gloo headers, which PyPI's torch wheel does not
# ship (it links its own, newer Gloo statically). Debian's libgloo-dev (2022) provides headers that
# differ from that Gloo in several class layouts and virtual tables (rendezvous::Store, Context,
# transport::Pair). src/dist/data_parallel.cpp is written so that none of those matter: it only holds Gloo types
# through shared_ptr, calls ProcessGroupGloo's out-of-line functions (Options::create,
# createDevice*, the constructor, the collectives) and never constructs a Gloo class itself, so its
# object code is the same with either header set. The gloo_abi test below checks that the library
# emits no virtual table or typeinfo of a Gloo class (which would shadow the wheel's at load time).
# Only the headers are used: never link Debian's libgloo. A LibTorch that ships its own Gloo headers
# (a source build) is preferred over the system's.
target_sources(limuon_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/dist/data_parallel.cpp ${PROJECT_SOURCE_DIR}/src/dist/sharding.cpp)
find_path(LIMUON_GLOO_INCLUDE gloo/algorithm.h HINTS ${TORCH_INCLUDE_DIRS} NO_DEFAULT_PATH)
if(NOT LIMUON_GLOO_INCLUDE)
  find_path(LIMUON_GLOO_INCLUDE gloo/algorithm.h)
endif()
find_path(LIMUON_C10D_INCLUDE torch/csrc/distributed/c10d/ProcessGroupGloo.hpp HINTS ${TORCH_INCLUDE_DIRS})
if(LIMUON_GLOO_INCLUDE AND LIMUON_C10D_INCLUDE)
  set_source_files_properties(${PROJECT_SOURCE_DIR}/src/dist/data_parallel.cpp PROPERTIES
    COMPILE_DEFINITIONS "LIMUON_HAVE_DIST=1;USE_C10D_GLOO=1"
    SKIP_PRECOMPILE_HEADERS ON)
  if(NOT LIMUON_GLOO_INCLUDE IN_LIST TORCH_INCLUDE_DIRS)
    # -idirafter: the Gloo headers only, never ahead of torch's or the system's own headers.
    target_compile_options(limuon_lib PRIVATE "-idirafter${LIMUON_GLOO_INCLUDE}")
  endif()
  message(STATUS "limuon: data-parallel training with c10d/Gloo (Gloo headers: ${LIMUON_GLOO_INCLUDE})")
  if(TARGET limuon_tests)
    add_test(NAME gloo_abi COMMAND sh -c
      "! nm -C '$<TARGET_FILE:limuon_lib>' | grep -E ' [VWDR] (vtable|typeinfo|typeinfo name) for (gloo::|c10d::ProcessGroupGloo::GlooStore)'")
  endif()
else()
  message(STATUS "limuon: no Gloo headers (libgloo-dev) or c10d headers: data-parallel training disabled")
endif()
if(TARGET limuon_tests)
  add_test(NAME dist_cli
    COMMAND ${LIMUON_PYTHON} ${PROJECT_SOURCE_DIR}/tests/dist_cli.py $<TARGET_FILE:limuon>)
  set_tests_properties(dist_cli PROPERTIES TIMEOUT 900)
  # Two ranks as two hosts (network namespaces joined by a veth pair, TCP between them), then the
  # link cut mid-run; unsharded and sharded. Needs root and `ip netns`: prints SKIP and why otherwise.
  add_test(NAME dist_netns COMMAND ${LIMUON_PYTHON} ${PROJECT_SOURCE_DIR}/tests/dist_netns.py $<TARGET_FILE:limuon>)
  add_test(NAME dist_netns_sharded COMMAND ${LIMUON_PYTHON} ${PROJECT_SOURCE_DIR}/tests/dist_netns.py $<TARGET_FILE:limuon>)
  set_tests_properties(dist_netns dist_netns_sharded PROPERTIES TIMEOUT 300 SKIP_REGULAR_EXPRESSION "SKIP:" RUN_SERIAL TRUE)
  set_tests_properties(dist_netns PROPERTIES ENVIRONMENT "LIMUON_NETNS_EXTRA=--no-shard-state")
  set_tests_properties(dist_netns_sharded PROPERTIES ENVIRONMENT "LIMUON_NETNS_EXTRA=--shard-state")
endif()
