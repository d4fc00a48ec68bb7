// Batch statistics over ranks: two ranks (threads sharing an all-reduce) must give what one rank gives
// on the concatenated batch: alpha-DPO's batch-mean alpha and Hölder-DPO's contamination estimate.
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

// Evaluates `h` split as h[0..cut) on rank 0 and h[cut..) on rank 1; returns both ranks' results.
std::vector<pc::Evaluation> two_ranks(const std::string& stem, const pc::Params& params, const std::vector<double>& h,
                                      size_t cut) {
  const pc::PluginLibrary plugin = objective(stem);
  const pc::ParamSet resolved = resolve(plugin, params);
  TwoRankReducer reducer;
  pd_host_services services[2] = {rank_services(&reducer, 0), rank_services(&reducer, 1)};
  std::vector<pc::Evaluation> out(2);
  auto run = [&](int rank) {
    pc::ObjectiveInstance instance(plugin, resolved, &services[rank]);
    const std::vector<double> part(rank == 0 ? h.begin() : h.begin() + cut, rank == 0 ? h.begin() + cut : h.end());
    out[rank] = instance.try_evaluate(batch_at(part));
  };
  std::thread other(run, 1);
  run(0);
  other.join();
  return out;
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

}  // namespace
}  // namespace prefdiff_test
