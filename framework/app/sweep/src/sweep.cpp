// Sweep files: parsing, checking (every problem at once), expansion into jobs, names and arguments.
#include "prefdiff/sweep/sweep.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "prefdiff/instance/did_you_mean.hpp"
#include "prefdiff/run/run_name.hpp"

namespace prefdiff::sweep {
namespace fs = std::filesystem;

namespace {

std::string where(const toml::node& node, const fs::path& file) {
  const auto& s = node.source();
  if (s.begin.line == 0) return file.string();
  return file.string() + ":" + std::to_string(s.begin.line) + ":" + std::to_string(s.begin.column);
}

// A TOML value as JSON; tables are not values here (the caller flattens them).
bool to_json(const toml::node& node, nlohmann::json& out) {
  if (auto v = node.as_integer()) out = v->get();
  else if (auto f = node.as_floating_point()) out = f->get();
  else if (auto s = node.as_string()) out = s->get();
  else if (auto b = node.as_boolean()) out = b->get();
  else if (auto a = node.as_array()) {
    out = nlohmann::json::array();
    for (const toml::node& e : *a) {
      nlohmann::json j;
      if (!to_json(e, j)) return false;
      out.push_back(std::move(j));
    }
  } else {
    return false;  // table, date, time
  }
  return true;
}

// Source position, for keeping keys in file order (toml++ tables are sorted by key).
std::pair<uint32_t, uint32_t> position(const toml::node& node) {
  return {node.source().begin.line, node.source().begin.column};
}

// Flattens `train.steps = 1` and `"train.steps" = 1` alike into ("train.steps", node), in file order.
// Arrays are leaves (a grid axis, or an array-valued key).
void flatten(const toml::table& table, const std::string& prefix, std::vector<std::pair<std::string, const toml::node*>>& out) {
  for (const auto& [k, node] : table) {
    const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const toml::table* sub = node.as_table())
      flatten(*sub, key, out);
    else
      out.emplace_back(key, &node);
  }
}

std::vector<std::pair<std::string, const toml::node*>> flat_in_file_order(const toml::table& table) {
  std::vector<std::pair<std::string, const toml::node*>> out;
  flatten(table, "", out);
  std::stable_sort(out.begin(), out.end(),
                   [](const auto& a, const auto& b) { return position(*a.second) < position(*b.second); });
  return out;
}

bool valid_key_path(const std::string& key) {
  if (key.empty() || key.front() == '.' || key.back() == '.' || key.find("..") != std::string::npos) return false;
  return std::all_of(key.begin(), key.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.';
  });
}

// Reads a table of `key = value` settings (nested tables flattened).
std::vector<Setting> read_settings(const toml::node* node, const std::string& owner, const fs::path& file,
                                   std::vector<std::string>& problems) {
  std::vector<Setting> out;
  if (node == nullptr) return out;
  const toml::table* table = node->as_table();
  if (table == nullptr) {
    problems.push_back(where(*node, file) + ": " + owner + " must be a table of key = value");
    return out;
  }
  for (const auto& [key, value] : flat_in_file_order(*table)) {
    Setting s{key, nullptr};
    if (!valid_key_path(key))
      problems.push_back(where(*value, file) + ": " + owner + " key '" + key + "' is not a key path like train.steps");
    else if (!to_json(*value, s.value))
      problems.push_back(where(*value, file) + ": " + owner + " key '" + key +
                         "': expected a number, string, boolean or array");
    else
      out.push_back(std::move(s));
  }
  return out;
}

fs::path resolve_path(const std::string& text, const fs::path& file) {
  const fs::path p(text);
  return (p.is_absolute() ? p : file.parent_path() / p).lexically_normal();
}

void check_known(const toml::table& table, const std::vector<std::string>& known, const std::string& owner,
                 const fs::path& file, std::vector<std::string>& problems) {
  for (const auto& [k, node] : table) {
    const std::string key(k.str());
    if (std::find(known.begin(), known.end(), key) != known.end()) continue;
    std::string list;
    for (const std::string& n : known) list += (list.empty() ? "" : ", ") + n;
    problems.push_back(where(node, file) + ": " + owner + " unknown key '" + key + "'" + did_you_mean(key, known) +
                       " (known: " + list + ")");
  }
}

const nlohmann::json* find_value(const std::vector<Setting>& settings, const std::string& key) {
  for (const Setting& s : settings)
    if (s.key == key) return &s.value;
  return nullptr;
}

void set_value(std::vector<Setting>& settings, const Setting& setting) {
  for (Setting& s : settings)
    if (s.key == setting.key) {
      s.value = setting.value;
      return;
    }
  settings.push_back(setting);
}

std::string hex8(uint64_t v) {
  static const char* digits = "0123456789abcdef";
  std::string s(8, '0');
  for (int i = 7; i >= 0; --i, v >>= 4) s[static_cast<size_t>(i)] = digits[v & 15];
  return s;
}

uint64_t fnv1a(const std::string& text) {
  uint64_t h = 1469598103934665603ULL;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ULL;
  return h;
}

}  // namespace

SweepSpec SweepSpec::load(const fs::path& file, const fs::path& output_override) {
  std::ifstream in(file);
  if (!in)
    throw SweepError("cannot read sweep file " + file.string() + "; HINT: pass a TOML file such as recipes/sweeps/default.toml");
  std::stringstream text;
  text << in.rdbuf();
  return parse(text.str(), file, output_override);
}

SweepSpec SweepSpec::parse(const std::string& toml_text, const fs::path& file_in, const fs::path& output_override) {
  const fs::path file = fs::absolute(file_in).lexically_normal();
  toml::table root;
  try {
    root = toml::parse(toml_text, file.string());
  } catch (const toml::parse_error& e) {
    throw SweepError(file.string() + ":" + std::to_string(e.source().begin.line) + ":" +
                     std::to_string(e.source().begin.column) + ": " + std::string(e.description()));
  }
  std::vector<std::string> problems;
  SweepSpec spec;
  spec.file = file;
  spec.text = toml_text;
  check_known(root, {"sweep"}, "top level:", file, problems);
  const toml::table* sweep = root["sweep"].as_table();
  if (sweep == nullptr) throw SweepError(file.string() + ": no [sweep] table; HINT: see docs/sweeps.md for the format");
  check_known(*sweep, {"name", "recipe", "output_dir", "baseline", "seed_key", "x_key", "threads", "set", "eval", "variant", "grid",
                       "compare"},
              "[sweep]", file, problems);

  auto string_key = [&](const char* key, std::string& out) {
    const toml::node* n = sweep->get(key);
    if (n == nullptr) return false;
    if (auto s = n->as_string()) {
      out = s->get();
      return true;
    }
    problems.push_back(where(*n, file) + ": [sweep] " + key + ": expected a string");
    return false;
  };
  spec.name = file.stem().string();
  // Names label folders, tables, plots and Slurm scripts: the run-name rule, checked before anything is written.
  if (string_key("name", spec.name)) {
    if (const std::string p = run::name_problem(spec.name); !p.empty())
      problems.push_back(where(*sweep->get("name"), file) + ": [sweep] name '" + run::printable(spec.name) + "' " + p);
  } else if (!run::name_problem(spec.name).empty()) {
    spec.name = sanitize_name(spec.name);  // the file's stem: any file name is a fine sweep file
  }
  std::string recipe;
  if (string_key("recipe", recipe))
    spec.recipe = resolve_path(recipe, file);
  else if (sweep->get("recipe") == nullptr)
    problems.push_back(file.string() + ": [sweep] recipe is missing; HINT: recipe = \"../toy/base.toml\" (relative to the sweep file)");
  std::string out_dir;
  if (!output_override.empty())
    spec.output_dir = fs::absolute(output_override).lexically_normal();
  else if (string_key("output_dir", out_dir))
    spec.output_dir = fs::absolute(out_dir).lexically_normal();  // relative to the working directory, like run.output_dir
  else
    spec.output_dir = fs::absolute(fs::path("runs") / "sweeps" / sanitize_name(spec.name)).lexically_normal();
  if (string_key("baseline", spec.baseline))
    if (const std::string p = run::name_problem(spec.baseline); !p.empty())
      problems.push_back(where(*sweep->get("baseline"), file) + ": [sweep] baseline '" + run::printable(spec.baseline) +
                         "' " + p);
  if (string_key("seed_key", spec.seed_key) && !valid_key_path(spec.seed_key))
    problems.push_back(where(*sweep->get("seed_key"), file) + ": [sweep] seed_key '" + run::printable(spec.seed_key) +
                       "' is not a key path like run.seed");
  string_key("x_key", spec.x_key);
  if (const toml::node* n = sweep->get("threads")) {
    if (auto v = n->as_integer(); v && v->get() >= 0)
      spec.threads = static_cast<int>(v->get());
    else
      problems.push_back(where(*n, file) + ": [sweep] threads: expected an integer >= 0 (0 = cores / --jobs)");
  }

  spec.set = read_settings(sweep->get("set"), "[sweep.set]", file, problems);
  spec.eval = read_settings(sweep->get("eval"), "[sweep.eval]", file, problems);
  for (Setting& s : spec.eval)  // `eval.steps` and `steps` mean the same
    if (s.key.rfind("eval.", 0) == 0) s.key = s.key.substr(5);

  if (const toml::node* n = sweep->get("variant")) {
    const toml::array* list = n->as_array();
    if (list == nullptr || !list->is_array_of_tables()) {
      problems.push_back(where(*n, file) + ": [sweep] variant: expected [[sweep.variant]] tables");
    } else {
      std::set<std::string> names;
      for (const toml::node& item : *list) {
        const toml::table& t = *item.as_table();
        check_known(t, {"name", "recipe", "set"}, "[[sweep.variant]]", file, problems);
        Variant v;
        if (auto s = t["name"].as_string()) v.name = s->get();
        if (v.name.empty()) {
          problems.push_back(where(item, file) + ": [[sweep.variant]] needs name = \"...\" (it labels tables and folders)");
          continue;
        }
        if (const std::string p = run::name_problem(v.name); !p.empty())
          problems.push_back(where(*t.get("name"), file) + ": [[sweep.variant]] name '" + run::printable(v.name) + "' " + p);
        else if (!names.insert(v.name).second)
          problems.push_back(where(item, file) + ": [[sweep.variant]] name '" + v.name + "' is used twice");
        if (auto s = t["recipe"].as_string()) v.recipe = resolve_path(s->get(), file);
        v.set = read_settings(t.get("set"), "variant '" + v.name + "' set", file, problems);
        spec.variants.push_back(std::move(v));
      }
    }
  }

  if (const toml::node* n = sweep->get("grid")) {
    if (const toml::table* grid = n->as_table()) {
      for (const auto& [key, node] : flat_in_file_order(*grid)) {
        GridAxis axis{key, {}};
        nlohmann::json values;
        if (!valid_key_path(key)) {
          problems.push_back(where(*node, file) + ": [sweep.grid] key '" + key + "' is not a key path like noise.rate");
        } else if (!node->is_array() || !to_json(*node, values) || values.empty()) {
          problems.push_back(where(*node, file) + ": [sweep.grid] " + key +
                             ": expected a non-empty array of values, e.g. " + key + " = [0.0, 0.2]");
        } else {
          for (auto& v : values) axis.values.push_back(v);
          std::set<std::string> seen;
          for (const auto& v : axis.values)
            if (!seen.insert(v.dump()).second)
              problems.push_back(where(*node, file) + ": [sweep.grid] " + key + ": value " + v.dump() + " is listed twice");
          spec.grid.push_back(std::move(axis));
        }
      }
    } else {
      problems.push_back(where(*n, file) + ": [sweep] grid: expected a table [sweep.grid]");
    }
  }

  // Keys may be set in one place only: a grid key in [sweep.set] or a variant would silently win or lose.
  for (const GridAxis& axis : spec.grid) {
    if (find_value(spec.set, axis.key))
      problems.push_back(file.string() + ": '" + axis.key + "' is both in [sweep.grid] and [sweep.set]; keep one");
    for (const Variant& v : spec.variants)
      if (find_value(v.set, axis.key))
        problems.push_back(file.string() + ": '" + axis.key + "' is both in [sweep.grid] and in variant '" + v.name +
                           "'; keep one");
  }
  for (const std::string reserved : {"run.name", "run.output_dir", "train.threads"}) {
    auto refuse = [&](const std::vector<Setting>& s, const std::string& owner) {
      if (find_value(s, reserved))
        problems.push_back(file.string() + ": " + owner + " sets '" + reserved +
                           "', which the sweep sets per job (folder names come from the values; threads from "
                           "[sweep] threads and --jobs)");
    };
    refuse(spec.set, "[sweep.set]");
    for (const Variant& v : spec.variants) refuse(v.set, "variant '" + v.name + "'");
    for (const GridAxis& a : spec.grid)
      if (a.key == reserved) problems.push_back(file.string() + ": [sweep.grid] cannot vary '" + reserved + "'");
  }
  if (!spec.variants.empty()) {
    bool found = false;
    std::vector<std::string> names;
    for (const Variant& v : spec.variants) {
      found = found || v.name == spec.baseline;
      names.push_back(v.name);
    }
    if (!found && sweep->get("baseline") != nullptr)
      problems.push_back(file.string() + ": [sweep] baseline = '" + run::printable(spec.baseline) + "' is not a variant" +
                         did_you_mean(spec.baseline, names));
  }
  if (const toml::node* n = sweep->get("compare")) {
    const toml::array* list = n->as_array();
    if (list == nullptr || !list->is_array_of_tables()) {
      problems.push_back(where(*n, file) + ": [sweep] compare: expected [[sweep.compare]] tables with variant = \"...\" "
                                           "and against = \"...\"");
    } else {
      std::vector<std::string> names;
      for (const Variant& v : spec.variants) names.push_back(v.name);
      for (const toml::node& item : *list) {
        const toml::table& t = *item.as_table();
        check_known(t, {"variant", "against"}, "[[sweep.compare]]", file, problems);
        Comparison c;
        for (auto [key, out] : {std::pair<const char*, std::string*>{"variant", &c.variant}, {"against", &c.against}}) {
          if (auto v = t[key].as_string()) *out = v->get();
          if (out->empty())
            problems.push_back(where(item, file) + ": [[sweep.compare]] needs " + key + " = \"<variant name>\"");
          else if (std::find(names.begin(), names.end(), *out) == names.end())
            problems.push_back(where(item, file) + ": [[sweep.compare]] " + key + " = '" + run::printable(*out) + "' is not a variant" +
                               did_you_mean(*out, names));
        }
        if (!c.variant.empty() && c.variant == c.against)
          problems.push_back(where(item, file) + ": [[sweep.compare]] compares '" + c.variant + "' with itself");
        spec.comparisons.push_back(std::move(c));
      }
    }
  }
  if (spec.x_key.empty()) {
    for (const GridAxis& a : spec.grid)
      if (a.key == "noise.rate") spec.x_key = a.key;
    for (const GridAxis& a : spec.grid)
      if (spec.x_key.empty() && a.key != spec.seed_key && a.values.front().is_number()) spec.x_key = a.key;
  } else if (std::none_of(spec.grid.begin(), spec.grid.end(), [&](const GridAxis& a) { return a.key == spec.x_key; })) {
    problems.push_back(file.string() + ": [sweep] x_key = '" + run::printable(spec.x_key) + "' is not a [sweep.grid] key");
  }

  if (!problems.empty()) {
    std::string msg = std::to_string(problems.size()) + " problem(s) in sweep file " + file.string() + ":";
    for (const std::string& p : problems) msg += "\n  " + p;
    throw SweepError(msg);
  }
  return spec;
}

std::vector<Job> expand(const SweepSpec& spec) {
  std::vector<Variant> variants = spec.variants;
  if (variants.empty()) variants.push_back(Variant{});
  std::vector<Job> jobs;
  std::vector<size_t> index(spec.grid.size(), 0);
  std::vector<std::string> problems;
  for (const Variant& variant : variants) {
    std::fill(index.begin(), index.end(), 0);
    while (true) {
      Job job;
      job.variant = variant.name;
      job.recipe = variant.recipe.empty() ? spec.recipe : variant.recipe;
      for (size_t a = 0; a < spec.grid.size(); ++a) job.values.push_back({spec.grid[a].key, spec.grid[a].values[index[a]]});
      for (const Setting& s : spec.set) set_value(job.overrides, s);
      for (const Setting& s : variant.set) set_value(job.overrides, s);
      for (const Setting& s : job.values) set_value(job.overrides, s);
      // "${key}": the job's value of another key (e.g. objective.eps = "${noise.rate}").
      for (Setting& s : job.overrides) {
        if (!s.value.is_string()) continue;
        const std::string text = s.value.get<std::string>();
        if (text.size() < 4 || text.compare(0, 2, "${") != 0 || text.back() != '}') continue;
        const std::string ref = text.substr(2, text.size() - 3);
        const nlohmann::json* v = find_value(job.overrides, ref);
        if (v == nullptr || (v->is_string() && v->get<std::string>().rfind("${", 0) == 0)) {
          problems.push_back("'" + s.key + "' = \"" + text + "\"" + (variant.name.empty() ? "" : " (variant '" + variant.name + "')") +
                             ": '" + ref + "' is not set by [sweep.set], the variant or [sweep.grid]");
          s.value = nullptr;
        } else {
          s.value = *v;
        }
      }
      std::string name = variant.name;
      for (const Setting& v : job.values) name += (name.empty() ? "" : "__") + v.key + "-" + format_value(v.value);
      if (name.empty()) name = spec.name;
      job.name = sanitize_name(name);
      jobs.push_back(std::move(job));
      // Next grid point, last axis fastest.
      size_t a = spec.grid.size();
      while (a > 0 && ++index[a - 1] == spec.grid[a - 1].values.size()) index[--a] = 0;
      if (a == 0) break;
    }
  }
  std::map<std::string, size_t> seen;
  for (size_t i = 0; i < jobs.size(); ++i) {
    auto [it, fresh] = seen.emplace(jobs[i].name, i);
    if (!fresh)
      problems.push_back("jobs " + std::to_string(it->second) + " and " + std::to_string(i) + " both get the folder name '" +
                         jobs[i].name + "' after sanitising; HINT: give the variants or grid values distinct names");
  }
  if (!problems.empty()) {
    std::string msg = std::to_string(problems.size()) + " problem(s) expanding sweep " + spec.file.string() + ":";
    for (const std::string& p : problems) msg += "\n  " + p;
    throw SweepError(msg);
  }
  return jobs;
}

std::string sanitize_name(const std::string& text) {
  std::string out;
  for (char c : text) {
    const bool keep = std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-' || c == '+';
    out += keep ? c : '_';
  }
  // No "..": a run of dots becomes one '_'. No leading '.' (hidden, or "." itself).
  std::string collapsed;
  for (size_t i = 0; i < out.size();) {
    if (out[i] == '.' && i + 1 < out.size() && out[i + 1] == '.') {
      while (i < out.size() && out[i] == '.') ++i;
      collapsed += '_';
    } else {
      collapsed += out[i++];
    }
  }
  if (collapsed.empty() || collapsed.front() == '.') collapsed.insert(collapsed.begin(), '_');
  if (collapsed.size() > 120) collapsed = collapsed.substr(0, 111) + "-" + hex8(fnv1a(text));
  return collapsed;
}

std::string format_value(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_number_float()) {
    char buf[64];
    const double d = value.get<double>();
    auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);  // shortest round-trip form
    if (ec != std::errc()) return value.dump();
    return std::string(buf, end);
  }
  return value.dump();
}

std::string override_text(const Setting& setting) {
  if (setting.value.is_number_float()) {
    std::string v = format_value(setting.value);
    // Keep it a float in TOML (`0.0`, not `0`), so a float key never sees an integer.
    if (v.find_first_of(".eEn") == std::string::npos) v += ".0";
    return setting.key + "=" + v;
  }
  return setting.key + "=" + setting.value.dump();  // JSON strings, arrays and booleans are valid TOML
}

std::vector<std::string> train_args(const Job& job, const fs::path& runs, int threads) {
  std::vector<std::string> args = {"train", job.recipe.string()};
  for (const Setting& s : job.overrides) args.push_back(override_text(s));
  args.push_back(override_text({"run.output_dir", runs.string()}));
  args.push_back(override_text({"run.name", job.name}));
  args.push_back("train.threads=" + std::to_string(threads));
  args.push_back(override_text({"log.progress", "plain"}));
  return args;
}

std::vector<std::string> eval_args(const SweepSpec& spec, const fs::path& run_dir, int threads) {
  std::vector<std::string> args = {"eval", run_dir.string()};
  for (const Setting& s : spec.eval) args.push_back(override_text(s));
  args.push_back("--threads");
  args.push_back(std::to_string(threads));
  return args;
}

nlohmann::json plan_json(const SweepSpec& spec, const std::vector<Job>& jobs) {
  nlohmann::json plan = {{"format", "prefdiff-sweep"},
                         {"format_version", 1},
                         {"name", spec.name},
                         {"sweep_file", spec.file.string()},
                         {"recipe", spec.recipe.string()},
                         {"baseline", spec.baseline},
                         {"seed_key", spec.seed_key},
                         {"x_key", spec.x_key}};
  plan["grid"] = nlohmann::json::array();
  for (const GridAxis& a : spec.grid) plan["grid"].push_back({{"key", a.key}, {"values", a.values}});
  plan["variants"] = nlohmann::json::array();
  for (const Variant& v : spec.variants) plan["variants"].push_back(v.name);
  plan["comparisons"] = nlohmann::json::array();
  for (const Comparison& c : spec.comparisons) plan["comparisons"].push_back({{"variant", c.variant}, {"against", c.against}});
  plan["eval"] = nlohmann::json::object();
  for (const Setting& s : spec.eval) plan["eval"][s.key] = s.value;
  plan["jobs"] = nlohmann::json::array();
  for (const Job& j : jobs) {
    nlohmann::json job = {{"name", j.name}, {"variant", j.variant}, {"recipe", j.recipe.string()}};
    job["values"] = nlohmann::json::array();
    for (const Setting& s : j.values) job["values"].push_back({{"key", s.key}, {"value", s.value}});
    job["overrides"] = nlohmann::json::array();
    for (const Setting& s : j.overrides) job["overrides"].push_back(override_text(s));
    plan["jobs"].push_back(std::move(job));
  }
  return plan;
}

std::optional<nlohmann::json> read_json(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  try {
    nlohmann::json j;
    in >> j;
    return j;
  } catch (const std::exception&) {
    return std::nullopt;
  }
}

}  // namespace prefdiff::sweep
