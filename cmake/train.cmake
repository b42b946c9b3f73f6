# Training program: checkpoint directories (library) and the train/eval/generate/tokenize commands.
target_sources(limuon_lib PRIVATE ${PROJECT_SOURCE_DIR}/src/train/checkpoint.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/train.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/launch.cpp)
target_sources(limuon PRIVATE ${PROJECT_SOURCE_DIR}/src/cli/compare.cpp)
