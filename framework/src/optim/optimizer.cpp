// make_optimizer / make_schedule: the recipe's [optim] and [schedule] sections (keys and defaults as
// framework/src/recipe_schema.cpp) to objects. The recipe layer validates first; the checks here repeat
// the essentials so that a hand-built section fails as clearly.
#include "prefdiff/optim/optimizer.hpp"
#include "prefdiff/optim/schedule.hpp"
#include "prefdiff/instance/did_you_mean.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <optional>
#include <sstream>

namespace prefdiff::optim {
namespace {

std::string format_double(double v) {
  std::ostringstream s;
  s << v;
  return s.str();
}

class SectionReader {
 public:
  SectionReader(const nlohmann::json& section, std::string name, std::vector<std::string> known)
      : section_(section), name_(std::move(name)), known_(std::move(known)) {
    if (!section_.is_object()) {
      problems_.push_back("[" + name_ + "] must be a table, got " + std::string(section_.type_name()));
      return;
    }
    for (const auto& item : section_.items())
      if (std::find(known_.begin(), known_.end(), item.key()) == known_.end())
        problems_.push_back("unknown key " + name_ + "." + item.key() + did_you_mean(item.key(), known_));
  }

  double number(const std::string& key, double fallback) {
    if (!section_.is_object() || !section_.contains(key)) return fallback;
    const auto& v = section_.at(key);
    if (!v.is_number()) {
      problems_.push_back(name_ + "." + key + " must be a number, got " + v.dump());
      return fallback;
    }
    return v.get<double>();
  }

  int64_t integer(const std::string& key, int64_t fallback) {
    if (!section_.is_object() || !section_.contains(key)) return fallback;
    const auto& v = section_.at(key);
    if (!v.is_number_integer()) {
      problems_.push_back(name_ + "." + key + " must be an integer, got " + v.dump());
      return fallback;
    }
    return v.get<int64_t>();
  }

  std::string choice(const std::string& key, const std::string& fallback, const std::vector<std::string>& allowed) {
    if (!section_.is_object() || !section_.contains(key)) return fallback;
    const auto& v = section_.at(key);
    std::string list;
    for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + ("\"" + a + "\"");
    if (!v.is_string()) {
      problems_.push_back(name_ + "." + key + " must be one of " + list + ", got " + v.dump());
      return fallback;
    }
    const std::string s = v.get<std::string>();
    if (std::find(allowed.begin(), allowed.end(), s) == allowed.end()) {
      problems_.push_back(name_ + "." + key + " = \"" + s + "\" is not one of " + list + did_you_mean(s, allowed));
      return fallback;
    }
    return s;
  }

  // Adds a problem unless lo <= v (< or <=) hi.
  void require(const std::string& key, double v, bool ok, const std::string& range) {
    if (!ok) problems_.push_back(name_ + "." + key + " = " + format_double(v) + " is out of range: must be " + range);
  }

  void finish() const {
    if (problems_.empty()) return;
    std::string msg = "[" + name_ + "]: " + std::to_string(problems_.size()) + " problem" +
                      (problems_.size() > 1 ? "s" : "") + ":";
    for (const auto& p : problems_) msg += "\n  - " + p;
    msg += "\nHINT: fix the recipe's [" + name_ + "] table (or the matching --set " + name_ + ".KEY=VALUE override); "
           "`prefdiff recipe validate RECIPE` lists every key with its range";
    throw OptimError(msg);
  }

 private:
  const nlohmann::json& section_;
  std::string name_;
  std::vector<std::string> known_;
  std::vector<std::string> problems_;
};

}  // namespace

std::unique_ptr<Optimizer> make_optimizer(const nlohmann::json& optim_section, const NamedTensors& named_parameters) {
  // Defaults: recipe_schema.cpp's [optim] table.
  SectionReader r(optim_section, "optim",
                  {"name", "lr", "beta1", "beta2", "weight_decay", "eps", "adafactor_eps1", "adafactor_eps2",
                   "adafactor_clip_threshold", "adafactor_decay_rate", "multi_tensor"});
  const std::string name = r.choice("name", "adamw", {"adamw", "adafactor"});
  const std::string multi = r.choice("multi_tensor", "auto", {"auto", "on", "off"});
  const std::optional<bool> multi_tensor = multi == "auto" ? std::nullopt : std::optional<bool>(multi == "on");
  const double lr = r.number("lr", 2.048e-5);
  const double wd = r.number("weight_decay", 1e-2);
  r.require("lr", lr, lr > 0, "> 0");
  r.require("weight_decay", wd, wd >= 0, ">= 0");
  if (name == "adamw") {
    AdamWOptions o;
    o.lr = lr;
    o.weight_decay = wd;
    o.beta1 = r.number("beta1", 0.9);
    o.beta2 = r.number("beta2", 0.999);
    o.eps = r.number("eps", 1e-8);
    o.fused = multi_tensor;
    r.require("beta1", o.beta1, o.beta1 >= 0 && o.beta1 < 1, "in [0, 1)");
    r.require("beta2", o.beta2, o.beta2 >= 0 && o.beta2 < 1, "in [0, 1)");
    r.require("eps", o.eps, o.eps > 0, "> 0");
    r.finish();
    return make_adamw(named_parameters, o);
  }
  AdafactorOptions o;
  o.lr = lr;
  o.weight_decay = wd;
  o.eps1 = r.number("adafactor_eps1", 1e-30);
  o.eps2 = r.number("adafactor_eps2", 1e-3);
  o.clip_threshold = r.number("adafactor_clip_threshold", 1.0);
  o.decay_rate = r.number("adafactor_decay_rate", -0.8);
  o.batched = multi_tensor;
  r.require("adafactor_eps1", o.eps1, o.eps1 > 0, "> 0");
  r.require("adafactor_eps2", o.eps2, o.eps2 > 0, "> 0");
  r.require("adafactor_clip_threshold", o.clip_threshold, o.clip_threshold > 0, "> 0");
  r.require("adafactor_decay_rate", o.decay_rate, o.decay_rate >= -1 && o.decay_rate <= 0, "in [-1, 0]");
  r.finish();
  return make_adafactor(named_parameters, o);
}

LrSchedule make_schedule(const nlohmann::json& schedule_section, double peak_lr, int64_t total_steps) {
  // Defaults: recipe_schema.cpp's [schedule] table.
  SectionReader r(schedule_section, "schedule", {"name", "warmup_steps", "min_lr_ratio"});
  const std::string name = r.choice("name", "constant_with_warmup", {"constant", "constant_with_warmup", "cosine"});
  const int64_t warmup = r.integer("warmup_steps", 500);
  const double min_lr_ratio = r.number("min_lr_ratio", 0.0);
  r.require("warmup_steps", static_cast<double>(warmup), warmup >= 0, ">= 0");
  r.require("min_lr_ratio", min_lr_ratio, min_lr_ratio >= 0 && min_lr_ratio <= 1, "in [0, 1]");
  if (name == "cosine" && warmup >= total_steps && total_steps >= 1)
    r.require("warmup_steps", static_cast<double>(warmup), false,
              "below train.steps (" + std::to_string(total_steps) +
                  ") for the cosine schedule, which decays over the steps after the warm-up");
  r.finish();
  const ScheduleKind kind = name == "constant"               ? ScheduleKind::kConstant
                            : name == "constant_with_warmup" ? ScheduleKind::kConstantWithWarmup
                                                             : ScheduleKind::kCosine;
  return LrSchedule(kind, peak_lr, warmup, total_steps, min_lr_ratio);
}

}  // namespace prefdiff::optim
