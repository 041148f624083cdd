//! Inference over data sets: logits and predictions in the original row order.

use burn::tensor::backend::{Backend, ExecutionError};

use crate::data::batch::{length_sorted_batches, Batch, Encoded};
use crate::model::BertClassifier;
use crate::progress::Progress;

/// Why logits could not be computed.
#[derive(Debug, thiserror::Error)]
pub enum InferenceError {
    #[error("reading logits back from the device failed: {0:?}")]
    Device(ExecutionError),
    /// Finite weights can still overflow float32 on the way (a weight of 3e38, or a model
    /// trained at a huge learning rate): its argmax would be an arbitrary class.
    #[error(
        "the model's outputs are NaN or infinite on row {} of its input (its weights overflow float32): it is not a usable classifier",
        .row + 1
    )]
    NonFinite {
        /// 0-based; the message counts from 1.
        row: usize,
    },
}

/// Logits of every row, `[rows][num_labels]`, computed in length-sorted batches so padding
/// stays small, then returned in the rows' original order.
///
/// Async because a WebGPU buffer can only be read asynchronously in the browser; native
/// callers use [`logits`], which blocks on it.
pub async fn logits_async<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    let num_labels = model.num_labels();
    let mut out = vec![Vec::new(); rows.len()];
    let batches = length_sorted_batches(rows, batch_size);
    progress.start("inference", batches.len());
    for idx in batches {
        let refs: Vec<&Encoded> = idx.iter().map(|&i| &rows[i]).collect();
        let batch = Batch::<B>::new(&refs, pad_id, device);
        let values: Vec<f32> = model
            .logits(batch.input_ids, batch.attention_mask)
            .into_data_async()
            .await
            .map_err(InferenceError::Device)?
            .convert::<f32>()
            .to_vec()
            .expect("data converted to f32 always reads back as f32");
        for (k, &i) in idx.iter().enumerate() {
            let row = &values[k * num_labels..(k + 1) * num_labels];
            if !row.iter().all(|v| v.is_finite()) {
                return Err(InferenceError::NonFinite { row: i });
            }
            out[i] = row.to_vec();
        }
        progress.step(None);
    }
    progress.finish(&format!("{} rows", rows.len()));
    Ok(out)
}

/// [`logits_async`] for native callers (blocks until the device is done).
pub fn logits<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Vec<Vec<f32>>, InferenceError> {
    burn_std::future::block_on(logits_async(model, rows, pad_id, batch_size, device, progress))
}

/// Index of the largest logit (the first on ties).
pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// Predicted class of every row.
pub fn predict<B: Backend>(
    model: &BertClassifier<B>,
    rows: &[Encoded],
    pad_id: u32,
    batch_size: usize,
    device: &B::Device,
    progress: &mut dyn Progress,
) -> Result<Vec<usize>, InferenceError> {
    Ok(logits(model, rows, pad_id, batch_size, device, progress)?.iter().map(|r| argmax(r)).collect())
}

#[cfg(test)]
mod tests {
    use super::argmax;

    #[test]
    fn argmax_picks_first_maximum() {
        assert_eq!(argmax(&[0.1, 0.7, 0.7]), 1);
        assert_eq!(argmax(&[-1.0]), 0);
    }
}
