// Token choice from logits; the semantics and their Hugging Face reference
// are in models/sampling.h.
#include "models/sampling.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "core/error.h"

namespace gl {

void validate_sampling(const SamplingParams& p) {
  GL_CHECK(std::isfinite(p.temperature) && p.temperature >= 0,
           "sampling: temperature must be a finite number >= 0, got ", p.temperature);
  GL_CHECK(p.top_k >= 0, "sampling: top_k must be >= 0 (0 = off), got ", p.top_k);
  GL_CHECK(p.top_p > 0 && p.top_p <= 1, "sampling: top_p must be in (0, 1] (1 = off), got ",
           p.top_p);
}

static void check_logits(const std::vector<double>& logits) {
  GL_CHECK(!logits.empty(), "sampling: empty logits row");
  for (size_t i = 0; i < logits.size(); ++i)
    GL_CHECK(!std::isnan(logits[i]), "sampling: logit ", i, " is NaN");
}

int64_t argmax_token(const std::vector<double>& logits) {
  check_logits(logits);
  // max_element returns the first of equal maxima, as torch.argmax does.
  return int64_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// Keeps scores >= the k-th largest (HF's `scores < topk(scores, k)[-1]`
// removal), so every token tied with the k-th is kept.
static void top_k_filter(std::vector<double>& scores, int64_t k) {
  if (k <= 0 || k >= int64_t(scores.size())) return;
  std::vector<double> sorted = scores;
  std::nth_element(sorted.begin(), sorted.begin() + (k - 1), sorted.end(),
                   std::greater<double>());
  const double kth = sorted[size_t(k - 1)];
  for (double& s : scores)
    if (s < kth) s = -INFINITY;
}

// softmax(scores) with removed (-inf) entries at exactly 0.
static std::vector<double> softmax(const std::vector<double>& scores) {
  const double m = *std::max_element(scores.begin(), scores.end());
  GL_CHECK(m > -INFINITY, "sampling: every logit is -inf, no token can be drawn");
  std::vector<double> p(scores.size());
  double z = 0;
  for (size_t i = 0; i < scores.size(); ++i) z += (p[i] = std::exp(scores[i] - m));
  for (double& x : p) x /= z;
  return p;
}

// HF removes a token when the ascending cumulative probability up to and
// including it is <= 1 - top_p. Walking from the most probable token down,
// that cumulative is 1 - (mass of the tokens before it), so the token is
// kept iff the mass before it is < top_p: the smallest prefix reaching
// top_p. Ties are ordered by token id (torch's sort order on ties is
// unspecified).
static void top_p_filter(std::vector<double>& probs, double top_p) {
  if (top_p >= 1) return;
  std::vector<int64_t> order(probs.size());
  std::iota(order.begin(), order.end(), int64_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return probs[size_t(a)] > probs[size_t(b)]; });
  double before = 0, kept = 0;
  for (int64_t i : order) {
    double& p = probs[size_t(i)];
    const bool keep = before < top_p;
    before += p;
    if (keep) kept += p;
    else p = 0;
  }
  for (double& p : probs) p /= kept;  // kept > 0: the first token always stays
}

std::vector<double> sampling_probs(const std::vector<double>& logits,
                                   const SamplingParams& params) {
  validate_sampling(params);
  check_logits(logits);
  GL_CHECK(params.temperature > 0, "sampling_probs: temperature 0 is greedy (argmax_token)");
  std::vector<double> scores(logits.size());
  for (size_t i = 0; i < logits.size(); ++i) scores[i] = logits[i] / params.temperature;
  top_k_filter(scores, params.top_k);
  std::vector<double> probs = softmax(scores);
  top_p_filter(probs, params.top_p);
  return probs;
}

int64_t choose_from_probs(const std::vector<double>& probs, double u) {
  GL_CHECK(u >= 0 && u < 1, "choose_from_probs: u must be in [0, 1), got ", u);
  double total = 0;
  for (double p : probs) total += p;
  GL_CHECK(total > 0, "choose_from_probs: all ", probs.size(), " probabilities are zero");
  const double target = u * total;  // total is 1 up to rounding
  double cum = 0;
  int64_t last = -1;  // last token with p > 0: the answer when rounding leaves cum <= target
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] <= 0) continue;
    cum += probs[i];
    last = int64_t(i);
    if (cum > target) return last;
  }
  return last;
}

int64_t sample_token(const std::vector<double>& logits, const SamplingParams& params, double u) {
  validate_sampling(params);
  if (params.temperature == 0) return argmax_token(logits);
  return choose_from_probs(sampling_probs(logits, params), u);
}

double philox_uniform_double(Generator& gen) {
  const Philox4 r = philox4x32_10(gen.advance(1), gen.seed);
  // 27 + 26 bits, the construction of numpy's random_double / MT19937's
  // genrand_res53: (a * 2^26 + b) / 2^53.
  const double a = double(r.v[0] >> 5), b = double(r.v[1] >> 6);
  return (a * 67108864.0 + b) * (1.0 / 9007199254740992.0);
}

}  // namespace gl
