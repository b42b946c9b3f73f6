# Feature fragment "data_files": safetensors I/O and image datasets (Fashion-MNIST, CIFAR-10).
# Included at the end of the top-level CMakeLists.txt, after limuon_lib, limuon and limuon_tests exist.
find_package(ZLIB REQUIRED)
find_package(nlohmann_json REQUIRED)

target_sources(limuon_lib PRIVATE
  ${PROJECT_SOURCE_DIR}/src/io/safetensors.cpp
  ${PROJECT_SOURCE_DIR}/src/data/images.cpp)
# Private: the public headers expose neither zlib nor JSON types.
target_link_libraries(limuon_lib PRIVATE ZLIB::ZLIB nlohmann_json::nlohmann_json)

if(TARGET limuon_tests)
  target_sources(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/test_files.cpp
                                      ${PROJECT_SOURCE_DIR}/tests/test_interop_safetensors.cpp)
  # test_interop_safetensors.cpp reads the expected values (reference/safetensors_py/expected.json).
  target_link_libraries(limuon_tests PRIVATE nlohmann_json::nlohmann_json)
  # The tests write synthetic gzipped IDX files with zlib themselves.
  target_link_libraries(limuon_tests PRIVATE ZLIB::ZLIB)
endif()
