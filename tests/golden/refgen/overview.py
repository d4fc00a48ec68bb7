"""The set's top-level README.md: what each case folder holds, the set's shapes, every recommended tolerance
next to the measured float32 error, generation times and sizes."""
import dataclasses
import json



def folder_size(path):
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def write(ctx, timings):
    p = ctx.p
    rows = ["| folder | what | size |", "|---|---|---|"]
    for case, what in ctx.summary:
        rows.append(f"| `{case}/` | {what} | {folder_size(ctx.out / case) / 2**20:.1f} MiB |")
    tol_rows = ["| case | quantity | worst tensor | observed max abs (f32 vs f64) | max abs of f64 | recommended for C++ float32 vs golden | observed / tolerance |",
                "|---|---|---|---|---|---|---|"]
    for case, tol in ctx.tolerances:
        for r in tol.rows:
            tol_rows.append(f"| {case} | {r['quantity']} | `{r['worst']}` | {r['max_abs']:.2g} | {r['scale']:.3g} | {r['rule']} | {r['ratio']:.3f} |")
    total = sum(t for _, t in timings)
    times = ", ".join(f"{n} {t:.1f} s" for n, t in timings)
    params = json.dumps(dataclasses.asdict(p), indent=1, ensure_ascii=False)
    text = f"""# prefdiff golden reference data (`{p.name}` set)

Written by `tests/golden/generate.py --set {p.name}` (inputs hash `{ctx.tree_hash}`: the generator, requirements.lock
and tests/fixtures/public) with {', '.join(f'{k} {v}' for k, v in ctx.versions.items())}; CPU, float32 unless noted,
`torch.set_num_threads({ctx.threads})`. Every model is random-init from a config with a documented seed; nothing is
downloaded. The C++ golden tests read this folder (or `$PREFDIFF_GOLDEN_DIR`) and take every shape, count and
step number from the files: the `main` and `second` sets differ in all of them, and both must pass.

Batch B={p.batch}, latent H x W = {p.latent_hw[0]} x {p.latent_hw[1]}, UNet sequence length {p.seq_len}, DDIM {p.ddim_steps} /
Euler {p.euler_steps} / DPM-Solver++ {p.dpm_steps} steps, pipeline steps {p.pipeline_steps} (SD1.5) and {p.sdxl_pipeline_steps} (SDXL),
LoRA rank {p.lora_rank} alpha {p.lora_alpha:g}, seeds = documented base seed + {p.seed_offset}.

## File format

All `.safetensors` files: 8-byte little-endian u64 header length N, N bytes of JSON (`{{name: {{dtype, shape,
data_offsets:[begin,end]}}, "__metadata__": {{str: str}}}}`, padded with spaces so N % 8 == 0), then the raw
little-endian tensor bytes (8-byte dtypes first, so every tensor is naturally aligned; no holes). Dtypes `F32` and
`I64`; `F64` only in `*_f64.safetensors` files. 0-d scalars have shape `[]`. Weight files use the state_dict key
names of diffusers / transformers / open_clip (each README says which). Every file the generator writes is read
back with the safetensors library and compared bit-exactly.

## Cases

{chr(10).join(rows)}

Each folder has a `README.md` (exact configs, seeds, input recipe, tensors, observed float32-vs-float64
differences, recommended tolerances) and, where float64 runs exist, `f32_vs_f64.json` (all tensors). Models
also have their library's `config.json`.

## Recommended tolerances next to the measured float32 error

{chr(10).join(tol_rows)}

"observed / tolerance" is the measured float32-vs-float64 difference of this set over the recommended
tolerance; the generator refuses a set where it exceeds 0.5 (a correct float32 port lands within ~2x the
observed difference, since both sides carry float32 rounding). On CUDA disable TF32 or loosen to ~1e-2 relative.

## Generation

{total:.0f} s in all ({times}). Size: {folder_size(ctx.out) / 2**20:.1f} MiB.

## Parameters of this set

```json
{params}
```
"""
    (ctx.out / "README.md").write_text(text)
