# Text data: tokenizers (GPT-2 BPE via PCRE2, bytes), default corpus, llm.c token shards, samplers.
find_package(PkgConfig REQUIRED)
if(NOT TARGET PkgConfig::PCRE2)
  # PCRE2_MATCH_INVALID_UTF (encoding arbitrary bytes) needs PCRE2 >= 10.34.
  pkg_check_modules(PCRE2 REQUIRED IMPORTED_TARGET libpcre2-8>=10.34)
endif()
find_package(nlohmann_json 3 QUIET)

target_sources(limuon_lib PRIVATE
  ${PROJECT_SOURCE_DIR}/src/data/bpe.cpp
  ${PROJECT_SOURCE_DIR}/src/data/corpus.cpp
  ${PROJECT_SOURCE_DIR}/src/data/shards.cpp)
# PRIVATE: the public header exposes neither PCRE2 nor JSON types.
target_link_libraries(limuon_lib PRIVATE PkgConfig::PCRE2)
if(TARGET nlohmann_json::nlohmann_json)
  target_link_libraries(limuon_lib PRIVATE nlohmann_json::nlohmann_json)
endif()

if(TARGET limuon_tests)
  target_sources(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/test_text_data.cpp)
  if(TARGET nlohmann_json::nlohmann_json)
    target_link_libraries(limuon_tests PRIVATE nlohmann_json::nlohmann_json)
  endif()
endif()
