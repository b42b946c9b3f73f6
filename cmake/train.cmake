# Training program: checkpoint directories (library) and the train/eval/generate/tokenize commands.
target_sources(limuon_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/train/checkpoint.cpp
                                  ${PROJECT_SOURCE_DIR}/src/train/trainer.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/train.cpp ${PROJECT_SOURCE_DIR}/src/cli/train_config.cpp
                              ${PROJECT_SOURCE_DIR}/src/cli/tasks.cpp ${PROJECT_SOURCE_DIR}/src/cli/model_commands.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/launch.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/compare.cpp)

# examples/train_custom.cpp: a user's own model trained with limuon::train, built and run as a test.
add_executable(limuon_train_custom ${PROJECT_SOURCE_DIR}/examples/train_custom.cpp)
target_link_libraries(limuon_train_custom PRIVATE limuon_lib)
if(TARGET limuon_tests)
  add_test(NAME example_train_custom COMMAND limuon_train_custom)
  target_sources(limuon_tests PRIVATE ${PROJECT_SOURCE_DIR}/tests/test_trainer.cpp)
endif()
