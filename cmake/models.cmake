# Models: GPT-2 family and ViT, with their tests.
target_sources(limuon_lib PRIVATE
  ${PROJECT_SOURCE_DIR}/src/models/gpt2.cpp
  ${PROJECT_SOURCE_DIR}/src/models/vit.cpp)
if(TARGET limuon_tests)
  target_sources(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/test_models.cpp)
endif()
