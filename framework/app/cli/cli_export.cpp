// `prefdiff export RUN -o DIR [--checkpoint latest|PATH] [--merge-lora [--lora-scale S]]`: a run's trained
// UNet as a diffusers model folder (config.json + diffusion_pytorch_model.safetensors). A LoRA run's
// checkpoint holds adapters only; --merge-lora adds them into its base weights (W + S * alpha/r * up @ down).
#include <filesystem>
#include <string>

#include "cli.hpp"
#include "prefdiff/backbone.hpp"
#include "prefdiff/host/log.hpp"
#include "prefdiff/model_io/diffusers_folder.hpp"
#include "prefdiff/model_io/lora_file.hpp"
#include "prefdiff/run/checkpoint_store.hpp"

namespace prefdiff {
namespace fs = std::filesystem;
namespace {

struct ExportArgs {
  std::string run_dir, output, checkpoint = "latest";
  bool merge_lora = false;
  double lora_scale = 1.0;
};

// The model a LoRA run adapted: backbone.pretrained, else the data source's reference_model (run.json).
fs::path lora_base(const fs::path& run_dir, const nlohmann::json& recipe) {
  const nlohmann::json& b = recipe.at("backbone");
  if (b.contains("pretrained") && b["pretrained"].is_string()) return b["pretrained"].get<std::string>();
  const nlohmann::json meta = model_io::read_json_file(run_dir / "run.json", "HINT: the run folder is damaged");
  const nlohmann::json attrs = meta.value("data_source", nlohmann::json::object()).value("attributes", nlohmann::json::object());
  if (attrs.contains("reference_model")) return attrs["reference_model"].get<std::string>();
  throw std::runtime_error("prefdiff export: " + run_dir.string() + " names no base model (neither backbone.pretrained "
                           "in recipe.json nor a data source's reference_model in run.json)");
}

void run_export(const ExportArgs& a) {
  const fs::path run_dir(a.run_dir), out(a.output);
  const nlohmann::json recipe = model_io::read_json_file(run_dir / "recipe.json",
                                                         "HINT: is " + run_dir.string() + " a run folder written by `prefdiff train`?");
  std::error_code ec;
  if (fs::exists(out, ec) && !fs::is_empty(out, ec))
    throw std::runtime_error("prefdiff export: " + out.string() + " exists and is not empty; prefdiff never overwrites. "
                             "HINT: pass a new folder to -o");
  const run::CheckpointInfo checkpoint = run::CheckpointStore(run_dir / "checkpoints").resolve(a.checkpoint);
  const std::string id = recipe.at("backbone").at("id").get<std::string>();
  auto& backbones = BackboneRegistry::instance();
  const fs::path lora_file = checkpoint.path / "pytorch_lora_weights.safetensors";
  std::unique_ptr<Backbone> model;
  if (fs::exists(lora_file)) {
    if (!a.merge_lora)
      throw std::runtime_error("prefdiff export: " + run_dir.string() + " is a LoRA run; its checkpoint holds adapters "
                               "only (" + lora_file.string() + ", which diffusers' load_lora_weights reads). HINT: pass "
                               "--merge-lora to write a full UNet with the adapters merged into its base");
    const fs::path base = lora_base(run_dir, recipe);
    model = backbones.load(id, base, {});
    model->set_lora(model_io::read_lora_file(lora_file, model->lora_layers()).adapters);
    model->merge_lora(a.lora_scale);
    log::info("export: " + base.string() + " + " + lora_file.string() + " (merged, scale " + std::to_string(a.lora_scale) +
              ") -> " + out.string());
  } else {
    if (a.merge_lora)
      throw std::runtime_error("prefdiff export --merge-lora: " + checkpoint.path.string() + " holds no LoRA adapters "
                               "(this run trained the full UNet). HINT: leave --merge-lora out to export its unet/");
    model = backbones.load(id, checkpoint.path / "unet", {});
    log::info("export: " + (checkpoint.path / "unet").string() + " -> " + out.string());
  }
  model->save(out);
}

}  // namespace

void add_export_command(CLI::App& app, CliContext& /*context*/) {
  static ExportArgs args;
  CLI::App* cmd = app.add_subcommand("export", "Write a run's trained UNet as a diffusers model folder (LoRA runs: "
                                               "with --merge-lora, adapters merged into the base weights)");
  cmd->add_option("run_dir", args.run_dir, "Run folder written by `prefdiff train`")->required();
  cmd->add_option("-o,--output", args.output, "New folder to write (config.json + weights)")->required();
  cmd->add_option("--checkpoint", args.checkpoint, "latest (default) or a checkpoint folder of the run");
  cmd->add_flag("--merge-lora", args.merge_lora, "Merge a LoRA run's adapters into its base weights");
  cmd->add_option("--lora-scale", args.lora_scale, "Multiplier of the merged adapters (default 1)");
  cmd->callback([] { run_export(args); });
}

}  // namespace prefdiff
