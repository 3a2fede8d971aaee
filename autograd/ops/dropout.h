// Inverted dropout (kernels in cpu/dropout.cpp, cuda/dropout.cu).
//
// Element i (row-major index in the contiguous x) is kept iff
// philox_uniform(gen.seed, offset, i) >= p, with offset = gen.advance((n + 3) / 4)
// taken once per call; kept values are scaled by 1 / (1 - p). The mask is a
// pure function of (seed, offset, i): CPU and CUDA keep the same elements,
// and the backward regenerates it from (seed, offset) instead of saving it.
// p must be in [0, 1). p == 0 or !training returns x itself (the identity,
// still differentiable) and leaves gen untouched.
// https://pytorch.org/docs/stable/generated/torch.nn.Dropout.html
#pragma once
#include "autograd/var.h"

namespace gl {

Var dropout(const Var& x, double p, Generator& gen, bool training = true);

}  // namespace gl
