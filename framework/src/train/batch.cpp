#include "prefdiff/train/batch.hpp"

#include <torch/torch.h>

#include "prefdiff/sdk.hpp"

namespace prefdiff {
namespace {

at::Tensor to_tensor(const data::HostTensor& t) {
  c10::ScalarType type = torch::kFloat32;
  switch (t.dtype) {
    case PD_DTYPE_F16: type = torch::kHalf; break;
    case PD_DTYPE_F32: type = torch::kFloat32; break;
    case PD_DTYPE_F64: type = torch::kFloat64; break;
    case PD_DTYPE_I64: type = torch::kInt64; break;
    default: throw std::runtime_error("tensor '" + t.name + "' has a dtype the trainer cannot use");
  }
  return torch::from_blob(const_cast<uint8_t*>(t.data.data()), t.shape, type).clone();
}

void draw_timesteps_and_noise(uint64_t seed, uint64_t epoch, const std::vector<uint64_t>& pair_ids,
                              int64_t num_train_timesteps, at::IntArrayRef latent_shape, at::Tensor& timesteps,
                              at::Tensor& noise) {
  std::vector<at::Tensor> ts, ns;
  for (uint64_t id : pair_ids) {
    auto gen = at::detail::createCPUGenerator(sdk::mix64(sdk::mix64(seed ^ 0x7d0c5a1e) ^ sdk::mix64(epoch) ^ id));
    ts.push_back(torch::randint(0, num_train_timesteps, {1}, gen, torch::kInt64));
    ns.push_back(torch::randn(latent_shape, gen));
  }
  timesteps = torch::cat(ts);
  noise = torch::stack(ns);
}

}  // namespace

DpoBatch to_device_batch(const data::PairBatch& b, const Backbone& policy, uint64_t seed, int64_t num_train_timesteps,
                         c10::Device device) {
  DpoBatch d;
  d.latents_w = to_tensor(b.tensor("latent_w")).to(device, torch::kFloat32);
  d.latents_l = to_tensor(b.tensor("latent_l")).to(device, torch::kFloat32);
  d.encoder_hidden_states = to_tensor(b.tensor("prompt_embeds")).to(device, torch::kFloat32);
  if (policy.requires_added_conditions()) {
    if (!b.has("pooled_embeds") || !b.has("time_ids"))
      throw std::runtime_error("the SDXL-style backbone needs pooled_embeds and time_ids, which the data lacks");
    // time_ids hold a winner row and a loser row per pair (original size and crop differ per image).
    const at::Tensor ids =
        to_tensor(b.tensor("time_ids")).to(device, torch::kFloat32).reshape({static_cast<int64_t>(b.size()), 2, -1});
    d.added = AddedConditions{to_tensor(b.tensor("pooled_embeds")).to(device, torch::kFloat32), ids.select(1, 0)};
    d.loser_time_ids = ids.select(1, 1);
  }
  at::Tensor t, noise;
  draw_timesteps_and_noise(seed, b.epoch, b.pair_ids, num_train_timesteps, d.latents_w.sizes().slice(1), t, noise);
  d.timesteps = t.to(device);
  d.noise = noise.to(device);
  return d;
}

}  // namespace prefdiff
