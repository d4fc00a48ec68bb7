// Running a sweep: one `prefdiff train` + `prefdiff eval` pair of processes per job, N at a time, each
// job resumable (docs/sweeps.md, "Resuming"), and the sbatch array script for the same jobs on Slurm.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <vector>

#include "prefdiff/sweep/sweep.hpp"

namespace prefdiff::sweep {

// What a job still needs, judged from its run folder alone.
enum class JobNeed {
  Nothing,       // eval.json is there
  Eval,          // training finished (final checkpoint and run.json final_step), no eval.json
  Resume,        // a complete checkpoint exists: train --resume latest, then eval
  Fresh,         // no run folder: train, then eval
  DiscardFresh,  // a run folder without any complete checkpoint: moved to <dir>/discarded/, then Fresh
};
JobNeed job_need(const std::filesystem::path& run_dir);
const char* job_need_name(JobNeed need);

struct RunOptions {
  std::string prefdiff;    // the prefdiff executable the jobs run
  int jobs = 0;            // parallel jobs; 0 = cores / threads (at least 1)
  std::vector<std::string> only;  // job names to run (empty: all)
  bool dry_run = false;    // print what each job would run, run nothing
  std::ostream* out = nullptr;
};

struct RunSummary {
  int total = 0, skipped = 0, finished = 0, failed = 0, interrupted = 0;
  int jobs = 0, threads = 0;
};

// Runs (or resumes) the sweep in spec.output_dir, which it locks. Failed jobs never stop the others;
// each failure is recorded in <dir>/jobs/<job>.json with its log. SIGINT/SIGTERM stop the children and
// leave every job resumable.
RunSummary run_sweep(const SweepSpec& spec, const std::vector<Job>& jobs, const RunOptions& options);

// train.threads for jobs of this sweep: [sweep] threads, else cores / jobs (at least 1).
int threads_per_job(const SweepSpec& spec, int jobs);

// The sbatch array script: task i runs job i's train (resuming when a checkpoint exists) and eval commands,
// appending their output to <dir>/logs/<job>.log, exactly as run_sweep() would.
std::string slurm_script(const SweepSpec& spec, const std::vector<Job>& jobs, const std::string& prefdiff, int threads);

// Whether a `prefdiff sweep` holds <dir>'s lock now (its "running" jobs are really running).
bool sweep_running(const std::filesystem::path& dir);

// Writes <dir>/sweep.json (plan_json), which `sweep report` reads.
void write_plan(const SweepSpec& spec, const std::vector<Job>& jobs);

// Single-quoted for sh.
std::string shell_quote(const std::string& text);

}  // namespace prefdiff::sweep
