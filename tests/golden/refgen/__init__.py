"""prefdiff's reference generator: diffusers / transformers / peft / open_clip outputs that the golden tests
compare the C++ implementation against. Entry point: tests/golden/generate.py; layout: docs/golden.md."""
