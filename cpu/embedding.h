// Embedding lookup kernels: out[n, :] = weight[ids[n], :].
//
// Shapes: ids [N] (any integer shape, flattened), weight, dweight [V, C],
// out, dout [N, C]; all contiguous. I is int32_t or int64_t.
// Out-of-range ids: the kernels never read outside weight; the forward
// lowers *bad_pos to the smallest flat position n whose id is outside
// [0, V) (the caller sets *bad_pos = N first and throws if it changed).
// On CUDA, bad_pos points to device memory.
// Backward: dweight[v] += sum over n with ids[n] == v of dout[n], in
// increasing n, each row by one thread: deterministic, no float atomics.
// The sums are in T (a double buffer of V x C would cost more than it
// gains; repeated ids per row are few).
// Reference: torch.nn.functional.embedding.
// Conventions: outputs, inputs, weights, sizes; dweight accumulates (+=).
#pragma once
#include <cstdint>

namespace gl::cpu {

template <class T, class I>
void embedding_forward(T* out, int64_t* bad_pos, const I* ids, const T* weight, int64_t N,
                       int64_t V, int64_t C);
template <class T, class I>
void embedding_backward(T* dweight, const T* dout, const I* ids, int64_t N, int64_t V,
                        int64_t C);

}  // namespace gl::cpu
