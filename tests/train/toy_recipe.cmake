# Trains one shipped toy recipe end to end for a few steps on the tiny test world (same knobs as
# recipes/tiny.toml), in a fresh run folder, and checks that it wrote its final checkpoint.
file(REMOVE_RECURSE ${OUT})
set(ENV{PREFDIFF_CACHE} ${CACHE})
execute_process(COMMAND ${PREFDIFF} train ${RECIPE}
    run.output_dir=${OUT} run.name=run
    data.prompts=4 data.heldout_prompts=1 data.modes=2 data.train_pairs=128 data.heldout_pairs=32
    data.pretrain_steps=30 data.pretrain_batch=16
    train.steps=3 train.batch_size=4 train.checkpoint_every=3 eval.every=3 eval.pairs=16 log.every=1
  RESULT_VARIABLE code OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT code EQUAL 0)
  message(FATAL_ERROR "${RECIPE} failed (${code}):\n${out}\n${err}")
endif()
# A LoRA recipe's checkpoint holds its adapters (diffusers' LoRA file), any other the whole UNet.
get_filename_component(_name ${RECIPE} NAME)
if(_name MATCHES "^lora-")
  set(_policy pytorch_lora_weights.safetensors)
else()
  set(_policy unet/diffusion_pytorch_model.safetensors)
endif()
if(NOT EXISTS ${OUT}/run/checkpoints/step-00000003/${_policy})
  message(FATAL_ERROR "${RECIPE}: no final policy ${_policy} in ${OUT}/run/checkpoints/step-00000003")
endif()
file(READ ${OUT}/run/metrics.jsonl metrics)
if(NOT metrics MATCHES "\"eval/rewards/accuracies\"")
  message(FATAL_ERROR "${RECIPE}: no validation row in metrics.jsonl:\n${metrics}")
endif()
