// Windowed metrics, reduced across ranks, written as JSON lines (the record) and CSV (a view of it).
#include "prefdiff/run/metrics.hpp"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "prefdiff/run/atomic_dir.hpp"

namespace fs = std::filesystem;

namespace prefdiff::run {
namespace {

// Low 32 bits of FNV-1a over the sorted key names: exact in a double even when summed over 2^20 ranks.
double key_fingerprint(const std::vector<std::string>& keys) {
  std::uint64_t h = 1469598103934665603ull;
  for (const std::string& k : keys) {
    for (unsigned char c : k) h = (h ^ c) * 1099511628211ull;
    h = (h ^ 0xffu) * 1099511628211ull;  // separator: {"ab"} and {"a","b"} differ
  }
  return static_cast<double>(h & 0xffffffffull);
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& k : v) s += (s.empty() ? "" : ", ") + k;
  return s.empty() ? "(none)" : s;
}

// Non-finite numbers are null in JSON (the format has no NaN) and "nan" in the CSV.
nlohmann::json json_number(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n\r") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

template <typename Json>
std::string csv_cell(const Json& v) {
  if (v.is_null()) return "nan";
  if (v.is_string()) return csv_field(v.template get<std::string>());
  return v.dump();  // shortest text that reads back to the same double
}

template <typename Json>
std::string csv_line(const std::vector<std::string>& columns, const Json& row) {
  std::string line;
  for (std::size_t i = 0; i < columns.size(); ++i) {
    if (i) line += ',';
    auto it = row.find(columns[i]);
    if (it != row.end()) line += csv_cell(*it);  // absent: empty cell
  }
  return line + "\n";
}

std::string csv_header(const std::vector<std::string>& columns) {
  std::string line;
  for (std::size_t i = 0; i < columns.size(); ++i) line += (i ? "," : "") + csv_field(columns[i]);
  return line + "\n";
}

std::vector<std::string> columns_for(const std::set<std::string>& keys) {
  std::vector<std::string> c{metric::kStep, metric::kEpoch};
  for (const std::string& k : keys)
    if (k != metric::kStep && k != metric::kEpoch) c.push_back(k);
  return c;
}

// Rows of a JSONL text; a line that does not parse (a row torn by a crash) is skipped.
std::vector<nlohmann::json> parse_rows(const std::string& text, std::size_t* torn = nullptr) {
  std::vector<nlohmann::json> rows;
  std::size_t start = 0;
  while (start < text.size()) {
    std::size_t end = text.find('\n', start);
    bool complete = end != std::string::npos;
    std::string line = text.substr(start, complete ? end - start : std::string::npos);
    start = complete ? end + 1 : text.size();
    if (line.empty()) continue;
    nlohmann::json row = nlohmann::json::parse(line, nullptr, false);
    if (!complete || row.is_discarded() || !row.is_object() || !row.contains(metric::kStep)) {
      if (torn) ++*torn;
      continue;
    }
    rows.push_back(std::move(row));
  }
  return rows;
}

}  // namespace

MetricsLogger::MetricsLogger(fs::path run_dir, MetricsOptions options)
    : dir_(std::move(run_dir)), options_(options), columns_{metric::kStep, metric::kEpoch} {
  if (!options_.writer) return;
  std::error_code ec;
  if (!fs::is_directory(dir_, ec))
    throw RunError("metrics: run folder '" + dir_.string() + "' does not exist. HINT: open the RunDirectory first.");
  if (options_.resume_step >= 0) {
    repair_for_resume();
  } else if (fs::exists(jsonl_path(), ec) && fs::file_size(jsonl_path(), ec) > 0) {
    throw RunError("metrics: '" + jsonl_path().string() + "' already has rows but this is a new run. HINT: "
                   "pass the resume step (MetricsOptions::resume_step) when continuing a run.");
  }
}

void MetricsLogger::repair_for_resume() {
  std::error_code ec;
  std::vector<nlohmann::json> kept;
  if (fs::exists(jsonl_path(), ec)) {
    for (nlohmann::json& row : parse_rows(read_file(jsonl_path())))
      if (row[metric::kStep].is_number() && row[metric::kStep].get<std::int64_t>() <= options_.resume_step)
        kept.push_back(std::move(row));
  }
  std::set<std::string> keys;
  std::string text;
  for (const nlohmann::json& row : kept) {
    for (const auto& [k, v] : row.items()) keys.insert(k);
    text += row.dump() + "\n";
  }
  atomic_write_file(jsonl_path(), text);
  columns_ = columns_for(keys);
  rewrite_csv_from_jsonl();
}

void MetricsLogger::rewrite_csv_from_jsonl() {
  std::string text = csv_header(columns_);
  std::error_code ec;
  if (fs::exists(jsonl_path(), ec))
    for (const nlohmann::json& row : parse_rows(read_file(jsonl_path()))) text += csv_line(columns_, row);
  atomic_write_file(csv_path(), text);
}

void MetricsLogger::append(const fs::path& path, const std::string& text) {
  int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) throw RunError("metrics: cannot open '" + path.string() + "': " + std::strerror(errno));
  const char* p = text.data();
  std::size_t left = text.size();
  while (left > 0) {
    ssize_t n = ::write(fd, p, left);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int err = errno;
      ::close(fd);
      throw RunError("metrics: cannot write '" + path.string() + "': " + std::strerror(err) +
                     ". HINT: the disk may be full.");
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  if (options_.fsync_rows) ::fdatasync(fd);  // best effort: a lost last row is repaired on resume
  ::close(fd);
}

void MetricsLogger::add(const std::string& key, double value) {
  sums_[key] += value;
  counts_[key] += 1.0;
}

void MetricsLogger::set(const std::string& key, double value) {
  sums_[key] = value;
  counts_[key] = 1.0;
}

std::vector<std::string> MetricsLogger::window_keys() const {
  std::vector<std::string> keys;
  for (const auto& [k, v] : sums_) keys.push_back(k);  // std::map: sorted, identical order on every rank
  return keys;
}

std::map<std::string, double> MetricsLogger::window_means(const AllReduceSum& all_reduce_sum) const {
  std::vector<std::string> keys = window_keys();
  std::vector<double> sums, counts;
  for (const std::string& k : keys) {
    sums.push_back(sums_.at(k));
    counts.push_back(counts_.at(k));
  }
  if (all_reduce_sum) {
    // A fixed-size reduction first: if the key sets differ, the variable-length one would pair unrelated
    // numbers (or hang a collective whose sizes disagree). Every rank sees the same sums, so all throw.
    const double fp = key_fingerprint(keys);
    std::vector<double> check{1.0, fp};
    all_reduce_sum(check);
    if (check.size() != 2 || check[1] != check[0] * fp)
      throw RunError("metrics: the ranks logged different keys in this window (this rank: " + join(keys) +
                     "). HINT: every rank must add() or set() the same keys between two log_window() calls.");
    std::vector<double> data = sums;
    data.insert(data.end(), counts.begin(), counts.end());
    all_reduce_sum(data);
    if (data.size() != 2 * keys.size()) throw RunError("metrics: all_reduce_sum changed the vector's length");
    for (std::size_t i = 0; i < keys.size(); ++i) {
      sums[i] = data[i];
      counts[i] = data[keys.size() + i];
    }
  }
  std::map<std::string, double> means;
  for (std::size_t i = 0; i < keys.size(); ++i)
    if (counts[i] > 0) means[keys[i]] = sums[i] / counts[i];
  return means;
}

void MetricsLogger::reset_window() {
  sums_.clear();
  counts_.clear();
}

std::map<std::string, double> MetricsLogger::log_window(std::int64_t step, double epoch,
                                                        const AllReduceSum& all_reduce_sum) {
  std::map<std::string, double> means = window_means(all_reduce_sum);
  reset_window();
  if (!means.empty()) write_row(step, epoch, means);
  return means;
}

void MetricsLogger::write_row(std::int64_t step, double epoch, const std::map<std::string, double>& values) {
  if (!options_.writer) return;
  nlohmann::ordered_json row;
  row[metric::kStep] = step;
  row[metric::kEpoch] = json_number(epoch);
  bool widened = false;
  std::set<std::string> known(columns_.begin(), columns_.end());
  for (const auto& [k, v] : values) {
    if (k.empty() || k == metric::kStep || k == metric::kEpoch || k.find_first_of("\n\r") != std::string::npos)
      throw RunError("metrics: '" + k + "' cannot be a metric key (step and epoch are columns of every row)");
    row[k] = json_number(v);
    if (known.insert(k).second) widened = true;
  }
  append(jsonl_path(), row.dump() + "\n");  // the record first: the CSV can always be rebuilt from it
  std::error_code ec;
  if (widened || !fs::exists(csv_path(), ec)) {
    columns_ = columns_for(known);
    rewrite_csv_from_jsonl();  // a new column: the whole table with the wider header, atomically
  } else {
    append(csv_path(), csv_line(columns_, row));
  }
  for (const RowSink& sink : sinks_) sink(step, epoch, values);
}

void MetricsLogger::write_eval(std::int64_t step, double epoch, const std::map<std::string, double>& values) {
  std::map<std::string, double> prefixed;
  const std::string prefix = metric::kEvalPrefix;
  for (const auto& [k, v] : values) prefixed[k.compare(0, prefix.size(), prefix) == 0 ? k : prefix + k] = v;
  write_row(step, epoch, prefixed);
}

}  // namespace prefdiff::run
