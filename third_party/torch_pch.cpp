// Anchor of the shared precompiled LibTorch header (third_party/dependencies.cmake): compiling
// <torch/torch.h> costs ~20 s per file on these machines, so it is precompiled once and reused by
// every target that includes it.
