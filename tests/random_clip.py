"""A CLIP with RANDOM weights in the Hugging Face folder layout, for tests and timing.

No package reachable here ships CLIP weights, so the clip scorer's code path is exercised
on a randomly initialised `CLIPModel` (transformers, seeded) with a small byte-level BPE
vocabulary written here. Its outputs are NEVER results: only the code path and, for the
ViT-B/32-sized one, the architecture's cost are measured with it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

RANDOM_NOTE = "RANDOM WEIGHTS: built by tests/random_clip.py; its outputs are never results.\n"
MERGES = ("h a", "ha p", "p y</w>", "f a", "c e</w>", "fa ce</w>")

# text / vision towers; "vit-b-32" is transformers' CLIPConfig default = OpenAI ViT-B/32
# (vision 768 wide, 12 layers, patch 32, 224 px; text 512 wide, 12 layers; projection 512)
SIZES = {
    "tiny": (
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
        },
        {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 16,
        },
        16,
    ),
    "vit-b-32": ({"vocab_size": 49408}, {}, 512),
}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character map (byte-level BPE alphabet)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    codes = list(printable)
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes), strict=True))


def write_tokenizer(folder: Path) -> dict[str, int]:
    """vocab.json + merges.txt: every byte (alone and word-final), a few merges, specials."""
    chars = list(bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({f"{c}</w>": len(chars) + i for i, c in enumerate(chars)})
    for merge in MERGES:
        vocab["".join(merge.split())] = len(vocab)
    for special in ("<|startoftext|>", "<|endoftext|>"):
        vocab[special] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    return vocab


def write_random_clip(folder: Path, seed: int, size: Literal["tiny", "vit-b-32"] = "tiny") -> Path:
    """A randomly initialised CLIP (config.json + model.safetensors) and its tokenizer."""
    import torch
    from transformers import CLIPConfig, CLIPModel

    vocab = write_tokenizer(folder)
    text, vision, projection = SIZES[size]
    eos = vocab["<|endoftext|>"]
    text = {
        "vocab_size": len(vocab),
        "max_position_embeddings": 77,
        **text,
        "bos_token_id": vocab["<|startoftext|>"],
        "eos_token_id": eos,
        "pad_token_id": eos,
    }
    torch.manual_seed(seed)
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection)
    CLIPModel(config).save_pretrained(folder)
    (folder / "RANDOM_WEIGHTS.txt").write_text(RANDOM_NOTE)
    return folder
