#!/usr/bin/env python3
"""Converts a CTranslate2 Whisper model (model.bin, vocabulary.txt) to whisper.cpp's ggml
format. Python standard library only (no numpy, no torch).

    ct2_to_ggml.py MODEL_DIR OUT.bin [--parts model.bin.part1 model.bin.part2 ...]

What the conversion does (the layout whisper.cpp's convert-pt-to-ggml.py writes):
- reads CTranslate2's model.bin (binary version 6: header, variables, aliases);
- splits the fused attention weights (self-attention q|k|v, cross-attention k|v) into
  whisper's separate query/key/value tensors (the key has no bias);
- computes the 80-bin Slaney mel filter bank (librosa.filters.mel(16000, 400, 80));
- reads the byte-level BPE vocabulary and writes each token as raw bytes;
- keeps fp16 weights as fp16, writes 1-D tensors, conv biases and positional embeddings
  as fp32, as whisper.cpp expects.
"""

import json
import math
import os
import struct
import sys
from array import array

DTYPES = {0: ("f", 4), 1: ("b", 1), 2: ("h", 2), 3: ("i", 4), 4: ("e", 2), 5: (None, 2)}


class Reader:
    def __init__(self, data):
        self.data, self.pos = data, 0

    def take(self, n):
        if self.pos + n > len(self.data):
            raise SystemExit(f"model.bin truncated at byte {self.pos} (wanted {n} more)")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u(self, fmt):
        size = struct.calcsize("<" + fmt)
        return struct.unpack("<" + fmt, self.take(size))[0]

    def string(self):
        n = self.u("H")
        return self.take(n)[:-1].decode("utf-8")


def read_ct2(data):
    r = Reader(data)
    version = r.u("I")
    if version not in (5, 6):
        raise SystemExit(f"model.bin: binary version {version}, this converter reads 5 and 6")
    spec = r.string()
    r.u("I")  # spec revision
    variables = {}
    for _ in range(r.u("I")):
        name = r.string()
        rank = r.u("B")
        shape = [r.u("I") for _ in range(rank)]
        dtype = r.u("B")
        nbytes = r.u("I")
        variables[name] = (shape, dtype, r.take(nbytes))
    for _ in range(r.u("I") if r.pos < len(data) else 0):
        alias, target = r.string(), r.string()
        variables[alias] = variables[target]
    return spec, variables


def as_f16_bytes(var):
    shape, dtype, raw = var
    if dtype == 4:
        return raw
    if dtype == 0:
        vals = array("f", raw)
        return struct.pack("<%de" % len(vals), *vals)
    raise SystemExit(f"unsupported weight dtype {dtype} (only float16/float32 models convert)")


def as_f32_bytes(var):
    shape, dtype, raw = var
    if dtype == 0:
        return raw
    if dtype == 4:
        n = len(raw) // 2
        return array("f", struct.unpack("<%de" % n, raw)).tobytes()
    raise SystemExit(f"unsupported weight dtype {dtype}")


def scalar(var):
    shape, dtype, raw = var
    fmt, size = DTYPES[dtype]
    return struct.unpack("<" + fmt, raw[:size])[0]


def mel_filters(sr=16000, n_fft=400, n_mels=80):
    """librosa.filters.mel(sr, n_fft, n_mels) with Slaney scale and norm (what Whisper uses)."""
    f_sp, min_log_hz = 200.0 / 3, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0

    def hz_to_mel(f):
        return min_log_mel + math.log(f / min_log_hz) / logstep if f >= min_log_hz else f / f_sp

    def mel_to_hz(m):
        return min_log_hz * math.exp(logstep * (m - min_log_mel)) if m >= min_log_mel else f_sp * m

    n_freqs = 1 + n_fft // 2
    fft = [i * (sr / 2) / (n_freqs - 1) for i in range(n_freqs)]
    lo, hi = hz_to_mel(0.0), hz_to_mel(sr / 2)
    mel_f = [mel_to_hz(lo + (hi - lo) * i / (n_mels + 1)) for i in range(n_mels + 2)]
    rows = []
    for i in range(n_mels):
        d0, d1 = mel_f[i + 1] - mel_f[i], mel_f[i + 2] - mel_f[i + 1]
        enorm = 2.0 / (mel_f[i + 2] - mel_f[i])
        row = []
        for f in fft:
            lower = (f - mel_f[i]) / d0
            upper = (mel_f[i + 2] - f) / d1
            row.append(max(0.0, min(lower, upper)) * enorm)
        rows.append(row)
    return rows


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


def main():
    args = sys.argv[1:]
    if len(args) < 2:
        raise SystemExit(__doc__)
    model_dir, out = args[0], args[1]
    parts = args[3:] if len(args) > 2 and args[2] == "--parts" else [os.path.join(model_dir, "model.bin")]
    data = b"".join(open(p, "rb").read() for p in parts)
    spec, v = read_ct2(data)
    if "Whisper" not in spec:
        raise SystemExit(f"model.bin holds a {spec}, not a Whisper model")
    vocab_lines = open(os.path.join(model_dir, "vocabulary.txt"), encoding="utf-8").read().split("\n")
    if vocab_lines and vocab_lines[-1] == "":
        vocab_lines.pop()
    n_vocab = len(vocab_lines)
    eot = vocab_lines.index("<|endoftext|>")
    dec = bytes_to_unicode()
    # whisper.cpp's own files hold the 50257 tokens of the GPT-2 / multilingual BPE (the
    # English vocabulary's <|endoftext|> included); it names the special tokens itself.
    tokens = [bytes(dec[c] for c in t) for t in vocab_lines[: max(eot, 50257)]]

    n_enc = sum(1 for k in v if k.startswith("encoder/layer_") and k.endswith("/ffn/linear_1/weight"))
    n_dec = sum(1 for k in v if k.startswith("decoder/layer_") and k.endswith("/ffn/linear_1/weight"))
    conv1 = v["encoder/conv1/weight"][0]  # [n_state, n_mels, 3]
    n_audio_state, n_mels = conv1[0], conv1[1]
    n_audio_ctx = v["encoder/position_encodings/encodings"][0][0]
    n_text_ctx, n_text_state = v["decoder/position_encodings/encodings"][0]
    heads_enc = scalar(v["encoder/num_heads"]) if "encoder/num_heads" in v else n_audio_state // 64
    heads_dec = scalar(v["decoder/num_heads"]) if "decoder/num_heads" in v else n_text_state // 64

    tensors = []  # (name, shape (numpy order), is_f32, bytes)

    def put(name, var, f32=None, shape=None, raw=None):
        shp = list(shape or var[0])
        if f32 is None:
            f32 = len(shp) < 2
        if raw is None:
            raw = as_f32_bytes(var) if f32 else as_f16_bytes(var)
        elif f32:
            raw = as_f32_bytes((shp, var[1], raw))
        tensors.append((name, shp, f32, raw))

    def split(var, parts):
        shape, dtype, raw = var
        step = len(raw) // parts
        rows = shape[0] // parts
        return [((([rows] + shape[1:]), dtype, raw[i * step : (i + 1) * step])) for i in range(parts)]

    def linear(prefix, ct2):
        put(prefix + ".weight", v[ct2 + "/weight"])
        if ct2 + "/bias" in v:
            put(prefix + ".bias", v[ct2 + "/bias"])

    def norm(prefix, ct2):
        put(prefix + ".weight", v[ct2 + "/gamma"])
        put(prefix + ".bias", v[ct2 + "/beta"])

    def self_attn(prefix, ct2):
        q, k, val = split(v[ct2 + "/linear_0/weight"], 3)
        qb, _kb, vb = split(v[ct2 + "/linear_0/bias"], 3)
        put(prefix + ".query.weight", q)
        put(prefix + ".query.bias", qb)
        put(prefix + ".key.weight", k)
        put(prefix + ".value.weight", val)
        put(prefix + ".value.bias", vb)
        linear(prefix + ".out", ct2 + "/linear_1")

    def mlp(prefix, ct2):
        norm(prefix + "_ln", ct2 + "/layer_norm")
        linear(prefix + ".0", ct2 + "/linear_0")
        linear(prefix + ".2", ct2 + "/linear_1")

    put("encoder.positional_embedding", v["encoder/position_encodings/encodings"], f32=True)
    put("encoder.conv1.weight", v["encoder/conv1/weight"], f32=False)
    put("encoder.conv1.bias", v["encoder/conv1/bias"], f32=True, shape=[n_audio_state, 1])
    put("encoder.conv2.weight", v["encoder/conv2/weight"], f32=False)
    put("encoder.conv2.bias", v["encoder/conv2/bias"], f32=True, shape=[n_audio_state, 1])
    for i in range(n_enc):
        p, c = f"encoder.blocks.{i}", f"encoder/layer_{i}"
        self_attn(p + ".attn", c + "/self_attention")
        norm(p + ".attn_ln", c + "/self_attention/layer_norm")
        mlp(p + ".mlp", c + "/ffn")
    norm("encoder.ln_post", "encoder/layer_norm")
    put("decoder.positional_embedding", v["decoder/position_encodings/encodings"], f32=True)
    put("decoder.token_embedding.weight", v["decoder/embeddings/weight"])
    for i in range(n_dec):
        p, c = f"decoder.blocks.{i}", f"decoder/layer_{i}"
        self_attn(p + ".attn", c + "/self_attention")
        norm(p + ".attn_ln", c + "/self_attention/layer_norm")
        put(p + ".cross_attn.query.weight", v[c + "/attention/linear_0/weight"])
        put(p + ".cross_attn.query.bias", v[c + "/attention/linear_0/bias"])
        k, val = split(v[c + "/attention/linear_1/weight"], 2)
        _kb, vb = split(v[c + "/attention/linear_1/bias"], 2)
        put(p + ".cross_attn.key.weight", k)
        put(p + ".cross_attn.value.weight", val)
        put(p + ".cross_attn.value.bias", vb)
        linear(p + ".cross_attn.out", c + "/attention/linear_2")
        norm(p + ".cross_attn_ln", c + "/attention/layer_norm")
        mlp(p + ".mlp", c + "/ffn")
    norm("decoder.ln", "decoder/layer_norm")

    filters = mel_filters(n_mels=n_mels)
    tmp = out + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<i", 0x67676D6C))
        for x in (n_vocab, n_audio_ctx, n_audio_state, heads_enc, n_enc, n_text_ctx, n_text_state, heads_dec, n_dec, n_mels, 1):
            f.write(struct.pack("<i", x))
        f.write(struct.pack("<ii", len(filters), len(filters[0])))
        for row in filters:
            f.write(struct.pack("<%df" % len(row), *row))
        f.write(struct.pack("<i", len(tokens)))
        for t in tokens:
            f.write(struct.pack("<i", len(t)))
            f.write(t)
        for name, shape, f32, raw in tensors:
            nb = name.encode("utf-8")
            f.write(struct.pack("<iii", len(shape), len(nb), 0 if f32 else 1))
            for d in reversed(shape):
                f.write(struct.pack("<i", d))
            f.write(nb)
            f.write(raw)
    os.replace(tmp, out)
    print(f"    converted {spec}: {n_enc}+{n_dec} layers, state {n_audio_state}, vocab {n_vocab} -> {out}")


if __name__ == "__main__":
    main()
