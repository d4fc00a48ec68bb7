// `prefdiff sweep SWEEP.toml` and `prefdiff sweep report DIR` (docs/sweeps.md). Torch-free: the jobs are
// separate `prefdiff train` / `prefdiff eval` processes.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <set>

#include <boost/dll/runtime_symbol_info.hpp>

#include "cli.hpp"
#include "prefdiff/recipe/recipe.hpp"
#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/sweep/report.hpp"
#include "prefdiff/sweep/runner.hpp"
#include "prefdiff/sweep/sweep.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff {
namespace {
namespace fs = std::filesystem;

struct SweepArgs {
  std::string file;
  std::string output;
  std::string emit_slurm;
  std::vector<std::string> only;
  int jobs = 0;
  bool dry_run = false;
  bool no_report = false;
};

struct ReportArgs {
  std::string dir;
  int resamples = 10000;
  uint64_t seed = 0;
  bool no_plots = false;
};

Diagnostic problem(SourceLocation where, const std::string& message) {
  Diagnostic d;
  d.where = std::move(where);
  d.message = message;
  return d;
}

// Every job's recipe with its overrides, checked like `prefdiff recipe validate` before anything runs.
void validate_jobs(CliContext& context, const std::vector<sweep::Job>& jobs, const sweep::SweepSpec& spec) {
  std::vector<Diagnostic> problems;
  std::set<std::string> seen;
  for (const sweep::Job& job : jobs) {
    std::vector<std::string> overrides = sweep::train_args(job, sweep::runs_dir(spec.output_dir), 1);
    overrides.erase(overrides.begin(), overrides.begin() + 2);  // "train", recipe
    try {
      const Recipe recipe = load_recipe(job.recipe.string(), overrides, context.registry());
      const std::string data = recipe.section("data")["id"].get<std::string>();
      if (data != toy::kDataId && seen.insert("data:" + data).second)
        problems.push_back(problem({job.recipe.string(), 0, 0},
                                   "job '" + job.name + "': [data] id = \"" + data +
                                       "\": sweep jobs are scored by `prefdiff eval`, which needs the synthetic world's "
                                       "oracle ([data] id = \"" + toy::kDataId +
                                       "\"); real reward models are not part of prefdiff yet"));
    } catch (const RecipeError& e) {
      for (const Diagnostic& d : e.diagnostics())
        if (seen.insert(d.str()).second)
          problems.push_back(problem(d.where, d.message + " (job '" + job.name + "'" +
                                               (job.variant.empty() ? "" : ", variant '" + job.variant + "'") + ")"));
    }
  }
  if (!problems.empty()) throw RecipeError(problems);
}

void print_report(const sweep::ReportResult& r, const fs::path& dir) {
  std::printf("\n%s\n", r.summary_table.c_str());
  if (!r.problems.empty()) std::printf("Failed or unfinished jobs:\n%s\n", r.problems.c_str());
  std::printf("%d jobs: %d finished, %d failed, %d unfinished\n", r.jobs, r.finished, r.failed, r.unfinished);
  std::printf("results: %s, %s\n", (dir / "results.md").c_str(), (dir / "results.csv").c_str());
  for (const fs::path& p : r.plots) std::printf("plot:    %s\n", p.c_str());
  if (!r.plot_note.empty()) std::printf("plots:   %s\n", r.plot_note.c_str());
}

void run_sweep_command(CliContext& context, const SweepArgs& args) {
  sweep::SweepSpec spec;
  std::vector<sweep::Job> jobs;
  try {
    spec = sweep::SweepSpec::load(args.file, args.output);
    jobs = sweep::expand(spec);
  } catch (const sweep::SweepError& e) {  // a bad sweep file is an invalid recipe: nothing was run
    std::cerr << "error: " << e.what() << "\n";
    context.exit_code = kExitRecipeInvalid;
    return;
  }
  validate_jobs(context, jobs, spec);
  const std::string prefdiff = boost::dll::program_location().string();

  if (!args.emit_slurm.empty()) {
    const int threads = std::max(1, spec.threads > 0 ? spec.threads : 1);
    sweep::write_plan(spec, jobs);
    run::atomic_write_file(args.emit_slurm, sweep::slurm_script(spec, jobs, prefdiff, threads));
    fs::permissions(args.emit_slurm, fs::perms::owner_exec | fs::perms::group_exec, fs::perm_options::add);
    std::printf("wrote %s: %zu array tasks, %d cpu(s) each, results in %s\n"
                "submit: sbatch %s   then: prefdiff sweep report %s\n",
                args.emit_slurm.c_str(), jobs.size(), threads, spec.output_dir.c_str(), args.emit_slurm.c_str(),
                spec.output_dir.c_str());
    return;
  }

  sweep::RunOptions options;
  options.prefdiff = prefdiff;
  options.jobs = args.jobs;
  options.only = args.only;
  options.dry_run = args.dry_run;
  const sweep::RunSummary s = sweep::run_sweep(spec, jobs, options);
  if (args.dry_run) return;
  std::printf("sweep %s: %d finished now, %d finished earlier, %d failed, %d interrupted\n", spec.name.c_str(), s.finished,
              s.skipped, s.failed, s.interrupted);
  if (!args.no_report) print_report(sweep::write_report(spec.output_dir), spec.output_dir);
  if (s.interrupted > 0) {
    std::fprintf(stderr, "interrupted: run `prefdiff sweep %s` again to resume\n", args.file.c_str());
    context.exit_code = kExitFailure;
  } else if (s.failed > 0) {
    std::fprintf(stderr, "%d job(s) failed (listed above with their logs); running the sweep again retries them\n", s.failed);
    context.exit_code = kExitFailure;
  }
}

}  // namespace

void add_sweep_commands(CLI::App& app, CliContext& context) {
  static SweepArgs args;
  static ReportArgs report_args;
  CLI::App* cmd = app.add_subcommand(
      "sweep", "Run a grid of training jobs (variants x recipe keys x seeds), evaluate each, and tabulate and plot the "
               "results (docs/sweeps.md). Resumable: finished jobs are skipped.");
  cmd->add_option("sweep_file", args.file, "Sweep file (TOML), e.g. recipes/sweeps/default.toml");
  cmd->add_option("--jobs,-j", args.jobs, "Jobs run in parallel (default: cores / [sweep] threads)")->check(CLI::PositiveNumber);
  cmd->add_option("--output", args.output, "Sweep folder (default: [sweep] output_dir, else runs/sweeps/<name>)");
  cmd->add_option("--only", args.only, "Run only these jobs (folder names; repeatable)");
  cmd->add_flag("--dry-run", args.dry_run, "List each job with what it still needs and its commands; run nothing");
  cmd->add_flag("--no-report", args.no_report, "Do not aggregate at the end");
  cmd->add_option("--emit-slurm", args.emit_slurm,
                  "Write an sbatch array script (one task per job, the same train + eval commands) instead of running");

  CLI::App* report = cmd->add_subcommand("report", "Rebuild results.csv, results.md and the plots from a sweep folder");
  report->add_option("dir", report_args.dir, "The sweep folder (with sweep.json, runs/, logs/)")->required();
  report->add_option("--resamples", report_args.resamples, "Bootstrap resamples (default 10000)")->check(CLI::PositiveNumber);
  report->add_option("--seed", report_args.seed, "Bootstrap seed (default 0)");
  report->add_flag("--no-plots", report_args.no_plots, "Tables only");
  report->callback([] {
    sweep::ReportOptions options;
    options.resamples = report_args.resamples;
    options.seed = report_args.seed;
    options.plots = !report_args.no_plots;
    print_report(sweep::write_report(report_args.dir, options), report_args.dir);
  });

  cmd->callback([cmd, report, &context] {
    if (cmd->got_subcommand(report)) return;
    if (args.file.empty()) throw CLI::RequiredError("sweep_file (or `prefdiff sweep report DIR`)");
    run_sweep_command(context, args);
  });
}

}  // namespace prefdiff
