#!/usr/bin/env python3
"""media/ against the Python reference implementations, run side by side (ctest: media_pillow_parity).

- decoding: ours vs PIL.ImageOps.exif_transpose(Image.open(f)).convert("RGB") for real WebP files and
  images made here (JPEG 4:2:0/4:4:4/progressive, EXIF orientations 2-8 in JPEG, PNG and WebP, greyscale,
  1-bit, palette with transparency, RGBA, LA, CMYK JPEG, 16-bit RGB and greyscale PNG, lossless WebP with
  alpha, animated WebP); broken inputs must come back as errors of the right kind;
- resampling: ours vs Image.resize(size, BILINEAR / BICUBIC), down and up, odd factors;
- training preprocessing vs the official torchvision pipeline; CLIP preprocessing vs transformers'
  CLIPImageProcessorPil;
- PNG text chunks read back by Pillow (Image.open(p).text), no-overwrite;
- caption clean-up vs transformers' slow CLIPTokenizer step whitespace_clean(ftfy.fix_text(t)).lower() on
  captions, prompt sets and generated mojibake / entity / Unicode strings.
Prints the max abs difference per case; exits non-zero on any difference above its tolerance.
"""
import argparse
import html
import io
import json
import os
import random
import re
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image, ImageOps

failures = []
rows = []


def check(name, value, tolerance, note=""):
    ok = value <= tolerance
    rows.append((name, value, tolerance, note))
    if not ok:
        failures.append(f"{name}: {value} > {tolerance} {note}")


def tool(args, *argv, stdin=None):
    out = subprocess.run([args.tool, *map(str, argv)], input=stdin, capture_output=True, text=True, timeout=300)
    if out.returncode not in (0, 1):
        raise RuntimeError(f"media_tool {argv} failed ({out.returncode}): {out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1]) if stdin is None else out.stdout


def reference_rgb(path):
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def ours_rgb(args, path):
    raw = os.path.join(args.work, "decoded.rgb")
    info = tool(args, "decode", path, raw)
    if not info["ok"]:
        return info, None
    return info, np.fromfile(raw, dtype=np.uint8).reshape(info["height"], info["width"], 3)


def max_diff(a, b):
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max()) if a.size else 0.0


# ---------------------------------------------------------------------------------------------- inputs
def png_chunk(tag, data):
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def write_png16_rgb(path, array):  # Pillow cannot write 16-bit RGB: a minimal encoder
    h, w, _ = array.shape
    raw = b"".join(b"\x00" + array[y].astype(">u2").tobytes() for y in range(h))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)) +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def write_png_interlaced_rgb(path, array):  # Pillow cannot write Adam7: a minimal encoder
    h, w, _ = array.shape
    raw = b""
    for x0, y0, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]:
        sub = array[y0::dy, x0::dx]
        if sub.shape[0] and sub.shape[1]:
            raw += b"".join(b"\x00" + sub[y].astype(np.uint8).tobytes() for y in range(sub.shape[0]))
    data = (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 1)) +
            png_chunk(b"IDAT", zlib.compress(raw)) + png_chunk(b"IEND", b""))
    with open(path, "wb") as f:
        f.write(data)


def make_inputs(args, real):
    d = os.path.join(args.work, "inputs")
    os.makedirs(d, exist_ok=True)
    base = Image.open(real[0]).convert("RGB")
    crop = base.crop((40, 10, 340, 210))  # 300x200: non-square, so orientation matters
    files = {}

    def add(name, save):
        p = os.path.join(d, name)
        save(p)
        files[name] = p

    add("q90_420.jpg", lambda p: base.save(p, quality=90, subsampling=2))
    add("q95_444.jpg", lambda p: base.save(p, quality=95, subsampling=0))
    add("progressive.jpg", lambda p: crop.save(p, quality=85, progressive=True))
    for o in range(2, 9):
        exif = Image.Exif()
        exif[0x0112] = o
        add(f"orient{o}.jpg", lambda p, e=exif: crop.save(p, quality=92, exif=e))
    exif6 = Image.Exif()
    exif6[0x0112] = 6
    add("orient6.png", lambda p: crop.save(p, exif=exif6))
    exif8 = Image.Exif()
    exif8[0x0112] = 8
    add("orient8.webp", lambda p: crop.save(p, lossless=True, exif=exif8))
    grey = crop.convert("L")
    add("grey.jpg", lambda p: grey.save(p, quality=90))
    add("grey.png", lambda p: grey.save(p))
    add("bilevel.png", lambda p: grey.convert("1").save(p))
    rgba = crop.convert("RGBA")
    rgba.putalpha(Image.linear_gradient("L").resize(crop.size))
    add("rgba.png", lambda p: rgba.save(p))
    add("la.png", lambda p: rgba.convert("LA").save(p))
    pal = crop.convert("P", palette=Image.Palette.ADAPTIVE, colors=200)
    add("palette_trns.png", lambda p: pal.save(p, transparency=3))
    pal16 = crop.convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    add("palette_4bit.png", lambda p: pal16.save(p, bits=4))
    add("cmyk.jpg", lambda p: crop.convert("CMYK").save(p, quality=92))
    arr = np.asarray(crop).astype(np.uint16)
    add("rgb16.png", lambda p: write_png16_rgb(p, arr * 257 + np.arange(arr.shape[1], dtype=np.uint16)[None, :, None]))
    add("interlaced.png", lambda p: write_png_interlaced_rgb(p, np.asarray(crop)))
    grey16 = (np.asarray(grey).astype(np.uint16) * 251)
    add("grey16.png", lambda p: Image.fromarray(grey16).save(p))
    add("lossless_alpha.webp", lambda p: rgba.save(p, lossless=True, exact=True))
    add("lossy_alpha.webp", lambda p: rgba.save(p, quality=80))
    frames = [crop, crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    add("animated.webp", lambda p: frames[0].save(p, save_all=True, append_images=frames[1:], duration=100, lossless=True))
    small = base.crop((200, 20, 320, 170))  # 120x150 (upscaling cases)
    add("small.png", lambda p: small.save(p))
    # Broken inputs.
    jpeg = open(files["q90_420.jpg"], "rb").read()
    add("truncated.jpg", lambda p: open(p, "wb").write(jpeg[: len(jpeg) // 2]))
    pngb = open(files["grey.png"], "rb").read()
    add("truncated.png", lambda p: open(p, "wb").write(pngb[: len(pngb) // 2]))
    add("text.jpg", lambda p: open(p, "w").write("not an image, just text\n"))
    add("empty.webp", lambda p: open(p, "wb").close())
    files["missing.png"] = os.path.join(d, "missing.png")
    return files, grey16


# ---------------------------------------------------------------------------------------------- checks
def check_decoding(args, real, files, grey16):
    for path in real:
        info, ours = ours_rgb(args, path)
        check(f"decode {os.path.basename(path)} (real WebP)", max_diff(ours, reference_rgb(path)) if ours is not None else 1e9, 0)
    expected_errors = {"truncated.jpg": "truncated", "truncated.png": "truncated", "text.jpg": "not_an_image",
                       "empty.webp": "truncated", "missing.png": "missing"}
    for name, path in files.items():
        if name in expected_errors:
            info = tool(args, "decode", path, os.path.join(args.work, "x.rgb"))
            good = (not info["ok"]) and info["kind"] == expected_errors[name] and path in info["message"]
            rows.append((f"error {name}", info.get("kind", "decoded!"), expected_errors[name], ""))
            if not good:
                failures.append(f"{name}: expected a '{expected_errors[name]}' error naming the file, got {info}")
            continue
        info, ours = ours_rgb(args, path)
        if ours is None:
            failures.append(f"{name}: not decoded: {info}")
            continue
        if name == "grey16.png":
            # Pillow clips 16-bit greyscale at 255 in convert("RGB"); we keep the high byte (documented).
            ref = np.repeat((grey16 >> 8).astype(np.uint8)[:, :, None], 3, axis=2)
            check(f"decode {name} vs high byte", max_diff(ours, ref), 0, "(Pillow would clip: see docs)")
            continue
        check(f"decode {name} [{info['mode']}, orientation {info['orientation']}]", max_diff(ours, reference_rgb(path)), 0)


def check_resampling(args, real, files):
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    cases = [(real[1], 333, 217), (real[2], 200, 512), (real[3], 768, 640), (files["small.png"], 224, 280),
             (files["small.png"], 97, 31), (files["orient6.jpg"], 512, 341), (real[0], 512, 512),
             (real[1], 500, 40), (files["small.png"], 119, 20), (real[2], 64, 511)]
    out = os.path.join(args.work, "resized.rgb")
    for path, w, h in cases:
        src = Image.fromarray(reference_rgb(path))  # decoded as ours: EXIF orientation applied
        for fname, f in filters.items():
            info = tool(args, "resize", path, w, h, fname, out)
            ours = np.fromfile(out, dtype=np.uint8).reshape(h, w, 3)
            ref = np.asarray(src.resize((w, h), f))
            check(f"resize {os.path.basename(path)} {src.size[0]}x{src.size[1]} -> {w}x{h} {fname}", max_diff(ours, ref), 0)


def check_preprocessing(args, real, files):
    import torch
    from torchvision import transforms
    from transformers import CLIPImageProcessorPil

    torch.set_num_threads(1)
    out = os.path.join(args.work, "pre.f32")
    for path, res in [(real[0], 512), (real[1], 256), (files["q95_444.jpg"], 384), (files["orient6.jpg"], 128),
                      (files["small.png"], 100)]:
        official = transforms.Compose([transforms.Resize(res, interpolation=transforms.InterpolationMode.BILINEAR),
                                       transforms.CenterCrop(res), transforms.ToTensor(), transforms.Normalize([0.5], [0.5])])
        with Image.open(path) as im:
            ref = official(ImageOps.exif_transpose(im).convert("RGB")).numpy()
        info = tool(args, "train", path, res, out)
        ours = np.fromfile(out, dtype=np.float32).reshape(3, res, res)
        check(f"training preprocess {os.path.basename(path)} -> {res}", max_diff(ours, ref), 0)
    processor = CLIPImageProcessorPil()  # OpenAI CLIP defaults: shortest_edge 224, BICUBIC, crop 224
    for path in [real[0], real[3], files["q90_420.jpg"], files["orient8.webp"], files["small.png"], files["cmyk.jpg"]]:
        with Image.open(path) as im:
            ref = processor(images=ImageOps.exif_transpose(im).convert("RGB"), return_tensors="np")["pixel_values"][0]
        tool(args, "clip", path, "-", out)
        ours = np.fromfile(out, dtype=np.float32).reshape(ref.shape)
        check(f"clip preprocess {os.path.basename(path)}", max_diff(ours, ref), 1e-6)


def check_png_text(args):
    img = (np.arange(29 * 17 * 3) % 251).astype(np.uint8).reshape(17, 29, 3)
    raw = os.path.join(args.work, "img.rgb")
    img.tofile(raw)
    chunks = [["parameters", "a cat on a mat\nNegative prompt: blurry\nSteps: 30, Sampler: Euler, Seed: 1, Size: 29x17"],
              ["prefdiff", json.dumps({"prompt": "a cat", "seed": 1, "guidance": 7.5, "note": "naïve café"})],
              ["comment", "ein Bild über 東京 🐱"]]
    chunk_file = os.path.join(args.work, "chunks.json")
    json.dump(chunks, open(chunk_file, "w"))
    out = os.path.join(args.work, "written.png")
    if os.path.exists(out):
        os.remove(out)
    tool(args, "write-png", out, raw, 29, 17, chunk_file)
    with Image.open(out) as im:
        text_ok = im.text == {k: v for k, v in chunks}
        pixels = max_diff(np.asarray(im.convert("RGB")), img)
    rows.append(("png text chunks read back by Pillow", "equal" if text_ok else "DIFFERENT", "equal", ""))
    if not text_ok:
        failures.append("PNG text chunks differ when read by Pillow")
    check("png pixels read back by Pillow", pixels, 0)
    before = open(out, "rb").read()
    again = tool(args, "write-png", out, raw, 29, 17, chunk_file)
    kept = (not again["ok"]) and "exists" in again["message"] and open(out, "rb").read() == before
    rows.append(("png no-overwrite", "kept" if kept else "OVERWRITTEN", "kept", ""))
    if not kept:
        failures.append(f"write-png replaced an existing file: {again}")


def whitespace_clean(text):  # transformers.models.clip.tokenization_clip.whitespace_clean
    return re.sub(r"\s+", " ", text).strip()


def text_corpus(args, fixtures):
    corpus = []
    cases = os.path.join(args.golden, "clip_tokenizer", "cases.json") if args.golden else None
    if cases and os.path.exists(cases):
        corpus += [c["caption"] for c in json.load(open(cases))["cases"]]
    parti = os.path.join(fixtures, "PartiPrompts.tsv")
    if os.path.exists(parti):
        corpus += [line.split("\t")[0] for line in open(parti, encoding="utf-8").read().splitlines()[1:]]
    bench = os.path.join(fixtures, "imagereward_benchmark_prompts.json")
    if os.path.exists(bench):
        corpus += [p["prompt"] for p in json.load(open(bench))]
    words = ["café", "naïve", "über", "Straße", "señor", "Ærøskøbing", "Łódź", "Škoda", "İstanbul", "ΟΔΟΣ",
             "москва", "日本語", "東京タワー", "한국어", "😀 emoji", "‘quoted’", "“double”", "—dash—", "…", "€100",
             "½ cup", "™", "©2024", "naïve façade", "Crème brûlée", "smörgåsbord", "Ελληνικά", "עברית", "العربية",
             "ﬁne ﬂow", "ＦＵＬＬ", "ｶﾀｶﾅ", "x²", "µm", "°C", "ŉ", "Ǆ", "ǈ", "Ĳssel"]
    encodings = ["latin-1", "cp1252", "cp1251", "cp1250", "cp1253", "cp1254", "cp1257", "iso-8859-2", "mac_roman", "cp437"]
    for w in words:
        corpus.append(w)
        for enc in encodings:
            for text in (w, f"a photo of {w} at night"):
                corpus.append(text.encode("utf-8").decode(enc, errors="replace"))
                corpus.append(text.encode("utf-8").decode(enc, errors="replace").encode("utf-8").decode("cp1252", errors="replace"))
    entities = ["&amp;", "&lt;b&gt;", "&quot;hi&quot;", "&#39;", "&#x27;", "&#8217;", "&eacute;", "&EACUTE;",
                "&SZLIG;", "&nbsp;", "&hellip;", "&#0;", "&#128;", "&#x110000;", "&#59;", "&#65a;", "&notanentity;",
                "&amp", "&#xD800;", "&#1;", "&copy;2024", "&Ntilde;&NTILDE;&nTILDE;", "&checkmark;", "&#12345678901234567890;"]
    for e in entities:
        corpus += [e, f"rock {e} roll", f"x < y {e}", f"line one\nline {e} two < three", f"{e}\n{e}"]
    corpus += ["bell\x07 vertical\x0btab", "cr\rlf\r\nls\u2028ps\u2029nel\x85", "zero\u200bwidth\ufeffbom",
               "\x1b[31mred\x1b[0m text", "tabs\t\tand   spaces", "\u3000ideographic space", "c1 \x80\x93\x94 chars",
               "soft\xadhyphen", "sigma ΣΑΣ Σ", "ΟΔΟΣ.", "fin ΣΑΣ's", "İI ıi", "Kelvin K", "ﬀ ﬃ ﬄ ﬅ ﬆ",
               "â€œquotedâ€\x9d", "â€™", "Ã©tÃ©", "cafÃ", "voilÃ le travail", "Ã  la carte", "×²", "Ã¢â‚¬â„¢",
               "The Mona Lisa doesnÃƒÂ¢Ã¢â€šÂ¬Ã¢â€žÂ¢t have eyebrows.", "ÐŸÑ€Ð¸Ð²ÐµÑ‚", "Ã¼ber Ã¤rger", "ðŸ˜€ emoji",
               "sÃ³", "ÃƒÂ©", "â€”", "Â£100", "Â½ cup", "naÃ¯ve cafÃ©", "\x81\x8d\x8f\x90\x9d", "a\x1ab", "â\x80\x9c"]
    rng = random.Random(14)
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x2000, 0x206F), (0x3040, 0x30FF),
              (0x4E00, 0x4E80), (0xAC00, 0xAC80), (0x1F300, 0x1F64F), (0xFF00, 0xFFEF), (0x80, 0x9F), (0x300, 0x36F)]
    for _ in range(3000):
        n = rng.randint(1, 12)
        s = "".join(chr(rng.randint(*rng.choice(blocks))) for _ in range(n))
        corpus.append(s)
    return corpus


def check_text_cleanup(args, fixtures):
    import ftfy

    corpus = text_corpus(args, fixtures)
    expected = [whitespace_clean(ftfy.fix_text(t)).lower() for t in corpus]
    ours = json.loads(tool(args, "clean-text", stdin=json.dumps(corpus)))
    bad = [(t, e, o) for t, e, o in zip(corpus, expected, ours) if e != o]
    rows.append((f"caption clean-up vs ftfy {ftfy.__version__} ({len(corpus)} texts)", f"{len(bad)} differ", "0", ""))
    for t, e, o in bad[:20]:
        failures.append(f"clean-up differs for {t!r}: ftfy {e!r}, ours {o!r}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tool", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--fixtures", required=True, help="default public fixtures ($PREFDIFF_MEDIA_FIXTURES wins)")
    parser.add_argument("--golden", default=os.environ.get("PREFDIFF_GOLDEN_DIR"))
    args = parser.parse_args()
    fixtures = os.environ.get("PREFDIFF_MEDIA_FIXTURES") or args.fixtures
    os.makedirs(args.work, exist_ok=True)
    real = [os.path.join(fixtures, "imagereward_images", f"{i}.webp") for i in range(1, 5)]
    missing = [p for p in real if not os.path.exists(p)]
    if missing:
        print(f"missing fixtures {missing}. HINT: set PREFDIFF_MEDIA_FIXTURES to the public fixtures folder")
        return 1
    files, grey16 = make_inputs(args, real)
    check_decoding(args, real, files, grey16)
    check_resampling(args, real, files)
    check_preprocessing(args, real, files)
    check_png_text(args)
    check_text_cleanup(args, fixtures)
    width = max(len(r[0]) for r in rows)
    print(f"{'case':<{width}}  {'max abs diff':>14}  tolerance")
    for name, value, tol, note in rows:
        v = f"{value:.3g}" if isinstance(value, float) else str(value)
        print(f"{name:<{width}}  {v:>14}  {tol} {note}")
    if failures:
        print("\nFAILED:\n  " + "\n  ".join(failures))
        return 1
    print(f"\nall {len(rows)} checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
