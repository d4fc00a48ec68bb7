#include "prefdiff/train/validation.hpp"

#include <map>

#include <torch/torch.h>

#include "prefdiff/train/batch.hpp"
#include "prefdiff/train/dpo_step.hpp"

namespace prefdiff {

void validate(TrainingSession& s, int64_t step) {
  if (!s.held_out) return;
  const uint64_t limit = std::min<uint64_t>(s.held_out->pair_count(), static_cast<uint64_t>(s.config.eval.pairs));
  data::ReaderOptions o;
  o.seed = s.config.run.seed;
  o.rank = s.env.rank;
  o.world_size = s.env.world_size;
  o.batch_size = static_cast<uint64_t>(s.config.train.batch_size);
  o.shuffle = false;
  o.drop_last = false;
  o.prefetch = 0;
  data::PairReader reader(*s.held_out, o);
  reader.start(0, 0);
  DpoStep dpo(*s.policy, s.reference.get(), s.schedule, *s.objectives);
  std::map<std::string, double> sums;
  double count = 0;
  data::PairBatch b;
  uint64_t seen = 0;
  s.policy->train(false);
  while (seen < limit && reader.next(b)) {
    const DpoBatch d = to_device_batch(b, *s.policy, s.config.run.seed, s.schedule.config().num_train_timesteps, s.device);
    const DpoStepResult r = dpo.evaluate(d, step, b.size() * static_cast<uint64_t>(s.env.world_size));
    const double n = static_cast<double>(b.size());
    sums["rewards/accuracies"] += r.implicit_accuracy * n;
    sums["rewards/margins"] += r.margin * n;
    sums["loss"] += r.loss * n;
    for (size_t i = 0; i < b.size(); ++i) {
      sums["mse/model_w"] += r.errors.model_w[i];
      sums["mse/model_l"] += r.errors.model_l[i];
      if (r.errors.ref_w.empty()) continue;  // reference-free objectives: no reference ran
      sums["mse/ref_w"] += r.errors.ref_w[i];
      sums["mse/ref_l"] += r.errors.ref_l[i];
    }
    count += n;
    seen += b.size() * static_cast<uint64_t>(s.env.world_size);
  }
  s.policy->train(true);
  std::vector<double> v;
  for (const auto& kv : sums) v.push_back(kv.second);
  v.push_back(count);
  s.group->all_reduce_sum(v.data(), v.size());
  std::map<std::string, double> means;
  size_t i = 0;
  for (const auto& kv : sums) means[kv.first] = v[i++] / std::max(1.0, v.back());
  s.metrics->write_eval(step, s.epoch_fraction(), means);
}

}  // namespace prefdiff
