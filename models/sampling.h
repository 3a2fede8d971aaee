// Choosing the next token from a row of logits: temperature, top-k and
// top-p (nucleus) filtering, then one draw. Pure host functions of the
// logits and a uniform number, so they are tested without a model and a
// seed gives the same tokens whichever device computed the logits.
//
// Semantics follow Hugging Face transformers' sampling (generation/
// logits_process.py, applied in this order):
//   TemperatureLogitsWarper  scores / temperature
//   TopKLogitsWarper         keep scores >= the k-th largest score (ties at
//                            the k-th value are all kept, as HF does)
//   TopPLogitsWarper         softmax of what is left; keep the smallest set of
//                            most probable tokens whose probability sums to
//                            >= top_p (always at least the most probable one)
//   then sample from the softmax of the kept scores.
// temperature 0 is greedy decoding: the argmax of the raw logits (the first
// one on ties), no draw needed. top_k 0 and top_p 1 switch those filters off.
// Invariants: probabilities are computed in double; the token chosen always
// has a non-zero probability; NaN logits are an error, -inf ones never drawn.
#pragma once
#include <cstdint>
#include <vector>

#include "core/philox.h"

namespace gl {

struct SamplingParams {
  double temperature = 1.0;  // >= 0; 0 = greedy
  int64_t top_k = 0;         // >= 0; 0 = off
  double top_p = 1.0;        // in (0, 1]; 1 = off
};

// Throws an Error naming the bad field.
void validate_sampling(const SamplingParams& params);

// Index of the largest logit (the first one on ties). NaN is an error.
int64_t argmax_token(const std::vector<double>& logits);

// The distribution sampling draws from (temperature > 0): length V, zero for
// filtered tokens, summing to 1.
std::vector<double> sampling_probs(const std::vector<double>& logits,
                                   const SamplingParams& params);

// Inverse CDF in token order: the first i with probs[0] + ... + probs[i] > u
// (u in [0, 1)); only tokens with probs[i] > 0 can be returned.
int64_t choose_from_probs(const std::vector<double>& probs, double u);

// The whole step: greedy when temperature == 0 (u unused), else
// choose_from_probs(sampling_probs(logits, params), u).
int64_t sample_token(const std::vector<double>& logits, const SamplingParams& params, double u);

// A uniform double in [0, 1) with 53 random bits from one Philox block of
// `gen` (advances it by one block): the draw for one generated token.
double philox_uniform_double(Generator& gen);

}  // namespace gl
