#!/usr/bin/python3
"""Independent float64 PyTorch reference of the smolrate forward pass (docs/reference/model.md).

SigLIP-style vision encoder (bucketed position ids) -> pixel shuffle connector -> Llama decoder
(RMSNorm, half-split RoPE, GQA, SwiGLU, causal + padding mask) -> mask-aware mean pooling ->
regression head 1 + 4*sigmoid. Written from the spec, not from the TypeScript code, so that the
tfjs implementation can be checked against it.

  /usr/bin/python3 tools/parity/reference.py generate [--out DIR] [--seed 0]
      builds a small random checkpoint with the real HF tensor names, an HF-style config.json and
      cases.json (inputs + float64 expected outputs) in DIR
      (default packages/model/tests/fixtures/parity).
  /usr/bin/python3 tools/parity/reference.py verify [--dir DIR]
      re-reads config.json / model.safetensors / cases.json from DIR, recomputes every case and
      checks the stored expectations (exit 1 on mismatch). Works for any checkpoint directory
      whose cases.json has the same format.

Needs torch and numpy only (Debian's /usr/bin/python3 has torch 1.13); safetensors files are
read and written by the small codec below.
"""

import argparse
import base64
import hashlib
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F

DTYPE = torch.float64
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_DIR = os.path.join(REPO, "packages", "model", "tests", "fixtures", "parity")

# --------------------------------------------------------------------------------------------
# Reference configuration: the structure of SmolVLM2-256M, small widths.
#   image 192 px / patch 8 = 24x24 grid on a 256/8 = 32x32 position table (the same 24 -> 32
#   bucketing as 384/16 on 512), pixel shuffle 4 -> 36 image tokens of 16*32 = 512 features;
#   decoder GQA 6 query heads on 2 kv heads (ratio 3, as 9/3), head_dim 12.
# --------------------------------------------------------------------------------------------
IMAGE_SIZE = 192
CONFIG = {
    "architectures": ["SmolVLMForConditionalGeneration"],
    "model_type": "smolvlm",
    "image_token_id": 90,
    "scale_factor": 4,
    "tie_word_embeddings": False,
    "torch_dtype": "float32",
    "vision_config": {
        "model_type": "smolvlm_vision",
        "hidden_size": 32,
        "intermediate_size": 80,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "patch_size": 8,
        "image_size": 256,
        "layer_norm_eps": 1e-6,
        "hidden_act": "gelu_pytorch_tanh",
        "num_channels": 3,
    },
    "text_config": {
        "model_type": "llama",
        "vocab_size": 96,
        "hidden_size": 72,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 6,
        "num_key_value_heads": 2,
        "head_dim": 12,
        "rope_theta": 100000.0,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 512,
        "pad_token_id": 2,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
    },
    "regression": {
        "hidden_size": 36,
        "dropout": 0.1,
        "truncation": 100,
        "image_size": IMAGE_SIZE,
        "prompt": "plain",
    },
}
# Prompt-structure ids of the small vocabulary (the real ones are 49189 / 49152 / 49190 / 1).
FAKE_TOKEN = 89
GLOBAL_IMG = 88
IM_START = 1
TEXT_IDS = (3, 88)  # ordinary text tokens are drawn from [3, 88)


# --------------------------------------------------------------------------------------------
# safetensors codec (float32 only, the layout of the reference writer: compact JSON,
# "__metadata__" first, tensors in name order, header padded with spaces to 8 bytes).
# --------------------------------------------------------------------------------------------
def write_safetensors(path, tensors, metadata):
    names = sorted(tensors)
    parts = ['"__metadata__":' + json.dumps(dict(sorted(metadata.items())), separators=(",", ":"))]
    blobs, offset = [], 0
    for name in names:
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        info = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        parts.append(json.dumps(name) + ":" + json.dumps(info, separators=(",", ":")))
        blobs.append(arr.tobytes())
        offset += arr.nbytes
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * ((8 - len(header) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)))
        f.write(header)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n].decode("utf-8"))
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        if info["dtype"] != "F32":
            raise ValueError(f"{name}: only F32 is supported here, got {info['dtype']}")
        b, e = info["data_offsets"]
        out[name] = np.frombuffer(data[8 + n + b : 8 + n + e], dtype="<f4").reshape(info["shape"])
    return out


# --------------------------------------------------------------------------------------------
# Checkpoint: real HF names, PyTorch layouts (Linear [out, in], Conv2d [out, in, kh, kw]).
# --------------------------------------------------------------------------------------------
def expected_shapes(cfg):
    v, t = cfg["vision_config"], cfg["text_config"]
    D, P, I = v["hidden_size"], v["patch_size"], v["intermediate_size"]
    n_pos = (v["image_size"] // P) ** 2
    H, Ti, hd = t["hidden_size"], t["intermediate_size"], t["head_dim"]
    nq, nkv, V = t["num_attention_heads"], t["num_key_value_heads"], t["vocab_size"]
    R = cfg["regression"]["hidden_size"]
    s = cfg["scale_factor"]
    shapes = {
        "model.vision_model.embeddings.patch_embedding.weight": [D, 3, P, P],
        "model.vision_model.embeddings.patch_embedding.bias": [D],
        "model.vision_model.embeddings.position_embedding.weight": [n_pos, D],
        "model.vision_model.post_layernorm.weight": [D],
        "model.vision_model.post_layernorm.bias": [D],
        "model.connector.modality_projection.proj.weight": [H, D * s * s],
        "model.text_model.embed_tokens.weight": [V, H],
        "model.text_model.norm.weight": [H],
        "lm_head.weight": [V, H],
        "regression_head.fc1.weight": [R, H],
        "regression_head.fc1.bias": [R],
        "regression_head.fc2.weight": [1, R],
        "regression_head.fc2.bias": [1],
    }
    for i in range(v["num_hidden_layers"]):
        p = f"model.vision_model.encoder.layers.{i}."
        for ln in ("layer_norm1", "layer_norm2"):
            shapes[p + ln + ".weight"] = [D]
            shapes[p + ln + ".bias"] = [D]
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[p + f"self_attn.{proj}.weight"] = [D, D]
            shapes[p + f"self_attn.{proj}.bias"] = [D]
        shapes[p + "mlp.fc1.weight"] = [I, D]
        shapes[p + "mlp.fc1.bias"] = [I]
        shapes[p + "mlp.fc2.weight"] = [D, I]
        shapes[p + "mlp.fc2.bias"] = [D]
    for j in range(t["num_hidden_layers"]):
        p = f"model.text_model.layers.{j}."
        shapes[p + "input_layernorm.weight"] = [H]
        shapes[p + "post_attention_layernorm.weight"] = [H]
        shapes[p + "self_attn.q_proj.weight"] = [nq * hd, H]
        shapes[p + "self_attn.k_proj.weight"] = [nkv * hd, H]
        shapes[p + "self_attn.v_proj.weight"] = [nkv * hd, H]
        shapes[p + "self_attn.o_proj.weight"] = [H, nq * hd]
        shapes[p + "mlp.gate_proj.weight"] = [Ti, H]
        shapes[p + "mlp.up_proj.weight"] = [Ti, H]
        shapes[p + "mlp.down_proj.weight"] = [H, Ti]
    return shapes


def init_std(name):
    """Standard deviations chosen so that every component moves the output (see README)."""
    if name.endswith("position_embedding.weight"):
        return 0.4  # comparable to the patch embeddings, so a wrong bucket shows
    if name.endswith("embed_tokens.weight") or name == "lm_head.weight":
        return 1.0
    if "self_attn.q_proj" in name or "self_attn.k_proj" in name:
        return 0.2  # attention logits of order 1: attention far from uniform
    if name.endswith("mlp.fc1.weight"):
        return 0.15  # pre-activations of order 1: the tanh form of GELU shows against erf
    if name.startswith("regression_head."):
        return 0.25 if name.endswith("weight") else 0.1
    if name.endswith(".bias"):
        return 0.05
    return 0.08


def build_checkpoint(cfg, seed):
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for name, shape in expected_shapes(cfg).items():
        is_norm = "norm" in name.split(".")[-2] or "layernorm" in name
        if is_norm and name.endswith(".weight"):
            w = 1.0 + 0.2 * torch.randn(shape, generator=g, dtype=DTYPE)  # not all ones
        else:
            w = init_std(name) * torch.randn(shape, generator=g, dtype=DTYPE)
        tensors[name] = w.to(torch.float32).numpy()
    return tensors


# --------------------------------------------------------------------------------------------
# Forward pass (float64 throughout).
# --------------------------------------------------------------------------------------------
def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def rms_norm(x, w, eps):
    return w * x / torch.sqrt((x * x).mean(-1, keepdim=True) + eps)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def linear(x, W, b=None):
    y = x @ W.T
    return y if b is None else y + b


def position_ids(n, side):
    """Bucket of patch index i along an axis: floor(side*i/n); id = side*bucket(r) + bucket(c)."""
    buckets = [(side * i) // n for i in range(n)]
    return torch.tensor([side * br + bc for br in buckets for bc in buckets], dtype=torch.long)


def vision_encoder(W, cfg, pixels):
    """pixels: [B, 3, S, S] float64 in [-1, 1] -> post-layernorm hidden states [B, n*n, D]."""
    v = cfg["vision_config"]
    P, D, nh = v["patch_size"], v["hidden_size"], v["num_attention_heads"]
    eps = v["layer_norm_eps"]
    pre = "model.vision_model."
    x = F.conv2d(pixels, W[pre + "embeddings.patch_embedding.weight"], W[pre + "embeddings.patch_embedding.bias"], stride=P)
    B, _, n, _ = x.shape
    x = x.flatten(2).transpose(1, 2)  # [B, n*n, D], token t = r*n + c
    side = v["image_size"] // P
    x = x + W[pre + "embeddings.position_embedding.weight"][position_ids(n, side)]
    hd = D // nh
    for i in range(v["num_hidden_layers"]):
        p = pre + f"encoder.layers.{i}."
        h = layer_norm(x, W[p + "layer_norm1.weight"], W[p + "layer_norm1.bias"], eps)
        q, k, vv = (
            linear(h, W[p + f"self_attn.{m}_proj.weight"], W[p + f"self_attn.{m}_proj.bias"]).view(B, -1, nh, hd).transpose(1, 2)
            for m in ("q", "k", "v")
        )
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)  # bidirectional
        a = (att @ vv).transpose(1, 2).reshape(B, -1, D)
        x = x + linear(a, W[p + "self_attn.out_proj.weight"], W[p + "self_attn.out_proj.bias"])
        h = layer_norm(x, W[p + "layer_norm2.weight"], W[p + "layer_norm2.bias"], eps)
        h = linear(gelu_tanh(linear(h, W[p + "mlp.fc1.weight"], W[p + "mlp.fc1.bias"])), W[p + "mlp.fc2.weight"], W[p + "mlp.fc2.bias"])
        x = x + h
    return layer_norm(x, W[pre + "post_layernorm.weight"], W[pre + "post_layernorm.bias"], eps)


def pixel_shuffle(x, s):
    """[B, n*n, D] -> [B, (n/s)^2, s*s*D]: each s x s block (row-major block order) becomes one
    token holding its patches in (row-in-block, col-in-block) order. Written as the sequence of
    views/permutes of the upstream Idefics3 connector rather than as one 6-D transpose."""
    B, seq, D = x.shape
    n = int(round(math.sqrt(seq)))
    x = x.reshape(B, n, n // s, D * s)  # [B, row, block-col, (col-in-block, D)]
    x = x.permute(0, 2, 1, 3)  # [B, block-col, row, (col-in-block, D)]
    x = x.reshape(B, n // s, n // s, D * s * s)  # [B, block-col, block-row, (row-in-block, col-in-block, D)]
    x = x.permute(0, 2, 1, 3)  # [B, block-row, block-col, ...]
    return x.reshape(B, (n // s) ** 2, D * s * s)


def image_features(W, cfg, pixels):
    hidden = vision_encoder(W, cfg, pixels)
    shuffled = pixel_shuffle(hidden, cfg["scale_factor"])
    return hidden, linear(shuffled, W["model.connector.modality_projection.proj.weight"])


def rope(x, theta):
    """x: [B, heads, L, hd]; half-split layout, rotate_half([a, b]) = [-b, a]."""
    L, hd = x.shape[-2], x.shape[-1]
    inv_freq = theta ** (-torch.arange(0, hd, 2, dtype=DTYPE) / hd)  # theta^(-2i/hd), i < hd/2
    ang = torch.arange(L, dtype=DTYPE)[:, None] * inv_freq[None, :]
    ang = torch.cat([ang, ang], dim=-1)  # [L, hd]
    a, b = x[..., : hd // 2], x[..., hd // 2 :]
    return x * torch.cos(ang) + torch.cat([-b, a], dim=-1) * torch.sin(ang)


def decoder(W, cfg, embeds, mask):
    """embeds [B, L, H], mask [B, L] (1 = token, 0 = right padding) -> final-norm hidden states."""
    t = cfg["text_config"]
    B, L, H = embeds.shape
    nq, nkv, hd = t["num_attention_heads"], t["num_key_value_heads"], t["head_dim"]
    eps = t["rms_norm_eps"]
    causal = torch.tril(torch.ones(L, L, dtype=torch.bool))
    allowed = causal[None, None] & mask.bool()[:, None, None, :]  # [B, 1, L, L]
    x = embeds
    for j in range(t["num_hidden_layers"]):
        p = f"model.text_model.layers.{j}."
        h = rms_norm(x, W[p + "input_layernorm.weight"], eps)
        q = linear(h, W[p + "self_attn.q_proj.weight"]).view(B, L, nq, hd).transpose(1, 2)
        k = linear(h, W[p + "self_attn.k_proj.weight"]).view(B, L, nkv, hd).transpose(1, 2)
        v = linear(h, W[p + "self_attn.v_proj.weight"]).view(B, L, nkv, hd).transpose(1, 2)
        q, k = rope(q, t["rope_theta"]), rope(k, t["rope_theta"])
        # Query head h reads kv head floor(h / (nq / nkv)): each kv head serves consecutive heads.
        k = k.repeat_interleave(nq // nkv, dim=1)
        v = v.repeat_interleave(nq // nkv, dim=1)
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(hd)
        scores = scores.masked_fill(~allowed, float("-inf"))
        a = (torch.softmax(scores, dim=-1) @ v).transpose(1, 2).reshape(B, L, nq * hd)
        x = x + linear(a, W[p + "self_attn.o_proj.weight"])
        z = rms_norm(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + linear(F.silu(linear(z, W[p + "mlp.gate_proj.weight"])) * linear(z, W[p + "mlp.up_proj.weight"]), W[p + "mlp.down_proj.weight"])
    return rms_norm(x, W["model.text_model.norm.weight"], eps)


def forward(W, cfg, images_u8, input_ids, attention_mask):
    """images_u8: uint8 [B, S, S, 3] (one image per sequence); input_ids / attention_mask [B, L]."""
    pixels = torch.from_numpy(images_u8.astype(np.float64)) / 127.5 - 1.0  # exactly x/127.5 - 1
    pixels = pixels.permute(0, 3, 1, 2)  # NHWC -> NCHW
    vision_hidden, feats = image_features(W, cfg, pixels)  # [B, N, H]
    ids = torch.tensor(input_ids, dtype=torch.long)
    mask = torch.tensor(attention_mask, dtype=DTYPE)
    embeds = W["model.text_model.embed_tokens.weight"][ids].clone()  # no scaling
    for b in range(ids.shape[0]):
        pos = (ids[b] == cfg["image_token_id"]).nonzero().flatten()
        if len(pos) != feats.shape[1]:
            raise ValueError(f"sequence {b}: {len(pos)} image tokens for {feats.shape[1]} image features")
        embeds[b, pos] = feats[b]  # k-th <image> token <- k-th projected row
    hidden = decoder(W, cfg, embeds, mask)
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    h = torch.relu(linear(pooled, W["regression_head.fc1.weight"], W["regression_head.fc1.bias"]))  # dropout: eval
    logit = linear(h, W["regression_head.fc2.weight"], W["regression_head.fc2.bias"])[:, 0]
    rating = 1.0 + 4.0 * torch.sigmoid(logit)
    return {"vision_hidden": vision_hidden, "image_features": feats, "hidden": hidden, "pooled": pooled, "logit": logit, "rating": rating}


# --------------------------------------------------------------------------------------------
# Fixtures.
# --------------------------------------------------------------------------------------------
def make_images(rng, count, size):
    """Smooth colour gradients plus noise and a few rectangles: every region differs."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    out = []
    for _ in range(count):
        fx, fy, ph = rng.uniform(1, 4, 3), rng.uniform(1, 4, 3), rng.uniform(0, 2 * np.pi, 3)
        img = np.stack([127.5 + 90 * np.sin(2 * np.pi * (fx[c] * xx + fy[c] * yy) + ph[c]) for c in range(3)], axis=-1)
        for _ in range(4):
            y0, x0 = rng.integers(0, size - 32, 2)
            h, w = rng.integers(8, 48, 2)
            img[y0 : y0 + h, x0 : x0 + w] = rng.uniform(0, 255, 3)
        img += rng.normal(0, 20, img.shape)
        out.append(np.clip(np.rint(img), 0, 255).astype(np.uint8))
    return np.stack(out)


def image_block(n_tokens, cfg):
    return [FAKE_TOKEN, GLOBAL_IMG] + [cfg["image_token_id"]] * n_tokens + [FAKE_TOKEN]


def encode_image(img):
    return {"shape": list(img.shape), "dtype": "uint8", "base64": base64.b64encode(img.tobytes()).decode("ascii"), "sha256": hashlib.sha256(img.tobytes()).hexdigest()}


def decode_image(rec):
    raw = base64.b64decode(rec["base64"])
    if hashlib.sha256(raw).hexdigest() != rec["sha256"]:
        raise ValueError("image bytes do not match their sha256")
    return np.frombuffer(raw, dtype=np.uint8).reshape(rec["shape"])


def summary(x):
    x = x.detach().reshape(-1)
    return {"first": x[:8].tolist(), "sum": float(x.sum()), "abs_sum": float(x.abs().sum()), "count": int(x.numel())}


def expectations(out, mask):
    B = out["pooled"].shape[0]
    return [
        {
            "image_features": out["image_features"][b].tolist(),  # [N, H]
            "vision_hidden": summary(out["vision_hidden"][b]),
            "last_hidden_valid": summary(out["hidden"][b][torch.tensor(mask[b], dtype=torch.bool)]),
            "pooled": out["pooled"][b].tolist(),
            "logit": float(out["logit"][b]),
            "rating": float(out["rating"][b]),
        }
        for b in range(B)
    ]


def generate(out_dir, seed):
    cfg = CONFIG
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    os.makedirs(out_dir, exist_ok=True)
    weights = build_checkpoint(cfg, seed)
    write_safetensors(os.path.join(out_dir, "model.safetensors"), weights, {"format": "pt"})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    W = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in read_safetensors(os.path.join(out_dir, "model.safetensors")).items()}

    v = cfg["vision_config"]
    n = IMAGE_SIZE // v["patch_size"]
    n_img = (n // cfg["scale_factor"]) ** 2
    assert n_img == 36
    # 24-on-32 bucketing must skip every 4th row/column of the table: 0,1,2,4,5,6,8,...
    buckets = [(32 * i) // 24 for i in range(24)]
    assert buckets[:7] == [0, 1, 2, 4, 5, 6, 8] and buckets[-1] == 30, buckets

    images = make_images(rng, 3, IMAGE_SIZE)
    text = lambda k: rng.integers(TEXT_IDS[0], TEXT_IDS[1], k).tolist()  # noqa: E731
    blk = image_block(n_img, cfg)
    seqs = [
        blk + text(12),  # plain template: image block first, longest (no padding)
        [IM_START] + text(2) + blk + text(5),  # chat-style prefix before the image block
        blk + text(2),  # short: most padding
    ]
    L = max(len(s) for s in seqs)
    pad = cfg["text_config"]["pad_token_id"]
    ids = [s + [pad] * (L - len(s)) for s in seqs]
    mask = [[1] * len(s) + [0] * (L - len(s)) for s in seqs]

    cases = []
    specs = [
        ("batch3_right_padding", [0, 1, 2], ids, mask),
        # Sequence 1 alone, unpadded: pooled/rating must equal batch3 row 1 (padding invariance).
        ("single_unpadded", [1], [seqs[1]], [[1] * len(seqs[1])]),
    ]
    for name, img_idx, c_ids, c_mask in specs:
        out = forward(W, cfg, images[img_idx], c_ids, c_mask)
        cases.append({"name": name, "images": img_idx, "input_ids": c_ids, "attention_mask": c_mask, "expected": expectations(out, c_mask)})
    b3, single = cases[0]["expected"][1], cases[1]["expected"][0]
    assert abs(b3["rating"] - single["rating"]) < 1e-12, "padding changed the output"

    doc = {
        "format": "smolrate-parity-v1",
        "generator": "tools/parity/reference.py generate --seed %d" % seed,
        "torch_version": torch.__version__,
        "numpy_version": np.__version__,
        "seed": seed,
        "precision": "float64 forward on the float32 weights of model.safetensors",
        "pixels": "pixels = x / 127.5 - 1 for the stored uint8 RGB images (NHWC, row-major)",
        "image_token_id": cfg["image_token_id"],
        "images": [encode_image(img) for img in images],
        "cases": cases,
    }
    with open(os.path.join(out_dir, "cases.json"), "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    for case in cases:
        print(case["name"], "ratings", [round(e["rating"], 6) for e in case["expected"]], "logits", [round(e["logit"], 4) for e in case["expected"]])
    for fn in ("config.json", "model.safetensors", "cases.json"):
        print(fn, os.path.getsize(os.path.join(out_dir, fn)), "bytes")


def max_rel(a, b):
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30))


def verify(dir_):
    with open(os.path.join(dir_, "config.json")) as f:
        cfg = json.load(f)
    with open(os.path.join(dir_, "cases.json")) as f:
        doc = json.load(f)
    raw = read_safetensors(os.path.join(dir_, "model.safetensors"))
    shapes = expected_shapes(cfg)
    if set(raw) != set(shapes) or any(list(raw[k].shape) != shapes[k] for k in shapes):
        print("checkpoint tensors do not match the config", file=sys.stderr)
        return 1
    W = {k: torch.from_numpy(np.array(v, dtype=np.float64)) for k, v in raw.items()}
    images = np.stack([decode_image(r) for r in doc["images"]])
    worst = 0.0
    for case in doc["cases"]:
        out = forward(W, cfg, images[case["images"]], case["input_ids"], case["attention_mask"])
        for b, exp in enumerate(expectations(out, case["attention_mask"])):
            want = case["expected"][b]
            for key in ("image_features", "pooled"):
                worst = max(worst, max_rel(exp[key], want[key]))
            worst = max(worst, max_rel([exp["rating"], exp["logit"]], [want["rating"], want["logit"]]))
    print(f"{len(doc['cases'])} cases, worst relative difference {worst:.3e}")
    return 0 if worst < 1e-12 else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("generate")
    g.add_argument("--out", default=DEFAULT_DIR)
    g.add_argument("--seed", type=int, default=0)
    vp = sub.add_parser("verify")
    vp.add_argument("--dir", default=DEFAULT_DIR)
    args = ap.parse_args()
    torch.set_num_threads(1)
    if args.cmd == "generate":
        generate(args.out, args.seed)
        return 0
    return verify(args.dir)


if __name__ == "__main__":
    sys.exit(main())
