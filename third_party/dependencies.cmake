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
endif()

# Eigen serves the runtime's float reference path (header-only; libeigen3-dev).
find_package(Eigen3 3.3 REQUIRED NO_MODULE)

if(EDGEDISTILL_TESTS)
  find_package(Catch2 2 REQUIRED)  # catch2 (v2)
  include(Catch)
endif()
