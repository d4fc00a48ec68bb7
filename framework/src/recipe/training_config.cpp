#include "prefdiff/recipe/training_config.hpp"

namespace prefdiff {

TrainingConfig TrainingConfig::from_recipe(const nlohmann::json& values) {
  TrainingConfig c;
  const nlohmann::json& run = values.at("run");
  c.run.name = run.at("name").get<std::string>();
  c.run.output_dir = run.at("output_dir").get<std::string>();
  c.run.seed = run.at("seed").get<uint64_t>();

  const nlohmann::json& b = values.at("backbone");
  c.backbone.id = b.at("id").get<std::string>();
  c.backbone.pretrained = b.value("pretrained", "");
  c.backbone.config = b.value("config", "");
  c.backbone.variant = b.value("variant", "");
  c.backbone.dtype = b.at("dtype").get<std::string>();
  c.backbone.reference_dtype = b.at("reference_dtype").get<std::string>();
  c.backbone.gradient_checkpointing = b.at("gradient_checkpointing").get<bool>();
  c.backbone.channels_last = b.at("channels_last").get<bool>();

  const nlohmann::json& lora = values.at("lora");
  c.lora.rank = lora.at("rank").get<int64_t>();
  c.lora.alpha = lora.at("alpha").get<double>() > 0 ? lora.at("alpha").get<double>() : static_cast<double>(c.lora.rank);
  c.lora.dropout = lora.at("dropout").get<double>();
  c.lora.target_modules = lora.at("target_modules").get<std::vector<std::string>>();
  c.lora.init_std = lora.at("init_std").get<double>();
  c.lora.base_dtype = lora.at("base_dtype").get<std::string>();

  const nlohmann::json& t = values.at("train");
  c.train.steps = t.at("steps").get<int64_t>();
  c.train.batch_size = t.at("batch_size").get<int64_t>();
  c.train.grad_accum = t.at("grad_accum").get<int64_t>();
  c.train.grad_clip = t.at("grad_clip").get<double>();
  c.train.caption_dropout = t.at("caption_dropout").get<double>();
  c.train.ema_decay = t.at("ema_decay").get<double>();
  c.train.skip_bad_steps = t.at("nan_policy").get<std::string>() == "skip";
  c.train.threads = t.at("threads").get<int64_t>();
  c.train.device = t.at("device").get<std::string>();
  c.train.checkpoint_every = t.at("checkpoint_every").get<int64_t>();
  c.train.keep_checkpoints = t.at("keep_checkpoints").get<int64_t>();

  const nlohmann::json& e = values.at("eval");
  c.eval.every = e.at("every").get<int64_t>();
  c.eval.pairs = e.at("pairs").get<int64_t>();

  const nlohmann::json& d = values.at("distributed");
  c.distributed.backend = d.at("backend").get<std::string>();
  c.distributed.timeout_s = d.at("timeout_s").get<double>();

  const nlohmann::json& l = values.at("log");
  c.log.every = l.at("every").get<int64_t>();
  c.log.level = l.at("level").get<std::string>();
  c.log.progress = l.at("progress").get<std::string>();

  c.optim = values.at("optim");
  c.schedule = values.at("schedule");
  return c;
}

}  // namespace prefdiff
