// MetricsLogger: window means, cross-rank reduction, JSONL + CSV that stays rectangular, eval rows,
// resume truncation.
#include <condition_variable>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/metrics.hpp"
#include "run_test_util.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::run;
using prefdiff::run::test::names_in;
using prefdiff::run::test::TempDir;
using nlohmann::json;

namespace {

std::vector<json> jsonl(const fs::path& p) {
  std::vector<json> rows;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) rows.push_back(json::parse(line));
  return rows;
}

// Minimal RFC 4180 reader (the files contain no quotes, but keep it honest).
std::vector<std::vector<std::string>> csv(const fs::path& p) {
  std::vector<std::vector<std::string>> rows;
  std::istringstream in(read_file(p));
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> fields{""};
    for (char c : line) {
      if (c == ',')
        fields.emplace_back();
      else
        fields.back() += c;
    }
    rows.push_back(fields);
  }
  return rows;
}

void expect_rectangular(const fs::path& p) {
  auto rows = csv(p);
  ASSERT_FALSE(rows.empty());
  for (std::size_t i = 1; i < rows.size(); ++i)
    EXPECT_EQ(rows[i].size(), rows[0].size()) << "row " << i << " of " << p;
}

// A sum all-reduce among threads, standing in for the data-parallel group.
class ThreadGroup {
 public:
  explicit ThreadGroup(int n) : n_(n) {}
  void all_reduce_sum(std::vector<double>& v) {
    std::unique_lock<std::mutex> lock(m_);
    std::size_t gen = generation_;
    if (arrived_ == 0) acc_.assign(v.size(), 0.0);
    if (acc_.size() != v.size()) acc_.resize(std::max(acc_.size(), v.size()), 0.0);  // a real backend errs or hangs
    for (std::size_t i = 0; i < v.size(); ++i) acc_[i] += v[i];
    if (++arrived_ == n_) {
      result_ = acc_;
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return generation_ != gen; });
    }
    v.assign(result_.begin(), result_.begin() + static_cast<std::ptrdiff_t>(v.size()));
  }

 private:
  int n_;
  std::mutex m_;
  std::condition_variable cv_;
  int arrived_ = 0;
  std::size_t generation_ = 0;
  std::vector<double> acc_, result_;
};

}  // namespace

TEST(MetricsLogger, WindowMeansAndGauges) {
  TempDir tmp;
  MetricsLogger m(tmp.path());
  EXPECT_TRUE(m.window_empty());
  for (double loss : {0.6, 0.7, 0.8}) m.add(metric::kLoss, loss);
  m.set(metric::kLr, 1e-6);
  m.set(metric::kLr, 2e-6);  // a gauge: the last value
  m.add(metric::kAccuracy, 1.0);
  m.add(metric::kAccuracy, 0.0);
  EXPECT_EQ(m.window_keys(), (std::vector<std::string>{"loss", "lr", "rewards/accuracies"}));
  std::map<std::string, double> means = m.window_means();
  EXPECT_NEAR(means.at("loss"), 0.7, 1e-15);
  EXPECT_EQ(means.at("lr"), 2e-6);
  EXPECT_EQ(means.at("rewards/accuracies"), 0.5);
  EXPECT_FALSE(m.window_empty()) << "window_means() does not clear";

  std::map<std::string, double> logged = m.log_window(10, 0.25);
  EXPECT_EQ(logged, means);
  EXPECT_TRUE(m.window_empty());
  std::vector<json> rows = jsonl(m.jsonl_path());
  ASSERT_EQ(rows.size(), 1u);
  EXPECT_EQ(rows[0]["step"], 10);
  EXPECT_EQ(rows[0]["epoch"], 0.25);
  EXPECT_EQ(rows[0]["rewards/accuracies"], 0.5);
  EXPECT_EQ(rows[0].size(), 5u);
  auto table = csv(m.csv_path());
  ASSERT_EQ(table.size(), 2u);
  EXPECT_EQ(table[0], (std::vector<std::string>{"step", "epoch", "loss", "lr", "rewards/accuracies"}));
  EXPECT_EQ(table[1][0], "10");
  EXPECT_EQ(std::stod(table[1][3]), 2e-6);
  // An empty window writes nothing.
  EXPECT_TRUE(m.log_window(20, 0.5).empty());
  EXPECT_EQ(jsonl(m.jsonl_path()).size(), 1u);
}

TEST(MetricsLogger, NewKeyWidensTheCsvAndKeepsItRectangular) {
  TempDir tmp;
  MetricsLogger m(tmp.path());
  m.write_row(10, 0.1, {{"loss", 0.69}, {"lr", 1e-6}});
  m.write_row(20, 0.2, {{"loss", 0.68}, {"lr", 2e-6}});
  m.write_row(30, 0.3, {{"loss", 0.67}, {"lr", 3e-6}, {"alpha", 0.9}});  // first window with alpha
  m.write_row(40, 0.4, {{"loss", 0.66}, {"lr", 4e-6}, {"alpha", 0.8}});
  auto table = csv(m.csv_path());
  ASSERT_EQ(table.size(), 5u);
  EXPECT_EQ(table[0], (std::vector<std::string>{"step", "epoch", "alpha", "loss", "lr"}));
  EXPECT_EQ(table[1][2], "") << "earlier rows get an empty alpha cell";
  EXPECT_EQ(table[1][3], "0.69");
  EXPECT_EQ(table[3][2], "0.9");
  EXPECT_EQ(table[4][2], "0.8");
  expect_rectangular(m.csv_path());
  EXPECT_EQ(m.csv_columns(), table[0]);
  EXPECT_EQ(names_in(tmp.path()), (std::vector<std::string>{"metrics.csv", "metrics.jsonl"}))
      << "the atomic rewrite leaves no temporary";
}

TEST(MetricsLogger, EvalRowsAreSeparateAndPrefixed) {
  TempDir tmp;
  MetricsLogger m(tmp.path());
  m.write_row(100, 1.0, {{"loss", 0.6}, {"rewards/accuracies", 0.7}});
  m.write_eval(100, 1.0, {{"rewards/accuracies", 0.62}, {"eval/loss", 0.65}, {"mse/ref_w", 0.1}});
  std::vector<json> rows = jsonl(m.jsonl_path());
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_FALSE(rows[1].contains("loss"));
  EXPECT_EQ(rows[1]["eval/rewards/accuracies"], 0.62);
  EXPECT_EQ(rows[1]["eval/loss"], 0.65);
  EXPECT_EQ(rows[1]["eval/mse/ref_w"], 0.1);
  auto table = csv(m.csv_path());
  EXPECT_EQ(table[0], (std::vector<std::string>{"step", "epoch", "eval/loss", "eval/mse/ref_w",
                                                "eval/rewards/accuracies", "loss", "rewards/accuracies"}));
  EXPECT_EQ(table[1][2], "");
  EXPECT_EQ(table[2][5], "");
  expect_rectangular(m.csv_path());
}

TEST(MetricsLogger, NonFiniteValuesAreNullInJsonAndNanInCsv) {
  TempDir tmp;
  MetricsLogger m(tmp.path());
  m.add("loss", 0.5);
  m.add("loss", std::nan(""));  // kept: a NaN must show up, not vanish from the mean
  m.set("grad_norm", INFINITY);
  m.log_window(1, 0.0);
  std::vector<json> rows = jsonl(m.jsonl_path());
  EXPECT_TRUE(rows[0]["loss"].is_null());
  EXPECT_TRUE(rows[0]["grad_norm"].is_null());
  auto table = csv(m.csv_path());
  EXPECT_EQ(table[1][2], "nan");
  EXPECT_EQ(table[1][3], "nan");
}

TEST(MetricsLogger, ReservedAndBadKeysAreRefused) {
  TempDir tmp;
  MetricsLogger m(tmp.path());
  EXPECT_THROW(m.write_row(1, 0, {{"step", 1}}), RunError);
  EXPECT_THROW(m.write_row(1, 0, {{"epoch", 1}}), RunError);
  EXPECT_THROW(m.write_row(1, 0, {{"", 1}}), RunError);
  EXPECT_THROW(m.write_row(1, 0, {{"a\nb", 1}}), RunError);
}

TEST(MetricsLogger, AveragesAcrossRanksAndOnlyTheWriterWrites) {
  TempDir tmp;
  ThreadGroup group(2);
  std::map<std::string, double> got[2];
  auto rank = [&](int r) {
    MetricsLogger m(tmp.path(), MetricsOptions{r == 0, -1, false});
    if (r == 0) {
      m.add("loss", 1.0);
      m.add("loss", 3.0);
      m.add("data_wait_frac", 0.2);
    } else {
      m.add("loss", 5.0);
      m.add("data_wait_frac", 0.4);
    }
    m.set("lr", 1e-5);
    got[r] = m.log_window(10, 0.5, [&](std::vector<double>& v) { group.all_reduce_sum(v); });
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  EXPECT_EQ(got[0], got[1]);
  EXPECT_EQ(got[0].at("loss"), 3.0) << "(1 + 3 + 5) / 3: weighted by how many values each rank added";
  EXPECT_NEAR(got[0].at("data_wait_frac"), 0.3, 1e-15);
  EXPECT_EQ(got[0].at("lr"), 1e-5);
  EXPECT_EQ(jsonl(tmp / "metrics.jsonl").size(), 1u);
}

TEST(MetricsLogger, DifferentKeysOnTwoRanksFailOnBothInsteadOfMisaligning) {
  TempDir tmp;
  ThreadGroup group(2);
  std::string errors[2];
  auto rank = [&](int r) {
    MetricsLogger m(tmp.path(), MetricsOptions{r == 0, -1, false});
    m.add("loss", 1.0);
    if (r == 1) m.add("alpha", 0.9);  // e.g. a diagnostic only one rank produced
    try {
      m.log_window(10, 0.5, [&](std::vector<double>& v) { group.all_reduce_sum(v); });
    } catch (const RunError& e) {
      errors[r] = e.what();
    }
  };
  std::thread t0(rank, 0), t1(rank, 1);
  t0.join();
  t1.join();
  EXPECT_NE(errors[0].find("different keys"), std::string::npos) << errors[0];
  EXPECT_NE(errors[0].find("this rank: loss)"), std::string::npos) << errors[0];
  EXPECT_NE(errors[1].find("this rank: alpha, loss"), std::string::npos) << errors[1];
  EXPECT_FALSE(fs::exists(tmp / "metrics.jsonl"));
}

TEST(MetricsLogger, ResumeDropsRowsAfterTheCheckpointAndATornLine) {
  TempDir tmp;
  {
    MetricsLogger m(tmp.path());
    for (int s = 10; s <= 50; s += 10) m.write_row(s, s / 100.0, {{"loss", 1.0 / s}});
    m.write_eval(20, 0.2, {{"rewards/accuracies", 0.6}});
    m.write_row(60, 0.6, {{"loss", 0.1}, {"alpha", 0.5}});  // a key that exists only after the checkpoint
  }
  {
    std::ofstream torn(tmp / "metrics.jsonl", std::ios::app);
    torn << "{\"step\": 70, \"lo";  // killed mid-row
  }
  // A fresh run refuses a folder that already has metrics.
  EXPECT_THROW(MetricsLogger(tmp.path()), RunError);

  MetricsLogger m(tmp.path(), MetricsOptions{true, 30});
  std::vector<json> rows = jsonl(m.jsonl_path());
  std::vector<int> steps;
  for (const json& r : rows) steps.push_back(r["step"]);
  EXPECT_EQ(steps, (std::vector<int>{10, 20, 30, 20})) << "file order kept; the eval row at 20 stays";
  EXPECT_EQ(m.csv_columns(), (std::vector<std::string>{"step", "epoch", "eval/rewards/accuracies", "loss"}));
  m.write_row(40, 0.4, {{"loss", 0.25}});
  auto table = csv(m.csv_path());
  ASSERT_EQ(table.size(), 6u);
  EXPECT_EQ(table.back()[0], "40");
  expect_rectangular(m.csv_path());
  EXPECT_EQ(jsonl(m.jsonl_path()).size(), 5u);
}

TEST(MetricsLogger, NonWriterTouchesNoFiles) {
  TempDir tmp;
  MetricsLogger m(tmp / "does-not-exist-on-this-rank", MetricsOptions{false, -1, true});
  m.add("loss", 1.0);
  EXPECT_EQ(m.log_window(10, 0.0).at("loss"), 1.0);
  m.write_eval(10, 0.0, {{"loss", 1.0}});
  EXPECT_TRUE(names_in(tmp.path()).empty());
}
