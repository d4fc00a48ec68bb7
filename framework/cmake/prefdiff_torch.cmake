# Finds LibTorch and exposes it as the INTERFACE target prefdiff::torch.
#
# LibTorch comes from the torch wheel in the project's cached Python environment by default
# (quickstart.sh passes torch.utils.cmake_prefix_path), or from any LibTorch distribution named in
# CMAKE_PREFIX_PATH. When the LibTorch found has CUDA, PREFDIFF_WITH_CUDA is ON and the CUDA/NCCL code
# paths are compiled (whether or not this machine has a GPU).
if(TARGET prefdiff::torch)
  return()
endif()

find_package(Torch REQUIRED)

add_library(prefdiff_torch INTERFACE)
add_library(prefdiff::torch ALIAS prefdiff_torch)
target_link_libraries(prefdiff_torch INTERFACE ${TORCH_LIBRARIES})
if(TORCH_CXX_FLAGS)
  separate_arguments(_prefdiff_torch_flags UNIX_COMMAND "${TORCH_CXX_FLAGS}")
  target_compile_options(prefdiff_torch INTERFACE ${_prefdiff_torch_flags})
endif()

# Torch's install prefix (…/site-packages/torch for the wheel).
get_filename_component(PREFDIFF_TORCH_ROOT "${TORCH_INSTALL_PREFIX}" ABSOLUTE)

set(PREFDIFF_WITH_CUDA OFF)
if(TARGET torch_cuda OR CAFFE2_USE_CUDA)
  set(PREFDIFF_WITH_CUDA ON)
endif()

# The wheel's libtorch_cuda.so finds NCCL, cuBLAS, ... in sibling nvidia/* wheels through its own RUNPATH.
# The linker does not follow RUNPATH for indirect dependencies, so point it there explicitly.
file(GLOB _prefdiff_nvidia_libdirs LIST_DIRECTORIES true "${PREFDIFF_TORCH_ROOT}/../nvidia/*/lib")
if(_prefdiff_nvidia_libdirs)
  list(JOIN _prefdiff_nvidia_libdirs ":" _prefdiff_rpath_link)
  target_link_options(prefdiff_torch INTERFACE "LINKER:-rpath-link,${_prefdiff_rpath_link}")
endif()

# NCCL headers for the c10d NCCL backend: from the nvidia-nccl wheel or the CUDA toolkit.
set(PREFDIFF_WITH_NCCL OFF)
if(PREFDIFF_WITH_CUDA)
  find_path(PREFDIFF_NCCL_INCLUDE_DIR nccl.h
    HINTS "${PREFDIFF_TORCH_ROOT}/../nvidia/nccl/include" ENV NCCL_INCLUDE_DIR
    PATHS /usr/include /usr/local/cuda/include)
  if(PREFDIFF_NCCL_INCLUDE_DIR)
    set(PREFDIFF_WITH_NCCL ON)
  endif()
endif()

message(STATUS "prefdiff: LibTorch ${Torch_VERSION} at ${PREFDIFF_TORCH_ROOT}; CUDA ${PREFDIFF_WITH_CUDA}; NCCL ${PREFDIFF_WITH_NCCL}")
