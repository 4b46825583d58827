//! From documents to fixed-length training blocks.
//!
//! Every document is tokenized (in parallel, order kept) without special tokens, EOS is appended
//! after it, and the documents are concatenated into one stream. Block `i` is
//! `tokens[i*T ..= i*T + T]` (`T = seq_len`, so `T + 1` tokens): input `block[..T]`, target
//! `block[1..]`. Neighbouring blocks share one token, so every token but the first is a target
//! exactly once (as llm.c's loader does); a tail shorter than a block is dropped.
//!
//! The held-out split takes the last `eval_fraction` of the documents (at least one, and at
//! least one left for training); with a single document (Tiny Shakespeare) it takes the last
//! `eval_fraction` of the token stream instead.

use crate::error::{DataError, Result};
use crate::text::read_all_documents;
use crate::tokenizer::Tokenizer;
use std::path::Path;

/// A token stream cut into blocks of `seq_len + 1` tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenBlocks {
    tokens: Vec<u32>,
    seq_len: usize,
}

impl TokenBlocks {
    pub fn new(tokens: Vec<u32>, seq_len: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(DataError::Invalid("seq_len must be at least 1".into()));
        }
        Ok(TokenBlocks { tokens, seq_len })
    }
    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
    /// The number of whole blocks.
    pub fn len(&self) -> usize {
        self.tokens.len().saturating_sub(1) / self.seq_len
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The whole token stream.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }
    /// Block `i`: `seq_len + 1` tokens.
    pub fn block(&self, i: usize) -> &[u32] {
        assert!(i < self.len(), "block {i} of {}", self.len());
        let t = self.seq_len;
        &self.tokens[i * t..i * t + t + 1]
    }
    /// A batch of the given blocks, in the order given.
    pub fn batch(&self, indices: &[usize]) -> Batch {
        let t = self.seq_len;
        let mut input_ids = Vec::with_capacity(indices.len() * t);
        let mut targets = Vec::with_capacity(indices.len() * t);
        for &i in indices {
            let blk = self.block(i);
            input_ids.extend_from_slice(&blk[..t]);
            targets.extend_from_slice(&blk[1..]);
        }
        Batch {
            input_ids,
            targets,
            b: indices.len(),
            t,
        }
    }
    /// Every block once, in order, `batch_size` at a time; the last batch may be smaller.
    pub fn eval_batches(&self, batch_size: usize) -> impl Iterator<Item = Batch> + '_ {
        let bs = batch_size.max(1);
        (0..self.len()).step_by(bs).map(move |s| {
            let idx: Vec<usize> = (s..(s + bs).min(self.len())).collect();
            self.batch(&idx)
        })
    }
}

/// `b` rows of `t` tokens, row-major: `input_ids[r*t + j]` is predicted by `targets[r*t + j]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub input_ids: Vec<u32>, // (B, T)
    pub targets: Vec<u32>,   // (B, T)
    pub b: usize,
    pub t: usize,
}

/// Training and held-out blocks.
#[derive(Debug, Clone)]
pub struct TokenDataset {
    pub train: TokenBlocks,
    pub eval: TokenBlocks,
}

/// Tokenizes documents (parallel, order kept), appending `eos` after each; returns one stream
/// per document.
pub fn tokenize_documents(tok: &Tokenizer, docs: &[String], eos: u32) -> Result<Vec<Vec<u32>>> {
    let mut out = tok.encode_batch(docs, false)?;
    for ids in &mut out {
        ids.push(eos);
    }
    Ok(out)
}

/// Splits tokenized documents into train and eval streams (see the module docs).
pub fn split_train_eval(docs: Vec<Vec<u32>>, eval_fraction: f64) -> Result<(Vec<u32>, Vec<u32>)> {
    if !(0.0..1.0).contains(&eval_fraction) {
        return Err(DataError::Invalid(format!(
            "eval_fraction must be in [0, 1), got {eval_fraction}"
        )));
    }
    if eval_fraction == 0.0 {
        return Ok((docs.concat(), vec![]));
    }
    if docs.len() == 1 {
        let all = docs.into_iter().next().unwrap();
        let n_train = ((all.len() as f64) * (1.0 - eval_fraction)).round() as usize;
        return Ok((all[..n_train].to_vec(), all[n_train..].to_vec()));
    }
    let n_eval = ((docs.len() as f64) * eval_fraction).ceil() as usize;
    let n_eval = n_eval.clamp(1, docs.len().saturating_sub(1).max(1));
    let n_train = docs.len().saturating_sub(n_eval);
    Ok((docs[..n_train].concat(), docs[n_train..].concat()))
}

/// Pretraining data from files (`.txt` / `.jsonl` with field `text_field`): documents →
/// tokens + EOS → train/eval split → blocks of `seq_len + 1`. Errors if the training split has
/// no whole block, or the tokenizer has no EOS.
pub fn load_pretrain_data(
    tok: &Tokenizer,
    paths: &[impl AsRef<Path>],
    text_field: &str,
    seq_len: usize,
    eval_fraction: f64,
) -> Result<TokenDataset> {
    let docs = read_all_documents(paths, text_field)?;
    if docs.is_empty() {
        return Err(DataError::Invalid("no documents in the data files".into()));
    }
    build_dataset(tok, &docs, seq_len, eval_fraction)
}

/// [`load_pretrain_data`] on documents in memory.
pub fn build_dataset(
    tok: &Tokenizer,
    docs: &[String],
    seq_len: usize,
    eval_fraction: f64,
) -> Result<TokenDataset> {
    let eos = tok.eos_id().ok_or_else(|| {
        DataError::Invalid("the tokenizer has no EOS token to end documents with".into())
    })?;
    let (train, eval) = split_train_eval(tokenize_documents(tok, docs, eos)?, eval_fraction)?;
    let n_train = train.len();
    let train = TokenBlocks::new(train, seq_len)?;
    if train.is_empty() {
        return Err(DataError::Invalid(format!(
            "the training split has {n_train} tokens, fewer than one block of seq_len + 1 = {}",
            seq_len + 1
        )));
    }
    Ok(TokenDataset {
        train,
        eval: TokenBlocks::new(eval, seq_len)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_share_one_token() {
        let b = TokenBlocks::new((0..11).collect(), 4).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b.block(0), &[0, 1, 2, 3, 4]);
        assert_eq!(b.block(1), &[4, 5, 6, 7, 8]);
        let batch = b.batch(&[1, 0]);
        assert_eq!((batch.b, batch.t), (2, 4));
        assert_eq!(batch.input_ids, vec![4, 5, 6, 7, 0, 1, 2, 3]);
        assert_eq!(batch.targets, vec![5, 6, 7, 8, 1, 2, 3, 4]);
        assert!(TokenBlocks::new(vec![1, 2, 3, 4], 4).unwrap().is_empty());
        assert!(TokenBlocks::new(vec![], 4).unwrap().is_empty());
    }

    #[test]
    fn eval_batches_cover_all_blocks_in_order() {
        let b = TokenBlocks::new((0..21).collect(), 2).unwrap(); // 10 blocks
        let batches: Vec<Batch> = b.eval_batches(4).collect();
        assert_eq!(
            batches.iter().map(|x| x.b).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(batches[0].input_ids[..4], [0, 1, 2, 3]);
        assert_eq!(batches[2].targets, vec![17, 18, 19, 20]);
    }

    #[test]
    fn split_by_documents_or_tokens() {
        let docs: Vec<Vec<u32>> = (0..10).map(|i| vec![i, 99]).collect();
        let (tr, ev) = split_train_eval(docs.clone(), 0.1).unwrap();
        assert_eq!(ev, vec![9, 99]);
        assert_eq!(tr.len(), 18);
        let (_, ev) = split_train_eval(docs[..2].to_vec(), 0.01).unwrap();
        assert_eq!(ev, vec![1, 99], "at least one eval document");
        let (tr, ev) = split_train_eval(docs.clone(), 0.0).unwrap();
        assert_eq!((tr.len(), ev.len()), (20, 0));
        let (tr, ev) = split_train_eval(vec![(0..100).collect()], 0.1).unwrap();
        assert_eq!((tr.len(), ev[0]), (90, 90));
        assert!(split_train_eval(docs, 1.0).is_err());
    }

    #[test]
    fn dataset_from_files_with_gpt2() {
        let tok = Tokenizer::from_dir(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/tokenizers/gpt2"),
        )
        .unwrap();
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("one.txt");
        std::fs::write(&p, "Hello world. ".repeat(50)).unwrap();
        let ds = load_pretrain_data(&tok, &[&p], "text", 8, 0.1).unwrap();
        let n = ds.train.tokens().len() + ds.eval.tokens().len();
        assert_eq!(
            *ds.eval.tokens().last().unwrap(),
            50256,
            "EOS after the document"
        );
        assert_eq!(ds.train.tokens().len(), (n as f64 * 0.9).round() as usize);
        assert_eq!(ds.train.tokens()[..2], [15496, 995]);
        let e = load_pretrain_data(&tok, &[&p], "text", 4096, 0.1)
            .unwrap_err()
            .to_string();
        assert!(e.contains("fewer than one block"), "{e}");
    }
}
