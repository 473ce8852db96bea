//! Stored sample payloads of every version of every event, checked to decode to the newest
//! types: the compatibility test of [`assert_samples_decode`].

use std::fmt;
use std::path::{Path, PathBuf};

use crate::codec::{EventSetCodec, Json};

/// Samples that did not decode, with why; from [`check_samples`].
#[derive(Debug)]
pub struct SampleErrors {
    /// Each failing file and its error.
    pub failures: Vec<(PathBuf, String)>,
}

impl fmt::Display for SampleErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} samples did not decode:", self.failures.len())?;
        for (path, error) in &self.failures {
            write!(f, "\n  {}: {error}", path.display())?;
        }
        Ok(())
    }
}

impl std::error::Error for SampleErrors {}

/// Decodes every sample under `dir` as the event set `S` reads messages: the file
/// `{dir}/{event name}/v{version}.json` (one JSON payload, as a producer of that version of the
/// event wrote it) is decoded as that version, upcast to the newest type. Returns how many
/// samples decoded.
///
/// Keep one sample per version in the repository when a version ships; the check then fails
/// when a change to an event (a field renamed, an upcast that no longer builds) would stop the
/// service from reading messages that may still wait in a queue.
///
/// # Errors
/// [`SampleErrors`] listing every file that did not decode, was not named `v{N}.json`, or
/// could not be read, and a folder named after no event of `S`; also when `dir` holds no
/// sample at all (a wrong path should not pass).
pub fn check_samples<S: EventSetCodec>(dir: impl AsRef<Path>) -> Result<usize, SampleErrors> {
    let dir = dir.as_ref();
    let mut failures = Vec::new();
    let mut decoded = 0;
    let events = match std::fs::read_dir(dir) {
        Ok(events) => events,
        Err(error) => {
            let failures = vec![(dir.to_owned(), error.to_string())];
            return Err(SampleErrors { failures });
        }
    };
    let mut folders: Vec<PathBuf> = events.filter_map(|e| Some(e.ok()?.path())).collect();
    folders.sort();
    for folder in folders.into_iter().filter(|p| p.is_dir()) {
        let name = folder
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if S::index_of(&name).is_none() {
            failures.push((folder, format!("no event named `{name}` in this event set")));
            continue;
        }
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&folder) {
            Ok(files) => files.filter_map(|e| Some(e.ok()?.path())).collect(),
            Err(error) => {
                failures.push((folder, error.to_string()));
                continue;
            }
        };
        files.sort();
        for file in files {
            let version = file.file_name().and_then(|n| n.to_str()).and_then(|n| {
                n.strip_prefix('v')?
                    .strip_suffix(".json")?
                    .parse::<u32>()
                    .ok()
            });
            let Some(version) = version else {
                failures.push((file, "not named v{version}.json".to_owned()));
                continue;
            };
            match std::fs::read(&file) {
                Ok(bytes) => match S::decode_version(&name, Some(version), &bytes, &Json) {
                    Ok(_) => decoded += 1,
                    Err(error) => failures.push((file, error.to_string())),
                },
                Err(error) => failures.push((file, error.to_string())),
            }
        }
    }
    if decoded == 0 && failures.is_empty() {
        failures.push((dir.to_owned(), "no samples found".to_owned()));
    }
    if failures.is_empty() {
        Ok(decoded)
    } else {
        Err(SampleErrors { failures })
    }
}

/// [`check_samples`], panicking with the list of failures: the one line of a compatibility
/// test.
///
/// ```
/// use tidings::prelude::*;
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize, Event)]
/// # #[event(name = "order.placed")]
/// # struct OrderPlaced { order: u64 }
/// # #[derive(Debug, EventSet)]
/// # enum Shop { OrderPlaced(OrderPlaced) }
/// # let dir = std::env::temp_dir().join(format!("tidings-samples-{}", std::process::id()));
/// # std::fs::create_dir_all(dir.join("order.placed")).unwrap();
/// # std::fs::write(dir.join("order.placed/v1.json"), r#"{"order": 7}"#).unwrap();
/// tidings::testing::assert_samples_decode::<Shop>(&dir);
/// # std::fs::remove_dir_all(&dir).unwrap();
/// ```
///
/// # Panics
/// When [`check_samples`] fails.
#[track_caller]
pub fn assert_samples_decode<S: EventSetCodec>(dir: impl AsRef<Path>) {
    if let Err(errors) = check_samples::<S>(dir) {
        panic!("{errors}");
    }
}
