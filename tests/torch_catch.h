// Include this instead of <catch2/catch.hpp> in tests that use LibTorch.
//
// Debian's LibTorch is built with glog, whose logging header defines CHECK(condition). Included
// after Catch2 it silently replaces Catch's CHECK with glog's, so failed checks would abort instead
// of being reported, and passing ones would not be counted. LibTorch comes first here, glog's
// CHECK is removed, and Catch2 defines its own.
#pragma once

#include <torch/torch.h>

#undef CHECK
#include <catch2/catch.hpp>
