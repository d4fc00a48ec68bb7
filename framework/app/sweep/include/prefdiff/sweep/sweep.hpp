// Sweep files (docs/sweeps.md): a base recipe, settings shared by every job, named variants (sets of
// overrides that belong together, such as an objective and its own parameters) crossed with a grid over
// any recipe keys. Expanding a sweep gives one Job per combination, each with its folder name and the
// exact `prefdiff train` / `prefdiff eval` arguments. Torch-free.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace prefdiff::sweep {

// A bad sweep file or plan; the message lists every problem, each with its key and the fix.
class SweepError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One `key.path = value` recipe override (or `key = value` evaluation setting).
struct Setting {
  std::string key;
  nlohmann::json value;  // number, string, boolean or array
};

struct Variant {
  std::string name;
  std::filesystem::path recipe;  // empty: the sweep's recipe
  std::vector<Setting> set;
};

struct GridAxis {
  std::string key;
  std::vector<nlohmann::json> values;
};

// [[sweep.compare]]: one more paired table in the report, `variant` minus `against` by seed (an ablation
// inside the sweep, e.g. alpha-DPO per-sample against batch-mean), besides every variant against the baseline.
struct Comparison {
  std::string variant;
  std::string against;
};

struct SweepSpec {
  std::filesystem::path file;        // the sweep file (absolute)
  std::string text;                  // its TOML text as parsed (copied into the sweep folder as sweep.toml)
  std::string name;                  // [sweep] name, default: the file's stem
  std::filesystem::path recipe;      // base recipe (absolute; relative in the file = to the file)
  std::filesystem::path output_dir;  // absolute; default runs/sweeps/<name> under the working directory
  std::string baseline = "dpo";      // variant every other one is compared with
  std::string seed_key = "run.seed";  // the grid key averaged over
  std::string x_key;                 // x axis of the win-rate plot (default: noise.rate if in the grid)
  int threads = 0;                   // train.threads per job; 0 = cores / --jobs
  std::vector<Setting> set;          // [sweep.set]: overrides for every job
  std::vector<Setting> eval;         // [sweep.eval]: `prefdiff eval` settings
  std::vector<Variant> variants;     // [[sweep.variant]]; empty = one unnamed variant
  std::vector<GridAxis> grid;        // [sweep.grid], in file order
  std::vector<Comparison> comparisons;  // [[sweep.compare]]

  // Parses and checks a sweep file. Throws SweepError listing every problem.
  static SweepSpec load(const std::filesystem::path& file, const std::filesystem::path& output_override = {});
  // Parses TOML text as if it were `file` (relative paths resolve against file's folder).
  static SweepSpec parse(const std::string& toml_text, const std::filesystem::path& file,
                         const std::filesystem::path& output_override = {});
};

struct Job {
  std::string name;                  // folder name under <output_dir>/runs (sanitised)
  std::string variant;               // "" when the sweep has no variants
  std::filesystem::path recipe;
  std::vector<Setting> values;       // this job's grid values, in grid order
  std::vector<Setting> overrides;    // [sweep.set], then the variant's set, then the grid values
};

// The cartesian product variants x grid (last grid key fastest), names checked to be distinct.
std::vector<Job> expand(const SweepSpec& spec);

// A folder name that cannot leave its parent: [A-Za-z0-9._+-] kept, anything else becomes '_', runs of
// dots become '_', no leading '.', at most 120 characters (longer names end in a hash of the original).
std::string sanitize_name(const std::string& text);
// A value as written in names and tables: 0.2, 0, 1e-05, dpo, true, [1,2].
std::string format_value(const nlohmann::json& value);
// `key=value` with the value in TOML syntax, as `prefdiff train` parses overrides.
std::string override_text(const Setting& setting);

// What `prefdiff sweep` runs for a job (argv without the executable).
std::vector<std::string> train_args(const Job& job, const std::filesystem::path& runs_dir, int threads);
std::vector<std::string> eval_args(const SweepSpec& spec, const std::filesystem::path& run_dir, int threads);

// <output_dir> layout.
inline std::filesystem::path runs_dir(const std::filesystem::path& dir) { return dir / "runs"; }
inline std::filesystem::path logs_dir(const std::filesystem::path& dir) { return dir / "logs"; }
inline std::filesystem::path states_dir(const std::filesystem::path& dir) { return dir / "jobs"; }

// A JSON file a job wrote (eval.json, run.json, a job state), or nullopt when it is missing or torn
// (a killed job): the runner and the report then treat the job as not finished.
std::optional<nlohmann::json> read_json(const std::filesystem::path& path);

// The plan written to <output_dir>/sweep.json: what `sweep report` rebuilds the results from.
nlohmann::json plan_json(const SweepSpec& spec, const std::vector<Job>& jobs);

}  // namespace prefdiff::sweep
