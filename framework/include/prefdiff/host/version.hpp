// Build and runtime identity printed by `prefdiff version` and kept in every run folder.
#pragma once

#include <string>

namespace prefdiff {

std::string prefdiff_version();
std::string source_revision();  // git describe of the source tree at configure time, or "unknown"
std::string abi_version();      // "major.minor" of the tier-1 plugin ABI

// From the LibTorch part of the host (torch_info.cpp).
std::string torch_version();
bool cuda_compiled();   // this build has the CUDA code paths
bool cuda_available();  // and a GPU is visible now
int intra_op_threads();

}  // namespace prefdiff
