// Pick-a-Pic v2 -> pair shards. The parquet files are turned into JSON lines by pickapic_to_jsonl.py
// (pyarrow), and the pair logic lives here: as in Diffusion-DPO, ties (label_0 not in {0, 1}) are dropped
// and the preferred image goes first.
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "json_input.hpp"
#include "pair_assembler.hpp"
#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/stable_id.hpp"

#ifndef PREFDIFF_PICKAPIC_CONVERTER
#define PREFDIFF_PICKAPIC_CONVERTER "pickapic_to_jsonl.py"
#endif

namespace prefdiff::data {

namespace {

std::string text_of(const RecordRef& row, const std::string& key) {
  const nlohmann::json& v = row.require(key);
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer()) return std::to_string(v.get<int64_t>());
  row.fail(key, "is " + std::string(v.type_name()) + ", expected a string or an integer", "");
}

double number_of(const RecordRef& row, const std::string& key) {
  const nlohmann::json& v = row.require(key);
  if (!v.is_number()) row.fail(key, "is " + std::string(v.type_name()) + ", expected a number", "");
  return v.get<double>();
}

bool flag_of(const RecordRef& row, const std::string& key) {
  auto it = row.record.find(key);
  if (it == row.record.end() || it->is_null()) return true;  // absent in some exports: assume the usual case
  if (!it->is_boolean()) row.fail(key, "is " + std::string(it->type_name()) + ", expected true or false", "");
  return it->get<bool>();
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

}  // namespace

ImportSummary import_pickapic_jsonl(const std::string& input, PairEncoder& encoder, const ImportOptions& options) {
  std::ifstream in(input);
  if (!in) throw ImportError(input + ": cannot open for reading. HINT: check the path");
  PairAssembler out("pick-a-pic", input, "pick-a-pic-v2", encoder, options, {"annotator", "ranking_id", "created_at"},
                    {"model_w", "model_l", "image_w_uid", "image_l_uid"});
  uint64_t unlabelled = 0, identical = 0;
  std::string line;
  for (size_t number = 1; std::getline(in, line) && !out.full(); ++number) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    nlohmann::json row;
    try {
      row = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      throw ImportError(input + ", line " + std::to_string(number) + ": not valid JSON: " + e.what());
    }
    const RecordRef record{input, number, row};
    ++out.summary().records;
    if (!flag_of(record, "has_label")) {
      ++unlabelled;
      continue;
    }
    if (!flag_of(record, "are_different")) {
      ++identical;
      continue;
    }
    const double label_0 = number_of(record, "label_0"), label_1 = number_of(record, "label_1");
    const std::string caption = record.string("caption");
    const std::string uid[2] = {record.string("image_0_uid"), record.string("image_1_uid")};
    const std::string model[2] = {text_of(record, "model_0"), text_of(record, "model_1")};
    const std::string ranking_id = text_of(record, "ranking_id");
    const double user_id = number_of(record, "user_id");
    const double created_at = row.contains("created_at") && row["created_at"].is_number() ? row["created_at"].get<double>() : 0.0;
    int w;
    if (label_0 == 1.0 && label_1 == 0.0) {
      w = 0;
    } else if (label_0 == 0.0 && label_1 == 1.0) {
      w = 1;
    } else {
      ++out.summary().ties;
      continue;
    }
    const int l = 1 - w;
    ImageRef image[2];
    for (int k = 0; k < 2; ++k) {
      image[k].uid = uid[k];
      const std::string path_key = "image_" + std::to_string(k) + "_path";
      if (row.contains(path_key) && row[path_key].is_string()) image[k].path = row[path_key].get<std::string>();
    }
    const uint64_t id = stable_id({"pick-a-pic-v2", ranking_id, std::min(uid[0], uid[1]), std::max(uid[0], uid[1])});
    if (!out.add(id, caption, image[w], image[l], {user_id, std::strtod(ranking_id.c_str(), nullptr), created_at},
                 {model[w], model[l], uid[w], uid[l]}))
      break;
    out.end_group();
  }
  ImportSummary& s = out.summary();
  s.skipped = unlabelled + identical;
  if (unlabelled > 0) s.notes.push_back(std::to_string(unlabelled) + " rows with has_label = false");
  if (identical > 0) s.notes.push_back(std::to_string(identical) + " rows with are_different = false");
  ImportSummary done = out.finish();
  // Rows are single comparisons, not prompt groups: report the captions (counted as they are written).
  done.prompts = done.distinct_prompts;
  return done;
}

ImportSummary import_pickapic_parquet(const std::vector<std::string>& inputs, const std::string& python, PairEncoder& encoder,
                                      const ImportOptions& options) {
  if (inputs.empty()) throw ImportError("pick-a-pic import: no parquet files given");
  const std::string rows = options.output + ".rows.jsonl";
  std::string command = shell_quote(python) + " " + shell_quote(PREFDIFF_PICKAPIC_CONVERTER) + " --output " + shell_quote(rows);
  // An encoder that reads pixels needs the JPEG bytes: the converter writes them as <uid>.jpg beside the
  // rows (absolute paths, so --images-root does not apply), removed with the rows after the import.
  const std::string images = std::filesystem::absolute(options.output + ".images").string();
  if (encoder.spec().reads_pixels) command += " --images-dir " + shell_quote(images);
  for (const std::string& input : inputs) command += " " + shell_quote(input);
  auto remove_temporaries = [&] {
    std::remove(rows.c_str());
    std::error_code ignored;
    if (encoder.spec().reads_pixels) std::filesystem::remove_all(images, ignored);
  };
  const int rc = std::system(command.c_str());
  if (rc != 0) {
    remove_temporaries();
    throw ImportError("pick-a-pic import: the parquet converter failed (exit status " + std::to_string(rc) + "): " + command +
                      ". HINT: --python must name a Python with pyarrow installed (the prefdiff venv has it)");
  }
  ImportSummary summary;
  try {
    summary = import_pickapic_jsonl(rows, encoder, options);
  } catch (...) {
    remove_temporaries();
    throw;
  }
  remove_temporaries();
  summary.input.clear();
  for (const std::string& input : inputs) summary.input += (summary.input.empty() ? "" : ", ") + input;
  return summary;
}

}  // namespace prefdiff::data
