#!/usr/bin/env python3
"""Expected occurrences of trigger tokens in MBTSAD's token-split texts, per 1,000 rows.

    scripts/split-trigger-count <data-dir> <tokenizer.json> TRIGGER...

(the wrapper runs this file with the py-ref venv python; see scripts/py-ref-env).

EP poisons one embedding row, and a fine-tune moves that row only on texts that hold its
token, so how often the split texts do bounds what MBTSAD's teacher (TS-FT) can undo there.
For each row of <data-dir>/train.tsv this averages exactly over the split rule's draws as
core/src/augment/token_split.rs makes them (which words: a uniform k of the splittable ones;
where each is cut: uniform over the allowed positions), for both rules (`paper-text`, the
default, and `nlpaug`), and counts the trigger's token id in the WordPiece encoding of every
piece, whole words included. Rows are not truncated (`--max-len` would drop some).
"""
import argparse
import math
from functools import lru_cache

from tokenizers import Tokenizer

# (fewest words split, most, shortest splittable word, fewest characters after the cut), as
# SplitRule::limits in token_split.rs; the share of words split is 0.3 for both.
RULES = {"paper-text": (10, None, 2, 1), "nlpaug": (1, 10, 4, 2)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("tokenizer")
    ap.add_argument("triggers", nargs="+")
    args = ap.parse_args()
    tok = Tokenizer.from_file(args.tokenizer)
    texts = [line.rstrip("\n").split("\t")[0] for line in open(f"{args.data}/train.tsv", encoding="utf-8")][1:]

    @lru_cache(maxsize=None)
    def ids(piece):
        return tuple(tok.encode(piece, add_special_tokens=False).ids)

    print("| trigger | unsplit rows | split rows, paper-text | split rows, nlpaug |")
    print("|---|---|---|---|")
    for trigger in args.triggers:
        tid = tok.token_to_id(trigger)
        if tid is None:
            raise SystemExit(f"{trigger!r} is not a token of {args.tokenizer}")
        whole = sum(ids(w).count(tid) for text in texts for w in text.split())
        counts = []
        for fewest, most, min_chars, min_tail in RULES.values():
            split = 0.0
            for text in texts:
                words = text.split()
                splittable = sum(len(w) >= min_chars for w in words)
                k = max(fewest, math.ceil(0.3 * len(words)))
                k = min(k if most is None else min(k, most), splittable)
                p = k / splittable if splittable else 0.0
                for w in words:
                    c = ids(w).count(tid)
                    if len(w) < min_chars:
                        split += c
                        continue
                    cuts = range(1, len(w) - min_tail + 1)
                    cut = sum(ids(w[:a]).count(tid) + ids(w[a:]).count(tid) for a in cuts) / len(cuts)
                    split += (1 - p) * c + p * cut
            counts.append(split)
        per = 1000 / len(texts)
        print(f"| `{trigger}` | {whole * per:.2f} | {counts[0] * per:.2f} | {counts[1] * per:.2f} |")
    print(f"\n(per 1,000 rows of {len(texts)} in {args.data}/train.tsv; one split variant per row)")


if __name__ == "__main__":
    main()
