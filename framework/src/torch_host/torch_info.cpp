#include <torch/torch.h>
#include <torch/version.h>

#include "prefdiff/torch_host/torch_info.hpp"

namespace prefdiff {

std::string torch_version() { return TORCH_VERSION; }

bool cuda_compiled() {
#ifdef PREFDIFF_WITH_CUDA
  return true;
#else
  return false;
#endif
}

bool cuda_available() { return torch::cuda::is_available(); }

int intra_op_threads() { return at::get_num_threads(); }

}  // namespace prefdiff
