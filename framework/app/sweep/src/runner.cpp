// The sweep runner: N child processes at a time, each job train (fresh or --resume latest) then eval,
// output appended to <dir>/logs/<job>.log, the outcome in <dir>/jobs/<job>.json.
#include "prefdiff/sweep/runner.hpp"

#include "prefdiff/host/cores.hpp"
#include "prefdiff/run/run_directory.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <chrono>
#include <cstring>
#include <ctime>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <thread>

#include "prefdiff/run/atomic_dir.hpp"
#include "prefdiff/run/checkpoint_store.hpp"
#include "prefdiff/run/run_name.hpp"

namespace prefdiff::sweep {
namespace fs = std::filesystem;

namespace {

volatile sig_atomic_t g_stop = 0;
void on_stop(int) { g_stop = 1; }

std::string join(const std::vector<std::string>& args) {
  std::string s;
  for (const std::string& a : args) s += (s.empty() ? "" : " ") + shell_quote(a);
  return s;
}

// Holds <dir>/.sweep.lock (flock) for the lifetime of the runner.
class SweepLock {
 public:
  explicit SweepLock(const fs::path& dir) {
    const fs::path path = dir / ".sweep.lock";
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw SweepError("cannot open " + path.string() + ": " + std::strerror(errno));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      std::string holder = run::read_file(path);
      ::close(fd_);
      throw SweepError("sweep folder " + dir.string() + " is in use by another `prefdiff sweep` (" +
                       (holder.empty() ? "unknown process" : holder) +
                       "); HINT: wait for it to finish, or stop it (a killed sweep releases the folder at once)");
    }
    const std::string me = "pid " + std::to_string(::getpid());
    if (::ftruncate(fd_, 0) == 0 && ::write(fd_, me.data(), me.size()) < 0) {
      // The lock itself is what matters; the text is only a hint for the message above.
    }
  }
  ~SweepLock() { ::close(fd_); }
  SweepLock(const SweepLock&) = delete;
  SweepLock& operator=(const SweepLock&) = delete;

 private:
  int fd_ = -1;
};

int recorded_threads(const fs::path& run_dir) {
  auto recipe = read_json(run_dir / "recipe.json");
  if (!recipe) return 0;
  try {
    return static_cast<int>(recipe->at("train").at("threads").get<long long>());
  } catch (const std::exception&) {
    return 0;
  }
}

struct Running {
  size_t job = 0;
  pid_t pid = -1;
  bool training = true;  // else evaluating
  std::chrono::steady_clock::time_point start;
  int threads = 1;
  int attempt = 1;
  std::string stage_text;  // "train (fresh)", ...
};

}  // namespace

const char* job_need_name(JobNeed need) {
  switch (need) {
    case JobNeed::Nothing: return "finished";
    case JobNeed::Eval: return "eval";
    case JobNeed::Resume: return "resume";
    case JobNeed::Fresh: return "fresh";
    case JobNeed::DiscardFresh: return "restart";
  }
  return "?";
}

JobNeed job_need(const fs::path& run_dir) {
  if (auto e = read_json(run_dir / "eval.json"); e && e->value("format", "") == "prefdiff-eval") return JobNeed::Nothing;
  std::error_code ec;
  if (!fs::exists(run_dir, ec)) return JobNeed::Fresh;
  const std::optional<run::CheckpointInfo> latest = run::CheckpointStore(run_dir / "checkpoints").latest();
  if (!latest) return JobNeed::DiscardFresh;
  if (auto meta = read_json(run_dir / "run.json"); meta && meta->contains("final_step") &&
                                                   (*meta)["final_step"].is_number_integer() &&
                                                   (*meta)["final_step"].get<int64_t>() == latest->step)
    return JobNeed::Eval;
  return JobNeed::Resume;
}

int threads_per_job(const SweepSpec& spec, int jobs) {
  if (spec.threads > 0) return spec.threads;
  return std::max(1, available_cores() / std::max(1, jobs));
}

bool sweep_running(const fs::path& dir) {
  const int fd = ::open((dir / ".sweep.lock").c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool held = ::flock(fd, LOCK_SH | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  ::close(fd);
  return held;
}

std::string shell_quote(const std::string& text) {
  std::string out = "'";
  for (char c : text) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

void write_plan(const SweepSpec& spec, const std::vector<Job>& jobs) {
  fs::create_directories(spec.output_dir);
  run::atomic_write_file(spec.output_dir / "sweep.json", plan_json(spec, jobs).dump(2) + "\n");
}

RunSummary run_sweep(const SweepSpec& spec, const std::vector<Job>& jobs, const RunOptions& options) {
  std::ostream& out = options.out ? *options.out : std::cout;
  const fs::path dir = spec.output_dir;
  fs::create_directories(dir);
  SweepLock lock(dir);
  for (const fs::path& p : {runs_dir(dir), logs_dir(dir), states_dir(dir)}) fs::create_directories(p);
  write_plan(spec, jobs);
  run::atomic_write_file(dir / "sweep.toml", spec.text);  // the text that was parsed, not a second read

  RunSummary summary;
  const int cores = available_cores();
  summary.jobs = options.jobs > 0 ? options.jobs : (spec.threads > 0 ? std::max(1, cores / spec.threads) : cores);
  summary.threads = threads_per_job(spec, summary.jobs);
  if (summary.jobs * summary.threads > cores)
    out << "warning: " << summary.jobs << " jobs x " << summary.threads << " threads > " << cores
        << " cores: jobs will compete for cores (HINT: fewer --jobs, or a smaller [sweep] threads)\n";

  std::vector<size_t> queue;
  for (size_t i = 0; i < jobs.size(); ++i) {
    if (!options.only.empty() &&
        std::find(options.only.begin(), options.only.end(), jobs[i].name) == options.only.end())
      continue;
    ++summary.total;
    if (job_need(runs_dir(dir) / jobs[i].name) == JobNeed::Nothing)
      ++summary.skipped;
    else
      queue.push_back(i);
  }
  for (const std::string& name : options.only)
    if (std::none_of(jobs.begin(), jobs.end(), [&](const Job& j) { return j.name == name; }))
      throw SweepError("--only '" + name + "' is not a job of this sweep; `prefdiff sweep " + spec.file.string() +
                       " --dry-run` lists them");
  out << "sweep " << spec.name << ": " << summary.total << " jobs (" << summary.skipped << " finished earlier, "
      << queue.size() << " to run), " << summary.jobs << " at a time, " << summary.threads << " thread(s) each -> "
      << dir.string() << "\n";
  if (options.dry_run) {
    for (size_t i : queue) {
      const fs::path run_dir = runs_dir(dir) / jobs[i].name;
      const JobNeed need = job_need(run_dir);
      const int t = need == JobNeed::Eval || need == JobNeed::Resume ? std::max(1, recorded_threads(run_dir)) : summary.threads;
      std::vector<std::string> train = train_args(jobs[i], runs_dir(dir), t);
      if (need == JobNeed::Resume) train.insert(train.end(), {"--resume", "latest"});
      out << "  " << jobs[i].name << " (" << job_need_name(need) << ")\n";
      if (need != JobNeed::Eval) out << "    " << join(train) << "\n";
      out << "    " << join(eval_args(spec, run_dir, t)) << "\n";
    }
    return summary;
  }

  struct sigaction stop_action{}, old_int{}, old_term{};
  stop_action.sa_handler = on_stop;
  sigemptyset(&stop_action.sa_mask);
  g_stop = 0;
  sigaction(SIGINT, &stop_action, &old_int);
  sigaction(SIGTERM, &stop_action, &old_term);

  const pid_t parent = ::getpid();
  auto spawn = [&](const Job& job, const std::vector<std::string>& args, int threads, const std::string& header) -> pid_t {
    const fs::path log_path = logs_dir(dir) / (job.name + ".log");
    const int fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) throw SweepError("cannot open " + log_path.string() + ": " + std::strerror(errno));
    const std::string line = "==== " + run::iso8601_now() + " " + header + ": " + join(args) + "\n";
    if (::write(fd, line.data(), line.size()) < 0) { /* the log header is informative only */ }
    std::vector<std::string> argv_storage = {options.prefdiff};
    argv_storage.insert(argv_storage.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (std::string& a : argv_storage) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string omp = std::to_string(threads);
    const pid_t pid = ::fork();
    if (pid < 0) {
      ::close(fd);
      throw SweepError(std::string("fork failed: ") + std::strerror(errno));
    }
    if (pid == 0) {
      // A killed sweep takes its jobs with it (they would otherwise hold their run folders' locks).
      ::prctl(PR_SET_PDEATHSIG, SIGTERM);
      if (::getppid() != parent) ::_exit(128 + SIGTERM);
      ::signal(SIGINT, SIG_DFL);
      ::signal(SIGTERM, SIG_DFL);
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
      ::setenv("OMP_NUM_THREADS", omp.c_str(), 1);
      ::execv(argv[0], argv.data());
      const std::string msg = "exec " + argv_storage[0] + " failed: " + std::strerror(errno) + "\n";
      if (::write(STDERR_FILENO, msg.data(), msg.size()) < 0) { /* nothing left to report to */ }
      ::_exit(127);
    }
    ::close(fd);
    return pid;
  };

  auto write_state = [&](const Job& job, const nlohmann::json& state) {
    run::atomic_write_file(states_dir(dir) / (job.name + ".json"), state.dump(2) + "\n");
  };
  auto previous_attempts = [&](const Job& job) {
    auto s = read_json(states_dir(dir) / (job.name + ".json"));
    return s ? s->value("attempts", 0) : 0;
  };

  std::vector<Running> running;
  size_t next = 0;
  int done_count = summary.skipped;
  auto label = [&](size_t i) { return "[" + std::to_string(done_count) + "/" + std::to_string(summary.total) + "] " + jobs[i].name; };

  auto start_job = [&](size_t i) {
    const Job& job = jobs[i];
    const fs::path run_dir = runs_dir(dir) / job.name;
    const JobNeed need = job_need(run_dir);
    Running r;
    r.job = i;
    r.attempt = previous_attempts(job) + 1;
    r.start = std::chrono::steady_clock::now();
    // Resume is bit-exact only with the threads the run started with (train.threads may not change).
    r.threads = need == JobNeed::Eval || need == JobNeed::Resume ? std::max(1, recorded_threads(run_dir)) : summary.threads;
    if (need == JobNeed::DiscardFresh) {
      const fs::path trash = dir / "discarded";
      fs::create_directories(trash);
      fs::path target;
      for (int n = 1;; ++n)
        if (!fs::exists(target = trash / (job.name + "-" + std::to_string(n)))) break;
      fs::rename(run_dir, target);
      out << label(i) << ": no complete checkpoint in " << run_dir.string() << "; moved to " << target.string()
          << " and starting over\n";
    }
    std::vector<std::string> args;
    if (need == JobNeed::Eval) {
      r.training = false;
      args = eval_args(spec, run_dir, r.threads);
      r.stage_text = "eval (training had finished)";
    } else {
      args = train_args(job, runs_dir(dir), r.threads);
      if (need == JobNeed::Resume) args.insert(args.end(), {"--resume", "latest"});
      r.stage_text = need == JobNeed::Resume ? "train (resume latest)" : "train";
    }
    r.pid = spawn(job, args, r.threads, "attempt " + std::to_string(r.attempt) + " " + (r.training ? "train" : "eval"));
    write_state(job, {{"name", job.name}, {"state", "running"}, {"stage", r.training ? "train" : "eval"},
                      {"attempts", r.attempt}, {"pid", r.pid}, {"started", run::iso8601_now()},
                      {"log", (fs::path("logs") / (job.name + ".log")).string()}});
    out << label(i) << ": " << r.stage_text << ", log " << (logs_dir(dir) / (job.name + ".log")).string() << "\n";
    running.push_back(r);
  };

  auto finish = [&](Running& r, int status) {
    const Job& job = jobs[r.job];
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - r.start).count();
    const bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    const std::string log_rel = (fs::path("logs") / (job.name + ".log")).string();
    nlohmann::json state = {{"name", job.name}, {"attempts", r.attempt}, {"seconds", seconds},
                            {"log", log_rel}, {"ended", run::iso8601_now()}, {"stage", r.training ? "train" : "eval"}};
    if (ok && r.training && !g_stop) {  // on to evaluation, in the same slot
      r.training = false;
      const fs::path run_dir = runs_dir(dir) / job.name;
      r.pid = spawn(job, eval_args(spec, run_dir, r.threads), r.threads, "attempt " + std::to_string(r.attempt) + " eval");
      state["state"] = "running";
      state["stage"] = "eval";
      state["pid"] = r.pid;
      write_state(job, state);
      return false;
    }
    ++done_count;
    if (ok && !r.training) {
      state["state"] = "finished";
      ++summary.finished;
      std::ostringstream result;
      if (auto e = read_json(runs_dir(dir) / job.name / "eval.json"))
        result << ": win rate " << e->value("win_rate", NAN) << ", implicit accuracy " << e->value("implicit_accuracy", NAN);
      out << label(r.job) << ": finished in " << static_cast<int>(seconds) << " s" << result.str() << "\n";
    } else if (ok) {  // trained, but stopped before evaluating: the next run evaluates it
      state["state"] = "interrupted";
      ++summary.interrupted;
      out << label(r.job) << ": trained; stopped before eval\n";
    } else {
      const bool stopped = g_stop != 0;
      state["state"] = stopped ? "interrupted" : "failed";
      if (WIFEXITED(status)) state["exit_code"] = WEXITSTATUS(status);
      if (WIFSIGNALED(status)) state["signal"] = WTERMSIG(status);
      (stopped ? summary.interrupted : summary.failed) += 1;
      out << label(r.job) << ": " << (stopped ? "interrupted" : "FAILED") << " in " << (r.training ? "train" : "eval")
          << " (" << (WIFEXITED(status) ? "exit code " + std::to_string(WEXITSTATUS(status))
                                        : "signal " + std::to_string(WTERMSIG(status)))
          << "); log " << (dir / log_rel).string() << "\n";
    }
    write_state(job, state);
    return true;
  };

  bool stopping = false;
  while (!running.empty() || (next < queue.size() && !stopping)) {
    while (!stopping && next < queue.size() && static_cast<int>(running.size()) < summary.jobs) start_job(queue[next++]);
    out.flush();
    if (g_stop && !stopping) {
      stopping = true;
      out << "stopping: sending SIGTERM to " << running.size() << " job(s); run the sweep again to resume\n";
      for (const Running& r : running) ::kill(r.pid, SIGTERM);
    }
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, WNOHANG);
    if (pid <= 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      continue;
    }
    for (size_t k = 0; k < running.size(); ++k)
      if (running[k].pid == pid) {
        if (finish(running[k], status)) running.erase(running.begin() + static_cast<long>(k));
        break;
      }
  }
  sigaction(SIGINT, &old_int, nullptr);
  sigaction(SIGTERM, &old_term, nullptr);
  return summary;
}

std::string slurm_script(const SweepSpec& spec, const std::vector<Job>& jobs, const std::string& prefdiff, int threads) {
  const fs::path dir = spec.output_dir;
  // sbatch reads #SBATCH lines itself: a path there must be one line, and is double-quoted for spaces.
  const std::string output = (logs_dir(dir) / "slurm-%A_%a.out").string();
  if (output.find_first_of("\"\n\r") != std::string::npos || run::printable(output) != output)
    throw SweepError("the sweep folder " + run::printable(dir.string()) + " has a quote or a control character, which an "
                     "#SBATCH line cannot hold; HINT: pass --output with a plain path");
  std::ostringstream s;
  // Comments hold names and paths shown with escapes: a newline there would end the comment.
  s << "#!/bin/bash\n"
    << "# prefdiff sweep '" << run::printable(spec.name) << "': " << jobs.size()
    << " jobs as a Slurm job array, one job per task.\n"
    << "# Written by `prefdiff sweep " << run::printable(spec.file.string()) << " --emit-slurm`. Submit with `sbatch "
    << "THIS_FILE`;\n"
    << "# submit again after failures or time-outs: finished jobs (eval.json present) are skipped and\n"
    << "# interrupted ones resume from their newest checkpoint. Then: prefdiff sweep report " << run::printable(dir.string())
    << "\n"
    << "#SBATCH --job-name=" << sanitize_name("prefdiff-" + spec.name) << "\n"
    << "#SBATCH --array=0-" << (jobs.empty() ? 0 : jobs.size() - 1) << "\n"
    << "#SBATCH --ntasks=1\n"
    << "#SBATCH --cpus-per-task=" << threads << "\n"
    << "#SBATCH --output=" << (output.find_first_of(" \t") == std::string::npos ? output : "\"" + output + "\"") << "\n"
    << "set -uo pipefail\n\n"
    << "PREFDIFF_BUILT=" << shell_quote(prefdiff) << "\n"
    << "PREFDIFF=\"${PREFDIFF:-$PREFDIFF_BUILT}\"   # override with PREFDIFF=/path/to/prefdiff sbatch ...\n"
    << "SWEEP_DIR=" << shell_quote(dir.string()) << "\n"
    << "RUNS=\"$SWEEP_DIR/runs\"\n"
    << "export OMP_NUM_THREADS=" << threads << "\n\n"
    << "case \"${SLURM_ARRAY_TASK_ID:?run this script with sbatch, or set SLURM_ARRAY_TASK_ID}\" in\n";
  for (size_t i = 0; i < jobs.size(); ++i) {
    const fs::path run_dir = runs_dir(dir) / jobs[i].name;
    s << "  " << i << ")\n"
      << "    JOB=" << shell_quote(jobs[i].name) << "\n"
      << "    TRAIN=(" << join(train_args(jobs[i], runs_dir(dir), threads)) << ")\n"
      << "    EVAL=(" << join(eval_args(spec, run_dir, threads)) << ") ;;\n";
  }
  s << "  *) echo \"task $SLURM_ARRAY_TASK_ID: no such job (0-" << (jobs.empty() ? 0 : jobs.size() - 1)
    << ")\" >&2; exit 2 ;;\n"
    << "esac\n\n"
    << "RUN_DIR=\"$RUNS/$JOB\"\n"
    << "LOG=\"$SWEEP_DIR/logs/$JOB.log\"\n"
    << "mkdir -p \"$SWEEP_DIR/logs\" \"$SWEEP_DIR/discarded\"\n"
    << "if [ -f \"$RUN_DIR/eval.json\" ]; then echo \"$JOB: finished earlier ($RUN_DIR/eval.json)\"; exit 0; fi\n"
    << "RESUME=()\n"
    << "if compgen -G \"$RUN_DIR/checkpoints/step-*/checkpoint.json\" > /dev/null; then\n"
    << "  RESUME=(--resume latest)   # continue the interrupted run\n"
    << "elif [ -e \"$RUN_DIR\" ]; then\n"
    << "  mv \"$RUN_DIR\" \"$SWEEP_DIR/discarded/$JOB-$(date +%s)-$$\"   # no checkpoint: nothing to continue from\n"
    << "fi\n"
    << "echo \"==== $(date -Iseconds) slurm task $SLURM_ARRAY_TASK_ID train\" >> \"$LOG\"\n"
    << "if ! \"$PREFDIFF\" \"${TRAIN[@]}\" ${RESUME[@]+\"${RESUME[@]}\"} >> \"$LOG\" 2>&1; then\n"
    << "  echo \"$JOB: train failed; see $LOG\" >&2; exit 1\n"
    << "fi\n"
    << "echo \"==== $(date -Iseconds) slurm task $SLURM_ARRAY_TASK_ID eval\" >> \"$LOG\"\n"
    << "if ! \"$PREFDIFF\" \"${EVAL[@]}\" >> \"$LOG\" 2>&1; then\n"
    << "  echo \"$JOB: eval failed; see $LOG\" >&2; exit 1\n"
    << "fi\n"
    << "echo \"$JOB: finished ($RUN_DIR/eval.json)\"\n";
  return s.str();
}

}  // namespace prefdiff::sweep
