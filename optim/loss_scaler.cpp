#include "optim/loss_scaler.h"

#include <algorithm>
#include <cmath>

#include "core/error.h"

namespace gl {

bool loss_scale_overflowed(LossScale& s, int64_t growth_interval, bool grads_finite) {
  GL_CHECK(growth_interval >= 1, "loss scale growth interval must be >= 1, got ", growth_interval);
  if (grads_finite) {
    // Doubling keeps the scale a power of two times the initial one, so
    // scaling and unscaling stay exact; it stops short of overflowing.
    if (++s.good_steps >= growth_interval) {
      if (std::isfinite(s.scale * 2.0)) s.scale *= 2.0;
      s.good_steps = 0;
    }
    return false;
  }
  s.good_steps = 0;
  if (s.scale <= 1.0) return false;
  s.scale = std::max(1.0, s.scale * 0.5);
  return true;
}

void check_loss_scale(const LossScale& s, const char* what) {
  GL_CHECK(std::isfinite(s.scale) && s.scale >= 1.0 && s.good_steps >= 0, what,
           ": loss scale state out of range (scale ", s.scale, ", good steps ", s.good_steps,
           "; the scale must be finite and >= 1)");
}

}  // namespace gl
