// Aggregation of a sweep's run folders into tables and plots.
#include "prefdiff/sweep/report.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/run_name.hpp"
#include "prefdiff/sweep/escape.hpp"
#include "prefdiff/sweep/runner.hpp"
#include "prefdiff/sweep/stats.hpp"
#include "prefdiff/sweep/sweep.hpp"

namespace prefdiff::sweep {
namespace fs = std::filesystem;

namespace {

struct JobRow {
  std::string name, variant, seed;  // seed: the seed key's value ("" when it is not in the grid)
  std::vector<Setting> values;      // grid values without the seed
  std::string state;                // finished, failed, interrupted, running, not started
  std::string detail;               // for failures: stage and exit code
  std::string log;                  // relative to the sweep folder
  nlohmann::json eval;              // eval.json, or null
};

struct Group {
  std::string variant;
  std::vector<Setting> values;
  std::string identity;  // the non-seed values, for pairing with the baseline
  std::vector<size_t> rows;
};

double metric(const JobRow& row, const char* key) {
  if (row.eval.is_null() || !row.eval.contains(key) || !row.eval[key].is_number()) return NAN;
  return row.eval[key].get<double>();
}

std::string number(double v) {  // shortest round-trip text; "" for NaN (an empty CSV cell)
  if (!std::isfinite(v)) return "";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), v);
  return ec == std::errc() ? std::string(buf, end) : "";
}

std::string fixed(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, v);
  return buf;
}

std::string signed_fixed(double v, int digits) {
  if (!std::isfinite(v)) return "n/a";
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%+.*f", digits, v);
  return buf;
}

int digits_for(const char* column) { return std::string(column) == "reward_gain" ? 4 : 3; }

std::string csv_line(const std::vector<std::string>& fields) {
  std::string line;
  for (size_t i = 0; i < fields.size(); ++i) line += (i ? "," : "") + csv_field(fields[i]);
  return line + "\n";
}

std::string values_label(const std::vector<Setting>& values) {
  std::string s;
  for (const Setting& v : values) s += (s.empty() ? "" : ", ") + v.key + " = " + format_value(v.value);
  return s;
}

std::optional<std::string> find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return ::access(name.c_str(), X_OK) == 0 ? std::optional(name) : std::nullopt;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "/usr/bin:/bin");
  std::string d;
  while (std::getline(dirs, d, ':')) {
    const fs::path candidate = fs::path(d.empty() ? "." : d) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return std::nullopt;
}

// Every script starts from gnuplot's defaults: the scripts run in one gnuplot process.
const char* kTerminal =
    "reset\n"
    "if (strstrt(GPVAL_TERMINALS, \"pngcairo\") > 0) { set terminal pngcairo size 960,%d font \",10\" } "
    "else { set terminal png size 960,%d }\n";

// Training-curve rows of one run: step -> (loss, accuracy).
std::map<int64_t, std::pair<double, double>> read_curve(const fs::path& metrics) {
  std::map<int64_t, std::pair<double, double>> out;
  std::ifstream in(metrics);
  std::string line;
  while (std::getline(in, line)) {
    try {
      const nlohmann::json row = nlohmann::json::parse(line);
      if (!row.contains("loss") || !row["loss"].is_number() || !row.contains("step")) continue;
      const double acc = row.contains("rewards/accuracies") && row["rewards/accuracies"].is_number()
                             ? row["rewards/accuracies"].get<double>() : NAN;
      out[row["step"].get<int64_t>()] = {row["loss"].get<double>(), acc};
    } catch (const std::exception&) {
      // a torn last line of a killed run: skip it
    }
  }
  return out;
}

// One group against another variant at the same non-seed values, seed by seed: per metric the mean paired
// difference and its bootstrap interval. No partner group (or no common seed): pairs = 0, NaNs.
struct Paired {
  size_t pairs = 0;
  std::vector<double> diff, lo, hi;
};

Paired paired_against(const std::vector<Group>& groups, const std::vector<JobRow>& rows, const Group& group,
                      const std::string& against, const std::vector<MetricSpec>& metrics, const ReportOptions& options) {
  const Group* base = nullptr;
  for (const Group& b : groups)
    if (b.variant == against && b.identity == group.identity) base = &b;
  Paired p;
  for (const MetricSpec& m : metrics) {
    std::vector<double> d;
    for (size_t i : group.rows) {
      const double v = metric(rows[i], m.eval_key);
      if (base == nullptr || !std::isfinite(v)) continue;
      for (size_t k : base->rows)
        if (rows[k].seed == rows[i].seed && std::isfinite(metric(rows[k], m.eval_key)))
          d.push_back(v - metric(rows[k], m.eval_key));
    }
    p.pairs = std::max(p.pairs, d.size());
    const Interval ci = bootstrap_mean_interval(d, 0.95, options.resamples, options.seed);
    p.diff.push_back(mean(d));
    p.lo.push_back(ci.lo);
    p.hi.push_back(ci.hi);
  }
  return p;
}

}  // namespace

const std::vector<MetricSpec>& report_metrics() {
  static const std::vector<MetricSpec> m = {
      {"win_rate", "win_rate", "win rate"},
      {"reward_gain", "reward_gain", "reward gain"},
      {"mode_entropy/policy", "diversity", "diversity (mode entropy)"},
      {"implicit_accuracy", "implicit_accuracy", "implicit accuracy"},
  };
  return m;
}

ReportResult write_report(const fs::path& dir, const ReportOptions& options) {
  const std::optional<nlohmann::json> plan = read_json(dir / "sweep.json");
  if (!plan || plan->value("format", "") != "prefdiff-sweep")
    throw SweepError(dir.string() + " has no readable sweep.json; HINT: pass the sweep's output folder (the one with "
                     "runs/ and logs/), which `prefdiff sweep FILE` writes");
  const std::string baseline = plan->value("baseline", "dpo");
  const std::string seed_key = plan->value("seed_key", "run.seed");
  const std::string x_key = plan->value("x_key", "");
  std::vector<std::string> keys;  // grid keys without the seed key
  for (const auto& axis : plan->at("grid"))
    if (axis.at("key").get<std::string>() != seed_key) keys.push_back(axis.at("key").get<std::string>());

  // One row per planned job, judged from its folder.
  const bool live = sweep_running(dir);
  std::vector<JobRow> rows;
  for (const auto& j : plan->at("jobs")) {
    JobRow row;
    row.name = j.at("name").get<std::string>();
    row.variant = j.value("variant", "");
    for (const auto& v : j.at("values")) {
      if (v.at("key").get<std::string>() == seed_key)
        row.seed = format_value(v.at("value"));
      else
        row.values.push_back({v.at("key").get<std::string>(), v.at("value")});
    }
    row.log = (fs::path("logs") / (row.name + ".log")).string();
    const fs::path run_dir = runs_dir(dir) / row.name;
    if (auto e = read_json(run_dir / "eval.json"); e && e->value("format", "") == "prefdiff-eval") {
      row.eval = *e;
      row.state = "finished";
    } else if (auto s = read_json(states_dir(dir) / (row.name + ".json"))) {
      row.state = s->value("state", "unfinished");
      if (row.state == "finished") row.state = "unfinished";  // state says so but eval.json is gone
      if (row.state == "running" && !live) row.state = "unfinished";  // its sweep was killed
      row.detail = "in " + s->value("stage", std::string("?"));
      if (s->contains("exit_code")) row.detail += ", exit code " + std::to_string((*s)["exit_code"].get<int>());
      if (s->contains("signal")) row.detail += ", signal " + std::to_string((*s)["signal"].get<int>());
    } else {
      row.state = fs::exists(run_dir) ? "unfinished" : "not started";
    }
    rows.push_back(std::move(row));
  }

  // Groups: (variant, non-seed values), in plan order.
  std::vector<Group> groups;
  for (size_t i = 0; i < rows.size(); ++i) {
    std::string identity;
    for (const Setting& v : rows[i].values) identity += v.key + "=" + v.value.dump() + ";";
    auto it = std::find_if(groups.begin(), groups.end(),
                           [&](const Group& g) { return g.variant == rows[i].variant && g.identity == identity; });
    if (it == groups.end()) {
      groups.push_back({rows[i].variant, rows[i].values, identity, {}});
      it = groups.end() - 1;
    }
    it->rows.push_back(i);
  }
  const auto& metrics = report_metrics();
  const bool has_variants = std::any_of(rows.begin(), rows.end(), [](const JobRow& r) { return !r.variant.empty(); });
  const bool has_baseline = std::any_of(rows.begin(), rows.end(), [&](const JobRow& r) { return r.variant == baseline; });

  ReportResult result;
  result.jobs = static_cast<int>(rows.size());
  for (const JobRow& r : rows) {
    if (r.state == "finished") ++result.finished;
    else if (r.state == "failed") ++result.failed;
    else ++result.unfinished;
  }

  // jobs.csv: one row per job.
  {
    std::vector<std::string> header = {"job", "variant"};
    header.insert(header.end(), keys.begin(), keys.end());
    header.insert(header.end(), {seed_key, "state"});
    for (const MetricSpec& m : metrics) header.push_back(m.column);
    header.insert(header.end(), {"pairwise_rms", "reward_policy", "reward_reference", "step", "log"});
    std::string csv = csv_line(header);
    for (const JobRow& r : rows) {
      std::vector<std::string> f = {r.name, r.variant};
      for (const Setting& v : r.values) f.push_back(format_value(v.value));
      f.insert(f.end(), {r.seed, r.state});
      for (const MetricSpec& m : metrics) f.push_back(number(metric(r, m.eval_key)));
      f.push_back(number(metric(r, "pairwise_rms/policy")));
      f.push_back(number(metric(r, "reward/policy")));
      f.push_back(number(metric(r, "reward/reference")));
      f.push_back(r.eval.is_null() || !r.eval.contains("step") ? "" : r.eval["step"].dump());
      f.push_back(r.log);
      csv += csv_line(f);
    }
    run::atomic_write_file(dir / "jobs.csv", csv);
  }

  // Per group: mean and SE over seeds; against the baseline: paired differences by seed.
  struct Summary {
    size_t n = 0;
    std::vector<double> mean, se;
    Paired vs_baseline;
  };
  std::vector<Summary> summaries(groups.size());
  for (size_t g = 0; g < groups.size(); ++g) {
    Summary& s = summaries[g];
    for (const MetricSpec& m : metrics) {
      std::vector<double> x;
      for (size_t i : groups[g].rows)
        if (const double v = metric(rows[i], m.eval_key); std::isfinite(v)) x.push_back(v);
      s.n = std::max(s.n, x.size());
      s.mean.push_back(mean(x));
      s.se.push_back(standard_error(x));
    }
    if (has_baseline && groups[g].variant != baseline)
      s.vs_baseline = paired_against(groups, rows, groups[g], baseline, metrics, options);
    else  // the baseline itself: empty cells
      s.vs_baseline.diff = s.vs_baseline.lo = s.vs_baseline.hi = std::vector<double>(metrics.size(), NAN);
  }

  // results.csv: one row per group.
  {
    std::vector<std::string> header = {"variant"};
    header.insert(header.end(), keys.begin(), keys.end());
    header.push_back("n");
    for (const MetricSpec& m : metrics) header.insert(header.end(), {std::string(m.column) + "_mean", std::string(m.column) + "_se"});
    header.push_back("pairs_vs_" + baseline);
    for (const MetricSpec& m : metrics) {
      const std::string c = std::string(m.column) + "_diff_vs_" + baseline;
      header.insert(header.end(), {c, c + "_lo95", c + "_hi95"});
    }
    std::string csv = csv_line(header);
    for (size_t g = 0; g < groups.size(); ++g) {
      const Summary& s = summaries[g];
      std::vector<std::string> f = {groups[g].variant};
      for (const Setting& v : groups[g].values) f.push_back(format_value(v.value));
      f.push_back(std::to_string(s.n));
      for (size_t m = 0; m < metrics.size(); ++m) f.insert(f.end(), {number(s.mean[m]), number(s.se[m])});
      const Paired& p = s.vs_baseline;
      f.push_back(std::to_string(p.pairs));
      for (size_t m = 0; m < metrics.size(); ++m) f.insert(f.end(), {number(p.diff[m]), number(p.lo[m]), number(p.hi[m])});
      csv += csv_line(f);
    }
    run::atomic_write_file(dir / "results.csv", csv);
  }

  // Markdown tables.
  std::ostringstream table;
  table << "| " << (has_variants ? "variant | " : "");
  for (const std::string& k : keys) table << markdown_text(k, true) << " | ";
  table << "n |";
  for (const MetricSpec& m : metrics) table << " " << m.title << " |";
  table << "\n|" << (has_variants ? "---|" : "");
  for (size_t k = 0; k < keys.size(); ++k) table << "---|";
  table << "---|";
  for (size_t m = 0; m < metrics.size(); ++m) table << "---|";
  table << "\n";
  for (size_t g = 0; g < groups.size(); ++g) {
    const Summary& s = summaries[g];
    table << "| " << (has_variants ? markdown_text(groups[g].variant, true) + " | " : "");
    for (const Setting& v : groups[g].values) table << markdown_text(format_value(v.value), true) << " | ";
    table << s.n << " |";
    for (size_t m = 0; m < metrics.size(); ++m) {
      const int d = digits_for(metrics[m].column);
      table << " " << fixed(s.mean[m], d);
      if (std::isfinite(s.se[m])) table << " ± " << fixed(s.se[m], d);
      table << " |";
    }
    table << "\n";
  }
  result.summary_table = table.str();

  // A paired-difference table: one row per (group, differences against its partner).
  auto paired_table = [&](const std::vector<std::pair<size_t, Paired>>& entries) {
    std::ostringstream t;
    t << "| variant | ";
    for (const std::string& k : keys) t << markdown_text(k, true) << " | ";
    t << "pairs |";
    for (const MetricSpec& m : metrics) t << " Δ " << m.title << " |";
    t << "\n|---|";
    for (size_t k = 0; k < keys.size(); ++k) t << "---|";
    t << "---|";
    for (size_t m = 0; m < metrics.size(); ++m) t << "---|";
    t << "\n";
    for (const auto& [g, p] : entries) {
      t << "| " << markdown_text(groups[g].variant, true) << " | ";
      for (const Setting& v : groups[g].values) t << markdown_text(format_value(v.value), true) << " | ";
      t << p.pairs << " |";
      for (size_t m = 0; m < metrics.size(); ++m) {
        const int d = digits_for(metrics[m].column);
        t << " " << signed_fixed(p.diff[m], d);
        if (std::isfinite(p.lo[m])) t << " [" << signed_fixed(p.lo[m], d) << ", " << signed_fixed(p.hi[m], d) << "]";
        t << " |";
      }
      t << "\n";
    }
    return t.str();
  };
  std::string paired;
  if (has_baseline && groups.size() > 1) {
    std::vector<std::pair<size_t, Paired>> entries;
    for (size_t g = 0; g < groups.size(); ++g)
      if (groups[g].variant != baseline) entries.emplace_back(g, summaries[g].vs_baseline);
    paired = paired_table(entries);
  }
  // [[sweep.compare]]: each listed variant against its partner; rows also in comparisons.csv.
  std::ostringstream comparisons_md;
  std::string comparisons_csv;
  if (plan->contains("comparisons") && !(*plan)["comparisons"].empty()) {
    std::vector<std::string> header = {"variant", "against"};
    header.insert(header.end(), keys.begin(), keys.end());
    header.push_back("pairs");
    for (const MetricSpec& m : metrics) {
      const std::string c = std::string(m.column) + "_diff";
      header.insert(header.end(), {c, c + "_lo95", c + "_hi95"});
    }
    comparisons_csv = csv_line(header);
    for (const auto& c : (*plan)["comparisons"]) {
      const std::string variant = c.value("variant", ""), against = c.value("against", "");
      std::vector<std::pair<size_t, Paired>> entries;
      for (size_t g = 0; g < groups.size(); ++g) {
        if (groups[g].variant != variant) continue;
        entries.emplace_back(g, paired_against(groups, rows, groups[g], against, metrics, options));
        const Paired& p = entries.back().second;
        std::vector<std::string> f = {variant, against};
        for (const Setting& v : groups[g].values) f.push_back(format_value(v.value));
        f.push_back(std::to_string(p.pairs));
        for (size_t m = 0; m < metrics.size(); ++m) f.insert(f.end(), {number(p.diff[m]), number(p.lo[m]), number(p.hi[m])});
        comparisons_csv += csv_line(f);
      }
      comparisons_md << "## " << markdown_code(variant) << " against " << markdown_code(against) << ", paired by seed\n\n"
                     << markdown_code(variant) << " minus " << markdown_code(against)
                     << " at the same grid values and seed (intervals as above).\n\n"
                     << paired_table(entries) << "\n";
    }
    run::atomic_write_file(dir / "comparisons.csv", comparisons_csv);
  }

  std::ostringstream problems;
  int not_started = 0;
  for (const JobRow& r : rows) {
    if (r.state == "finished") continue;
    if (r.state == "not started") {
      ++not_started;
      continue;
    }
    problems << "- " << markdown_code(r.name) << ": " << r.state << (r.detail.empty() ? "" : " (" + r.detail + ")");
    if (fs::exists(dir / r.log)) problems << "; log: " << markdown_code((dir / r.log).string());
    problems << "\n";
  }
  if (not_started > 0) problems << "- " << not_started << " job(s) not started yet (no run folder)\n";
  result.problems = problems.str();

  // Plots: data files and gnuplot scripts in <dir>/plots, drawn by gnuplot.
  const fs::path plots = dir / "plots";
  std::vector<std::string> scripts;
  if (options.plots) {
    std::error_code ec;
    fs::remove_all(plots, ec);
    fs::create_directories(plots);
    // Win rate against the x key: one series per variant (and per other non-seed value).
    if (!x_key.empty()) {
      std::map<std::string, std::vector<std::pair<double, size_t>>> series;  // label -> (x, group)
      std::vector<std::string> order;
      for (size_t g = 0; g < groups.size(); ++g) {
        double x = NAN;
        std::vector<Setting> rest;
        for (const Setting& v : groups[g].values) {
          if (v.key == x_key && v.value.is_number()) x = v.value.get<double>();
          else if (v.key != x_key) rest.push_back(v);
        }
        if (!std::isfinite(x) || summaries[g].n == 0) continue;
        std::string label = groups[g].variant;
        if (!rest.empty()) label += (label.empty() ? "" : " ") + values_label(rest);
        if (label.empty()) label = "runs";
        if (!series.count(label)) order.push_back(label);
        series[label].emplace_back(x, g);
      }
      if (!order.empty()) {
        std::ostringstream dat, gp;
        char term[512];
        std::snprintf(term, sizeof(term), kTerminal, 600, 600);
        gp << term << "set output 'win_rate.png'\n"
           << "set title " << gnuplot_string("win rate of the policy over the reference (mean ± SE over seeds)") << " noenhanced\n"
           << "set xlabel " << gnuplot_string(x_key) << " noenhanced\nset ylabel 'win rate'\n"
           << "set grid\nset key outside right noenhanced\nset offsets graph 0.04, graph 0.04, graph 0.05, graph 0.05\n"
           << "plot 0.5 with lines dashtype 2 lc rgb 'gray' title 'no change (0.5)'";
        for (size_t i = 0; i < order.size(); ++i) {
          auto& pts = series[order[i]];
          std::sort(pts.begin(), pts.end());
          dat << "# " << run::printable(order[i]) << "\n# " << run::printable(x_key) << " win_rate_mean win_rate_se n\n";
          for (const auto& [x, g] : pts) {
            const double se = summaries[g].se[0];
            dat << number(x) << " " << number(summaries[g].mean[0]) << " " << (std::isfinite(se) ? number(se) : "0") << " "
                << summaries[g].n << "\n";
          }
          dat << "\n\n";
          gp << ", \\\n    'win_rate.dat' index " << i << " using 1:2:3 with yerrorlines lw 2 pt 7 title "
             << gnuplot_string(order[i]);
        }
        gp << "\n";
        run::atomic_write_file(plots / "win_rate.dat", dat.str());
        run::atomic_write_file(plots / "win_rate.gp", gp.str());
        scripts.push_back("win_rate.gp");
      }
    }
    // Training curves: one figure per combination of non-seed values, one line per variant (mean over seeds).
    std::vector<std::string> panels;
    std::map<std::string, std::vector<size_t>> panel_groups;
    for (size_t g = 0; g < groups.size(); ++g) {
      if (!panel_groups.count(groups[g].identity)) panels.push_back(groups[g].identity);
      panel_groups[groups[g].identity].push_back(g);
    }
    for (const std::string& panel : panels) {
      const std::vector<Setting>& values = groups[panel_groups[panel].front()].values;
      std::string stem = "curves";
      for (const Setting& v : values) stem += "_" + v.key + "-" + format_value(v.value);
      stem = sanitize_name(stem);
      std::ostringstream dat;
      std::vector<std::string> labels;
      for (size_t g : panel_groups[panel]) {
        std::map<int64_t, std::pair<std::vector<double>, std::vector<double>>> by_step;
        for (size_t i : groups[g].rows)
          for (const auto& [step, la] : read_curve(runs_dir(dir) / rows[i].name / "metrics.jsonl")) {
            by_step[step].first.push_back(la.first);
            if (std::isfinite(la.second)) by_step[step].second.push_back(la.second);
          }
        if (by_step.empty()) continue;
        labels.push_back(groups[g].variant.empty() ? "runs" : groups[g].variant);
        dat << "# " << run::printable(labels.back()) << "\n# step loss_mean accuracy_mean runs\n";
        for (const auto& [step, v] : by_step)
          dat << step << " " << number(mean(v.first)) << " " << (v.second.empty() ? "NaN" : number(mean(v.second))) << " "
              << v.first.size() << "\n";
        dat << "\n\n";
      }
      if (labels.empty()) continue;
      std::ostringstream gp;
      char term[512];
      std::snprintf(term, sizeof(term), kTerminal, 800, 800);
      const std::string title = "training curves (mean over seeds)" + (values.empty() ? "" : ": " + values_label(values));
      gp << term << "set output '" << stem << ".png'\n"
         << "set multiplot layout 2,1 title " << gnuplot_string(title) << " noenhanced\n"
         << "set grid\nset key outside right noenhanced\nset xlabel 'step'\n";
      for (int panel_row = 0; panel_row < 2; ++panel_row) {
        gp << "set ylabel '" << (panel_row == 0 ? "loss" : "implicit accuracy (train)") << "'\nplot";
        for (size_t i = 0; i < labels.size(); ++i)
          gp << (i ? ", \\\n    " : " ") << "'" << stem << ".dat' index " << i << " using 1:" << (panel_row == 0 ? 2 : 3)
             << " with lines lw 2 title " << gnuplot_string(labels[i]);
        gp << "\n";
      }
      gp << "unset multiplot\n";
      run::atomic_write_file(plots / (stem + ".dat"), dat.str());
      run::atomic_write_file(plots / (stem + ".gp"), gp.str());
      scripts.push_back(stem + ".gp");
    }
    if (scripts.empty()) {
      result.plot_note = "no plots: no finished job has results yet";
    } else if (const auto gnuplot = find_program(options.gnuplot)) {
      std::string command = "cd " + shell_quote(plots.string()) + " && " + shell_quote(*gnuplot);
      for (const std::string& s : scripts) command += " " + shell_quote(s);
      command += " > gnuplot.log 2>&1";
      const int rc = std::system(command.c_str());
      for (const std::string& s : scripts) {
        const fs::path png = plots / (s.substr(0, s.size() - 3) + ".png");
        if (fs::exists(png) && fs::file_size(png) > 0) result.plots.push_back(png);
      }
      if (rc != 0 || result.plots.size() != scripts.size())
        result.plot_note = "gnuplot failed (exit status " + std::to_string(rc) + "); see " + (plots / "gnuplot.log").string();
    } else {
      result.plot_note = "no plots drawn: '" + options.gnuplot + "' was not found; the data and gnuplot scripts are in " +
                         plots.string() + " (HINT: install gnuplot, e.g. apt-get install gnuplot-nox, then run "
                         "`prefdiff sweep report " + dir.string() + "`)";
    }
  }

  // results.md
  std::ostringstream md;
  md << "# Sweep " << markdown_code(plan->value("name", "")) << "\n\n"
     << "Reproduce: " << markdown_code("prefdiff sweep " + plan->value("sweep_file", ""))
     << " (resumable: finished jobs are skipped); rebuild this page from the run folders: "
     << markdown_code("prefdiff sweep report " + dir.string()) << ".\n\n"
     << "Base recipe: " << markdown_code(plan->value("recipe", "")) << ". ";
  if (has_variants) {
    md << "Variants:";
    for (const auto& v : plan->at("variants")) md << " " << markdown_code(v.get<std::string>());
    md << ". ";
  }
  md << "Grid:";
  for (const auto& axis : plan->at("grid"))
    md << " " << markdown_code(axis.at("key").get<std::string>()) << " = " << markdown_text(axis.at("values").dump()) << ";";
  md << " evaluation settings: " << markdown_code(plan->value("eval", nlohmann::json::object()).dump())
     << " (defaults: `prefdiff eval --help`).\n\n"
     << "Jobs: " << result.jobs << " (" << result.finished << " finished, " << result.failed << " failed, "
     << result.unfinished << " unfinished).\n\n"
     << "## Mean ± standard error over seeds (" << markdown_code(seed_key) << ")\n\n"
     << result.summary_table << "\n";
  const JobRow* any = nullptr;
  for (const JobRow& r : rows)
    if (!r.eval.is_null()) any = &r;
  md << "Win rate: fraction of evaluation samples where the policy's sample beats the reference's sample drawn from the "
        "same initial noise, by the oracle reward (ties count half; 0.5 = no change). Reward gain: mean oracle reward "
        "difference policy − reference. Diversity: entropy (nats) of the policy samples' nearest-mode histogram, mean "
        "over prompts";
  if (any != nullptr)
    md << " (the reference: " << fixed(metric(*any, "mode_entropy/reference"), 3) << ", at most "
       << fixed(metric(*any, "mode_entropy/max"), 3) << ")";
  md << "; lower than the reference means mode collapse. Implicit accuracy: fraction of the clean held-out pairs "
        "(oracle labels, never flipped) whose implicit DPO margin ranks the winner first.\n\n";
  if (!paired.empty())
    md << "## Against " << markdown_code(baseline) << ", paired by seed\n\n"
       << "Each variant minus " << markdown_code(baseline) << " at the same grid values and seed: mean difference [95% percentile "
       << "bootstrap interval over the paired differences, " << options.resamples << " resamples, seed " << options.seed
       << "]. With few seeds the interval is coarse (with n pairs it can take at most n^n values).\n\n"
       << paired << "\n";
  md << comparisons_md.str();
  if (!result.plots.empty() || !scripts.empty()) {
    md << "## Plots\n\n";
    for (const std::string& s : scripts) {
      const std::string png = s.substr(0, s.size() - 3) + ".png";
      md << "![" << png << "](plots/" << png << ")\n\n";
    }
    if (!result.plot_note.empty()) md << run::printable(result.plot_note) << "\n\n";
  }
  if (!result.problems.empty()) md << "## Failed and unfinished jobs\n\n" << result.problems << "\n";
  md << "Files: `results.csv` (this table with the paired differences), "
     << (comparisons_csv.empty() ? "" : "`comparisons.csv` (the [[sweep.compare]] tables), ")
     << "`jobs.csv` (one row per job), `runs/<job>/` (each run folder with its `eval.json`), `logs/<job>.log`.\n";
  run::atomic_write_file(dir / "results.md", md.str());
  return result;
}

}  // namespace prefdiff::sweep
