# Cross-compiles edgedistill for 64-bit Arm Linux with Debian's cross toolchain
# (g++-aarch64-linux-gnu; scripts/setup.sh installs it). Meant for the runtime-only build:
#   cmake -S . -B build-aarch64 -G Ninja -DEDGEDISTILL_RUNTIME_ONLY=ON \
#         -DCMAKE_TOOLCHAIN_FILE=cmake/toolchains/aarch64-linux-gnu.cmake
# Programs run on this (x86-64) machine through qemu-user (package qemu-user), which is also what
# CMake and ctest use to run them (Catch2's test discovery included); scripts/test_aarch64.sh does
# all of this.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# The target's libraries and headers live under /usr/aarch64-linux-gnu. The header-only
# dependencies (Eigen, nlohmann_json, Catch2) are the host's, found through their CMake packages
# under /usr/share/cmake, /usr/share/eigen3/cmake and /usr/lib/cmake: search the host too for
# packages and headers, but link only the target's libraries.
set(CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE BOTH)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE BOTH)

# -L: where qemu finds the aarch64 dynamic loader and libstdc++.
set(CMAKE_CROSSCOMPILING_EMULATOR qemu-aarch64 -L /usr/aarch64-linux-gnu)
