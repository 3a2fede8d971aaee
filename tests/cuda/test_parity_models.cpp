// GPU parity of the models: the Hugging Face fixtures on CUDA (logits and
// loss to 1e-5, every parameter gradient to 1e-4, both relative to the
// tensor's scale as on the CPU: see tests/models/parity.h for why), plus
// CPU-vs-CUDA agreement of make_model and of KV-cache generation.
//
// Tolerances: the CPU and cuBLAS both compute in f32 (TF32 off) with
// different summation orders, as transformers does on the CPU, so the
// fixture bounds of the CPU test apply unchanged. CPU vs CUDA logits:
// 1e-5 of the tensor's scale, the same bound.
#include <doctest/doctest.h>

#include "models/model.h"
#include "tests/models/model_testing.h"
#include "tests/models/parity.h"

using namespace gl;
using namespace gl::testing;

TEST_CASE("cuda parity with transformers: GPT-NeoX, rotary_pct 0.25, parallel residual") {
  check_model_parity("neox_parallel", Device::cuda());
}

TEST_CASE("cuda parity with transformers: GPT-NeoX, sequential residual") {
  check_model_parity("neox_sequential", Device::cuda());
}

TEST_CASE("cuda parity with transformers: GPT-2") { check_model_parity("gpt2", Device::cuda()); }

TEST_CASE("cuda models: make_model gives the CPU's model and cached generation agrees") {
  for (const char* preset : {"pythia-14m", "gpt2"}) {
    INFO(preset);
    ModelConfig c = ModelConfig::preset(preset);
    c.vocab_size = 301;
    c.num_layers = 2;
    c.max_positions = 64;
    c.initializer_range = 0.1;
    Generator g1(5), g2(5);
    const auto cpu = make_model(c, g1, DType::F32, Device::cpu());
    const auto gpu = make_model(c, g2, DType::F32, Device::cuda());
    const auto pc = cpu->parameters(), pg = gpu->parameters();
    for (size_t i = 0; i < pc.size(); ++i) {
      CHECK(pg[i].var.device().is_cuda());
      CHECK(check_close(pc[i].name, pg[i].var.value(), pc[i].var.value(), 0, 0));
    }
    std::vector<int64_t> seq;
    for (int i = 0; i < 2 * 40; ++i) seq.push_back((i * 37 + 11) % 301);
    const Tensor ids = Tensor::from_data(seq, {2, 40});
    NoGradGuard no_grad;
    const Tensor ref = cpu->logits(ids).value();
    CHECK(check_scaled("cuda logits", gpu->logits(ids).value(), ref, 1e-5));
    // Prompt of 30, then 10 single tokens through the cache.
    KVCache cache = gpu->make_cache(2, 40);
    std::vector<Tensor> pieces = {gpu->logits(ids.narrow(1, 0, 30).contiguous(), &cache).value()};
    for (int64_t t = 30; t < 40; ++t)
      pieces.push_back(gpu->logits(ids.narrow(1, t, 1).contiguous(), &cache).value());
    CHECK(check_scaled("cuda cached logits", concat_tensor(pieces, 1), ref, 1e-5));
  }
}
