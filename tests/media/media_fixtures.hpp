#pragma once
// Inputs of the media tests: public fixtures (the CLIP tokenizer folder, real WebP images, prompt lists)
// and golden tensors read without LibTorch.

#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/golden_path.hpp"
#include "prefdiff/model_io/safetensors_header.hpp"

namespace prefdiff::testing {

// The folder of public fixtures: $PREFDIFF_MEDIA_FIXTURES, else the repository's copy
// (PREFDIFF_MEDIA_FIXTURES_DEFAULT). It holds clip_tokenizer/, imagereward_images/, PartiPrompts.tsv.
inline std::filesystem::path media_fixtures_dir() {
  if (const char* env = std::getenv("PREFDIFF_MEDIA_FIXTURES"); env && *env) return env;
  return PREFDIFF_MEDIA_FIXTURES_DEFAULT;
}

// A fixture that must exist: a missing one fails the test with where to get it (never a skip).
inline std::filesystem::path media_fixture(const std::string& relative) {
  std::filesystem::path p = media_fixtures_dir() / relative;
  if (!std::filesystem::exists(p)) {
    ADD_FAILURE() << "fixture '" << p.string() << "' is missing. HINT: set PREFDIFF_MEDIA_FIXTURES to the folder "
                  << "that holds clip_tokenizer/, imagereward_images/ and PartiPrompts.tsv.";
  }
  return p;
}

inline std::string read_binary(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read '" + path.string() + "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A float32 or int64 tensor of a safetensors file, as doubles with its shape.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<double> values;
};

inline std::map<std::string, HostTensor> read_safetensors(const std::filesystem::path& path) {
  const std::string bytes = read_binary(path);
  auto header = model_io::parse_safetensors_header(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(),
                                                   bytes.size(), path.string());
  std::map<std::string, HostTensor> out;
  for (const auto& t : header.tensors) {
    HostTensor h;
    h.shape = t.shape;
    const char* p = bytes.data() + header.data_start + t.begin;
    const size_t n = t.end - t.begin;
    if (t.dtype == model_io::StDtype::F32) {
      for (size_t i = 0; i < n / 4; ++i) {
        float v;
        std::memcpy(&v, p + 4 * i, 4);
        h.values.push_back(v);
      }
    } else if (t.dtype == model_io::StDtype::I64) {
      for (size_t i = 0; i < n / 8; ++i) {
        int64_t v;
        std::memcpy(&v, p + 8 * i, 8);
        h.values.push_back(static_cast<double>(v));
      }
    } else {
      continue;
    }
    out.emplace(t.name, std::move(h));
  }
  return out;
}

}  // namespace prefdiff::testing
