// One data-parallel rank training the tiny UNet (plus a few extra parameters) for a few optimizer steps over a
// c10d Gloo group, launched by test_gradient_buckets with torchrun-style variables. Writes every gradient after
// every step, and the final parameters, to OUT.safetensors ("step<k>.<name>", "final.<name>"; an undefined
// gradient is absent), and per step "step K buckets N in_backward M by_finish F rebuilt R" to OUT.txt.
//
//   gradient_bucket_ranks OUT MODE STEPS ACCUM [--checkpointing] [--bucket-mb X] [--one-rank-collectives]
//                         [--skip-backward-at K]
//     MODE after    today's path: backward, then DataParallelGroup::all_reduce_mean (the trainer's buckets)
//          overlap  GradientBuckets: all-reduce launched from the backward's hooks, finish() afterwards
//          edges    overlap, plus parameters only rank 0 uses (in odd steps) and one nobody uses; each rank
//                   also writes its local gradients ("local<k>.<name>") so the test can form the mean itself
//   --one-rank-collectives  a single process still all-reduces (through a one-rank Gloo group)
//   --skip-backward-at K    rank 1 skips the backward of step K's last micro-step (as when it throws there)
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/torch_host/distributed.hpp"
#include "prefdiff/torch_host/gradient_buckets.hpp"
#include "prefdiff/model_io/safetensors.hpp"

using namespace prefdiff;

namespace {

nlohmann::json tiny_unet() {
  return {{"block_out_channels", {32, 64}}, {"layers_per_block", 2}, {"sample_size", 32},
          {"down_block_types", {"DownBlock2D", "CrossAttnDownBlock2D"}},
          {"up_block_types", {"CrossAttnUpBlock2D", "UpBlock2D"}}, {"cross_attention_dim", 32}};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: gradient_bucket_ranks OUT MODE STEPS ACCUM [--checkpointing] [--bucket-mb X]\n");
    return 2;
  }
  const std::string out = argv[1], mode = argv[2];
  const int steps = std::atoi(argv[3]), accum = std::atoi(argv[4]);
  bool checkpointing = false, one_rank_collectives = false;
  double bucket_mb = 0.25;
  int skip_at = -1;
  for (int i = 5; i < argc; ++i) {
    if (std::strcmp(argv[i], "--checkpointing") == 0) checkpointing = true;
    else if (std::strcmp(argv[i], "--one-rank-collectives") == 0) one_rank_collectives = true;
    else if (std::strcmp(argv[i], "--bucket-mb") == 0 && i + 1 < argc) bucket_mb = std::atof(argv[++i]);
    else if (std::strcmp(argv[i], "--skip-backward-at") == 0 && i + 1 < argc) skip_at = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "gradient_bucket_ranks: unknown option %s\n", argv[i]);
      return 2;
    }
  }
  try {
    at::set_num_threads(1);
    const DistributedEnv env = DistributedEnv::from_environment();
    DataParallelGroup group(env, "gloo", /*timeout_s=*/20.0, one_rank_collectives);

    torch::manual_seed(7);  // the same initial weights on every rank
    auto net = BackboneRegistry::instance().create("unet2d", tiny_unet());
    net->train(true);
    net->set_gradient_checkpointing(checkpointing);
    std::vector<std::pair<std::string, at::Tensor>> named = net->named_parameters();
    // A float64 parameter (a bucket of its own dtype), and for `edges`: one parameter only rank 0 uses, in odd
    // steps; one nobody uses; one frozen.
    at::Tensor scale = at::full({6}, 0.5, at::kDouble).requires_grad_(true);
    named.emplace_back("extra.scale64", scale);
    at::Tensor rank0_only = at::randn({7, 5}).requires_grad_(true), never = at::randn({3}).requires_grad_(true);
    at::Tensor frozen = at::randn({4});
    if (mode == "edges") {
      named.emplace_back("extra.rank0_only", rank0_only);
      named.emplace_back("extra.never", never);
      named.emplace_back("extra.frozen", frozen);
    }
    std::vector<at::Tensor> params;
    for (auto& [n, p] : named) params.push_back(p);

    std::unique_ptr<GradientBuckets> buckets;
    if (mode != "after") {
      GradientBucketOptions options;
      options.bucket_mb = bucket_mb;
      options.first_bucket_mb = bucket_mb / 5;
      buckets = std::make_unique<GradientBuckets>(group, named, options);
    }

    model_io::NamedTensors record;
    std::ofstream stats(out + ".txt");
    for (int step = 0; step < steps; ++step) {
      for (auto& p : params) p.mutable_grad().reset();  // the optimizer's zero_grad (set to none)
      std::vector<at::Tensor> local(params.size());
      for (int micro = 0; micro < accum; ++micro) {
        if (buckets) buckets->prepare(/*sync=*/micro + 1 == accum);
        if (step == skip_at && env.rank == 1 && micro + 1 == accum) continue;  // threw before its backward
        torch::manual_seed(1000 * env.rank + 10 * step + micro);  // each rank its own data
        const at::Tensor x = at::randn({2, 4, 8, 8}), ctx = at::randn({2, 3, 32});
        const at::Tensor t = at::randint(0, 1000, {2}, at::kLong);
        at::Tensor loss = net->forward(x, t, ctx).square().mean();
        loss = loss + (scale * scale).sum().to(at::kFloat) * 1e-3;
        if (mode == "edges") {
          loss = loss + frozen.sum() * 0.0;
          if (env.rank == 0 && step % 2 == 1) loss = loss + (rank0_only * rank0_only).sum() * 1e-2;
          // The local gradients, computed without touching .grad (grad() runs no AccumulateGrad hooks).
          std::vector<at::Tensor> wrt;
          std::vector<size_t> where;
          for (size_t i = 0; i < params.size(); ++i)
            if (params[i].requires_grad()) wrt.push_back(params[i]), where.push_back(i);
          auto g = torch::autograd::grad({loss}, wrt, {}, /*retain_graph=*/true, false, /*allow_unused=*/true);
          for (size_t k = 0; k < g.size(); ++k) {
            if (!g[k].defined()) continue;
            at::Tensor& acc = local[where[k]];
            acc = acc.defined() ? acc + g[k] : g[k];
          }
        }
        loss.backward();
      }
      if (buckets) {
        buckets->finish();
        stats << "step " << step << " buckets " << buckets->layout().size() << " in_backward "
              << buckets->launched_during_backward() << " by_finish " << buckets->launched_by_finish() << " rebuilt "
              << buckets->rebuilt() << "\n";
      } else {
        std::vector<at::Tensor> grads;
        for (auto& p : params)
          if (p.grad().defined()) grads.push_back(p.grad());
        group.all_reduce_mean(grads, /*bucket_elements=*/64 << 10);
      }
      for (size_t i = 0; i < params.size(); ++i) {
        if (params[i].grad().defined())
          record.emplace_back("step" + std::to_string(step) + "." + named[i].first, params[i].grad().clone());
        if (local[i].defined()) record.emplace_back("local" + std::to_string(step) + "." + named[i].first, local[i]);
      }
      torch::NoGradGuard no_grad;  // plain SGD, so that later steps see weights moved by the reduced gradients
      for (auto& p : params)
        if (p.grad().defined()) p.sub_(p.grad() * 0.05);
    }
    for (auto& [n, p] : named) record.emplace_back("final." + n, p.detach().clone());
    model_io::write_safetensors(out + ".safetensors", record);
    group.barrier();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "gradient_bucket_ranks: %s\n", e.what());
    return 1;
  }
  return 0;
}
