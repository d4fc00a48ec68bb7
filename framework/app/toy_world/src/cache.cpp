// Cache folders published atomically, JSON files, and the world's pair shards. No LibTorch here.
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>

#include "internal.hpp"
#include "prefdiff/data/half.hpp"
#include "prefdiff/data/shard_writer.hpp"
#include "prefdiff/data/stable_id.hpp"

namespace prefdiff::toy::detail {
namespace fs = std::filesystem;

std::string hash_json(const nlohmann::json& value) {
  const std::string text = value.dump();  // nlohmann's object is a std::map: keys come out sorted
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(data::stable_id({text})));
  return hex;
}

namespace {

// Holds an exclusive flock for its lifetime.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
      throw WorldError("toy-world cache: cannot open lock file " + path.string() + ": " + std::strerror(errno) +
                       "; HINT: make the cache folder writable or set [data] cache_dir / PREFDIFF_CACHE");
    while (::flock(fd_, LOCK_EX) != 0) {
      if (errno == EINTR) continue;
      // Some network file systems refuse flock; the atomic rename below still keeps the cache consistent.
      ::close(fd_);
      fd_ = -1;
      break;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) {
      ::flock(fd_, LOCK_UN);
      ::close(fd_);
    }
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

void fsync_path(const fs::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

void fsync_tree(const fs::path& dir) {
  for (const auto& entry : fs::recursive_directory_iterator(dir))
    if (entry.is_regular_file() || entry.is_directory()) fsync_path(entry.path());
  fsync_path(dir);
}

}  // namespace

fs::path publish_once(const fs::path& root, const std::string& name, const std::function<void(const fs::path&)>& build,
                      bool* built) {
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec)
    throw WorldError("toy-world cache: cannot create " + root.string() + ": " + ec.message() +
                     "; HINT: set [data] cache_dir or PREFDIFF_CACHE to a writable folder");
  const fs::path final_dir = root / name;
  *built = false;
  if (fs::is_directory(final_dir)) return final_dir;
  FileLock lock(root / (name + ".lock"));
  if (fs::is_directory(final_dir)) return final_dir;  // built by the process we waited for

  static std::atomic<uint64_t> counter{0};
  const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
  const fs::path tmp = root / (".tmp-" + name + "-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + "-" +
                               std::to_string(static_cast<unsigned long long>(now)));
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp);
  try {
    build(tmp);
    fsync_tree(tmp);
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  // rename(2) of a directory onto an existing non-empty one fails (ENOTEMPTY/EEXIST): someone else won.
  if (::rename(tmp.c_str(), final_dir.c_str()) != 0) {
    const int err = errno;
    fs::remove_all(tmp, ec);
    if ((err == ENOTEMPTY || err == EEXIST) && fs::is_directory(final_dir)) return final_dir;
    throw WorldError("toy-world cache: cannot publish " + final_dir.string() + ": " + std::strerror(err));
  }
  fsync_path(root);
  *built = true;
  return final_dir;
}

void write_json(const fs::path& path, const nlohmann::json& value) {
  std::ofstream out(path);
  out << value.dump(2) << "\n";
  out.close();
  if (!out) throw WorldError("toy-world: cannot write " + path.string());
}

nlohmann::json read_json(const fs::path& path) {
  std::ifstream in(path);
  if (!in)
    throw WorldError("toy-world cache: " + path.string() +
                     " is missing; HINT: the cache folder is incomplete or was edited; delete " +
                     path.parent_path().string() + " and run again");
  try {
    return nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw WorldError("toy-world cache: " + path.string() + " is not valid JSON (" + e.what() + "); HINT: delete " +
                     path.parent_path().string() + " and run again");
  }
}

void write_pair_shard(const fs::path& path, const World& world, const std::vector<Pair>& pairs, const std::string& split,
                      const std::string& source) {
  const WorldConfig& c = world.config();
  data::ShardAttributes attributes;
  attributes.backbone_family = "toy";
  attributes.latent_shape = world.latent_shape();
  attributes.latent_scale_factor = 1.0;  // world latents are the model's latents: nothing to scale
  attributes.vae_id = kDataId;
  attributes.text_encoder_id = kDataId;
  attributes.encoder = kCodeVersion;
  attributes.source_dataset = source;
  attributes.source_split = split;
  attributes.writer = std::string("prefdiff toy-world (") + kCodeVersion + ")";
  data::ShardLayout layout;
  layout.latent_dtype = PD_DTYPE_F32;  // f32: the oracle labelled exactly these values
  layout.embed_tokens = c.embed_tokens;
  layout.embed_dim = c.embed_dim;
  layout.meta_columns = {"margin", "reward_w", "reward_l", "oracle_agrees", "mode_w", "mode_l", "heldout_prompt"};

  data::ShardWriter writer(path.string(), attributes, layout);
  std::vector<uint16_t> half(static_cast<size_t>(c.embed_tokens * c.embed_dim));
  for (int64_t k = 0; k < world.prompt_count(); ++k) {
    const std::vector<float>& e = world.prompt_embedding(k);
    for (size_t i = 0; i < half.size(); ++i) half[i] = data::float_to_half(e[i]);
    const int64_t row = writer.add_prompt(world.prompt_text(k), half.data(), nullptr);
    if (row != k) throw WorldError("toy-world: prompt table row " + std::to_string(row) + " != prompt " + std::to_string(k));
  }
  for (size_t i = 0; i < half.size(); ++i) half[i] = data::float_to_half(world.null_embedding()[i]);
  writer.add_prompt("", half.data(), nullptr);
  for (const Pair& p : pairs) {
    data::PairRecord r;
    r.pair_id = p.pair_id;
    r.prompt = p.prompt;
    r.latent_w = p.latent_w.data();
    r.latent_l = p.latent_l.data();
    // |r_w - r_l| is the ambiguity-flip contract (a clarity >= 0); the signed rewards stay beside it.
    r.meta = {std::abs(p.reward_w - p.reward_l), p.reward_w, p.reward_l, p.reward_w >= p.reward_l ? 1.0 : 0.0,
              static_cast<double>(p.mode_w), static_cast<double>(p.mode_l), world.is_heldout(p.prompt) ? 1.0 : 0.0};
    writer.add_pair(r);
  }
  writer.close();
}

}  // namespace prefdiff::toy::detail
