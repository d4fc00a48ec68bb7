#include "tokenizer/clip_tokenizer.hpp"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <limits>
#include <mutex>
#include <sstream>
#include <unordered_map>
#include <utility>

#include "tokenizer/pcre2_regex.hpp"
#include "tokenizer/text_cleanup.hpp"
#include "tokenizer/unicode_text.hpp"

#define PCRE2_CODE_UNIT_WIDTH 0
#include <pcre2.h>

namespace prefdiff::tokenizer {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

constexpr const char* kFolderHint =
    "HINT: pass a diffusers model folder's tokenizer/ (or tokenizer_2/) subfolder, which holds vocab.json, "
    "merges.txt, tokenizer_config.json and special_tokens_map.json.";
// CLIP's merges: 49152 - 256 - 2 (the slow tokenizer reads exactly these lines after the header).
constexpr size_t kNumMerges = 49152 - 256 - 2;
constexpr const char* kStartOfText = "<|startoftext|>";
constexpr const char* kEndOfText = "<|endoftext|>";

std::string read_text_file(const fs::path& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw TokenizerError("CLIP tokenizer: cannot read " + std::string(what) + " '" + path.string() + "'" +
                         (fs::exists(path) ? " (permission denied?)" : " (no such file)") + ". " + kFolderHint);
  }
  std::ostringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

json read_json_file(const fs::path& path) {
  std::string text = read_text_file(path, "JSON file");
  try {
    return json::parse(text);
  } catch (const json::parse_error& e) {
    throw TokenizerError("CLIP tokenizer: cannot parse '" + path.string() + "': " + e.what() +
                         ". HINT: the file is damaged or not JSON; copy it again from the model's tokenizer folder.");
  }
}

// A special token in the JSON files: a string or an AddedToken object {"content": ...}.
bool token_content(const json& value, std::string* out) {
  if (value.is_string()) {
    *out = value.get<std::string>();
    return true;
  }
  if (value.is_object() && value.contains("content") && value["content"].is_string()) {
    *out = value["content"].get<std::string>();
    return true;
  }
  return false;
}

// bytes_to_unicode() of CLIP/GPT-2: printable bytes map to themselves, the others to U+0100 onwards.
std::vector<std::string> byte_encoder_table() {
  std::vector<std::string> table(256);
  int next = 0;
  for (int b = 0; b < 256; ++b) {
    bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
    char32_t cp = printable ? static_cast<char32_t>(b) : static_cast<char32_t>(256 + next++);
    append_utf8(table[static_cast<size_t>(b)], cp);
  }
  return table;
}

// The slow CLIPTokenizer's pattern (compiled with regex.IGNORECASE).
constexpr const char* kClipPattern =
    "<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^\\s\\p{L}\\p{N}]+";

}  // namespace

struct ClipTokenizer::Impl {
  fs::path folder;
  std::unordered_map<std::string, int32_t> vocab;
  std::unordered_map<std::string, int32_t> merge_ranks;  // "first second" -> rank
  std::vector<std::string> byte_encoder = byte_encoder_table();
  std::vector<std::pair<std::string, int32_t>> added_tokens;  // longest first
  int32_t bos = -1, eos = -1, pad = -1, unk = -1, max_length = 77;
  Regex32 pattern{kClipPattern, PCRE2_CASELESS};
  mutable std::mutex cache_mutex;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache;

  [[noreturn]] void not_in_vocab(const std::string& token, const fs::path& where, const char* role) const {
    throw TokenizerError("CLIP tokenizer: the " + std::string(role) + " '" + token + "' (from '" + where.string() +
                         "') is not in '" + (folder / "vocab.json").string() +
                         "'. HINT: the special-token files and vocab.json come from different tokenizers; copy "
                         "the whole tokenizer folder again.");
  }

  int32_t id_of(const std::string& token, const fs::path& where, const char* role) const {
    for (const auto& [content, id] : added_tokens)
      if (content == token && id >= 0) return id;
    auto it = vocab.find(token);
    if (it != vocab.end()) return it->second;
    not_in_vocab(token, where, role);
  }

  // Symbols of a byte-encoded word: one UTF-8 character each, "</w>" on the last.
  std::vector<std::string> bpe(const std::string& word) const {
    std::vector<std::string> parts;
    for (size_t i = 0; i < word.size();) {
      size_t n = 1;
      const auto b = static_cast<unsigned char>(word[i]);
      if (b >= 0xF0) n = 4;
      else if (b >= 0xE0) n = 3;
      else if (b >= 0xC0) n = 2;
      parts.push_back(word.substr(i, n));
      i += n;
    }
    if (parts.empty()) return parts;
    parts.back() += "</w>";
    std::string key;
    while (parts.size() > 1) {
      int32_t best_rank = std::numeric_limits<int32_t>::max();
      size_t best = 0;
      for (size_t i = 0; i + 1 < parts.size(); ++i) {
        key.assign(parts[i]).append(" ").append(parts[i + 1]);
        auto it = merge_ranks.find(key);
        if (it != merge_ranks.end() && it->second < best_rank) {
          best_rank = it->second;
          best = i;
        }
      }
      if (best_rank == std::numeric_limits<int32_t>::max()) break;
      // Merge every occurrence of the best pair, left to right (as the reference loop does).
      const std::string first = parts[best], second = parts[best + 1];
      std::vector<std::string> merged;
      merged.reserve(parts.size());
      for (size_t i = 0; i < parts.size();) {
        if (i + 1 < parts.size() && parts[i] == first && parts[i + 1] == second) {
          merged.push_back(first + second);
          i += 2;
        } else {
          merged.push_back(parts[i]);
          i += 1;
        }
      }
      parts = std::move(merged);
    }
    return parts;
  }

  int32_t lookup(const std::string& piece) const {
    auto it = vocab.find(piece);
    return it == vocab.end() ? unk : it->second;
  }

  std::string byte_encode(const std::string& word) const {
    std::string encoded;
    encoded.reserve(word.size() * 2);
    for (char c : word) encoded += byte_encoder[static_cast<unsigned char>(c)];
    return encoded;
  }

  // Words of one cleaned piece, by the CLIP pattern (re.findall).
  std::vector<std::string> words(std::string_view raw_piece) const {
    std::u32string cleaned = clip_clean_text(utf8_to_u32(raw_piece));
    std::vector<std::string> out;
    RegexMatch m;
    size_t pos = 0;
    while (pos < cleaned.size() && pattern.search(cleaned, pos, &m)) {
      out.push_back(u32_to_utf8(std::u32string_view(cleaned).substr(m.begin, m.end - m.begin)));
      pos = m.end > m.begin ? m.end : m.end + 1;
    }
    return out;
  }

  void encode_words(std::string_view raw_piece, std::vector<int32_t>* ids, std::vector<std::string>* tokens) const {
    for (const std::string& word : words(raw_piece)) {
      // The slow tokenizer's BPE cache starts with the two special strings mapped to themselves.
      if (word == kStartOfText || word == kEndOfText) {
        if (ids) ids->push_back(lookup(word));
        if (tokens) tokens->push_back(word);
        continue;
      }
      const std::string encoded = byte_encode(word);
      if (tokens) {
        for (std::string& t : bpe(encoded)) tokens->push_back(std::move(t));
      }
      if (!ids) continue;
      {
        std::lock_guard<std::mutex> lock(cache_mutex);
        auto it = cache.find(encoded);
        if (it != cache.end()) {
          ids->insert(ids->end(), it->second.begin(), it->second.end());
          continue;
        }
      }
      std::vector<int32_t> word_ids;
      for (const std::string& piece : bpe(encoded)) word_ids.push_back(lookup(piece));
      ids->insert(ids->end(), word_ids.begin(), word_ids.end());
      std::lock_guard<std::mutex> lock(cache_mutex);
      if (cache.size() > 1000000) cache.clear();  // bounded: captions of a large import stay cheap
      cache.emplace(encoded, std::move(word_ids));
    }
  }

  // Splits at added tokens (leftmost, longest) and encodes the rest; no BOS/EOS.
  void encode_body(std::string_view text, std::vector<int32_t>* ids, std::vector<std::string>* tokens) const {
    size_t piece_start = 0;
    for (size_t i = 0; i < text.size();) {
      const std::pair<std::string, int32_t>* hit = nullptr;
      for (const auto& added : added_tokens) {
        if (text.compare(i, added.first.size(), added.first) == 0) {
          hit = &added;
          break;
        }
      }
      if (!hit) {
        ++i;
        continue;
      }
      encode_words(text.substr(piece_start, i - piece_start), ids, tokens);
      if (ids) ids->push_back(hit->second);
      if (tokens) tokens->push_back(hit->first);
      i += hit->first.size();
      piece_start = i;
    }
    encode_words(text.substr(piece_start), ids, tokens);
  }
};

ClipTokenizer::ClipTokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
ClipTokenizer::ClipTokenizer(ClipTokenizer&&) noexcept = default;
ClipTokenizer& ClipTokenizer::operator=(ClipTokenizer&&) noexcept = default;
ClipTokenizer::~ClipTokenizer() = default;

ClipTokenizer ClipTokenizer::from_folder(const fs::path& folder, const ClipTokenizerOptions& options) {
  if (!fs::is_directory(folder)) {
    throw TokenizerError("CLIP tokenizer: '" + folder.string() + "' is not a folder. " + kFolderHint);
  }
  auto impl = std::make_unique<Impl>();
  impl->folder = folder;

  const fs::path vocab_path = folder / "vocab.json";
  json vocab = read_json_file(vocab_path);
  if (!vocab.is_object() || vocab.empty()) {
    throw TokenizerError("CLIP tokenizer: '" + vocab_path.string() +
                         "' is not a JSON object of token -> id. HINT: it must be the tokenizer's vocab.json.");
  }
  impl->vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    if (!it.value().is_number_integer()) {
      throw TokenizerError("CLIP tokenizer: '" + vocab_path.string() + "': the id of token '" + it.key() +
                           "' is not an integer. HINT: it must be the tokenizer's vocab.json.");
    }
    impl->vocab.emplace(it.key(), it.value().get<int32_t>());
  }

  const fs::path merges_path = folder / "merges.txt";
  std::string merges = read_text_file(merges_path, "merges file");
  {
    // transformers: read().strip().split("\n")[1 : 48895]: the first line (the "#version" header) and
    // anything past CLIP's 48894 merges are ignored.
    size_t begin = merges.find_first_not_of(" \t\r\n\f\v");
    size_t end = merges.find_last_not_of(" \t\r\n\f\v");
    std::string_view body = begin == std::string::npos ? std::string_view()
                                                       : std::string_view(merges).substr(begin, end - begin + 1);
    size_t line_no = 0, pos = 0;
    while (pos <= body.size() && impl->merge_ranks.size() < kNumMerges) {
      size_t nl = body.find('\n', pos);
      std::string_view line = body.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      pos = nl == std::string_view::npos ? body.size() + 1 : nl + 1;
      if (line_no++ == 0) continue;
      std::istringstream fields{std::string(line)};
      std::string first, second, extra;
      if (!(fields >> first >> second) || (fields >> extra)) {
        throw TokenizerError("CLIP tokenizer: '" + merges_path.string() + "' line " + std::to_string(line_no) +
                             " is not a merge (two symbols separated by a space): '" + std::string(line) +
                             "'. HINT: the file is damaged; copy merges.txt again from the model's tokenizer folder.");
      }
      impl->merge_ranks.emplace(first + " " + second, static_cast<int32_t>(impl->merge_ranks.size()));
    }
    if (impl->merge_ranks.empty()) {
      throw TokenizerError("CLIP tokenizer: '" + merges_path.string() +
                           "' has no merges. HINT: copy merges.txt again from the model's tokenizer folder.");
    }
  }

  // Special tokens: defaults, then tokenizer_config.json, then special_tokens_map.json, then options.
  std::string bos = kStartOfText, eos = kEndOfText, unk = kEndOfText, pad = kEndOfText;
  std::vector<std::pair<std::string, int32_t>> declared;  // added_tokens_decoder / added_tokens.json
  fs::path bos_from = folder, eos_from = folder, unk_from = folder, pad_from = folder;
  auto take_specials = [&](const fs::path& path, const json& j) {
    if (!j.is_object()) {
      throw TokenizerError("CLIP tokenizer: '" + path.string() + "' is not a JSON object. HINT: copy it again from "
                           "the model's tokenizer folder.");
    }
    const std::pair<const char*, std::pair<std::string*, fs::path*>> keys[] = {
        {"bos_token", {&bos, &bos_from}}, {"eos_token", {&eos, &eos_from}},
        {"unk_token", {&unk, &unk_from}}, {"pad_token", {&pad, &pad_from}}};
    for (const auto& [key, target] : keys) {
      if (!j.contains(key) || j[key].is_null()) continue;
      if (!token_content(j[key], target.first)) {
        throw TokenizerError("CLIP tokenizer: '" + path.string() + "': \"" + key +
                             "\" is neither a string nor an object with \"content\". HINT: copy the file again "
                             "from the model's tokenizer folder.");
      }
      *target.second = path;
    }
  };
  const fs::path config_path = folder / "tokenizer_config.json";
  if (fs::exists(config_path)) {
    json config = read_json_file(config_path);
    take_specials(config_path, config);
    if (config.contains("model_max_length") && config["model_max_length"].is_number()) {
      double n = config["model_max_length"].get<double>();
      // transformers writes a huge sentinel when a tokenizer has no limit; CLIP's is 77.
      if (n >= 1 && n < 1e6) impl->max_length = static_cast<int32_t>(n);
    }
    if (config.contains("added_tokens_decoder") && config["added_tokens_decoder"].is_object()) {
      for (auto it = config["added_tokens_decoder"].begin(); it != config["added_tokens_decoder"].end(); ++it) {
        std::string content;
        int32_t id = 0;
        try {
          id = static_cast<int32_t>(std::stol(it.key()));
        } catch (const std::exception&) {
          throw TokenizerError("CLIP tokenizer: '" + config_path.string() + "': added_tokens_decoder key '" +
                               it.key() + "' is not an id. HINT: copy the file again from the model's tokenizer folder.");
        }
        if (!token_content(it.value(), &content)) {
          throw TokenizerError("CLIP tokenizer: '" + config_path.string() + "': added_tokens_decoder[" + it.key() +
                               "] has no \"content\". HINT: copy the file again from the model's tokenizer folder.");
        }
        declared.emplace_back(content, id);
      }
    }
  }
  const fs::path map_path = folder / "special_tokens_map.json";
  if (fs::exists(map_path)) take_specials(map_path, read_json_file(map_path));
  const fs::path added_path = folder / "added_tokens.json";
  if (fs::exists(added_path)) {
    json added = read_json_file(added_path);
    for (auto it = added.begin(); added.is_object() && it != added.end(); ++it)
      if (it.value().is_number_integer()) declared.emplace_back(it.key(), it.value().get<int32_t>());
  }
  if (!options.pad_token.empty()) {
    pad = options.pad_token;
    pad_from = "the pad_token option";
  }
  if (options.model_max_length > 0) impl->max_length = options.model_max_length;
  if (impl->max_length < 2) {
    throw TokenizerError("CLIP tokenizer: model_max_length " + std::to_string(impl->max_length) +
                         " leaves no room for BOS and EOS. HINT: use 77 (CLIP's context length).");
  }

  // Added tokens: declared ones first (their ids), then the special tokens (ids from the vocabulary).
  for (const auto& entry : declared) impl->added_tokens.push_back(entry);
  for (const std::string* special : {&bos, &eos, &unk, &pad}) {
    bool known = false;
    for (const auto& entry : impl->added_tokens) known = known || entry.first == *special;
    if (!known && !special->empty()) impl->added_tokens.emplace_back(*special, -1);
  }
  for (auto& entry : impl->added_tokens) {
    if (entry.second < 0) {
      auto it = impl->vocab.find(entry.first);
      if (it == impl->vocab.end()) {
        const bool is_pad = entry.first == pad;
        impl->not_in_vocab(entry.first, is_pad ? pad_from : entry.first == bos ? bos_from
                                        : entry.first == eos ? eos_from : unk_from,
                           is_pad ? "pad_token" : "special token");
      }
      entry.second = it->second;
    }
  }
  std::stable_sort(impl->added_tokens.begin(), impl->added_tokens.end(),
                   [](const auto& a, const auto& b) { return a.first.size() > b.first.size(); });
  impl->bos = impl->id_of(bos, bos_from, "bos_token");
  impl->eos = impl->id_of(eos, eos_from, "eos_token");
  impl->unk = impl->id_of(unk, unk_from, "unk_token");
  impl->pad = impl->id_of(pad, pad_from, "pad_token");
  return ClipTokenizer(std::move(impl));
}

EncodedText ClipTokenizer::encode(std::string_view text) const {
  EncodedText out;
  out.ids.push_back(impl_->bos);
  impl_->encode_body(text, &out.ids, nullptr);
  out.ids.push_back(impl_->eos);
  out.length = static_cast<int32_t>(out.ids.size());
  out.attention_mask.assign(out.ids.size(), 1);
  return out;
}

EncodedText ClipTokenizer::encode_padded(std::string_view text, int32_t max_length) const {
  EncodedBatch batch = encode_batch({std::string(text)}, Padding::max_length, max_length);
  return std::move(batch.rows.front());
}

EncodedBatch ClipTokenizer::encode_batch(const std::vector<std::string>& texts, Padding padding,
                                         int32_t max_length) const {
  if (max_length <= 0) max_length = impl_->max_length;
  if (max_length < 2) {
    throw std::invalid_argument("ClipTokenizer: max_length " + std::to_string(max_length) +
                                " leaves no room for BOS and EOS");
  }
  EncodedBatch batch;
  batch.rows.reserve(texts.size());
  for (const std::string& text : texts) {
    EncodedText row = encode(text);
    if (row.length > max_length) {
      // Truncation keeps BOS, the first max_length - 2 tokens and EOS.
      row.ids.resize(static_cast<size_t>(max_length - 1));
      row.ids.push_back(impl_->eos);
      row.attention_mask.assign(row.ids.size(), 1);
      row.truncated = true;
      ++batch.num_truncated;
    }
    batch.rows.push_back(std::move(row));
  }
  size_t target = 0;
  if (padding == Padding::max_length) target = static_cast<size_t>(max_length);
  if (padding == Padding::longest)
    for (const EncodedText& row : batch.rows) target = std::max(target, row.ids.size());
  for (EncodedText& row : batch.rows) {
    if (row.ids.size() < target) {
      row.attention_mask.resize(target, 0);
      row.ids.resize(target, impl_->pad);
    }
  }
  return batch;
}

std::vector<std::string> ClipTokenizer::tokens(std::string_view text) const {
  std::vector<std::string> out;
  out.push_back(kStartOfText);
  impl_->encode_body(text, nullptr, &out);
  out.push_back(kEndOfText);
  // BOS/EOS may be other strings in a custom folder; report what the ids are.
  for (const auto& [content, id] : impl_->added_tokens) {
    if (id == impl_->bos) out.front() = content;
    if (id == impl_->eos) out.back() = content;
  }
  return out;
}

std::string ClipTokenizer::clean_text(std::string_view text) { return clip_clean_text(text); }

int32_t ClipTokenizer::bos_id() const { return impl_->bos; }
int32_t ClipTokenizer::eos_id() const { return impl_->eos; }
int32_t ClipTokenizer::pad_id() const { return impl_->pad; }
int32_t ClipTokenizer::unk_id() const { return impl_->unk; }
int32_t ClipTokenizer::model_max_length() const { return impl_->max_length; }
int32_t ClipTokenizer::vocab_size() const { return static_cast<int32_t>(impl_->vocab.size()); }
int32_t ClipTokenizer::token_to_id(const std::string& token) const {
  auto it = impl_->vocab.find(token);
  return it == impl_->vocab.end() ? -1 : it->second;
}

}  // namespace prefdiff::tokenizer
