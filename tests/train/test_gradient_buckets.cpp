// GradientBuckets (gradient all-reduce overlapped with backward) against today's all-reduce after backward, over
// two real Gloo processes (gradient_bucket_ranks): every gradient after every step and the final weights are
// compared bit for bit. With two ranks a sum is one IEEE addition per element, whatever the bucketing, and the
// division by 2 is exact, so bitwise equality is the right bar (with more ranks the summation order inside a
// ring all-reduce depends on the chunking, and float32 rounding would be). Also: parameters only one rank or
// no rank uses, accumulation over micro-steps, a rank that skips its last backward, the bucket layout.
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <torch/torch.h>

#include "prefdiff/backbone.hpp"
#include "prefdiff/torch_host/distributed.hpp"
#include "prefdiff/torch_host/gradient_buckets.hpp"
#include "prefdiff/model_io/safetensors.hpp"
#include "../common/free_port.hpp"

using namespace prefdiff;
namespace fs = std::filesystem;

namespace {

using prefdiff::testing::free_port;

fs::path scratch_dir() { return fs::path(::testing::TempDir()) / ("gradient_buckets_" + std::to_string(getpid())); }

std::string scratch(const std::string& name) {
  fs::create_directories(scratch_dir());
  return (scratch_dir() / name).string();
}

// Removes the ranks' files when every test passed (kept for inspection otherwise).
class ScratchCleanup : public ::testing::Environment {
 public:
  void TearDown() override {
    if (::testing::UnitTest::GetInstance()->Passed()) fs::remove_all(scratch_dir());
  }
};
const auto* const kCleanup = ::testing::AddGlobalTestEnvironment(new ScratchCleanup);

// Runs `world` ranks of gradient_bucket_ranks with the given arguments (after OUT) and returns their exit codes;
// rank r writes prefix.r.safetensors and prefix.r.txt.
std::vector<int> launch(int world, const std::string& prefix, const std::vector<std::string>& args) {
  const int port = free_port();
  std::vector<pid_t> pids;
  for (int rank = 0; rank < world; ++rank) {
    const pid_t pid = fork();
    if (pid == 0) {
      setenv("RANK", std::to_string(rank).c_str(), 1);
      setenv("WORLD_SIZE", std::to_string(world).c_str(), 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", std::to_string(port).c_str(), 1);
      const std::string out = prefix + "." + std::to_string(rank);
      std::vector<char*> argv{const_cast<char*>(GRADIENT_BUCKET_RANKS_EXE), const_cast<char*>(out.c_str())};
      for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(GRADIENT_BUCKET_RANKS_EXE, argv.data());
      _exit(127);
    }
    pids.push_back(pid);
  }
  std::vector<int> codes;
  for (pid_t pid : pids) {
    int status = 0;
    waitpid(pid, &status, 0);
    codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -1);
  }
  return codes;
}

std::map<std::string, at::Tensor> read(const std::string& file) {
  std::map<std::string, at::Tensor> out;
  const auto f = model_io::SafetensorsFile::open(file);
  for (const auto& name : f.names()) out[name] = f.load(name);
  return out;
}

struct StepStats {
  size_t buckets = 0, in_backward = 0, by_finish = 0;
  bool rebuilt = false;
};

std::vector<StepStats> read_stats(const std::string& file) {
  std::vector<StepStats> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream f(line);
    std::string word;
    StepStats s;
    int step = 0, rebuilt = 0;
    f >> word >> step >> word >> s.buckets >> word >> s.in_backward >> word >> s.by_finish >> word >> rebuilt;
    s.rebuilt = rebuilt != 0;
    out.push_back(s);
  }
  return out;
}

// Every tensor of `a` equals the same-named tensor of `b` bit for bit, and both hold the same names.
void expect_bitwise_equal(const std::map<std::string, at::Tensor>& a, const std::map<std::string, at::Tensor>& b,
                          const std::string& what) {
  EXPECT_EQ(a.size(), b.size()) << what;
  size_t compared = 0;
  for (const auto& [name, t] : a) {
    auto it = b.find(name);
    if (it == b.end()) {
      ADD_FAILURE() << what << ": " << name << " missing";
      continue;
    }
    EXPECT_TRUE(at::equal(t, it->second)) << what << ": " << name << " differs, max |a-b| "
                                           << (t.to(at::kDouble) - it->second.to(at::kDouble)).abs().max().item<double>();
    ++compared;
  }
  EXPECT_GT(compared, 0u) << what;
}

std::map<std::string, at::Tensor> with_prefix(const std::map<std::string, at::Tensor>& all, const std::string& prefix) {
  std::map<std::string, at::Tensor> out;
  for (const auto& [n, t] : all)
    if (n.rfind(prefix, 0) == 0) out[n] = t;
  return out;
}

void overlapped_equals_after(bool checkpointing) {
  const std::string tag = checkpointing ? "ckpt" : "plain";
  const std::string after = scratch("after_" + tag), overlap = scratch("overlap_" + tag);
  std::vector<std::string> args_after{"after", "3", "2"}, args_overlap{"overlap", "3", "2"};
  if (checkpointing) args_after.push_back("--checkpointing"), args_overlap.push_back("--checkpointing");
  ASSERT_EQ(launch(2, after, args_after), std::vector<int>({0, 0}));
  ASSERT_EQ(launch(2, overlap, args_overlap), std::vector<int>({0, 0}));
  for (int rank = 0; rank < 2; ++rank) {
    const auto a = read(after + "." + std::to_string(rank) + ".safetensors");
    const auto o = read(overlap + "." + std::to_string(rank) + ".safetensors");
    // 3 steps of gradients for every parameter (the UNet's and the float64 one) and the final weights.
    EXPECT_GT(with_prefix(a, "step2.").size(), 300u);
    expect_bitwise_equal(a, o, "rank " + std::to_string(rank));
  }
  // Both ranks hold the same mean.
  expect_bitwise_equal(with_prefix(read(overlap + ".0.safetensors"), "step"),
                       with_prefix(read(overlap + ".1.safetensors"), "step"), "rank 0 vs rank 1");

  // The communication really overlapped: every bucket is launched from a hook, during the backward (in
  // registration order, step 0, the buckets behind the mid block's wait for it; rebuilt in arrival order, none do).
  for (int rank = 0; rank < 2; ++rank) {
    const auto stats = read_stats(overlap + "." + std::to_string(rank) + ".txt");
    ASSERT_EQ(stats.size(), 3u);
    // Step 0 ran in registration order (stats[0].buckets is already the rebuilt layout's count).
    EXPECT_GT(stats[0].in_backward + stats[0].by_finish, 8u) << "0.25 MiB buckets over ~5.6 MB of gradients";
    EXPECT_GT(stats[0].in_backward, 0u);
    for (size_t s = 1; s < stats.size(); ++s) {
      EXPECT_TRUE(stats[s].rebuilt);
      EXPECT_EQ(stats[s].in_backward, stats[s].buckets) << "step " << s << ": every bucket launched during backward";
      EXPECT_EQ(stats[s].by_finish, 0u);
    }
  }
}

}  // namespace

TEST(GradientBuckets, TwoGlooRanksOverlappedEqualTheAllReduceAfterBackwardBitwise) { overlapped_equals_after(false); }

TEST(GradientBuckets, TwoGlooRanksOverlappedEqualTheAllReduceAfterBackwardWithCheckpointing) {
  overlapped_equals_after(true);
}

// Parameters only rank 0 uses (odd steps) end with the mean (rank 1 contributing zeros) on both ranks; the one
// nobody uses and the frozen one keep undefined gradients; everything equals (local0 + local1) / 2 computed
// here from each rank's own gradients, bit for bit.
TEST(GradientBuckets, ParametersSomeOrNoRankUsesEqualTheMeanOfLocalGradients) {
  const std::string prefix = scratch("edges");
  ASSERT_EQ(launch(2, prefix, {"edges", "4", "2", "--checkpointing"}), std::vector<int>({0, 0}));
  const auto r0 = read(prefix + ".0.safetensors"), r1 = read(prefix + ".1.safetensors");
  for (int step = 0; step < 4; ++step) {
    const std::string s = std::to_string(step);
    const auto reduced0 = with_prefix(r0, "step" + s + "."), reduced1 = with_prefix(r1, "step" + s + ".");
    expect_bitwise_equal(reduced0, reduced1, "step " + s + " rank 0 vs 1");
    std::map<std::string, at::Tensor> expected;
    for (const auto& [name, t] : reduced0) {
      const std::string param = name.substr(("step" + s + ".").size());
      auto l0 = r0.find("local" + s + "." + param), l1 = r1.find("local" + s + "." + param);
      ASSERT_TRUE(l0 != r0.end() || l1 != r1.end()) << name << " has a reduced gradient but no rank had one";
      const at::Tensor a = l0 != r0.end() ? l0->second : at::zeros_like(t);
      const at::Tensor b = l1 != r1.end() ? l1->second : at::zeros_like(t);
      expected[name] = (a + b) / 2;
    }
    expect_bitwise_equal(reduced0, expected, "step " + s + " vs (local0 + local1) / 2");
    EXPECT_EQ(reduced0.count("step" + s + ".extra.rank0_only"), step % 2 == 1 ? 1u : 0u) << "step " << s;
    EXPECT_EQ(reduced1.count("step" + s + ".extra.rank0_only"), step % 2 == 1 ? 1u : 0u) << "step " << s;
    EXPECT_EQ(reduced0.count("step" + s + ".extra.never"), 0u);
    EXPECT_EQ(reduced0.count("step" + s + ".extra.frozen"), 0u);
    EXPECT_EQ(r1.count("local" + s + ".extra.rank0_only"), 0u);
  }
}

// A rank that skips the backward of its last micro-step (as when its forward throws) still takes part in every
// collective through finish(): nobody waits for a timeout, and the mean holds what that rank did contribute.
TEST(GradientBuckets, ARankWithoutItsLastBackwardDoesNotHangTheOthers) {
  const std::string prefix = scratch("skip");
  const auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(launch(2, prefix, {"edges", "3", "2", "--skip-backward-at", "1"}), std::vector<int>({0, 0}));
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), 20.0)
      << "finished well inside the 20 s collective timeout";
  const auto r0 = read(prefix + ".0.safetensors"), r1 = read(prefix + ".1.safetensors");
  const std::string name = "conv_out.weight";
  const at::Tensor expected = (r0.at("local1." + name) + r1.at("local1." + name)) / 2;
  EXPECT_TRUE(at::equal(r0.at("step1." + name), expected));
  EXPECT_TRUE(at::equal(r1.at("step1." + name), expected));
  // Rank 1's step-1 local gradient is one micro-step's, rank 0's two: not the same as an unskipped step.
  const auto full = read_stats(prefix + ".1.txt");
  ASSERT_EQ(full.size(), 3u);
  EXPECT_EQ(full[1].in_backward, 0u) << "rank 1 launched nothing from hooks in the step it skipped";
  EXPECT_EQ(full[1].by_finish, full[1].buckets);
}

// One process with a one-rank Gloo group (what bench/device uses to time the hooks with one GPU): the hooks and
// collectives run and change nothing, bit for bit.
TEST(GradientBuckets, OneRankWithCollectivesEqualsPlainBackward) {
  const std::string plain = scratch("one_plain"), hooked = scratch("one_hooked");
  ASSERT_EQ(launch(1, plain, {"after", "2", "2"}), std::vector<int>({0}));
  ASSERT_EQ(launch(1, hooked, {"overlap", "2", "2", "--one-rank-collectives"}), std::vector<int>({0}));
  expect_bitwise_equal(read(plain + ".0.safetensors"), read(hooked + ".0.safetensors"), "one rank");
  const auto stats = read_stats(hooked + ".0.txt");
  ASSERT_EQ(stats.size(), 2u);
  EXPECT_EQ(stats[1].in_backward, stats[1].buckets);
}

// ------------------------------------------------------------------------------------------- in one process

namespace {

struct OneRank {
  DistributedEnv env;
  std::unique_ptr<DataParallelGroup> group;
  OneRank() {
    env.master_port = free_port();
    group = std::make_unique<DataParallelGroup>(env, "gloo", 10.0, /*one_rank_collectives=*/true);
  }
};

std::vector<std::pair<std::string, at::Tensor>> layers(const std::vector<int64_t>& sizes) {
  std::vector<std::pair<std::string, at::Tensor>> out;
  for (size_t i = 0; i < sizes.size(); ++i)
    out.emplace_back("layer" + std::to_string(i), at::randn({sizes[i]}).requires_grad_(true));
  return out;
}

}  // namespace

// Layout before any step: reverse registration order, a small first bucket, then buckets that close once they
// reach the limit (a tensor larger than the limit gets one of its own), frozen parameters left out.
TEST(GradientBuckets, LayoutIsReverseRegistrationOrderWithASmallFirstBucket) {
  OneRank one;
  auto named = layers({1000, 300000, 1000, 1000, 100000, 200000, 50});  // float32: 4 bytes each
  named.emplace_back("frozen", at::randn({10}));
  GradientBucketOptions o;
  o.bucket_mb = 1.0;           // 262,144 floats
  o.first_bucket_mb = 0.0005;  // 131 floats
  GradientBuckets buckets(*one.group, named, o);
  const auto layout = buckets.layout();
  std::vector<std::vector<std::string>> names;
  for (const auto& b : layout) names.push_back(b.names);
  const std::vector<std::vector<std::string>> expected{
      {"layer6", "layer5"},                      // first bucket: closes as soon as it reaches 524 bytes
      {"layer4", "layer3", "layer2", "layer1"},  // 100000+1000+1000+300000 floats: reaches 1 MiB with layer1
      {"layer0"}};
  EXPECT_EQ(names, expected);
  EXPECT_EQ(layout[1].elements, 402000);
  EXPECT_EQ(layout[1].bytes, 402000u * 4u);
  EXPECT_FALSE(buckets.rebuilt());
}

TEST(GradientBuckets, PrepareTwiceInOneStepIsRefused) {
  OneRank one;
  auto named = layers({10, 20});
  GradientBuckets buckets(*one.group, named);
  auto loss = [&] { return named[0].second.sum() + named[1].second.square().sum(); };
  buckets.prepare(true);
  loss().backward();
  try {
    buckets.prepare(true);
    FAIL() << "a second synchronised micro-step would add into buffers that are being reduced";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("call finish() first"), std::string::npos) << e.what();
  }
  buckets.finish();
  EXPECT_TRUE(at::equal(named[1].second.grad(), 2 * named[1].second.detach()));
}

// The gradients share their bucket's storage without being autograd views: LibTorch's optimizers detach_() them
// in zero_grad(), which views refuse (DDP's gradient_as_bucket_view has the same trap in Python).
TEST(GradientBuckets, GradientsAreNotViewsSoZeroGradWorks) {
  OneRank one;
  auto named = layers({10, 20});
  GradientBuckets buckets(*one.group, named);
  buckets.prepare(true);
  (named[0].second.sum() + named[1].second.sum()).backward();
  buckets.finish();
  for (auto& [n, p] : named) {
    EXPECT_FALSE(p.grad().is_view()) << n;
    EXPECT_TRUE(at::equal(p.grad(), at::ones_like(p))) << n;
  }
  std::vector<at::Tensor> params{named[0].second, named[1].second};
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1));
  EXPECT_NO_THROW(sgd.zero_grad());
  for (auto& [n, p] : named) EXPECT_FALSE(p.grad().defined()) << n;
}

TEST(GradientBuckets, ASingleProcessWithoutCollectivesInstallsNoHooks) {
  DistributedEnv env;  // world size 1
  DataParallelGroup group(env, "gloo", 10.0);
  auto named = layers({10});
  GradientBuckets buckets(group, named);
  EXPECT_FALSE(buckets.active());
  EXPECT_TRUE(buckets.layout().empty());
  buckets.prepare(true);
  named[0].second.sum().backward();
  buckets.finish();
  EXPECT_TRUE(at::equal(named[0].second.grad(), at::ones({10})));
}
