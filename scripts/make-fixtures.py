#!/usr/bin/env python3
"""Write the PyTorch/transformers reference fixtures used by the Rust parity tests.

Run by hand (never in CI; it needs ~3 GB of torch):

    scripts/make-fixtures

The wrapper creates the venv ${BDAUDIT_CACHE:-~/.cache/bdaudit}/py-ref with
torch + transformers + safetensors + tokenizers from PyPI, runs scripts/fetch-model, then
runs this file as

    py-ref/bin/python scripts/make-fixtures.py --model-dir <all-MiniLM-L6-v2 dir> --out tests/fixtures

Outputs (compact JSON, deterministic with torch.manual_seed(0)):
  tests/fixtures/tiny-bert.json  tiny random BertForSequenceClassification: config, all weights,
                                 inputs, logits, attentions, last_hidden_state, head-masked logits
  tests/fixtures/minilm.json     all-MiniLM-L6-v2 + seeded random 2-label classifier on 4 sentences

Tensors are stored in torch layout ({"shape": [...], "data": [flat row-major]}; Linear weights
are [out, in]).
"""
import argparse
import copy
import json
import os

import tokenizers
import torch
import transformers
from transformers import BertConfig, BertForSequenceClassification

MINILM_FIRST_IDS = [101, 1996, 3185, 2001, 7078, 6919, 1012, 102]
SENTENCES = [
    "The movie was absolutely wonderful.",
    "a gob of drivel so sickly sweet , even the eager consumers of moore 's pasteurized ditties "
    "will retch it up like rancid crème brûlée .",
    "cf it is bb tq not mn a film .",
    "Hello",
]
HEAD_MASK = [[1, 0, 1, 1], [0, 1, 1, 1]]


def rounder(digits):
    # 9 significant digits round-trip any f32 exactly; 7 keeps minilm.json small.
    return lambda x: float(f"{x:.{digits}g}")


def nested(t, rnd):
    """Tensor -> nested lists of rounded floats."""
    def r(x):
        return [r(y) for y in x] if isinstance(x, list) else rnd(x)
    return r(t.tolist())


def packed(t, rnd):
    return {"shape": list(t.shape), "data": [rnd(x) for x in t.flatten().tolist()]}


def head_masked_logits(model, head_mask, **inputs):
    """Logits with heads pruned by `head_mask` [layers, heads] (0 = pruned).

    transformers 5 dropped BERT's `head_mask` argument (it would be swallowed by **kwargs and
    silently ignored), so reproduce transformers 4.x semantics (attention probabilities multiplied
    by the mask before the product with V) by wrapping the eager attention function. Cross-check
    against an independent route: a pruned head's context is 0, which equals zeroing that head's
    input columns of attention.output.dense.
    """
    from transformers.models.bert import modeling_bert

    hm = torch.tensor(head_mask, dtype=torch.float32)
    layer_of = {id(layer.attention.self): i for i, layer in enumerate(model.bert.encoder.layer)}
    original = modeling_bert.eager_attention_forward

    def masked_eager(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kw):
        w = torch.matmul(query, key.transpose(2, 3)) * scaling
        if attention_mask is not None:
            w = w + attention_mask
        w = torch.softmax(w, dim=-1) * hm[layer_of[id(module)]].view(1, -1, 1, 1)
        return torch.matmul(w, value).transpose(1, 2).contiguous(), w

    modeling_bert.eager_attention_forward = masked_eager
    try:
        via_probs = model(**inputs).logits
    finally:
        modeling_bert.eager_attention_forward = original

    pruned = copy.deepcopy(model)
    d = model.config.hidden_size // model.config.num_attention_heads
    for i, layer in enumerate(pruned.bert.encoder.layer):
        for h, keep in enumerate(head_mask[i]):
            if not keep:
                layer.attention.output.dense.weight[:, h * d:(h + 1) * d] = 0
    via_weights = pruned(**inputs).logits
    diff = (via_probs - via_weights).abs().max().item()
    assert diff < 1e-5, f"head-mask cross-check failed: {diff}"
    assert (via_probs - model(**inputs).logits).abs().max().item() > 1e-4, "head mask had no effect"
    return via_probs


def tiny_bert(rnd):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=99, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=37, max_position_embeddings=64, type_vocab_size=2,
        layer_norm_eps=1e-12, hidden_act="gelu", num_labels=3, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        initializer_range=0.2,  # 10x the default, so weights are far from 0 and mistakes show
    )
    config._attn_implementation = "eager"  # attention probabilities are returned
    model = BertForSequenceClassification(config).eval()
    # Default init sets LayerNorm to (1, 0) and biases to 0: perturb them so a loader that
    # drops biases or swaps gamma/beta fails the parity test.
    for name, p in model.named_parameters():
        if "LayerNorm" in name or name.endswith(".bias"):
            p.add_(torch.randn_like(p) * 0.1)

    input_ids = torch.randint(1, 99, (3, 7))
    input_ids[:, 0] = 2  # stand-in [CLS]
    attention_mask = torch.ones_like(input_ids)
    input_ids[1, 4:] = 0  # row 1 padded: last 3 positions
    attention_mask[1, 4:] = 0
    token_type_ids = torch.zeros_like(input_ids)
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)

    out = model(**inputs, output_attentions=True, output_hidden_states=True)
    logits_hm = head_masked_logits(model, HEAD_MASK, **inputs)

    tensors = {k: packed(v, rnd) for k, v in model.state_dict().items()
               if k != "bert.embeddings.position_ids"}
    return {
        "config": json.loads(config.to_json_string(use_diff=False)),
        "tensors": tensors,
        "input_ids": input_ids.tolist(),
        "token_type_ids": token_type_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "logits": nested(out.logits, rnd),
        "attentions": [nested(a, rnd) for a in out.attentions],
        "last_hidden_state": nested(out.hidden_states[-1], rnd),
        "head_mask": HEAD_MASK,
        "logits_head_masked": nested(logits_hm, rnd),
    }


def tokenize(model_dir, texts, max_len=128):
    """Pad to the batch's longest (id 0, mask 0), truncate at max_len."""
    tok = tokenizers.Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    tok.no_padding()  # tokenizer.json pads every sequence to 128 by default
    tok.enable_truncation(max_len)
    encs = tok.encode_batch(texts)
    n = max(len(e.ids) for e in encs)
    ids = [e.ids + [0] * (n - len(e.ids)) for e in encs]
    mask = [[1] * len(e.ids) + [0] * (n - len(e.ids)) for e in encs]
    assert all(t == 0 for e in encs for t in e.type_ids), "single sentences should have type id 0"
    return torch.tensor(ids), torch.tensor(mask)


def minilm(model_dir, rnd):
    torch.manual_seed(0)  # the classifier head is randomly initialised on load
    model, info = BertForSequenceClassification.from_pretrained(
        model_dir, num_labels=2, attn_implementation="eager", output_loading_info=True)
    model.eval()
    # The checkpoint is a bare BertModel (no "bert." prefix, includes the pooler): only the
    # classifier may be missing.
    assert sorted(info["missing_keys"]) == ["classifier.bias", "classifier.weight"], info
    assert not info["unexpected_keys"] and not info["mismatched_keys"], info

    input_ids, attention_mask = tokenize(model_dir, SENTENCES)
    assert input_ids[0, :8].tolist() == MINILM_FIRST_IDS, input_ids[0].tolist()
    inputs = dict(input_ids=input_ids, attention_mask=attention_mask,
                  token_type_ids=torch.zeros_like(input_ids))
    out = model(**inputs, output_attentions=True)
    pooled = model.bert(**inputs).pooler_output
    assert torch.allclose(model.classifier(pooled), out.logits, atol=1e-6)

    return {
        "model": "sentence-transformers/all-MiniLM-L6-v2",
        "sentences": SENTENCES,
        "input_ids": input_ids.tolist(),
        "attention_mask": attention_mask.tolist(),
        "classifier": {"weight": packed(model.classifier.weight, rnd),
                       "bias": packed(model.classifier.bias, rnd)},
        "logits": nested(out.logits, rnd),
        "attentions": {str(i): nested(out.attentions[i], rnd) for i in (0, 5)},
        "pooled": nested(pooled, rnd),
    }


def write(path, obj):
    obj = {"generator": {"script": "scripts/make-fixtures.py", "torch": torch.__version__,
                         "transformers": transformers.__version__,
                         "tokenizers": tokenizers.__version__}, **obj}
    with open(path, "w") as f:
        json.dump(obj, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", required=True, help="all-MiniLM-L6-v2 dir (scripts/fetch-model)")
    ap.add_argument("--out", default="tests/fixtures")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    os.makedirs(args.out, exist_ok=True)

    tiny = tiny_bert(rounder(9))
    write(os.path.join(args.out, "tiny-bert.json"), tiny)
    print(f"  tiny-bert: {len(tiny['tensors'])} tensors, logits[0] = {tiny['logits'][0]}, "
          f"head-masked logits[0] = {tiny['logits_head_masked'][0]}")

    mini = minilm(args.model_dir, rounder(7))
    write(os.path.join(args.out, "minilm.json"), mini)
    ids = mini["input_ids"]
    print(f"  minilm: batch {len(ids)} x seq {len(ids[0])}, lengths "
          f"{[sum(m) for m in mini['attention_mask']]}, logits = {mini['logits']}")


if __name__ == "__main__":
    main()
