# Build glue for the system packages edgedistill uses (Debian 12). No third-party code lives here.
# Every package is installed by scripts/setup.sh; the messages below say which one is missing.

find_package(nlohmann_json 3.10 REQUIRED)
find_package(Threads REQUIRED)

if(NOT EDGEDISTILL_RUNTIME_ONLY)
  find_package(Torch REQUIRED)   # libtorch-dev (LibTorch 1.13)
  find_package(CLI11 REQUIRED)   # libcli11-dev
  find_package(ZLIB REQUIRED)    # zlib1g-dev (gzip IDX files)
  find_package(PkgConfig REQUIRED)
  pkg_check_modules(SENTENCEPIECE REQUIRED IMPORTED_TARGET sentencepiece)  # libsentencepiece-dev
  # LibTorch's exported flags carry the C++ ABI define; keep them on the targets that use Torch.
  add_library(edgedistill_torch INTERFACE)
  target_link_libraries(edgedistill_torch INTERFACE ${TORCH_LIBRARIES})

  # <torch/torch.h> takes ~20 s to compile per file; precompiled once and shared, a file that
  # includes it compiles in a few seconds.
  option(EDGEDISTILL_TORCH_PCH "Precompile <torch/torch.h> once for all LibTorch targets" ON)
  if(EDGEDISTILL_TORCH_PCH)
    add_library(edgedistill_torch_pch OBJECT ${CMAKE_CURRENT_LIST_DIR}/torch_pch.cpp)
    target_link_libraries(edgedistill_torch_pch PRIVATE edgedistill_torch edgedistill_flags)
    target_precompile_headers(edgedistill_torch_pch PRIVATE <torch/torch.h>)
  endif()
endif()

# Reuses the precompiled LibTorch header in `target` (which must link LibTorch).
function(edgedistill_use_torch_pch target)
  if(EDGEDISTILL_TORCH_PCH AND NOT EDGEDISTILL_RUNTIME_ONLY)
    target_precompile_headers(${target} REUSE_FROM edgedistill_torch_pch)
  endif()
endfunction()

# Eigen serves the runtime's float reference path (header-only; libeigen3-dev).
find_package(Eigen3 3.3 REQUIRED NO_MODULE)

if(EDGEDISTILL_TESTS)
  find_package(Catch2 2 REQUIRED)  # catch2 (v2)
  include(Catch)
endif()
