// Precompiled header for the library and CLI: the LibTorch headers every unit needs.
#pragma once
#include <ATen/ATen.h>
#include <torch/optim/optimizer.h>
#include <torch/serialize/archive.h>
