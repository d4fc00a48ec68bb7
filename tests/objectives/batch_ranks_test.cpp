// Batch statistics over ranks: two ranks (threads sharing an all-reduce) must give what one rank gives
// on the concatenated batch: alpha-DPO's batch-mean alpha, Hölder-DPO's contamination estimate and
// SDPO's loser scale lambda.
#include <condition_variable>
#include <mutex>
#include <thread>

#include "plugin_fixture.hpp"

namespace prefdiff_test {
namespace {

// A two-rank in-process all-reduce: each rank adds its values, the last to arrive releases both.
class TwoRankReducer {
 public:
  pd_status reduce(double* values, size_t count) {
    std::unique_lock<std::mutex> lock(mutex_);
    const long generation = generation_;
    if (arrived_ == 0) sum_.assign(values, values + count);
    else for (size_t k = 0; k < count; ++k) sum_[k] += values[k];
    if (++arrived_ == 2) {
      result_ = sum_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != generation; });
    }
    std::copy(result_.begin(), result_.end(), values);
    return PD_OK;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  int arrived_ = 0;
  long generation_ = 0;
  std::vector<double> sum_, result_;
};

pd_status all_reduce(void* context, double* values, size_t count, pd_error*) {
  return static_cast<TwoRankReducer*>(context)->reduce(values, count);
}

pd_host_services rank_services(TwoRankReducer* reducer, int rank) {
  pd_host_services services = *prefdiff::instance::default_host_services();
  services.context = reducer;
  services.all_reduce_sum = &all_reduce;
  services.rank = rank;
  services.world_size = 2;
  return services;
}

// Evaluates batches[0] on rank 0 and batches[1] on rank 1 at once; returns both ranks' results.
std::vector<pc::Evaluation> two_ranks(const std::string& stem, const pc::Params& params, const pc::Batch (&batches)[2]) {
  const pc::PluginLibrary plugin = objective(stem);
  const pc::ParamSet resolved = resolve(plugin, params);
  TwoRankReducer reducer;
  pd_host_services services[2] = {rank_services(&reducer, 0), rank_services(&reducer, 1)};
  std::vector<pc::Evaluation> out(2);
  auto run = [&](int rank) {
    pc::ObjectiveInstance instance(plugin, resolved, &services[rank]);
    out[rank] = instance.try_evaluate(batches[rank]);
  };
  std::thread other(run, 1);
  run(0);
  other.join();
  return out;
}

// `h` split as h[0..cut) on rank 0 and h[cut..) on rank 1.
std::vector<pc::Evaluation> two_ranks(const std::string& stem, const pc::Params& params, const std::vector<double>& h,
                                      size_t cut) {
  const pc::Batch batches[2] = {batch_at(std::vector<double>(h.begin(), h.begin() + cut)),
                                batch_at(std::vector<double>(h.begin() + cut, h.end()))};
  return two_ranks(stem, params, batches);
}

TEST(BatchRanks, AlphaBatchMeanOverTwoRanksEqualsOneRank) {
  const std::vector<double> h = {-5, -1, 0, 0.5, 3};
  const pc::Params params = {real("beta", 2.0)};
  const AtMargins one = evaluate("alpha_dpo", {}, h);
  const std::vector<pc::Evaluation> ranks = two_ranks("alpha_dpo", params, h, 3);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(ranks[r].status, PD_OK) << ranks[r].message;
    // Same alpha on both ranks, equal to the single-rank alpha up to the order of the sum.
    EXPECT_LE(relative_error(ranks[r].diagnostics[0], one.diagnostics[0]), 1e-15);
    EXPECT_LE(relative_error(ranks[r].diagnostics[0], 0.470086532709107), 1e-12);
  }
  EXPECT_EQ(ranks[0].diagnostics[0], ranks[1].diagnostics[0]);
  for (size_t i = 0; i < h.size(); ++i) {
    const pc::Evaluation& e = ranks[i < 3 ? 0 : 1];
    const size_t k = i < 3 ? i : i - 3;
    EXPECT_LE(relative_error(e.loss[k], one.loss[i]), 1e-14) << "h=" << h[i];
    EXPECT_LE(relative_error(-e.dloss_dmodel_w[k], one.dloss_dh[i]), 1e-14) << "h=" << h[i];
  }
}

TEST(BatchRanks, AlphaBatchMeanWithAnEmptyRank) {
  const std::vector<double> h = {-5, -1, 0, 0.5, 3};
  const std::vector<pc::Evaluation> ranks = two_ranks("alpha_dpo", {real("beta", 2.0)}, h, 0);
  ASSERT_EQ(ranks[0].status, PD_OK) << ranks[0].message;
  EXPECT_EQ(ranks[0].diagnostics[0], ranks[1].diagnostics[0]);
  EXPECT_LE(relative_error(ranks[0].diagnostics[0], 0.470086532709107), 1e-12);
}

TEST(BatchRanks, HolderContaminationOverTwoRanksEqualsOneRank) {
  const std::vector<double> h = {-30, 25, 30, -28, 27, 26, 31, 29, 28, 30};
  const AtMargins one = evaluate("holder_dpo", {}, h);
  const std::vector<pc::Evaluation> ranks = two_ranks("holder_dpo", {real("beta", 2.0)}, h, 4);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(ranks[r].status, PD_OK) << ranks[r].message;
    EXPECT_LE(std::fabs(ranks[r].diagnostics[0] - one.diagnostics[0]), 1e-15);
    EXPECT_LE(std::fabs(ranks[r].diagnostics[1] - one.diagnostics[1]), 1e-15);
  }
}

TEST(BatchRanks, SdpoLambdaOverTwoRanksEqualsOneRank) {
  // The released code takes lambda from each GPU's own micro-batch; prefdiff all-reduces the two sums so
  // that the split over ranks does not change the step.
  const std::vector<double> h = {-3, -1, 0, 0.5, 2, 4, -0.2};
  pc::Batch whole = batch_at(h), parts[2];
  for (size_t i = 0; i < h.size(); ++i) {
    whole.model_l[i] = 0.3 + 0.05 * static_cast<double>(i % 3);
    whole.ref_w[i] = 5.0;
    whole.model_w[i] += whole.model_l[i] + 5.0;  // keeps h, with positive errors
    whole.error_ww.push_back(whole.model_w[i]);
    whole.error_ll.push_back(whole.model_l[i]);
    whole.error_wl.push_back((0.6 + 0.05 * static_cast<double>(i)) * std::sqrt(whole.model_w[i] * whole.model_l[i]));
  }
  const size_t cut = 3;
  for (size_t i = 0; i < h.size(); ++i) {
    pc::Batch& part = parts[i < cut ? 0 : 1];
    for (auto field : {&pc::Batch::model_w, &pc::Batch::model_l, &pc::Batch::ref_w, &pc::Batch::ref_l,
                       &pc::Batch::error_ww, &pc::Batch::error_wl, &pc::Batch::error_ll})
      (part.*field).push_back((whole.*field)[i]);
  }
  const pc::Params params = {real("beta", 2.0)};
  const pc::PluginLibrary plugin = objective("sdpo");
  pc::ObjectiveInstance single(plugin, pc::resolve_params(plugin, params));
  const pc::Evaluation one = single.try_evaluate(whole);
  ASSERT_EQ(one.status, PD_OK) << one.message;
  ASSERT_GT(one.diagnostics[0], 0.0);
  ASSERT_LT(one.diagnostics[0], 1.0);
  const std::vector<pc::Evaluation> ranks = two_ranks("sdpo", params, parts);
  for (int r = 0; r < 2; ++r) {
    ASSERT_EQ(ranks[r].status, PD_OK) << ranks[r].message;
    EXPECT_LE(relative_error(ranks[r].diagnostics[0], one.diagnostics[0]), 1e-15);
  }
  for (size_t i = 0; i < h.size(); ++i) {
    const pc::Evaluation& e = ranks[i < cut ? 0 : 1];
    const size_t k = i < cut ? i : i - cut;
    EXPECT_LE(relative_error(e.dloss_dmodel_l[k], one.dloss_dmodel_l[i]), 1e-14) << i;
    EXPECT_EQ(e.loss[k], one.loss[i]) << i;
  }
}

}  // namespace
}  // namespace prefdiff_test
