# Training program: checkpoint directories (library) and the train/eval/generate/tokenize commands.
target_sources(limuon_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/train/checkpoint.cpp
                                  ${PROJECT_SOURCE_DIR}/src/train/trainer.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/train.cpp ${PROJECT_SOURCE_DIR}/src/cli/train_config.cpp
                              ${PROJECT_SOURCE_DIR}/src/cli/tasks.cpp ${PROJECT_SOURCE_DIR}/src/cli/model_commands.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/launch.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/compare.cpp)
