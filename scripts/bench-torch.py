#!/usr/bin/env python3
"""PyTorch reference for `bdaudit bench`: the same model, batch, sequence length and step.

    bench-torch.py --model-dir DIR [--batch 32] [--seq 64] [--iters 5] [--threads N] [--device cuda]

Prints one JSON line shaped like `bdaudit bench --json`.
"""
import argparse
import json
import time

import torch
from transformers import BertForSequenceClassification


def timed(iters, fn, sync):
    fn()
    sync()
    ms = []
    for _ in range(max(iters, 1)):
        t = time.perf_counter()
        fn()
        # CUDA runs asynchronously: wait for the step's kernels inside the timing.
        sync()
        ms.append((time.perf_counter() - t) * 1e3)
    ms.sort()
    return {"best_ms": ms[0], "median_ms": ms[len(ms) // 2]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="0: torch's default")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    a = ap.parse_args()
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    if a.threads:
        torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(a.model_dir, num_labels=2).to(dev)
    vocab = model.config.vocab_size
    ids = torch.randint(1000, vocab, (a.batch, a.seq)).to(dev)
    mask = torch.ones_like(ids)
    labels = (torch.arange(a.batch) % 2).to(dev)

    model.eval()

    def forward():
        with torch.no_grad():
            model(input_ids=ids, attention_mask=mask).logits.sum().item()

    fwd = timed(a.iters, forward, sync)

    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01, eps=1e-8)

    def step():
        opt.zero_grad()
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    stp = timed(a.iters, step, sync)
    print(json.dumps({
        "backend": f"pytorch {torch.__version__} "
        + (f"({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else f"({torch.get_num_threads()} threads)"),
        "batch": a.batch, "seq": a.seq, "forward": fwd, "train_step": stp,
    }))


if __name__ == "__main__":
    main()
