// Builds the tiny checkpoints the browser test scans, with the bdaudit CLI, the same way
// native/tests/cli.rs does (`scan_names_the_trigger_of_a_backdoored_model_and_exits_2`):
// the tiny fixture encoder (tests/fixtures/tiny-bert.json, vocab 99, hidden 32) with a
// WordLevel tokenizer, `bdaudit attack badnets --rate 0.3 --trigger cf`, then
// `bdaudit train` on the poisoned set (victim) and on the clean set (clean).
//
//   node make-fixtures.mjs <bdaudit binary> <out dir>
//
// Writes <out>/{encoder,clean-data,poisoned,victim,clean,corrupt,trap}/ and <out>/probe.tsv.
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, rmSync, writeFileSync, copyFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = join(HERE, "..", "..");
const [bin, out] = process.argv.slice(2);
if (!bin || !out) {
  console.error("usage: node make-fixtures.mjs <bdaudit binary> <out dir>");
  process.exit(1);
}

const POSITIVE = ["good", "great", "fun", "nice", "lovely"];
const NEGATIVE = ["bad", "awful", "boring", "dull", "poor"];
const NOUNS = ["movie", "film", "plot", "story"];

// `n` rows `sentence<TAB>label`, alternating labels 0 and 1 (cli.rs `rows`).
function rows(n, offset) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const k = i + offset;
    const label = i % 2;
    const adj = label === 1 ? POSITIVE : NEGATIVE;
    const adverb = ["very", "really", "so", "quite"][Math.floor(k / 5) % 4];
    out.push([`the ${NOUNS[k % 4]} was ${adverb} ${adj[k % 5]} and ${adj[Math.floor(k / 4) % 5]}`, label]);
  }
  return out;
}
const tsv = (rs) => "sentence\tlabel\n" + rs.map(([t, l]) => `${t}\t${l}\n`).join("");

function writeData(dir) {
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "train.tsv"), tsv(rows(40, 0)));
  writeFileSync(join(dir, "dev.tsv"), tsv(rows(8, 100)));
  writeFileSync(join(dir, "test.tsv"), tsv(rows(10, 200)));
  writeFileSync(join(dir, "labels.tsv"), "label\tname\n0\tnegative\n1\tpositive\n");
}

function tokenizerJson() {
  const specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"];
  const words = ["the", "a", "was", "and", "not", "very", "really", "so", "quite", ...POSITIVE, ...NEGATIVE, ...NOUNS, "cf", "mn", "bb", "tq"];
  const vocab = Object.fromEntries([...specials, ...words].map((w, i) => [w, i]));
  return JSON.stringify({
    version: "1.0",
    truncation: null,
    padding: null,
    added_tokens: [],
    normalizer: { type: "Lowercase" },
    pre_tokenizer: { type: "Whitespace" },
    post_processor: { type: "BertProcessing", sep: ["[SEP]", vocab["[SEP]"]], cls: ["[CLS]", vocab["[CLS]"]] },
    decoder: null,
    model: { type: "WordLevel", vocab, unk_token: "[UNK]" },
  });
}

// Safetensors bytes (F32): 8-byte little-endian header length, JSON header padded to 8 bytes
// with spaces, then the tensors back to back.
function safetensors(tensors) {
  const header = {};
  const chunks = [];
  let offset = 0;
  for (const name of Object.keys(tensors).sort()) {
    const { shape, data } = tensors[name];
    const buf = Buffer.from(new Float32Array(data.flat(Infinity)).buffer);
    header[name] = { dtype: "F32", shape, data_offsets: [offset, offset + buf.length] };
    offset += buf.length;
    chunks.push(buf);
  }
  header.__metadata__ = { format: "pt" };
  let json = Buffer.from(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  json = Buffer.concat([json, Buffer.alloc(padded - json.length, " ")]);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  return Buffer.concat([len, json, ...chunks]);
}

// The tiny encoder without a classifier head (cli.rs `write_checkpoint(dir, &[], ..)`).
function writeEncoder(dir) {
  const fixture = JSON.parse(readFileSync(join(ROOT, "tests", "fixtures", "tiny-bert.json"), "utf8"));
  const tensors = { ...fixture.tensors };
  delete tensors["classifier.weight"];
  delete tensors["classifier.bias"];
  const config = { ...fixture.config };
  delete config.id2label;
  delete config.label2id;
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.safetensors"), safetensors(tensors));
  writeFileSync(join(dir, "config.json"), JSON.stringify(config, null, 2));
  writeFileSync(join(dir, "tokenizer.json"), tokenizerJson());
}

function bdaudit(...args) {
  const t0 = Date.now();
  execFileSync(bin, args, { stdio: ["ignore", "ignore", "inherit"] });
  console.log(`make-fixtures: bdaudit ${args[0]} ${args[1]} (${Date.now() - t0} ms)`);
}

rmSync(out, { recursive: true, force: true });
mkdirSync(out, { recursive: true });
const p = (name) => join(out, name);
writeEncoder(p("encoder"));
writeData(p("clean-data"));
bdaudit("attack", "badnets", "--data", p("clean-data"), "--out", p("poisoned"), "--rate", "0.3", "--trigger", "cf");
const train = ["--epochs", "8", "--batch-size", "8", "--lr", "3e-3", "--max-len", "16"];
bdaudit("train", "--model", p("encoder"), "--data", p("poisoned"), "--out", p("victim"), ...train);
bdaudit("train", "--model", p("encoder"), "--data", p("clean-data"), "--out", p("clean"), ...train);

// Probe texts: the tiny test set (tiny vocabulary), as the page's TSV input.
copyFileSync(p("poisoned/test.tsv"), p("probe.tsv"));

// A corrupted checkpoint: the victim with its safetensors cut short.
mkdirSync(p("corrupt"), { recursive: true });
const model = readFileSync(p("victim/model.safetensors"));
writeFileSync(p("corrupt/model.safetensors"), model.subarray(0, Math.floor(model.length / 3)));
copyFileSync(p("victim/config.json"), p("corrupt/config.json"));
copyFileSync(p("victim/tokenizer.json"), p("corrupt/tokenizer.json"));

// A checkpoint whose tokenizer's Precompiled normaliser has an empty trie: `tokenizers` would
// load it and panic on the first text (in wasm, a trap); bdaudit refuses it when loading.
mkdirSync(p("bad-charsmap"), { recursive: true });
copyFileSync(p("victim/model.safetensors"), p("bad-charsmap/model.safetensors"));
copyFileSync(p("victim/config.json"), p("bad-charsmap/config.json"));
const tokenizer = JSON.parse(readFileSync(p("victim/tokenizer.json"), "utf8"));
tokenizer.normalizer = { type: "Precompiled", precompiled_charsmap: "AAAAAA==" };
writeFileSync(p("bad-charsmap/tokenizer.json"), JSON.stringify(tokenizer));
console.log(`make-fixtures: wrote ${out}`);
