// Internals shared by the toy world's translation units (not installed, not part of the API).
#ifndef PREFDIFF_TOY_WORLD_INTERNAL_HPP
#define PREFDIFF_TOY_WORLD_INTERNAL_HPP

#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "prefdiff/host/param_json.hpp"
#include "prefdiff/toy_world/world.hpp"

namespace prefdiff::toy::detail {

// One row of a key table ([data] world keys, [eval] keys), in the host's schema type.
inline ParamSpec key(const char* name, ValueType type, const nlohmann::json& default_value, const char* doc,
                     double min = 0, double max = 0, uint32_t bounds = 0) {
  ParamSpec k;
  k.name = name;
  k.type = type;
  k.default_value = value_from_json(default_value);
  k.default_value->shown.clear();
  k.doc = doc;
  k.min = min;
  k.max = max;
  k.bounds = bounds;
  return k;
}

// The built-in tiny UNet config (datasets/toy_world/unet_tiny.json, embedded at build time).
extern const char* const kTinyUnetConfig;

// 16 hex digits of a stable 64-bit hash of a JSON value's canonical dump (sorted keys).
std::string hash_json(const nlohmann::json& value);

// Returns root/name, building it first if absent: `build` fills a fresh temporary folder that is then
// renamed into place. Builders of the same name are serialised by an flock on root/name.lock, and the
// rename is the commit, so neither a crash nor a racing process (even where flock does not work) leaves
// a partial folder under `name`; a process that loses a rename race uses the winner's folder.
// Sets *built to whether this call built it.
std::filesystem::path publish_once(const std::filesystem::path& root, const std::string& name,
                                   const std::function<void(const std::filesystem::path& tmp)>& build, bool* built);

// Writes pairs (winner first) and the world's prompt table as a pair shard.
void write_pair_shard(const std::filesystem::path& path, const World& world, const std::vector<Pair>& pairs,
                      const std::string& split, const std::string& source);

// Fills defaults and checks every key of a recipe section against its schema with the host's one
// resolver; problems are appended as "<where> <problem>" (with a did-you-mean for unknown keys).
// Returns the resolved values.
nlohmann::json resolve_section(const nlohmann::json& section, const std::vector<ParamSpec>& schema,
                               const std::string& where, std::vector<std::string>& problems);
// Throws WorldError listing every problem, or returns when there is none.
void throw_problems(const std::vector<std::string>& problems, const std::string& what);

void write_json(const std::filesystem::path& path, const nlohmann::json& value);
nlohmann::json read_json(const std::filesystem::path& path);

}  // namespace prefdiff::toy::detail

#endif  // PREFDIFF_TOY_WORLD_INTERNAL_HPP
