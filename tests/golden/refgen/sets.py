"""The two reference sets. `main` follows the documented recipes with their base seeds and the shapes the first
reference set had (batch 2, 16x16 latents, 25 sampler steps); `second` changes every shape and count a test
could hard-code: batch 3, rectangular 16x24 latents (32x48 images), other sequence lengths, seeds, step
counts, caption counts, LoRA rank and alpha (alpha != rank), CLIP image size. One set of tests must pass on both.
"""
from dataclasses import dataclass


@dataclass(frozen=True)
class RefSet:
    name: str
    seed_offset: int
    batch: int
    latent_hw: tuple
    seq_len: int                    # encoder_hidden_states length of the UNet cases
    unet_timesteps: tuple           # SD1.5 UNet, one per batch row
    sdxl_timesteps: tuple
    sdxl_time_ids: tuple            # (orig_h, orig_w, crop_top, crop_left, target_h, target_w) per row
    dpo_timesteps: tuple
    lora_timesteps: tuple
    add_noise_timesteps: tuple      # DDPM add_noise / get_velocity rows
    ddim_steps: int
    euler_steps: int
    dpm_steps: int
    pipeline_steps: int
    pipeline_guidance: float
    pipeline_prompts: tuple
    pipeline_negative: tuple
    sdxl_pipeline_steps: int
    sdxl_pipeline_guidance: float
    sdxl_pipeline_prompts: tuple
    sdxl_pipeline_negative: tuple
    lora_rank: int
    lora_alpha: float
    long_caption: int               # imagereward_test.json record whose long prompt (> 77 tokens) "<long>" means
    clip_text_rows: tuple           # clip_text_tiny captions; "<long>" = that caption,
                                    # "<long-nospecial>" = it tokenized without BOS/EOS
    proj_prompts: tuple
    proj_negative: tuple
    clip_images: tuple              # clip_tiny image files (tests/fixtures/public/imagereward_images)
    clip_captions: tuple
    clip_image_size: int
    preprocess_crops: tuple         # (file, (x0, y0, x1, y1))
    tokenizer_parti: int            # PartiPrompts rows in clip_tokenizer/cases.json
    tokenizer_imagereward: int
    tokenizer_handwritten: str      # "all" or "odd" (every other hand-written caption)
    open_clip_images: tuple
    open_clip_captions: tuple
    open_clip_image_size: int
    aesthetic_batch: int


LONG = "<long>"
LONG_NOSPECIAL = "<long-nospecial>"

MAIN = RefSet(
    name="main", seed_offset=0, batch=2, latent_hw=(16, 16), seq_len=7,
    unet_timesteps=(10, 981), sdxl_timesteps=(250, 999),
    sdxl_time_ids=((1024, 1024, 0, 0, 1024, 1024), (896, 1152, 64, 32, 1024, 1024)),
    dpo_timesteps=(120, 870), lora_timesteps=(37, 912), add_noise_timesteps=(0, 1, 250, 500, 998, 999),
    ddim_steps=25, euler_steps=25, dpm_steps=20,
    pipeline_steps=4, pipeline_guidance=7.5,
    pipeline_prompts=("a photo of an astronaut riding a horse on mars", "a painting of an ocean with clouds and birds"),
    pipeline_negative=("", "blurry, low quality"),
    sdxl_pipeline_steps=4, sdxl_pipeline_guidance=5.0,
    sdxl_pipeline_prompts=("a photo of an astronaut riding a horse on mars!", "a watercolor of a lighthouse at dawn"),
    sdxl_pipeline_negative=("", "blurry, low quality"),
    lora_rank=4, lora_alpha=4.0, long_caption=444,
    clip_text_rows=("a photo of a cat", "An astronaut riding a horse on Mars, highly detailed, 4k", "", LONG, LONG_NOSPECIAL),
    proj_prompts=("a photo of an astronaut riding a horse!", LONG),
    proj_negative=("", "blurry, low quality, watermark"),
    clip_images=("1.webp", "2.webp", "3.webp"),
    clip_captions=("a painting of an ocean with clouds and birds, day time, low depth field effect", "a photo of a dog"),
    clip_image_size=32,
    preprocess_crops=(("1.webp", (50, 100, 353, 300)), ("3.webp", (200, 20, 320, 170))),
    tokenizer_parti=17, tokenizer_imagereward=13, tokenizer_handwritten="all",
    open_clip_images=("1.webp", "4.webp"),
    open_clip_captions=("a painting of an ocean with clouds and birds, day time, low depth field effect",
                        "a photo of a dog", "a red cube on a blue sphere"),
    open_clip_image_size=32, aesthetic_batch=4,
)

SECOND = RefSet(
    name="second", seed_offset=7919, batch=3, latent_hw=(16, 24), seq_len=11,
    unet_timesteps=(3, 517, 999), sdxl_timesteps=(1, 640, 871),
    sdxl_time_ids=((768, 1152, 0, 0, 768, 1152), (1024, 1024, 128, 0, 896, 1152), (1344, 768, 16, 48, 1024, 1024)),
    dpo_timesteps=(45, 333, 951), lora_timesteps=(5, 480, 990), add_noise_timesteps=(0, 7, 333, 666, 999),
    ddim_steps=17, euler_steps=13, dpm_steps=11,
    pipeline_steps=3, pipeline_guidance=5.5,
    pipeline_prompts=("a watercolor of a fox in the snow", "an isometric city at night, neon",
                      "a bowl of ramen, studio photo"),
    pipeline_negative=("blurry", "", "low quality, watermark"),
    sdxl_pipeline_steps=3, sdxl_pipeline_guidance=6.0,
    sdxl_pipeline_prompts=("a fox in the snow!!", "an isometric city at night, neon", "a bowl of ramen, studio photo"),
    sdxl_pipeline_negative=("blurry", "", "low quality, watermark"),
    lora_rank=8, lora_alpha=16.0, long_caption=318,
    clip_text_rows=(LONG_NOSPECIAL, "a bowl of ramen, studio photo", "", LONG),
    proj_prompts=(LONG, "a fox in the snow!!", "an isometric city at night, neon"),
    proj_negative=("blurry", "", "low quality, watermark"),
    clip_images=("4.webp", "2.webp"),
    clip_captions=("a photo of a dog", "a painting of an ocean with clouds and birds, day time, low depth field effect",
                   "a red cube"),
    clip_image_size=40,
    preprocess_crops=(("2.webp", (10, 30, 410, 250)), ("4.webp", (300, 0, 420, 200)), ("1.webp", (0, 0, 224, 224))),
    tokenizer_parti=9, tokenizer_imagereward=21, tokenizer_handwritten="odd",
    open_clip_images=("3.webp", "2.webp", "1.webp"),
    open_clip_captions=("a photo of a dog", "a red cube on a blue sphere"),
    open_clip_image_size=48, aesthetic_batch=5,
)

SETS = {s.name: s for s in (MAIN, SECOND)}
