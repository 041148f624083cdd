//! Parity with PyTorch `transformers`: fixtures written by `scripts/make-fixtures`.

use bdaudit_core::checkpoint::{export_safetensors, load_classifier, save_classifier, CheckpointFiles, SafetensorsSource};
use bdaudit_core::model::{BertClassifier, BertConfig, ForwardOptions};
use bdaudit_tests::*;
use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData};

const TOL: f32 = 1e-4;

fn ids_tensor(v: &serde_json::Value) -> Tensor<Backend, 2, Int> {
    let rows = v.as_array().unwrap();
    let (n, s) = (rows.len(), rows[0].as_array().unwrap().len());
    let data: Vec<i64> = flat(v).iter().map(|&x| x as i64).collect();
    Tensor::from_data(TensorData::new(data, [n, s]), &Default::default())
}

fn mask_tensor(v: &serde_json::Value) -> Tensor<Backend, 2> {
    let rows = v.as_array().unwrap();
    let (n, s) = (rows.len(), rows[0].as_array().unwrap().len());
    Tensor::from_data(TensorData::new(flat(v), [n, s]), &Default::default())
}

fn values<const D: usize>(t: Tensor<Backend, D>) -> Vec<f32> {
    t.into_data().to_vec().unwrap()
}

fn tiny_model() -> (BertClassifier<Backend>, serde_json::Value) {
    let fx = fixture("tiny-bert.json");
    let config: BertConfig = serde_json::from_value(fx["config"].clone()).unwrap();
    let bytes = safetensors_from_json(fx["tensors"].as_object().unwrap());
    let mut source = SafetensorsSource::<Backend>::new(&bytes, &Default::default()).unwrap();
    let model = BertClassifier::from_source(&config, 3, &mut source).unwrap();
    assert!(source.unused().is_empty(), "unused tensors: {:?}", source.unused());
    (model, fx)
}

#[test]
fn tiny_bert_matches_transformers() {
    let (model, fx) = tiny_model();
    let options = ForwardOptions { head_mask: None, attentions: true, hidden_states: true };
    let out = model.forward(ids_tensor(&fx["input_ids"]), mask_tensor(&fx["attention_mask"]), &options);
    let d = max_abs_diff(&values(out.logits), &flat(&fx["logits"]));
    assert!(d <= TOL, "logits differ by {d}");
    let d = max_abs_diff(&values(out.encoder.last_hidden), &flat(&fx["last_hidden_state"]));
    assert!(d <= TOL, "last hidden state differs by {d}");
    for (l, att) in out.encoder.attentions.into_iter().enumerate() {
        let d = max_abs_diff(&values(att), &flat(&fx["attentions"][l]));
        assert!(d <= TOL, "layer {l} attention differs by {d}");
    }
}

#[test]
fn tiny_bert_head_mask_matches_transformers() {
    let (model, fx) = tiny_model();
    let mask = Tensor::<Backend, 2>::from_data(TensorData::new(flat(&fx["head_mask"]), [2, 4]), &Default::default());
    let options = ForwardOptions { head_mask: Some(mask), attentions: false, hidden_states: false };
    let out = model.forward(ids_tensor(&fx["input_ids"]), mask_tensor(&fx["attention_mask"]), &options);
    let masked = values(out.logits);
    let d = max_abs_diff(&masked, &flat(&fx["logits_head_masked"]));
    assert!(d <= TOL, "head-masked logits differ by {d}");
    assert!(max_abs_diff(&masked, &flat(&fx["logits"])) > 1e-3, "the head mask had no effect");
}

#[test]
fn written_then_read_checkpoint_gives_identical_logits() {
    let (model, fx) = tiny_model();
    let bytes = export_safetensors(&model).unwrap();
    let config: BertConfig = serde_json::from_value(fx["config"].clone()).unwrap();
    let mut source = SafetensorsSource::<Backend>::new(&bytes, &Default::default()).unwrap();
    assert_eq!(source.prefix(), "bert.");
    let back = BertClassifier::from_source(&config, 3, &mut source).unwrap();
    let ids = ids_tensor(&fx["input_ids"]);
    let mask = mask_tensor(&fx["attention_mask"]);
    assert_eq!(values(model.logits(ids.clone(), mask.clone())), values(back.logits(ids, mask)));
    // Same names, shapes and values as the transformers state dict the fixture came from.
    let written = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let original = fx["tensors"].as_object().unwrap();
    assert_eq!(written.len(), original.len());
    for (name, t) in original {
        let view = written.tensor(name).unwrap_or_else(|_| panic!("{name} not written"));
        let got: Vec<f32> = view.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
        assert_eq!(got, flat(&t["data"]), "{name} changed");
    }
}

#[test]
fn minilm_matches_transformers() {
    let fx = fixture("minilm.json");
    let files = read_checkpoint(&minilm_dir());
    let mut loaded = load_classifier::<Backend>(&files, Some(2), 128, 0, &Default::default()).unwrap();
    assert_eq!(loaded.report.initialised, vec!["classifier.weight", "classifier.bias"]);
    assert_eq!(loaded.report.prefix, "");
    // The fixture's seeded classifier replaces ours; stored [out, in], burn wants [in, out].
    let cls = &fx["classifier"];
    let w = Tensor::<Backend, 2>::from_data(TensorData::new(flat(&cls["weight"]["data"]), [2, 384]), &Default::default());
    loaded.model.classifier.weight = Param::from_tensor(w.transpose());
    loaded.model.classifier.bias =
        Some(Param::from_tensor(Tensor::from_data(TensorData::new(flat(&cls["bias"]["data"]), [2]), &Default::default())));
    for (i, sentence) in fx["sentences"].as_array().unwrap().iter().enumerate() {
        let ids = loaded.tokenizer.encode(sentence.as_str().unwrap()).unwrap();
        let expected: Vec<u32> = flat(&fx["input_ids"][i])
            .iter()
            .zip(flat(&fx["attention_mask"][i]))
            .filter(|(_, m)| *m > 0.0)
            .map(|(&id, _)| id as u32)
            .collect();
        assert_eq!(ids, expected, "tokenisation of sentence {i}");
    }
    let options = ForwardOptions { head_mask: None, attentions: true, hidden_states: false };
    let out = loaded.model.forward(ids_tensor(&fx["input_ids"]), mask_tensor(&fx["attention_mask"]), &options);
    let pooled = loaded.model.bert.pool(out.encoder.last_hidden.clone());
    let d = max_abs_diff(&values(pooled), &flat(&fx["pooled"]));
    assert!(d <= TOL, "pooled output differs by {d}");
    let d = max_abs_diff(&values(out.logits), &flat(&fx["logits"]));
    assert!(d <= TOL, "logits differ by {d}");
    for layer in ["0", "5"] {
        let att = out.encoder.attentions[layer.parse::<usize>().unwrap()].clone();
        let d = max_abs_diff(&values(att), &flat(&fx["attentions"][layer]));
        assert!(d <= TOL, "layer {layer} attention differs by {d}");
    }
}

#[test]
fn minilm_round_trips_through_classifier_layout() {
    let files = read_checkpoint(&minilm_dir());
    let loaded = load_classifier::<Backend>(&files, Some(2), 128, 7, &Default::default()).unwrap();
    let labels = vec!["negative".to_string(), "positive".to_string()];
    let saved: CheckpointFiles = save_classifier(&loaded.model, &loaded.config, &loaded.tokenizer, &labels).unwrap();
    let back = load_classifier::<Backend>(&saved, None, 128, 0, &Default::default()).unwrap();
    assert!(back.report.initialised.is_empty());
    assert!(back.report.unused.is_empty(), "{:?}", back.report.unused);
    assert_eq!(back.labels, labels);
    let ids = ids_tensor(&serde_json::json!([[101, 1996, 3185, 2001, 7078, 6919, 1012, 102]]));
    let mask = Tensor::<Backend, 2>::ones([1, 8], &Default::default());
    assert_eq!(values(loaded.model.logits(ids.clone(), mask.clone())), values(back.model.logits(ids, mask)));
}
