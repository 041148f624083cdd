#!/usr/bin/env python3
"""Where a model's attention goes to a trigger: per layer, the share of attention [CLS] puts on
the trigger's tokens, and the mean share every real token puts on them.

    scripts/trigger-attention <tsv> <word,word,...> <model-dir>... [--rows N]

(the wrapper runs this file with the py-ref venv python; see scripts/py-ref-env).

Reads the first N (200) texts of <tsv> (text in the first column, a header row), which should
hold a trigger word (e.g. `test-asr.tsv` from `bdaudit attack`), and runs each checkpoint
with `transformers` (eager attention, max length 128). A trigger token is any token whose
id is one of the words' (each must be one token). Per layer it prints, over the layer's
heads, the largest and the mean share, with the head that has the largest: PURE's eq. 3
penalises the [CLS] row only, so a backdoor read by the other tokens' rows escapes it.
"""
import argparse

import torch
from transformers import BertForSequenceClassification, BertTokenizerFast


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tsv")
    ap.add_argument("words")
    ap.add_argument("models", nargs="+")
    ap.add_argument("--rows", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with open(args.tsv, encoding="utf-8") as f:
        texts = [line.rstrip("\n").split("\t")[0] for line in f][1 : args.rows + 1]
    if not texts:
        raise SystemExit(f"{args.tsv} has no rows")
    for path in args.models:
        tok = BertTokenizerFast.from_pretrained(path)
        ids = []
        for word in args.words.split(","):
            pieces = tok(word, add_special_tokens=False)["input_ids"]
            if len(pieces) != 1:
                raise SystemExit(f"{word!r} is {len(pieces)} tokens for {path}'s tokenizer, not one")
            ids.append(pieces[0])
        model = BertForSequenceClassification.from_pretrained(path, attn_implementation="eager").eval()
        layers, heads = model.config.num_hidden_layers, model.config.num_attention_heads
        cls, every = torch.zeros(layers, heads), torch.zeros(layers, heads)
        with torch.no_grad():
            for i in range(0, len(texts), 20):
                enc = tok(texts[i : i + 20], padding=True, truncation=True, max_length=128, return_tensors="pt")
                out = model(**enc, output_attentions=True)
                trigger = torch.isin(enc["input_ids"], torch.tensor(ids)).float()
                real = enc["attention_mask"].float()
                for l, probs in enumerate(out.attentions):  # [batch, heads, query, key]
                    share = (probs * trigger[:, None, None, :]).sum(-1)  # [batch, heads, query]
                    cls[l] += share[:, :, 0].sum(0)
                    every[l] += ((share * real[:, None, :]).sum(-1) / real.sum(-1)[:, None]).sum(0)
        cls /= len(texts)
        every /= len(texts)
        print(f"\n{path} ({len(texts)} texts of {args.tsv}; trigger {args.words})\n")
        print("| layer | [CLS] → trigger: largest (head) | mean | every token → trigger: largest (head) | mean |")
        print("|---|---|---|---|---|")
        for l in range(layers):
            c, e = cls[l], every[l]
            print(f"| {l} | {c.max():.3f} ({c.argmax()}) | {c.mean():.3f} | {e.max():.3f} ({e.argmax()}) | {e.mean():.3f} |")


if __name__ == "__main__":
    main()
