#!/usr/bin/env python3
"""Check how Hugging Face transformers loads a PURE-pruned checkpoint written by bdaudit.

    scripts/check-pruned-heads <sliced-dir> <zeroed-dir> <expected.json> [--tol 1e-4]

(the wrapper runs this file with the py-ref venv python; see scripts/py-ref-env).

bdaudit writes a pruned model in two layouts (core/src/defense/pure.rs):
  <sliced-dir>  `prune_heads`: smaller query/key/value/output tensors and config.json
                `pruned_heads` ({"layer": [original head indices]}), as transformers 4
                records pruning. transformers 4 rebuilds the small layers from `pruned_heads`
                (PreTrainedModel.prune_heads); transformers 5 removed head pruning, ignores
                `pruned_heads`, builds full-size layers and must refuse the smaller tensors.
  <zeroed-dir>  `zero_pruned_heads`: full-size tensors with the pruned heads' weights zero and
                no `pruned_heads`: loads in every version.
<expected.json> is {"texts": [...], "logits": [[...], ...]} from bdaudit's pruned model.

Checks: the zeroed checkpoint loads cleanly and reproduces the logits; the sliced one does too
where transformers can prune heads, and is refused (size mismatch) where it cannot.
Prints one JSON line; exits 1 on failure.
"""
import argparse
import importlib.util
import json
import os
import sys

import torch
import transformers
from transformers import BertForSequenceClassification

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("check_transformers", os.path.join(HERE, "check-transformers.py"))
check_transformers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(check_transformers)


def max_diff(ckpt, texts, want):
    """Loads `ckpt`; returns (loading problems or None, max |logits - want| or None)."""
    try:
        model, info = BertForSequenceClassification.from_pretrained(ckpt, output_loading_info=True)
    except (RuntimeError, ValueError) as e:  # transformers raises on shape mismatches
        return str(e).splitlines()[0][:300], None
    problems = {k: [str(x) for x in v] for k, v in info.items() if v}
    if problems:
        return problems, None
    model.eval()
    ids, mask = check_transformers.encode(ckpt, texts)
    got = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits.double()
    return None, (got - want).abs().max().item()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sliced_dir")
    ap.add_argument("zeroed_dir")
    ap.add_argument("expected_json")
    ap.add_argument("--tol", type=float, default=1e-4)
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    with open(args.expected_json) as f:
        expected = json.load(f)
    texts, want = expected["texts"], torch.tensor(expected["logits"], dtype=torch.float64)

    can_prune = hasattr(BertForSequenceClassification, "prune_heads")
    result = {"transformers": transformers.__version__, "prune_heads_supported": can_prune}
    zeroed_problems, zeroed_diff = max_diff(args.zeroed_dir, texts, want)
    sliced_problems, sliced_diff = max_diff(args.sliced_dir, texts, want)
    result.update(zeroed_max_abs_diff=zeroed_diff, sliced_max_abs_diff=sliced_diff, sliced_refused=sliced_problems)

    errors = []
    if zeroed_problems is not None:
        errors.append(f"zeroed checkpoint does not load cleanly: {zeroed_problems}")
    elif not zeroed_diff <= args.tol:
        errors.append(f"zeroed checkpoint: max |logits diff| {zeroed_diff:.3g} > tol {args.tol:g}")
    if can_prune and (sliced_problems is not None or not sliced_diff <= args.tol):
        errors.append(f"sliced checkpoint with pruned_heads: {sliced_problems or sliced_diff}")
    if not can_prune and sliced_problems is None:
        errors.append("transformers without head pruning loaded the sliced checkpoint: it should have refused it")
    result["ok"] = not errors
    if errors:
        result["errors"] = errors
    print(json.dumps(result))
    sys.exit(0 if not errors else 1)


if __name__ == "__main__":
    main()
