// Dynamic loss scaling for f16 products (run.precision = f16), with
// torch.amp.GradScaler's rule: the loss is multiplied by `scale` before
// backward so that small gradients survive f16's range (smallest normal
// 6.1e-5), the gradients are divided by it again before clipping and the
// update; a step whose gradient came out non-finite (an f16 operand
// overflowed past 65504) is skipped and the scale halved; after
// `growth_interval` finite steps in a row the scale doubles.
//
// One difference: the scale never falls below 1. The gradients themselves
// are f32, so scaling down past 1 cannot cure an overflow; a non-finite
// gradient at scale 1 is a real one and goes to train.on_nonfinite like
// any other.
//
// The state is two numbers the trainer checkpoints (TrainerState), so the
// rule is a function of them rather than an object holding a copy.
#pragma once
#include <cstdint>

namespace gl {

struct LossScale {
  double scale = 65536.0;
  int64_t good_steps = 0;  // finite steps since the scale last changed
};

// After backward, with whether every gradient is finite: true when the
// step is an overflow to skip (the scale was halved); false when the step
// is usable, or non-finite at scale 1 (the caller's to handle).
bool loss_scale_overflowed(LossScale& s, int64_t growth_interval, bool grads_finite);

// Refuses a scale below 1, non-finite, or a negative count; names `what`.
void check_loss_scale(const LossScale& s, const char* what);

}  // namespace gl
