// A human-readable summary of a checkpoint (what `qforge inspect` prints).
#pragma once

#include <string>

#include "qforge/model/model.h"

namespace qforge {

// Architecture, parameter count, tensor dtypes, layers, attention geometry, rope, MoE layout, tied
// embeddings and the quantizable module counts of `model`, one "key: value" per line. Reads only
// metadata (no layer needs to be loaded).
std::string DescribeModel(const Model& model);

}  // namespace qforge
