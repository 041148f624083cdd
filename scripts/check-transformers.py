#!/usr/bin/env python3
"""Check that Hugging Face transformers loads a bdaudit-written checkpoint and agrees on logits.

    scripts/check-transformers <checkpoint-dir> <expected.json> [--tol 1e-4]

(the wrapper runs this file with the py-ref venv python; see scripts/py-ref-env).

<checkpoint-dir> holds config.json, model.safetensors (BertForSequenceClassification layout:
"bert."-prefixed names + classifier.*) and tokenizer.json. <expected.json> is
{"texts": [...], "logits": [[...], ...]} as computed by bdaudit. Loading must report no
missing/unexpected/mismatched keys, and max |logits - expected| must be <= tol.
Prints one JSON line {"ok": ..., "max_abs_diff": ...}; exits 1 on failure.
"""
import argparse
import json
import os
import sys

import tokenizers
import torch
from transformers import BertForSequenceClassification


def fail(msg, **extra):
    print(json.dumps({"ok": False, "error": msg, **extra}))
    print(f"check-transformers: FAILED: {msg}", file=sys.stderr)
    sys.exit(1)


def encode(ckpt, texts, max_len=128):
    tok = tokenizers.Tokenizer.from_file(os.path.join(ckpt, "tokenizer.json"))
    tok.no_padding()  # MiniLM's tokenizer.json pads to 128; pad to the batch's longest instead
    tok.enable_truncation(max_len)
    encs = tok.encode_batch(texts)
    n = max(len(e.ids) for e in encs)
    pad = tok.token_to_id("[PAD]") or 0
    ids = [e.ids + [pad] * (n - len(e.ids)) for e in encs]
    mask = [[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in encs]
    return torch.tensor(ids), torch.tensor(mask)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint_dir")
    ap.add_argument("expected_json")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_grad_enabled(False)

    with open(args.expected_json) as f:
        expected = json.load(f)
    texts, want = expected["texts"], torch.tensor(expected["logits"], dtype=torch.float64)

    model, info = BertForSequenceClassification.from_pretrained(args.checkpoint_dir, output_loading_info=True)
    model.eval()
    problems = {k: [str(x) for x in v] for k, v in info.items() if v}
    if problems:
        fail("checkpoint does not load cleanly into BertForSequenceClassification", loading_info=problems)

    ids, mask = encode(args.checkpoint_dir, texts)
    got = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.double()
    if got.shape != want.shape:
        fail(f"logits shape {list(got.shape)} != expected {list(want.shape)}")
    diff = (got - want).abs().max().item()
    if not diff <= args.tol:  # also catches NaN
        fail(f"max |logits diff| {diff:.3g} > tol {args.tol:g}", max_abs_diff=diff, logits=got.tolist())
    print(json.dumps({"ok": True, "max_abs_diff": diff, "n_texts": len(texts)}))


if __name__ == "__main__":
    main()
