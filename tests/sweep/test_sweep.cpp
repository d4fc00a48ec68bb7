// Sweep orchestration without training: sweep files, names, grid expansion, statistics, aggregation from
// fabricated run folders, the job runner driven by a fake `prefdiff`, and the Slurm script.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "prefdiff/sweep/report.hpp"
#include "prefdiff/sweep/runner.hpp"
#include "prefdiff/sweep/stats.hpp"
#include "prefdiff/sweep/sweep.hpp"

namespace fs = std::filesystem;
using namespace prefdiff::sweep;

namespace {

fs::path temp_dir(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("prefdiff_sweep_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

void write(const fs::path& p, const std::string& text) {
  fs::create_directories(p.parent_path());
  std::ofstream(p) << text;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::vector<std::vector<std::string>> read_csv(const fs::path& p) {  // no quoted fields in these tests
  std::vector<std::vector<std::string>> rows;
  std::ifstream in(p);
  std::string line;
  while (std::getline(in, line)) {
    std::vector<std::string> f;
    std::stringstream s(line);
    std::string cell;
    while (std::getline(s, cell, ',')) f.push_back(cell);
    if (!line.empty() && line.back() == ',') f.push_back("");
    rows.push_back(f);
  }
  return rows;
}

const char* kSweep = R"(
[sweep]
name = "t"
recipe = "recipes/base.toml"
baseline = "dpo"

[sweep.set]
train.steps = 7
"data.prompts" = 3

[sweep.eval]
samples_per_prompt = 4

[[sweep.variant]]
name = "dpo"
set = { "objective.id" = "dpo" }

[[sweep.variant]]
name = "rdpo"
recipe = "recipes/rdpo.toml"
set = { "objective.id" = "rdpo", "objective.eps" = "${noise.rate}" }

[sweep.grid]
noise.rate = [0.0, 0.2]
"run.seed" = [0, 1, 2]
)";

SweepSpec parse(const std::string& text, const fs::path& dir) { return SweepSpec::parse(text, dir / "s.toml", dir / "out"); }

std::string parse_error(const std::string& text) {
  try {
    expand(SweepSpec::parse(text, "/tmp/x/s.toml", "/tmp/x/out"));
  } catch (const SweepError& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// ------------------------------------------------------------------------------------------------ names

TEST(SweepNames, SanitisedNamesStayInsideTheSweepFolder) {
  const fs::path runs = "/sweep/runs";
  for (const std::string& bad : std::vector<std::string>{"../../etc/passwd", "..", ".", "a/b", "/abs", "x/../../y", "...", "a\\b", "", ".hidden",
                                "a..b", std::string("nul\0byte", 8), "sp ace;rm -rf", std::string(300, '/')}) {
    const std::string name = sanitize_name(bad);
    SCOPED_TRACE(bad + " -> " + name);
    EXPECT_FALSE(name.empty());
    EXPECT_EQ(name.find('/'), std::string::npos);
    EXPECT_EQ(name.find(".."), std::string::npos);
    EXPECT_NE(name.front(), '.');
    EXPECT_LE(name.size(), 120u);
    EXPECT_EQ((runs / name).lexically_normal().parent_path(), runs);
  }
  EXPECT_EQ(sanitize_name("dpo__noise.rate-0.2__run.seed-1"), "dpo__noise.rate-0.2__run.seed-1");
  // Long names keep a hash of the whole text, so two long names differing at the end stay distinct.
  EXPECT_NE(sanitize_name(std::string(200, 'a') + "1"), sanitize_name(std::string(200, 'a') + "2"));
}

TEST(SweepNames, ValuesAndOverrides) {
  EXPECT_EQ(format_value(0.2), "0.2");
  EXPECT_EQ(format_value(0.0), "0");
  EXPECT_EQ(format_value(1e-5), "1e-05");
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value("dpo"), "dpo");
  EXPECT_EQ(override_text({"noise.rate", 0.0}), "noise.rate=0.0");  // stays a float
  EXPECT_EQ(override_text({"optim.lr", 1e-5}), "optim.lr=1e-05");
  EXPECT_EQ(override_text({"run.seed", 2}), "run.seed=2");
  EXPECT_EQ(override_text({"objective.id", "a\"b"}), "objective.id=\"a\\\"b\"");
  EXPECT_EQ(override_text({"x.flag", true}), "x.flag=true");
}

// Issue 20: a variant named a`touch pwned` ran `touch` when gnuplot drew the plots. Names that label
// folders, tables, plots and Slurm scripts follow the run-name rule, checked when the file is parsed.
TEST(SweepNames, HostileVariantAndSweepNamesAreRefusedAtParseTime) {
  const std::string e = parse_error(R"toml(
[sweep]
name = "s`touch pwned`"
recipe = "r.toml"
baseline = "dpo"
[[sweep.variant]]
name = "dpo"
[[sweep.variant]]
name = "a`touch pwned`"
[[sweep.variant]]
name = "b$(touch pwned)"
[[sweep.variant]]
name = "c\"quoted\""
[[sweep.variant]]
name = "d\nnewline"
[[sweep.variant]]
name = "e\u0000nul"
[[sweep.variant]]
name = ".hidden.tmp-1-0"
)toml");
  EXPECT_NE(e.find("7 problem(s)"), std::string::npos) << e;
  EXPECT_NE(e.find("s.toml:3:8: [sweep] name 's`touch pwned`' has '`' at position 2, which is not allowed"),
            std::string::npos) << e;
  EXPECT_NE(e.find("[[sweep.variant]] name 'a`touch pwned`' has '`' at position 2"), std::string::npos) << e;
  EXPECT_NE(e.find("name 'b$(touch pwned)' has '$' at position 2"), std::string::npos) << e;
  EXPECT_NE(e.find("name 'c\"quoted\"' has '\"' at position 2"), std::string::npos) << e;
  EXPECT_NE(e.find("name 'd\\nnewline' has '\\n' at position 2"), std::string::npos) << e;
  EXPECT_NE(e.find("name 'e\\0nul' has '\\0' at position 2"), std::string::npos) << e;
  EXPECT_NE(e.find("name '.hidden.tmp-1-0' has '.' at position 1"), std::string::npos) << e;
  EXPECT_NE(e.find("use only letters A-Z a-z, digits, '.', '_', '+' and '-'"), std::string::npos) << e;
  EXPECT_EQ(e.find('\0'), std::string::npos) << "the message itself holds no raw control character";
  EXPECT_EQ(e.find("d\nnewline"), std::string::npos) << e;
  // A file whose stem breaks the rule still gives a usable default name.
  EXPECT_EQ(SweepSpec::parse("[sweep]\nrecipe = \"r.toml\"\n", "/x/my sweep.toml", "/x/o").name, "my_sweep");
}

// ------------------------------------------------------------------------------------------------ grid

TEST(SweepGrid, VariantsCrossedWithTheGridInFileOrder) {
  const fs::path dir = temp_dir("grid");
  const SweepSpec spec = parse(kSweep, dir);
  EXPECT_EQ(spec.x_key, "noise.rate");
  ASSERT_EQ(spec.grid.size(), 2u);
  EXPECT_EQ(spec.grid[0].key, "noise.rate");  // file order, not toml++'s sorted order
  EXPECT_EQ(spec.recipe, dir / "recipes/base.toml");
  const std::vector<Job> jobs = expand(spec);
  ASSERT_EQ(jobs.size(), 2u * 2u * 3u);
  EXPECT_EQ(jobs[0].name, "dpo__noise.rate-0__run.seed-0");
  EXPECT_EQ(jobs[1].name, "dpo__noise.rate-0__run.seed-1");  // last key fastest
  EXPECT_EQ(jobs[3].name, "dpo__noise.rate-0.2__run.seed-0");
  EXPECT_EQ(jobs[11].name, "rdpo__noise.rate-0.2__run.seed-2");
  EXPECT_EQ(jobs[0].recipe, dir / "recipes/base.toml");
  EXPECT_EQ(jobs[6].recipe, dir / "recipes/rdpo.toml");
  std::set<std::string> names;
  for (const Job& j : jobs) names.insert(j.name);
  EXPECT_EQ(names.size(), jobs.size());

  // Overrides: [sweep.set], then the variant, then the grid; "${noise.rate}" takes the job's flip rate.
  std::vector<std::string> texts;
  for (const Setting& s : jobs[10].overrides) texts.push_back(override_text(s));
  EXPECT_EQ(texts, (std::vector<std::string>{"train.steps=7", "data.prompts=3", "objective.id=\"rdpo\"",
                                             "objective.eps=0.2", "noise.rate=0.2", "run.seed=1"}));
  const std::vector<std::string> train = train_args(jobs[10], dir / "out/runs", 2);
  EXPECT_EQ(train[0], "train");
  EXPECT_EQ(train[1], (dir / "recipes/rdpo.toml").string());
  EXPECT_NE(std::find(train.begin(), train.end(), "run.name=\"rdpo__noise.rate-0.2__run.seed-1\""), train.end());
  EXPECT_NE(std::find(train.begin(), train.end(), "train.threads=2"), train.end());
  const std::vector<std::string> ev = eval_args(spec, dir / "out/runs" / jobs[10].name, 2);
  EXPECT_EQ(ev, (std::vector<std::string>{"eval", (dir / "out/runs" / jobs[10].name).string(), "samples_per_prompt=4",
                                          "--threads", "2"}));
}

TEST(SweepGrid, NoVariantsAndNoGrid) {
  const SweepSpec spec = SweepSpec::parse("[sweep]\nrecipe = \"r.toml\"\n[sweep.grid]\nrun.seed = [5, 6]\n", "/x/one.toml", "/x/o");
  const std::vector<Job> jobs = expand(spec);
  ASSERT_EQ(jobs.size(), 2u);
  EXPECT_EQ(jobs[1].name, "run.seed-6");
  const SweepSpec single = SweepSpec::parse("[sweep]\nrecipe = \"r.toml\"\n", "/x/one.toml", "/x/o");
  ASSERT_EQ(expand(single).size(), 1u);
  EXPECT_EQ(expand(single)[0].name, "one");
}

TEST(SweepGrid, BadFilesReportEveryProblemWithItsKey) {
  const std::string e = parse_error(R"(
[sweep]
recipe = "r.toml"
baselin = "dpo"
threads = -1
[sweep.set]
"run.name" = "x"
noise.rate = 0.1
[sweep.grid]
noise.rate = [0.1, 0.1]
run.seed = 3
)");
  EXPECT_NE(e.find("unknown key 'baselin'; did you mean 'baseline'?"), std::string::npos) << e;
  EXPECT_NE(e.find("threads"), std::string::npos) << e;
  EXPECT_NE(e.find("'run.name'"), std::string::npos) << e;
  EXPECT_NE(e.find("'noise.rate' is both in [sweep.grid] and [sweep.set]"), std::string::npos) << e;
  EXPECT_NE(e.find("listed twice"), std::string::npos) << e;
  EXPECT_NE(e.find("run.seed: expected a non-empty array"), std::string::npos) << e;
  EXPECT_NE(e.find("s.toml:4:"), std::string::npos) << "problems carry file:line: " << e;

  // Two grid values that sanitise to one folder name.
  const std::string clash = parse_error("[sweep]\nrecipe = \"r.toml\"\n[sweep.grid]\nobjective.id = [\"a/b\", \"a_b\"]\n");
  EXPECT_NE(clash.find("both get the folder name 'objective.id-a_b'"), std::string::npos) << clash;
  // A reference to a key that no job sets.
  const std::string ref = parse_error(
      "[sweep]\nrecipe = \"r.toml\"\n[[sweep.variant]]\nname = \"r\"\nset = { \"objective.eps\" = \"${noise.rat}\" }\n");
  EXPECT_NE(ref.find("'noise.rat' is not set"), std::string::npos) << ref;
  EXPECT_NE(parse_error("[sweep]\nname = \"x\"\n").find("recipe is missing"), std::string::npos);
  // [[sweep.compare]] names variants that exist, and two different ones.
  const std::string cmp = parse_error(std::string(kSweep) +
                                      "[[sweep.compare]]\nvariant = \"rdp\"\nagainst = \"dpo\"\n"
                                      "[[sweep.compare]]\nvariant = \"dpo\"\nagainst = \"dpo\"\n"
                                      "[[sweep.compare]]\nvariant = \"rdpo\"\nversus = \"dpo\"\n");
  EXPECT_NE(cmp.find("[[sweep.compare]] variant = 'rdp' is not a variant; did you mean 'rdpo'?"), std::string::npos) << cmp;
  EXPECT_NE(cmp.find("compares 'dpo' with itself"), std::string::npos) << cmp;
  EXPECT_NE(cmp.find("unknown key 'versus'"), std::string::npos) << cmp;
  EXPECT_NE(cmp.find("[[sweep.compare]] needs against"), std::string::npos) << cmp;
  EXPECT_NE(parse_error("[sweep\n").find("s.toml:1"), std::string::npos);
}

// ------------------------------------------------------------------------------------------------ stats

TEST(SweepStats, MeanStandardErrorQuantile) {
  EXPECT_DOUBLE_EQ(mean({1, 2, 3, 4}), 2.5);
  // sample sd of 1..4 = sqrt(5/3); SE = sd / 2
  EXPECT_NEAR(standard_error({1, 2, 3, 4}), std::sqrt(5.0 / 3.0) / 2.0, 1e-15);
  EXPECT_NEAR(standard_error({0.61, 0.55}), 0.03, 1e-12);  // |a - b| / 2 for two values
  EXPECT_TRUE(std::isnan(standard_error({0.5})));
  EXPECT_TRUE(std::isnan(mean({})));
  EXPECT_DOUBLE_EQ(quantile_sorted({1, 2, 3, 4}, 0.25), 1.75);  // numpy.percentile([1,2,3,4], 25)
  EXPECT_DOUBLE_EQ(quantile_sorted({1, 2, 3, 4}, 1.0), 4.0);
}

// The Monte Carlo percentile bootstrap against the exact bootstrap distribution, enumerated independently:
// all n^n equally likely resamples of n = 5 fixed numbers.
TEST(SweepStats, BootstrapIntervalMatchesTheExactBootstrapDistribution) {
  const std::vector<double> x = {0.12, -0.31, 0.25, 0.04, 0.18};
  const size_t n = x.size();
  std::vector<double> all;
  std::vector<size_t> idx(n, 0);
  while (true) {
    double s = 0;
    for (size_t i : idx) s += x[i];
    all.push_back(s / static_cast<double>(n));
    size_t k = n;
    while (k > 0 && ++idx[k - 1] == n) idx[--k] = 0;
    if (k == 0) break;
  }
  ASSERT_EQ(all.size(), 3125u);
  auto cdf_below = [&](double v) {  // P(mean* < v), P(mean* <= v)
    double lt = 0, le = 0;
    for (double m : all) {
      lt += m < v - 1e-12;
      le += m <= v + 1e-12;
    }
    return std::pair<double, double>(lt / all.size(), le / all.size());
  };
  const Interval ci = bootstrap_mean_interval(x, 0.95, 40000, 7);
  // With 40,000 resamples the estimated 2.5% / 97.5% points sit within ~0.003 of the exact ones (in probability).
  const auto [lo_lt, lo_le] = cdf_below(ci.lo);
  EXPECT_LE(lo_lt, 0.025 + 0.004);
  EXPECT_GE(lo_le, 0.025 - 0.004);
  const auto [hi_lt, hi_le] = cdf_below(ci.hi);
  EXPECT_LE(hi_lt, 0.975 + 0.004);
  EXPECT_GE(hi_le, 0.975 - 0.004);
  EXPECT_LT(ci.lo, mean(x));
  EXPECT_GT(ci.hi, mean(x));

  // Seeded: the same inputs give the same interval; another seed moves it a little.
  const Interval again = bootstrap_mean_interval(x, 0.95, 40000, 7);
  EXPECT_EQ(ci.lo, again.lo);
  EXPECT_EQ(ci.hi, again.hi);
  const Interval other = bootstrap_mean_interval(x, 0.95, 40000, 8);
  EXPECT_NEAR(other.lo, ci.lo, 0.02);
  // No spread, no interval width; no data, no interval.
  const Interval flat = bootstrap_mean_interval({0.3, 0.3, 0.3}, 0.95, 1000, 0);
  EXPECT_DOUBLE_EQ(flat.lo, 0.3);
  EXPECT_DOUBLE_EQ(flat.hi, 0.3);
  EXPECT_TRUE(std::isnan(bootstrap_mean_interval({}, 0.95, 100, 0).lo));
}

// ------------------------------------------------------------------------------------------------ report

namespace {

void fabricate_eval(const fs::path& run, double win, double gain, double entropy, double acc) {
  const nlohmann::json e = {{"format", "prefdiff-eval"}, {"format_version", 1}, {"win_rate", win},
                            {"reward_gain", gain}, {"mode_entropy/policy", entropy}, {"mode_entropy/reference", 1.2},
                            {"mode_entropy/max", 1.386}, {"implicit_accuracy", acc}, {"step", 7}};
  write(run / "eval.json", e.dump(2));
  // Two logged training rows and a validation row (skipped by the curves).
  write(run / "metrics.jsonl", "{\"step\":5,\"epoch\":0.1,\"loss\":0.69,\"rewards/accuracies\":0.5}\n"
                               "{\"step\":6,\"eval/rewards/accuracies\":0.7}\n"
                               "{\"step\":7,\"epoch\":0.2,\"loss\":" + std::to_string(0.6 + acc / 10) +
                               ",\"rewards/accuracies\":" + std::to_string(acc) + "}\n");
}

}  // namespace

TEST(SweepReport, AggregatesFabricatedRunFolders) {
  const fs::path dir = temp_dir("report");
  const SweepSpec spec = parse(kSweep, dir);
  const std::vector<Job> jobs = expand(spec);
  write_plan(spec, jobs);
  // Win rates chosen per (variant, rate, seed); rdpo at rate 0.2 seed 2 failed in training.
  std::map<std::string, double> win;
  for (const Job& j : jobs) {
    const double rate = j.values[0].value.get<double>();
    const int seed = j.values[1].value.get<int>();
    const double w = (j.variant == "dpo" ? 0.70 : 0.72) - rate * (j.variant == "dpo" ? 0.5 : 0.2) + 0.01 * seed;
    win[j.name] = w;
    if (j.name == "rdpo__noise.rate-0.2__run.seed-2") continue;
    fabricate_eval(spec.output_dir / "runs" / j.name, w, w / 100, 1.0 + seed * 0.1, 0.6 + rate);
  }
  write(spec.output_dir / "jobs" / "rdpo__noise.rate-0.2__run.seed-2.json",
        R"({"state": "failed", "stage": "train", "exit_code": 3, "attempts": 1})");
  write(spec.output_dir / "logs" / "rdpo__noise.rate-0.2__run.seed-2.log", "boom\n");

  ReportOptions options;
  options.resamples = 2000;
  const ReportResult r = write_report(spec.output_dir, options);
  EXPECT_EQ(r.jobs, 12);
  EXPECT_EQ(r.finished, 11);
  EXPECT_EQ(r.failed, 1);
  // The log path in a code span too: its "__" would otherwise render as bold.
  EXPECT_NE(r.problems.find("rdpo__noise.rate-0.2__run.seed-2`: failed (in train, exit code 3); log: `" +
                            (spec.output_dir / "logs/rdpo__noise.rate-0.2__run.seed-2.log").string() + "`"),
            std::string::npos) << r.problems;

  const auto csv = read_csv(spec.output_dir / "results.csv");
  ASSERT_EQ(csv.size(), 5u);  // header + (2 variants x 2 rates)
  const auto& h = csv[0];
  auto col = [&](const std::string& name) { return static_cast<size_t>(std::find(h.begin(), h.end(), name) - h.begin()); };
  ASSERT_LT(col("win_rate_diff_vs_dpo_hi95"), h.size());
  EXPECT_EQ(h[0], "variant");
  EXPECT_EQ(h[1], "noise.rate");
  // dpo at rate 0.2: seeds 0, 1, 2 -> 0.60, 0.61, 0.62.
  const auto& dpo02 = csv[2];
  EXPECT_EQ(dpo02[0], "dpo");
  EXPECT_EQ(dpo02[1], "0.2");
  EXPECT_EQ(dpo02[col("n")], "3");
  EXPECT_NEAR(std::stod(dpo02[col("win_rate_mean")]), 0.61, 1e-12);
  EXPECT_NEAR(std::stod(dpo02[col("win_rate_se")]), standard_error({0.60, 0.61, 0.62}), 1e-12);
  EXPECT_EQ(dpo02[col("win_rate_diff_vs_dpo")], "");  // the baseline has no difference with itself
  // rdpo at 0.2: seeds 0 and 1 only (seed 2 failed), each 0.08 above dpo at the same seed.
  const auto& rdpo02 = csv[4];
  EXPECT_EQ(rdpo02[0], "rdpo");
  EXPECT_EQ(rdpo02[col("n")], "2");
  EXPECT_EQ(rdpo02[col("pairs_vs_dpo")], "2");
  EXPECT_NEAR(std::stod(rdpo02[col("win_rate_diff_vs_dpo")]), 0.08, 1e-12);
  EXPECT_NEAR(std::stod(rdpo02[col("win_rate_diff_vs_dpo_lo95")]), 0.08, 1e-12);
  EXPECT_NEAR(std::stod(rdpo02[col("win_rate_diff_vs_dpo_hi95")]), 0.08, 1e-12);
  EXPECT_NEAR(std::stod(rdpo02[col("diversity_mean")]), 1.05, 1e-12);
  // rdpo at 0.0: differences 0.02 for every seed.
  EXPECT_NEAR(std::stod(csv[3][col("win_rate_diff_vs_dpo")]), 0.02, 1e-12);

  const auto jobs_csv = read_csv(spec.output_dir / "jobs.csv");
  ASSERT_EQ(jobs_csv.size(), 13u);
  const std::string md = read(spec.output_dir / "results.md");
  EXPECT_NE(md.find("| dpo | 0.2 | 3 | 0.610 ± 0.006 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| rdpo | 0.2 | 2 | +0.080 [+0.080, +0.080] |"), std::string::npos) << md;
  EXPECT_NE(md.find("Failed and unfinished jobs"), std::string::npos);

  // Plots: gnuplot data and scripts are always written; the PNGs when gnuplot is installed.
  EXPECT_TRUE(fs::exists(spec.output_dir / "plots/win_rate.dat"));
  EXPECT_TRUE(fs::exists(spec.output_dir / "plots/curves_noise.rate-0.2.gp"));
  const std::string dat = read(spec.output_dir / "plots/win_rate.dat");
  EXPECT_NE(dat.find("# rdpo\n"), std::string::npos);
  if (std::system("command -v gnuplot > /dev/null 2>&1") == 0) {
    EXPECT_TRUE(r.plot_note.empty()) << r.plot_note;
    ASSERT_EQ(r.plots.size(), 3u);  // win rate + curves at two flip rates
    for (const fs::path& png : r.plots) {
      const std::string bytes = read(png);
      ASSERT_GT(bytes.size(), 8u);
      EXPECT_EQ(bytes.substr(1, 3), "PNG") << png;
    }
  } else {
    EXPECT_NE(r.plot_note.find("not found"), std::string::npos);
  }
  // Rebuilding gives the same tables (deterministic bootstrap).
  const std::string before = read(spec.output_dir / "results.csv");
  write_report(spec.output_dir, options);
  EXPECT_EQ(read(spec.output_dir / "results.csv"), before);
  fs::remove_all(dir);
}

// Issue 20: names reached gnuplot inside double quotes, where gnuplot runs `backquoted` commands, and a
// newline broke results.md. The parser now refuses such names, but `sweep report` reads sweep.json, which
// may come from elsewhere: every name, key and value is rendered as data in every output language.
TEST(SweepReport, HostileNamesFromAPlanRunNoCommandAndStayInTheirCells) {
  if (std::system("command -v gnuplot > /dev/null 2>&1") != 0) GTEST_SKIP() << "gnuplot is not installed";
  const fs::path dir = temp_dir("hostile");
  const SweepSpec spec = parse(kSweep, dir);
  const std::vector<Job> jobs = expand(spec);
  write_plan(spec, jobs);
  for (const Job& j : jobs) fabricate_eval(spec.output_dir / "runs" / j.name, 0.6, 0.01, 1.0, 0.7);
  // The plan as a hostile hand (or an older prefdiff) wrote it: the folders stay, the labels change.
  const fs::path pwned = dir / "pwned";
  const std::string evil_a = "a`touch " + (pwned / "1").string() + "`";
  const std::string evil_b = "b'\n`touch " + (pwned / "2").string() + "`\"|$(touch " + (pwned / "3").string() + ")\\";
  const std::string evil_key = "noise.rate`touch " + (pwned / "4").string() + "`";
  const std::string evil_name = "t\n# injected" + std::string(1, '\0') + "`touch " + (pwned / "5").string() + "`";
  nlohmann::json plan = nlohmann::json::parse(read(spec.output_dir / "sweep.json"));
  plan["name"] = evil_name;
  plan["x_key"] = evil_key;
  plan["grid"][0]["key"] = evil_key;
  plan["baseline"] = evil_a;
  plan["variants"] = {evil_a, evil_b};
  plan["comparisons"] = {{{"variant", evil_b}, {"against", evil_a}}};
  for (auto& j : plan["jobs"]) {
    j["variant"] = j["variant"] == "dpo" ? evil_a : evil_b;
    j["values"][0]["key"] = evil_key;
  }
  write(spec.output_dir / "sweep.json", plan.dump(2));
  fs::create_directories(pwned);

  ReportOptions options;
  options.resamples = 200;
  const ReportResult r = write_report(spec.output_dir, options);
  EXPECT_EQ(r.plots.size(), 3u) << r.plot_note << read(spec.output_dir / "plots/gnuplot.log");
  EXPECT_TRUE(fs::is_empty(pwned)) << "gnuplot ran a command from a name";
  for (const auto& e : fs::directory_iterator(spec.output_dir / "plots")) {
    if (e.path().extension() != ".gp") continue;
    const std::string gp = read(e.path());
    EXPECT_EQ(gp.find("\"a`"), std::string::npos) << "no name inside double quotes: " << gp;
    EXPECT_NE(gp.find("title 'a`touch "), std::string::npos) << gp;
  }

  // results.md: every table row on one line with its columns; names in code spans, '|' escaped.
  const std::string md = read(spec.output_dir / "results.md");
  EXPECT_EQ(md.find('\0'), std::string::npos);
  EXPECT_EQ(md.find("\n# injected"), std::string::npos) << md;
  EXPECT_NE(md.find("# Sweep `` t\\n# injected\\0`touch "), std::string::npos) << md;
  const std::string b_cell = "``b'\\n`touch " + (pwned / "2").string() + "`\"\\|$(touch " + (pwned / "3").string() + ")\\``";
  EXPECT_NE(md.find("| " + b_cell + " | 0.2 | 3 |"), std::string::npos) << md;
  std::istringstream lines(md);
  std::string line;
  size_t rows = 0;
  while (std::getline(lines, line)) {
    if (line.rfind("| ", 0) != 0) continue;
    ++rows;
    size_t bars = 0;
    for (size_t i = 0; i < line.size(); ++i) bars += line[i] == '|' && (i == 0 || line[i - 1] != '\\');
    EXPECT_TRUE(bars == 8 || bars == 9) << "a row with its columns: " << line;  // (variant,) rate, n, 4 metrics
  }
  EXPECT_GE(rows, 6u);

  // CSV: the quote and the line break inside one quoted field.
  const std::string csv = read(spec.output_dir / "results.csv");
  EXPECT_NE(csv.find("\"b'\n`touch " + (pwned / "2").string() + "`\"\"|$(touch"), std::string::npos) << csv;
  fs::remove_all(dir);
}

TEST(SweepReport, RunningJobsOfAKilledSweepAreUnfinished) {
  const fs::path dir = temp_dir("stale");
  const SweepSpec spec = SweepSpec::parse("[sweep]\nrecipe = \"r.toml\"\n[sweep.grid]\nrun.seed = [0]\n", dir / "s.toml", dir / "out");
  write_plan(spec, expand(spec));
  write(spec.output_dir / "jobs/run.seed-0.json", R"({"state": "running", "stage": "train", "attempts": 1})");
  fs::create_directories(spec.output_dir / "runs/run.seed-0");
  ReportOptions options;
  options.plots = false;
  EXPECT_NE(write_report(spec.output_dir, options).problems.find("`run.seed-0`: unfinished"), std::string::npos);
  // While a sweep holds the folder's lock, the job is reported as running.
  const int fd = ::open((spec.output_dir / ".sweep.lock").c_str(), O_RDWR | O_CREAT, 0644);
  ASSERT_EQ(::flock(fd, LOCK_EX), 0);
  EXPECT_TRUE(sweep_running(spec.output_dir));
  EXPECT_NE(write_report(spec.output_dir, options).problems.find("`run.seed-0`: running"), std::string::npos);
  ::close(fd);
  EXPECT_FALSE(sweep_running(spec.output_dir));
  fs::remove_all(dir);
}

TEST(SweepReport, MissingPlanIsAClearError) {
  const fs::path dir = temp_dir("noplan");
  try {
    write_report(dir);
    FAIL() << "expected an error";
  } catch (const SweepError& e) {
    EXPECT_NE(std::string(e.what()).find("sweep.json"), std::string::npos);
  }
}

// ------------------------------------------------------------------------------------------------ runner

namespace {

// A stand-in for `prefdiff`: train creates the run folder (and fails for jobs named *boom*), eval writes
// eval.json. Every call is appended to calls.txt.
fs::path fake_prefdiff(const fs::path& dir) {
  const fs::path exe = dir / "fake-prefdiff";
  write(exe, R"(#!/bin/bash
echo "$*" >> ")" + (dir / "calls.txt").string() + R"("
cmd=$1; shift
if [ "$cmd" = train ]; then
  out=""; name=""
  for a in "$@"; do
    case "$a" in run.output_dir=*) out=${a#run.output_dir=}; out=${out//\"/};; run.name=*) name=${a#run.name=}; name=${name//\"/};; esac
  done
  case "$name" in *boom*) echo "boom: training failed" >&2; exit 3;; esac
  mkdir -p "$out/$name" && echo '{"train":{"threads":1}}' > "$out/$name/recipe.json"
  sleep 0.2
elif [ "$cmd" = eval ]; then
  echo '{"format": "prefdiff-eval", "win_rate": 0.5, "implicit_accuracy": 0.5}' > "$1/eval.json"
fi
)");
  fs::permissions(exe, fs::perms::owner_all);
  return exe;
}

}  // namespace

TEST(SweepRunner, FailuresNeverStopTheOthersAndAreRetried) {
  const fs::path dir = temp_dir("runner");
  const SweepSpec spec = SweepSpec::parse(R"(
[sweep]
recipe = "r.toml"
threads = 1
[[sweep.variant]]
name = "ok"
[[sweep.variant]]
name = "boom"
[sweep.grid]
run.seed = [0, 1, 2]
)", dir / "s.toml", dir / "out");
  write(spec.file, "# the sweep file, copied into the sweep folder\n");
  const std::vector<Job> jobs = expand(spec);
  RunOptions options;
  options.prefdiff = fake_prefdiff(dir).string();
  options.jobs = 3;
  std::ostringstream out;
  options.out = &out;
  const RunSummary first = run_sweep(spec, jobs, options);
  EXPECT_EQ(first.total, 6);
  EXPECT_EQ(first.finished, 3) << out.str();
  EXPECT_EQ(first.failed, 3) << out.str();
  EXPECT_EQ(first.threads, 1);
  for (const Job& j : jobs) {
    const nlohmann::json state = nlohmann::json::parse(read(spec.output_dir / "jobs" / (j.name + ".json")));
    EXPECT_EQ(state["state"], j.variant == "ok" ? "finished" : "failed") << j.name;
    EXPECT_EQ(state["attempts"], 1);
    if (j.variant == "boom") {
      EXPECT_EQ(state["exit_code"], 3);
      EXPECT_EQ(state["stage"], "train");
      EXPECT_NE(read(spec.output_dir / "logs" / (j.name + ".log")).find("boom: training failed"), std::string::npos);
    }
  }
  ASSERT_FALSE(spec.text.empty());
  EXPECT_EQ(read(spec.output_dir / "sweep.toml"), spec.text);  // the text that was parsed
  EXPECT_TRUE(fs::exists(spec.output_dir / "sweep.json"));

  // Again: finished jobs are skipped; failed ones run again (their folders do not exist: fresh starts).
  fs::remove(dir / "calls.txt");
  const RunSummary second = run_sweep(spec, jobs, options);
  EXPECT_EQ(second.skipped, 3);
  EXPECT_EQ(second.failed, 3);
  const std::string calls = read(dir / "calls.txt");
  EXPECT_EQ(calls.find("ok__"), std::string::npos) << calls;
  EXPECT_NE(calls.find("run.name=\"boom__run.seed-2\""), std::string::npos) << calls;
  EXPECT_EQ(nlohmann::json::parse(read(spec.output_dir / "jobs/boom__run.seed-0.json"))["attempts"], 2);
  fs::remove_all(dir);
}

TEST(SweepRunner, JobNeedFromTheRunFolder) {
  const fs::path dir = temp_dir("need");
  EXPECT_EQ(job_need(dir / "absent"), JobNeed::Fresh);
  fs::create_directories(dir / "nockpt");
  EXPECT_EQ(job_need(dir / "nockpt"), JobNeed::DiscardFresh);
  write(dir / "done/eval.json", R"({"format": "prefdiff-eval"})");
  EXPECT_EQ(job_need(dir / "done"), JobNeed::Nothing);
  write(dir / "torn/eval.json", R"({"format": "prefdiff-)");
  EXPECT_EQ(job_need(dir / "torn"), JobNeed::DiscardFresh);  // unreadable eval.json is no result
  fs::remove_all(dir);
}

TEST(SweepRunner, SecondSweepOnTheSameFolderIsRefused) {
  const fs::path dir = temp_dir("lock");
  const SweepSpec spec = SweepSpec::parse("[sweep]\nrecipe = \"r.toml\"\n", dir / "s.toml", dir / "out");
  write(spec.file, "");
  RunOptions options;
  options.prefdiff = fake_prefdiff(dir).string();
  std::ostringstream out;
  options.out = &out;
  fs::create_directories(spec.output_dir);
  const pid_t child = ::fork();
  if (child == 0) {  // holds the lock for a moment
    const int fd = ::open((spec.output_dir / ".sweep.lock").c_str(), O_RDWR | O_CREAT, 0644);
    ::flock(fd, LOCK_EX);
    ::sleep(3);
    ::_exit(0);
  }
  ::usleep(300000);
  try {
    run_sweep(spec, expand(spec), options);
    ADD_FAILURE() << "expected the lock to refuse";
  } catch (const SweepError& e) {
    EXPECT_NE(std::string(e.what()).find("in use by another `prefdiff sweep`"), std::string::npos) << e.what();
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  fs::remove_all(dir);
}

// ------------------------------------------------------------------------------------------------ slurm

TEST(SweepSlurm, ArrayScriptRunsTheSameCommandsAndResumes) {
  const fs::path dir = temp_dir("slurm");
  const SweepSpec spec = parse(kSweep, dir);
  const std::vector<Job> jobs = expand(spec);
  const fs::path exe = fake_prefdiff(dir);
  const std::string script = slurm_script(spec, jobs, "/opt/prefdiff/bin/prefdiff", 2);
  EXPECT_NE(script.find("#SBATCH --array=0-11\n"), std::string::npos);
  EXPECT_NE(script.find("#SBATCH --cpus-per-task=2\n"), std::string::npos);
  EXPECT_NE(script.find("PREFDIFF_BUILT='/opt/prefdiff/bin/prefdiff'\nPREFDIFF=\"${PREFDIFF:-$PREFDIFF_BUILT}\""),
            std::string::npos) << script;
  EXPECT_NE(script.find("#SBATCH --output=" + (spec.output_dir / "logs/slurm-%A_%a.out").string()), std::string::npos);
  for (size_t i = 0; i < jobs.size(); ++i) {
    EXPECT_NE(script.find("  " + std::to_string(i) + ")\n    JOB='" + jobs[i].name + "'\n"), std::string::npos) << i;
    std::string train = "    TRAIN=(";
    for (const std::string& a : train_args(jobs[i], spec.output_dir / "runs", 2)) train += (train.back() == '(' ? "" : " ") + shell_quote(a);
    EXPECT_NE(script.find(train + ")\n"), std::string::npos) << "task " << i << " runs the runner's train command";
  }
  const fs::path file = dir / "sweep.sbatch";
  write(file, script);
  ASSERT_EQ(std::system(("bash -n " + file.string()).c_str()), 0) << "syntax";

  // Task 10 with the fake prefdiff: train then eval, output in logs/<job>.log; a second run is a no-op.
  const std::string run = "cd " + dir.string() + " && PREFDIFF=" + exe.string() + " SLURM_ARRAY_TASK_ID=10 bash " +
                          file.string() + " > task.out 2>&1";
  ASSERT_EQ(std::system(run.c_str()), 0) << read(dir / "task.out");
  const std::string name = jobs[10].name;
  EXPECT_TRUE(fs::exists(spec.output_dir / "runs" / name / "eval.json"));
  std::string calls = read(dir / "calls.txt");
  EXPECT_NE(calls.find("train " + (dir / "recipes/rdpo.toml").string() + " train.steps=7"), std::string::npos) << calls;
  EXPECT_NE(calls.find("objective.eps=0.2"), std::string::npos) << calls;
  EXPECT_NE(calls.find("eval " + (spec.output_dir / "runs" / name).string() + " samples_per_prompt=4 --threads 2"),
            std::string::npos) << calls;
  EXPECT_EQ(calls.find("--resume"), std::string::npos);
  EXPECT_NE(read(spec.output_dir / "logs" / (name + ".log")).find("slurm task 10 train"), std::string::npos);
  fs::remove(dir / "calls.txt");
  ASSERT_EQ(std::system(run.c_str()), 0);
  EXPECT_FALSE(fs::exists(dir / "calls.txt")) << "a finished task runs nothing";
  EXPECT_NE(read(dir / "task.out").find("finished earlier"), std::string::npos);

  // Task 3 with a checkpoint from an interrupted run: train --resume latest.
  const fs::path run3 = spec.output_dir / "runs" / jobs[3].name;
  write(run3 / "checkpoints/step-00000004/checkpoint.json", "{}");
  const std::string run_task3 = "cd " + dir.string() + " && PREFDIFF=" + exe.string() + " SLURM_ARRAY_TASK_ID=3 bash " +
                                file.string() + " > task.out 2>&1";
  ASSERT_EQ(std::system(run_task3.c_str()), 0) << read(dir / "task.out");
  EXPECT_NE(read(dir / "calls.txt").find("--resume latest"), std::string::npos);
  // An out-of-range task is refused.
  EXPECT_NE(std::system(("SLURM_ARRAY_TASK_ID=12 bash " + file.string() + " > /dev/null 2>&1").c_str()), 0);
  fs::remove_all(dir);
}

// Issue 20: whatever reaches the Slurm script (recipe values, the sweep folder, the prefdiff path) stays
// data when bash runs it: no command from a value runs, and no newline ends a comment.
TEST(SweepSlurm, HostileValuesAndPathsRunNoCommand) {
  const fs::path dir = temp_dir("slurm_hostile");
  const fs::path pwned = dir / "pwned";
  fs::create_directories(pwned);
  auto touch = [&](const std::string& n) { return "touch " + (pwned / n).string(); };
  const std::string weird = "we$(" + touch("1") + ")ird`" + touch("2") + "`";
  const fs::path out = dir / ("out " + weird);  // the sweep folder, e.g. from --output
  const std::string toml = "[sweep]\nrecipe = \"r.toml\"\n[sweep.grid]\nobjective.id = [\"a'b`" + touch("3") +
                           "`\", \"$(" + touch("4") + ")\", \"x\\ny\"]\n";
  const SweepSpec spec = SweepSpec::parse(toml, dir / "s.toml", out);
  const std::vector<Job> jobs = expand(spec);
  ASSERT_EQ(jobs.size(), 3u);
  // The prefdiff the script runs by default sits in a folder with a hostile name too.
  const fs::path bin = dir / ("bin $(" + touch("5") + ")");
  fs::create_directories(bin);
  fs::copy_file(fake_prefdiff(dir), bin / "prefdiff");
  fs::permissions(bin / "prefdiff", fs::perms::owner_all);
  const std::string script = slurm_script(spec, jobs, (bin / "prefdiff").string(), 1);
  for (const std::string& line : {std::string("# prefdiff sweep 's'"), std::string("#!/bin/bash")})
    EXPECT_NE(script.find(line), std::string::npos) << script;
  const fs::path file = dir / "sweep.sbatch";
  write(file, script);
  ASSERT_EQ(std::system(("bash -n " + file.string()).c_str()), 0) << "syntax";
  for (int task = 0; task < 3; ++task) {
    const std::string run = "cd " + dir.string() + " && SLURM_ARRAY_TASK_ID=" + std::to_string(task) + " bash " +
                            file.string() + " > task.out 2>&1";
    ASSERT_EQ(std::system(run.c_str()), 0) << read(dir / "task.out") << script;
    EXPECT_TRUE(fs::exists(spec.output_dir / "runs" / jobs[task].name / "eval.json")) << jobs[task].name;
  }
  EXPECT_TRUE(fs::is_empty(pwned)) << "a value ran as a command:\n" << script;
  const std::string calls = read(dir / "calls.txt");
  EXPECT_NE(calls.find("objective.id=\"a'b`" + touch("3") + "`\""), std::string::npos) << "passed as data: " << calls;
  // A sweep folder no #SBATCH line can hold is refused with the reason.
  SweepSpec bad = spec;
  bad.output_dir = dir / "line\nbreak";
  try {
    slurm_script(bad, jobs, "/opt/prefdiff", 1);
    ADD_FAILURE() << "expected a SweepError";
  } catch (const SweepError& e) {
    EXPECT_NE(std::string(e.what()).find("line\\nbreak"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

// [[sweep.compare]]: one more paired table, here dpo minus rdpo, in results.md and comparisons.csv.
TEST(SweepReport, CompareTablesPairAnyTwoVariants) {
  const fs::path dir = temp_dir("compare");
  const SweepSpec spec = parse(std::string(kSweep) + "[[sweep.compare]]\nvariant = \"dpo\"\nagainst = \"rdpo\"\n", dir);
  ASSERT_EQ(spec.comparisons.size(), 1u);
  const std::vector<Job> jobs = expand(spec);
  write_plan(spec, jobs);
  for (const Job& j : jobs) {
    const double rate = j.values[0].value.get<double>();
    const int seed = j.values[1].value.get<int>();
    if (j.name == "rdpo__noise.rate-0.2__run.seed-2") continue;  // missing: that seed has no pair
    const double w = (j.variant == "dpo" ? 0.70 : 0.72) - rate * (j.variant == "dpo" ? 0.5 : 0.2) + 0.01 * seed;
    fabricate_eval(spec.output_dir / "runs" / j.name, w, w / 100, 1.0, 0.6);
  }
  ReportOptions options;
  options.resamples = 500;
  options.plots = false;
  write_report(spec.output_dir, options);
  const auto csv = read_csv(spec.output_dir / "comparisons.csv");
  ASSERT_EQ(csv.size(), 3u);  // header + dpo at two rates
  const auto& h = csv[0];
  auto col = [&](const std::string& name) { return static_cast<size_t>(std::find(h.begin(), h.end(), name) - h.begin()); };
  ASSERT_LT(col("win_rate_diff_hi95"), h.size());
  EXPECT_EQ(csv[1][col("variant")], "dpo");
  EXPECT_EQ(csv[1][col("against")], "rdpo");
  EXPECT_EQ(csv[1][col("pairs")], "3");
  EXPECT_NEAR(std::stod(csv[1][col("win_rate_diff")]), -0.02, 1e-12);
  EXPECT_EQ(csv[2][col("pairs")], "2");
  EXPECT_NEAR(std::stod(csv[2][col("win_rate_diff")]), -0.08, 1e-12);
  const std::string md = read(spec.output_dir / "results.md");
  EXPECT_NE(md.find("## `dpo` against `rdpo`, paired by seed"), std::string::npos) << md;
  EXPECT_NE(md.find("| dpo | 0.2 | 2 | -0.080 [-0.080, -0.080] |"), std::string::npos) << md;
  fs::remove_all(dir);
}
