#pragma once
// Helpers shared by the encoder tests: scratch folders, a copy of a model folder with an edited config, and
// tensor-file rewriting for the bad-input tests.
#include <ATen/ATen.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include "prefdiff/model_io/safetensors.hpp"

namespace prefdiff::testing {

// A fresh, empty folder under the temp dir, unique to this process.
inline std::filesystem::path scratch_dir(const std::string& name) {
  auto p = std::filesystem::temp_directory_path() / ("prefdiff_enc_" + name + "_" + std::to_string(::getpid()));
  std::filesystem::remove_all(p);
  std::filesystem::create_directories(p);
  return p;
}

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

inline void write_json(const std::filesystem::path& p, const nlohmann::json& j) {
  std::ofstream out(p);
  out << j.dump(2);
}

// Copies `src` (config.json + weights) to `dst`, applying `edit` to the config. Weights are symlinked.
inline void copy_model_folder(const std::filesystem::path& src, const std::filesystem::path& dst,
                              const std::function<void(nlohmann::json&)>& edit = {}) {
  std::filesystem::create_directories(dst);
  for (const auto& e : std::filesystem::directory_iterator(src)) {
    const auto name = e.path().filename();
    if (name == "config.json") {
      nlohmann::json j = read_json(e.path());
      if (edit) edit(j);
      write_json(dst / name, j);
    } else if (e.path().extension() == ".safetensors") {
      std::filesystem::create_symlink(std::filesystem::absolute(e.path()), dst / name);
    }
  }
}

// Rewrites a safetensors file through `edit` on its (name, tensor) list.
inline void rewrite_tensors(const std::filesystem::path& src, const std::filesystem::path& dst,
                            const std::function<void(model_io::NamedTensors&)>& edit) {
  model_io::NamedTensors t = model_io::SafetensorsFile::open(src).load_all();
  edit(t);
  std::filesystem::remove(dst);
  model_io::write_safetensors(dst, t);
}

}  // namespace prefdiff::testing
