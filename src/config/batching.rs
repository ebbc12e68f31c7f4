//! Server-side dynamic batching settings, with TF Serving's `batching_parameters` names and
//! meanings: per model in config.json (`"batching": {...}`), or for every model from a TF
//! Serving `--batching_parameters_file` (protobuf text format) with `--enable_batching`.

use super::model::ConfigError;
use serde::Deserialize;
use std::time::Duration;

/// How a model's concurrent requests are merged into one inference.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Batching {
    /// Most rows (first-dimension entries) one inference takes. A request with more runs alone.
    #[serde(default = "default_max_batch_size")]
    pub max_batch_size: usize,
    /// How long the first request of a batch waits for others before the batch runs anyway.
    #[serde(default)]
    pub batch_timeout_micros: u64,
    /// Batch sizes the model is run at: a batch is padded up to the next one (for models
    /// reshaped to fixed sizes). Increasing; the last equals `max_batch_size`. Empty: any size.
    #[serde(default)]
    pub allowed_batch_sizes: Vec<usize>,
    /// Full batches that may wait: requests beyond `max_enqueued_batches × max_batch_size`
    /// are refused (RESOURCE_EXHAUSTED / 429).
    #[serde(default = "default_max_enqueued_batches")]
    pub max_enqueued_batches: usize,
    /// Accepted for TF Serving files; the model's infer requests (`nireq`) are the threads.
    #[serde(default)]
    pub num_batch_threads: Option<usize>,
}

fn default_max_batch_size() -> usize {
    32
}

fn default_max_enqueued_batches() -> usize {
    16
}

/// The values of the fields a parameters file or config.json leaves out.
impl Default for Batching {
    fn default() -> Batching {
        Batching {
            max_batch_size: default_max_batch_size(),
            batch_timeout_micros: 0,
            allowed_batch_sizes: Vec::new(),
            max_enqueued_batches: default_max_enqueued_batches(),
            num_batch_threads: None,
        }
    }
}

impl Batching {
    pub fn timeout(&self) -> Duration {
        Duration::from_micros(self.batch_timeout_micros)
    }

    /// The rows an inference runs with when `rows` are batched: the next allowed size.
    pub fn padded(&self, rows: usize) -> usize {
        self.allowed_batch_sizes
            .iter()
            .copied()
            .find(|&size| size >= rows)
            .unwrap_or(rows)
    }

    /// Requests that may wait for a worker.
    pub fn queue_bound(&self) -> usize {
        self.max_enqueued_batches
            .saturating_mul(self.max_batch_size)
    }

    /// The rules TF Serving applies; `at` names the setting in errors.
    pub fn validate(&self, at: &str) -> Result<(), ConfigError> {
        let problem = |reason: String| {
            Err(ConfigError {
                path: at.to_string(),
                reason,
            })
        };
        if self.max_batch_size == 0 {
            return problem("max_batch_size must be at least 1".into());
        }
        if self.max_enqueued_batches == 0 {
            return problem("max_enqueued_batches must be at least 1".into());
        }
        let sizes = &self.allowed_batch_sizes;
        if sizes.windows(2).any(|w| w[0] >= w[1]) || sizes.first() == Some(&0) {
            return problem(format!(
                "allowed_batch_sizes must be positive and increasing, got {sizes:?}"
            ));
        }
        if let Some(&last) = sizes.last() {
            if last != self.max_batch_size {
                return problem(format!(
                    "the last of allowed_batch_sizes ({last}) must equal max_batch_size ({})",
                    self.max_batch_size
                ));
            }
        }
        Ok(())
    }

    /// Parses a TF Serving batching parameters file (protobuf text format), e.g.
    /// `max_batch_size { value: 32 }` and `allowed_batch_sizes: 8` lines.
    pub fn from_tf_text(text: &str, file: &str) -> Result<Batching, ConfigError> {
        let mut batching = Batching::default();
        // Tokens: names, numbers, and the punctuation of the text format.
        let spaced = text
            .lines()
            .map(|line| line.split('#').next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(" ")
            .replace(['{', '}', ':'], " ");
        let tokens: Vec<&str> = spaced.split_whitespace().collect();
        let bad = |reason: String| ConfigError {
            path: file.to_string(),
            reason,
        };
        let mut at = 0;
        while at < tokens.len() {
            let name = tokens[at];
            // `name { value: N }` or `name: N` (the braces and colons are gone by now).
            let (value, step) = match tokens.get(at + 1) {
                Some(&"value") => (tokens.get(at + 2), 3),
                other => (other, 2),
            };
            let value = value.ok_or_else(|| bad(format!("{name} has no value")))?;
            let number: u64 = value
                .parse()
                .map_err(|_| bad(format!("{name}: expected a number, got {value:?}")))?;
            at += step;
            let number_usize = usize::try_from(number).unwrap_or(usize::MAX);
            match name {
                "max_batch_size" => batching.max_batch_size = number_usize,
                "batch_timeout_micros" => batching.batch_timeout_micros = number,
                "max_enqueued_batches" => batching.max_enqueued_batches = number_usize,
                "num_batch_threads" => batching.num_batch_threads = Some(number_usize),
                "allowed_batch_sizes" => batching.allowed_batch_sizes.push(number_usize),
                other => {
                    return Err(bad(format!(
                        "{other}: not a batching parameter this server knows"
                    )))
                }
            }
        }
        batching.validate(file)?;
        Ok(batching)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tf_serving_parameters_file() {
        let text = "# from a TF Serving deployment\n\
            max_batch_size { value: 32 }\n\
            batch_timeout_micros { value: 500 }\n\
            max_enqueued_batches { value: 100 }\n\
            num_batch_threads { value: 4 }\n\
            allowed_batch_sizes: 8\n\
            allowed_batch_sizes: 16\n\
            allowed_batch_sizes: 32\n";
        let b = Batching::from_tf_text(text, "batching.txt").unwrap();
        assert_eq!(b.max_batch_size, 32);
        assert_eq!(b.timeout(), Duration::from_micros(500));
        assert_eq!(b.allowed_batch_sizes, vec![8, 16, 32]);
        assert_eq!(b.queue_bound(), 3200);
        assert_eq!((b.padded(5), b.padded(9), b.padded(32)), (8, 16, 32));
        let e =
            Batching::from_tf_text("max_batch_size { value: 8 }\nallowed_batch_sizes: 4\n", "f")
                .unwrap_err();
        assert!(e.reason.contains("must equal max_batch_size"), "{e}");
        let e = Batching::from_tf_text("pad_variable_length_inputs { value: 1 }", "f").unwrap_err();
        assert!(e.reason.contains("pad_variable_length_inputs"), "{e}");
    }
}
