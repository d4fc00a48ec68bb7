// Identities of model-folder components for the shard attributes: implementation, folder name, content hash.
#include <algorithm>
#include <cstring>
#include <fstream>

#include "prefdiff/data/model_encoder.hpp"

namespace prefdiff::data {

namespace fs = std::filesystem;

namespace {

constexpr uint64_t kP1 = 0x9E3779B185EBCA87ull, kP2 = 0xC2B2AE3D27D4EB4Full, kP3 = 0x165667B19E3779F9ull;

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
uint64_t finalize(uint64_t h) {
  h ^= h >> 33;
  h *= kP2;
  h ^= h >> 29;
  h *= kP3;
  return h ^ (h >> 32);
}

// Two independent multiply-rotate lanes over 8-byte words (xxHash-style rounds), plus the length: fast
// enough to hash an SDXL text encoder (1.4 GB) in about a second.
struct Hasher {
  uint64_t a = 0x243F6A8885A308D3ull, b = 0x13198A2E03707344ull, length = 0;
  unsigned char tail[8];
  size_t tail_size = 0;

  void word(uint64_t w) {
    a = rotl(a + w * kP2, 31) * kP1;
    b = rotl(b ^ (w * kP3), 27) * kP2 + kP1;
  }
  void update(const unsigned char* data, size_t size) {
    length += size;
    while (size > 0 && tail_size > 0 && tail_size < 8) {
      tail[tail_size++] = *data++;
      --size;
      if (tail_size == 8) {
        uint64_t w;
        std::memcpy(&w, tail, 8);
        word(w);
        tail_size = 0;
      }
    }
    for (; size >= 8; data += 8, size -= 8) {
      uint64_t w;
      std::memcpy(&w, data, 8);
      word(w);
    }
    std::memcpy(tail, data, size);
    tail_size = size;
  }
  // A separator between files, so that moving bytes from one file to the next changes the hash.
  void boundary() {
    uint64_t w = 0;
    std::memcpy(&w, tail, tail_size);
    word(w ^ (static_cast<uint64_t>(tail_size) << 56) ^ 0xF1E5ull);
    tail_size = 0;
  }
  std::string hex() const {
    const uint64_t lanes[2] = {finalize(a ^ length), finalize(b + length * kP1)};
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (uint64_t v : lanes)
      for (int shift = 60; shift >= 0; shift -= 4) out += digits[(v >> shift) & 0xF];
    return out;
  }
};

// The files the loaders read for a weights base name: the single file, else the index and its shards.
std::vector<fs::path> weight_files(const fs::path& dir, const std::string& base) {
  if (fs::exists(dir / (base + ".safetensors"))) return {dir / (base + ".safetensors")};
  std::vector<fs::path> out;
  if (fs::exists(dir / (base + ".safetensors.index.json"))) {
    out.push_back(dir / (base + ".safetensors.index.json"));
    std::vector<fs::path> shards;
    for (const fs::directory_entry& e : fs::directory_iterator(dir)) {
      const std::string name = e.path().filename().string();
      if (name.rfind(base + "-", 0) == 0 && name.size() > 12 && name.compare(name.size() - 12, 12, ".safetensors") == 0)
        shards.push_back(e.path());
    }
    std::sort(shards.begin(), shards.end());
    out.insert(out.end(), shards.begin(), shards.end());
  }
  return out;
}

}  // namespace

std::string content_hash(const std::vector<fs::path>& files) {
  Hasher h;
  std::vector<unsigned char> buffer(size_t(4) << 20);
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw ModelFolderError("cannot read " + file.string() + " to identify the model. HINT: check the file exists and is readable");
    while (in) {
      in.read(reinterpret_cast<char*>(buffer.data()), static_cast<std::streamsize>(buffer.size()));
      h.update(buffer.data(), static_cast<size_t>(in.gcount()));
    }
    if (in.bad()) throw ModelFolderError("reading " + file.string() + " failed (I/O error)");
    h.boundary();
  }
  return h.hex();
}

std::string model_component_id(const fs::path& folder, const std::string& implementation, const std::string& component,
                               const std::string& tokenizer) {
  const fs::path dir = folder / component;
  std::vector<fs::path> files{dir / "config.json"};
  std::vector<fs::path> weights = weight_files(dir, "diffusion_pytorch_model");
  if (weights.empty()) weights = weight_files(dir, "model");
  if (weights.empty())
    throw ModelFolderError(dir.string() + ": no safetensors weights (diffusion_pytorch_model.safetensors or model.safetensors, or "
                           "their sharded index). HINT: download the component's .safetensors files; .bin checkpoints are "
                           "not read");
  files.insert(files.end(), weights.begin(), weights.end());
  if (!tokenizer.empty())
    for (const char* name : {"vocab.json", "merges.txt", "tokenizer_config.json", "special_tokens_map.json"})
      if (fs::exists(folder / tokenizer / name)) files.push_back(folder / tokenizer / name);
  std::string name = fs::weakly_canonical(folder).filename().string();
  if (name.empty()) name = folder.filename().string();
  return implementation + ":" + name + "/" + component + (tokenizer.empty() ? "" : "+" + tokenizer) + ":" + content_hash(files);
}

}  // namespace prefdiff::data
