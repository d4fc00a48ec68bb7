#include "prefdiff/data/cli.hpp"

#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "prefdiff/data/encoder.hpp"
#include "prefdiff/data/importers.hpp"
#include "prefdiff/data/inspect.hpp"
#include "prefdiff/data/shard_validate.hpp"

#ifndef PREFDIFF_VERSION
#define PREFDIFF_VERSION "unknown"
#endif
#ifndef PREFDIFF_GIT_REVISION
#define PREFDIFF_GIT_REVISION "unknown"
#endif

namespace prefdiff::data {

namespace {

// Options shared by every importer.
struct ImportArgs {
  std::string input;
  std::vector<std::string> inputs;
  ImportOptions options;
  std::string encoder = "placeholder";
  std::string family = "sd15";
  std::string python = "python3";
};

// Runs a command body; any error is printed and becomes exit status 1.
template <typename Body>
void run_reporting(Body&& body) {
  try {
    body();
  } catch (const CLI::Error&) {
    throw;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    throw CLI::RuntimeError(1);
  }
}

std::unique_ptr<PairEncoder> make_encoder(const ImportArgs& args) {
  if (args.encoder == "placeholder") return std::make_unique<PlaceholderEncoder>(PlaceholderEncoder::by_name(args.family));
  throw std::invalid_argument("unknown encoder '" + args.encoder + "'; available: placeholder (until the VAE and text encoders land)");
}

void add_import_options(CLI::App* command, ImportArgs& args) {
  command->add_option("-o,--output", args.options.output, "Shard to write (.h5); with --shard-size, <stem>-00000.h5, ...")->required();
  command->add_option("--split", args.options.split, "Source split recorded in the shard")->capture_default_str();
  command->add_option("--shard-size", args.options.shard_size, "Pairs per shard (0: one shard)")->capture_default_str();
  command->add_option("--limit", args.options.limit, "Stop after this many pairs (0: all)")->capture_default_str();
  command->add_option("--images-root", args.options.images_root, "Folder that relative image paths are relative to");
  command->add_option("--encoder", args.encoder,
                      "Encoder producing latents and embeddings; 'placeholder' is a deterministic stand-in, NOT a model")
      ->check(CLI::IsMember({"placeholder"}))
      ->capture_default_str();
  command->add_option("--family", args.family, "Backbone family whose shapes the encoder produces")
      ->check(CLI::IsMember({"sd15", "sdxl", "tiny"}))
      ->capture_default_str();
}

void finish_import(const ImportSummary& summary) { std::cout << summary.to_string(); }

}  // namespace

void add_cli(CLI::App& app) {
  CLI::App* data = app.add_subcommand("data", "Import, inspect and validate preference pair shards");
  data->require_subcommand(1);

  // ---- import
  CLI::App* import = data->add_subcommand("import", "Import a public preference data set into pair shards");
  import->require_subcommand(1);
  auto args = std::make_shared<ImportArgs>();
  args->options.writer = std::string("prefdiff data import (prefdiff ") + PREFDIFF_VERSION + ", git " + PREFDIFF_GIT_REVISION + ")";

  CLI::App* imagereward = import->add_subcommand("imagereward", "ImageReward rankings JSON ({id, prompt, generations, ranking})");
  imagereward->add_option("input", args->input, "Rankings JSON file")->required()->check(CLI::ExistingFile);
  add_import_options(imagereward, *args);
  imagereward->callback([args] {
    run_reporting([&] {
      auto encoder = make_encoder(*args);
      finish_import(import_imagereward(args->input, *encoder, args->options));
    });
  });

  CLI::App* hpdv2 = import->add_subcommand("hpdv2", "HPDv2 train.json or test.json");
  hpdv2->add_option("input", args->input, "HPDv2 JSON file")->required()->check(CLI::ExistingFile);
  add_import_options(hpdv2, *args);
  hpdv2->callback([args] {
    run_reporting([&] {
      auto encoder = make_encoder(*args);
      finish_import(import_hpdv2(args->input, *encoder, args->options));
    });
  });

  CLI::App* pickapic = import->add_subcommand("pick-a-pic", "Pick-a-Pic v2 parquet files (via pyarrow) or the converter's JSON lines");
  pickapic->add_option("inputs", args->inputs, "Parquet files, or one .jsonl file")->required()->check(CLI::ExistingFile);
  pickapic->add_option("--python", args->python, "Python with pyarrow, for parquet input")->capture_default_str();
  add_import_options(pickapic, *args);
  pickapic->callback([args] {
    run_reporting([&] {
      auto encoder = make_encoder(*args);
      const bool jsonl = args->inputs.size() == 1 && args->inputs[0].size() > 6 &&
                         args->inputs[0].compare(args->inputs[0].size() - 6, 6, ".jsonl") == 0;
      finish_import(jsonl ? import_pickapic_jsonl(args->inputs[0], *encoder, args->options)
                          : import_pickapic_parquet(args->inputs, args->python, *encoder, args->options));
    });
  });

  // ---- inspect
  CLI::App* inspect = data->add_subcommand("inspect", "Show a shard's attributes, counts, shapes and first rows");
  auto inspect_path = std::make_shared<std::string>();
  auto inspect_rows = std::make_shared<uint64_t>(3);
  inspect->add_option("shard", *inspect_path, "Shard file")->required();
  inspect->add_option("--rows", *inspect_rows, "Rows to show")->capture_default_str();
  inspect->callback([inspect_path, inspect_rows] { run_reporting([&] { inspect_shard(*inspect_path, *inspect_rows, std::cout); }); });

  // ---- validate
  CLI::App* validate = data->add_subcommand("validate", "Check shards completely; exit status 1 on any problem");
  auto patterns = std::make_shared<std::vector<std::string>>();
  validate->add_option("shards", *patterns, "Shard files or globs")->required();
  validate->callback([patterns] {
    run_reporting([&] {
      const ValidationReport report = validate_shards(*patterns);
      for (const ShardReport& shard : report.shards) {
        if (shard.problems.empty())
          std::cout << "ok      " << shard.path << " (" << shard.pairs << " pairs, " << shard.prompts << " prompts)\n";
        else
          std::cout << "FAILED  " << shard.path << "\n";
        for (const std::string& p : shard.problems) std::cerr << "  " << p << "\n";
      }
      for (const std::string& p : report.problems) std::cerr << "  " << p << "\n";
      if (!report.ok()) {
        std::cerr << report.problem_count() << " problem(s) found\n";
        throw CLI::RuntimeError(1);
      }
      std::cout << report.shards.size() << " shard(s) valid\n";
    });
  });
}

}  // namespace prefdiff::data
