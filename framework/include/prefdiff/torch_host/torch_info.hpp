// What LibTorch this host was built with and what it sees now, for `prefdiff version`, dry runs and run
// folders (torch_info.cpp; the rest of the host's identity is in prefdiff/host/version.hpp).
#pragma once

#include <string>

namespace prefdiff {

std::string torch_version();
bool cuda_compiled();   // this build has the CUDA code paths
bool cuda_available();  // and a GPU is visible now
int intra_op_threads();

}  // namespace prefdiff
